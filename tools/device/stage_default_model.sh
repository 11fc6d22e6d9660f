#!/usr/bin/env bash
# Stage the default model's GPU training (README, "Training the default model on a GPU"), here:
# prepare the shared real faces into data/real_webp (lossless WebP crops, about half PNG's bytes),
# download the Python 3.12 wheels the device machine lacks, and cut both into parts under .carry/
# that each fit one device call (64 MiB a call with the working tree).
set -euo pipefail
cd "$(dirname "$0")/../.."
shared=${SHARED:-../shared}
data=data/real_webp
facexray prepare "$shared/data/real_videos" "$shared/data/real_faces" --out "$data" --sample uniform=64 \
    --image-format webp -q \
    --detector-weights "$shared/models/retinaface_mnet025/Retinaface__weights__mobilenet0.25_Final.pth" \
    --landmark-weights "$shared/models/landmark68_cunjian/onnx__pfld.onnx"
rm -rf .carry
mkdir -p .carry/whl
# albumentations and what it needs beyond the device's own packages, at the versions tested here
pins=$(python3 - <<'PY'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in ("albumentations", "albucore", "stringzilla", "simsimd", "pydantic",
                                             "pydantic-core", "annotated-types", "typing-inspection",
                                             "typing-extensions")))
PY
)
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .carry/whl $pins
tar -cf - "$data" | split -b 56M -d - .carry/data.tar.
ls -l .carry .carry/whl
echo "carry .carry/data.tar.NN one per call (the last one with .carry/whl); see README"
