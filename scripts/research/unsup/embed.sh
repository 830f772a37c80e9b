set -e
for m in all-MiniLM-L6-v2 all-mpnet-base-v2 multilingual-e5-small; do
 for f in anchors heldout; do
  src=/tmp/u2/$f.txt; [ $f = anchors ] && src=/tmp/u2/bible/anchors.txt
  /usr/bin/time -f "$m $f %e s" /work/wt-unsup/target/release/relstitch embed -q --model $m --input $src --output /tmp/u2/${f}_$m.safetensors
 done
done
