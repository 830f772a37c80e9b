#!/usr/bin/env bash
# Executes the evcxr (Rust) notebooks headlessly and fails on any cell error.
#
#   scripts/run_notebook.sh              # run examples/notebooks/*.ipynb into a temporary folder
#   scripts/run_notebook.sh --inplace    # run them and refresh the committed outputs
#   scripts/run_notebook.sh --inplace examples/notebooks/quickstart.ipynb
#
# Installs what it needs itself: the evcxr Jupyter kernel (`cargo install evcxr_jupyter`, pinned,
# skipped when present) and nbconvert in a virtual environment under target/ (python3 -m venv, pip).
# evcxr's build folder is kept in $EVCXR_TMPDIR (default target/evcxr), so a second run reuses the
# compiled crate and its dependencies. Models, data and embeddings come from $RELSTITCH_HOME
# (default ~/.cache/relstitch); the notebook fetches them through the library when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

EVCXR_VERSION=0.22.0
PIP_PACKAGES=(nbconvert==7.17.2 nbclient==0.11.0 jupyter_client==8.10.0 jupyter_core==5.9.1 nbformat==5.11.1)

inplace=0
notebooks=()
for arg in "$@"; do
    case "$arg" in
        --inplace) inplace=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) echo "unknown option $arg" >&2; exit 2 ;;
        *) notebooks+=("$arg") ;;
    esac
done
if [ ${#notebooks[@]} -eq 0 ]; then
    notebooks=(examples/notebooks/*.ipynb)
fi

# 1. The kernel.
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! command -v evcxr_jupyter >/dev/null; then
    echo "== installing evcxr_jupyter $EVCXR_VERSION (several minutes)"
    cargo install evcxr_jupyter --version "$EVCXR_VERSION" --locked
fi

# 2. nbconvert, in its own virtual environment.
venv=${RELSTITCH_NOTEBOOK_VENV:-$root/target/notebook-venv}
if [ ! -x "$venv/bin/jupyter-nbconvert" ]; then
    echo "== creating $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${PIP_PACKAGES[@]}"
fi
export PATH="$venv/bin:$PATH"

# 3. The kernel spec (Jupyter's user data folder; idempotent).
evcxr_jupyter --install >/dev/null
jupyter kernelspec list 2>/dev/null | grep -q '^ *rust ' || { echo "the evcxr kernel spec is not installed" >&2; exit 1; }

# 4. Execute.
export EVCXR_TMPDIR=${EVCXR_TMPDIR:-$root/target/evcxr}
mkdir -p "$EVCXR_TMPDIR"
# evcxr's crate has no lock file of its own: start it from ours, so the notebook builds with the
# dependency versions the repository pins (cargo drops what the notebook does not use).
[ -f "$EVCXR_TMPDIR/Cargo.lock" ] || cp Cargo.lock "$EVCXR_TMPDIR/Cargo.lock"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for nb in "${notebooks[@]}"; do
    echo "== executing $nb"
    start=$SECONDS
    if [ $inplace -eq 1 ]; then
        target=$nb
        args=(--inplace)
    else
        target=$out/$(basename "$nb")
        args=(--output-dir "$out")
    fi
    # Cells run in the notebook's folder (so `:dep relstitch = { path = "../.." }` resolves).
    jupyter nbconvert --to notebook --execute "${args[@]}" \
        --ExecutePreprocessor.kernel_name=rust \
        --ExecutePreprocessor.timeout=1800 \
        --ExecutePreprocessor.startup_timeout=120 \
        "$nb"
    # nbconvert stops on an error reply; evcxr also reports some failures as plain output, so check
    # every output for errors as well.
    python3 - "$target" "$inplace" <<'EOF' || status=1
import json, re, sys
path, inplace = sys.argv[1], sys.argv[2] == "1"
nb = json.load(open(path))
if inplace:
    # Execution timestamps change on every run: keep them out of the committed notebook.
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("execution", None)
    with open(path, "w") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")
bad = []
for i, cell in enumerate(nb["cells"]):
    for out in cell.get("outputs", []):
        text = "".join(out.get("text", "")) + "".join(out.get("traceback", []))
        for data in out.get("data", {}).values():
            text += "".join(data) if isinstance(data, list) else str(data)
        if out.get("output_type") == "error" or re.search(r"error(\[E\d+\])?:|panicked at|Error: ", text):
            bad.append((i, text[:2000]))
if bad:
    for i, text in bad:
        print(f"{path}: cell {i} failed:\n{text}\n", file=sys.stderr)
    sys.exit(1)
print(f"{path}: {len(nb['cells'])} cells, no errors")
EOF
    echo "== $nb: $((SECONDS - start)) s"
done
exit $status
