#!/usr/bin/env bash
# make demo: train the Fashion-MNIST MLP in-process, then test the best
# checkpoint (by val/Accuracy) and print its test accuracy.
set -euo pipefail
fulgur=${1:?usage: demo.sh PATH/TO/fulgur}
here=$(cd "$(dirname "$0")" && pwd)
root=${FULGUR_DEMO_ROOT:-runs/fashion_mnist/demo-$(date +%Y%m%d-%H%M%S)}

"$fulgur" fit --config "$here/mlp.yaml" --trainer.default_root_dir "$root"
best=$(ls "$root"/version_0/checkpoints/epoch=*.ckpt | head -n 1)
echo "best checkpoint: $best"
json=$("$fulgur" test --config "$here/mlp.yaml" --trainer.default_root_dir "$root" \
         --ckpt_path "$best" --json)
acc=$("${FG_PYTHON:-/usr/bin/python3}" -c 'import json,sys; print("%.4f" % json.loads(sys.argv[1])["test/Accuracy"])' "$json")
echo "Fashion-MNIST test accuracy: $acc"
