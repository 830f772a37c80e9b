#!/usr/bin/env python3
"""Embed a corpus on a Ray cluster: one Ray task per shard, each running the relstitch binary
(`relstitch embed --shard I/N`), retried by Ray when it fails, then `relstitch merge`.

Ray schedules and retries; relstitch does the work and keeps each shard's progress on disk, so a
retried task continues where the failed attempt stopped. Shard files go to --workdir, which every
node must see (a shared filesystem) on a multi-node cluster.

usage:
  ray start --head                      # or an existing cluster: --address ray://... / auto
  scripts/ray_embed.py --relstitch target/release/relstitch --model all-MiniLM-L6-v2 \
      --input corpus.jsonl --output corpus.safetensors --shards 8 [--address auto] \
      [--workdir DIR] [--threads-per-task 1] [--chaos-kill-shard I] [-- EXTRA EMBED FLAGS]

--chaos-kill-shard I (for tests): the first attempt of shard I is killed with SIGKILL right after
its first chunk reached the disk, and its Ray worker dies with it; Ray must retry the task.
"""
import argparse
import os
import signal
import subprocess
import sys
import time

import ray


@ray.remote(max_retries=3, retry_exceptions=True)
def embed_shard(binary, embed_args, shard, count, out, chaos_marker):
    cmd = [binary, "embed", *embed_args, "--shard", f"{shard}/{count}", "--output", out, "--quiet"]
    if chaos_marker is not None and not os.path.exists(chaos_marker):
        with open(chaos_marker, "w") as f:
            f.write(f"first attempt of shard {shard} killed\n")
        env = dict(os.environ, RELSTITCH_FAILPOINT=f"embed-chunk-{shard}-written")
        p = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        for line in p.stderr:
            if "relstitch failpoint" in line and "reached" in line:
                break
        p.kill()  # SIGKILL, mid-shard
        p.wait()
        os.kill(os.getpid(), signal.SIGKILL)  # the Ray worker dies too: a system failure
    subprocess.run(cmd, check=True)
    return out


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--relstitch", required=True, help="path of the relstitch binary (on every node)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--shards", type=int, required=True)
    ap.add_argument("--address", default="auto", help="Ray cluster address (default: auto)")
    ap.add_argument("--workdir", help="where shard files go (default: beside --output)")
    ap.add_argument("--threads-per-task", type=int, default=1)
    ap.add_argument("--chaos-kill-shard", type=int)
    a = ap.parse_args(argv)
    binary = os.path.abspath(a.relstitch)
    workdir = os.path.abspath(a.workdir or (os.path.dirname(os.path.abspath(a.output)) or "."))
    os.makedirs(workdir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(a.output))[0]
    shards = [os.path.join(workdir, f"{stem}.shard-{i}-of-{a.shards}.safetensors") for i in range(a.shards)]
    embed_args = ["--model", a.model, "--input", os.path.abspath(a.input),
                  "--threads", str(a.threads_per_task), *extra]
    chaos = None
    if a.chaos_kill_shard is not None:
        chaos = os.path.join(workdir, f"{stem}.chaos-{a.chaos_kill_shard}")
        if os.path.exists(chaos):
            os.remove(chaos)

    ray.init(address=a.address, log_to_driver=True)
    start = time.time()
    futures = [
        embed_shard.options(num_cpus=a.threads_per_task).remote(
            binary, embed_args, i, a.shards, shards[i],
            chaos if i == a.chaos_kill_shard else None)
        for i in range(a.shards)
    ]
    ray.get(futures)
    print(f"{a.shards} shards embedded in {time.time() - start:.1f}s", file=sys.stderr)
    subprocess.run([binary, "merge", *shards, "--output", a.output], check=True)
    for s in shards:
        os.remove(s)
    if chaos is not None:
        if not os.path.exists(chaos):
            sys.exit("the chaos kill never happened")
        os.remove(chaos)
        print(f"shard {a.chaos_kill_shard} was killed once and retried by Ray", file=sys.stderr)


if __name__ == "__main__":
    main()
