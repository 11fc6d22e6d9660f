#!/usr/bin/env bash
# On the device machine, in the last of the calls that carried .carry/ (README, "Training the default
# model on a GPU"): join the dataset parts earlier calls moved to $PARTS, install the carried wheels,
# train with configs/default_model_gpu.yaml into $OUT/run, and measure the best checkpoint on the
# held-out identities (self-blended and BI fakes) into $OUT. Arguments go on to `facexray train`
# (a dry run on a CPU: WHEELS= OUT=... tools/device/train_default_model.sh --device cpu --workers 1
# --time-budget 30 --batch-size 8).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?OUT must name the folder that comes back}"
carry=${CARRY:-.carry}
parts=${PARTS:-/tmp/fx}
mkdir -p "$parts" "$OUT"
mv "$carry"/data.tar.* "$parts"/ 2>/dev/null || true
wheels=${WHEELS-$carry/whl}     # WHEELS= (empty) where the packages are installed already
if [ -n "$wheels" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$parts/site" \
        "$wheels"/*.whl
fi
export PYTHONPATH="$PWD:$parts/site" PYTHONUNBUFFERED=1
cat "$parts"/data.tar.* | tar -xf - -C "$parts"
data="$parts/data/real_webp"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available() and torch.cuda.get_device_name())'
status=0
python3 -m facexray.cli train --config configs/default_model_gpu.yaml --data "$data" --out "$OUT/run" "$@" \
    2>&1 | tee "$OUT/train.log" || status=$?
rm -f "$OUT/run/last.state.pt"    # the optimiser state: over the 16 MiB a returned file may have
for blend in sbi bi; do
    python3 -m facexray.cli eval "$data" --model "$OUT/run/best.safetensors" --blend "$blend" --engine torch \
        --json "$OUT/eval_$blend.json" || status=$?
done
exit "$status"
