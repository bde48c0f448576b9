#!/usr/bin/env bash
# The CUDA checks and figures, in one call on a lent GPU machine (the device tool):
#   bash bench/cuda.sh [overhead] [tests] [speed] [devices]      (all four when none is named)
# No registry there: the packages its image lacks travel as wheels in .whl/ (carried), downloaded beforehand with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl diffusers==0.42.1 DeepCache==0.1.1 \
#     piexif==1.1.3 torchsde==0.2.6 trampoline==0.1.2 importlib_metadata
# Logs go to $OUT (or ./cuda-out). Each part has its own time limit, so that one hang leaves the others.
set -u
OUT=${OUT:-cuda-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
quiet() { grep -v -E "Loading|Writing model|deprecate|FutureWarning|should be kept in float32"; }
for part in ${@:-overhead tests speed devices}; do
  case $part in
    overhead) timeout "${OVERHEAD_S:-80}" python3 bench/overhead.py --device cuda --repeats 5 2>&1 | quiet | tee "$OUT/overhead.txt" ;;
    speed) timeout "${SPEED_S:-160}" python3 bench/speed.py --device cuda --steps 20 --repeats 3 2>&1 | quiet | tee "$OUT/speed.txt" ;;
    devices) timeout "${DEVICES_S:-45}" python3 bench/devices.py --steps 20 --size 128 --images 3 2>&1 | tee "$OUT/devices.txt" ;;
    # The torch tests of what runs differently on a GPU. TensorFlow is not on the image (its tests are left out),
    # nor are spandrel and imageio-ffmpeg (an upscaler's and a video's test fail there for that).
    tests) timeout "${TESTS_S:-90}" python3 -m pytest -q -p no:cacheprovider --timeout 60 -o addopts="" --tb=line -rf \
      -k "not tensorflow" tests/test_precision.py tests/test_deepcache.py tests/test_taesd.py tests/test_ngms.py \
      tests/test_previews.py tests/test_controlnet.py tests/test_loras.py tests/test_hires.py tests/test_sdxl.py \
      tests/test_embeddings.py tests/test_stages.py 2>&1 | tail -40 | tee "$OUT/tests.txt" ;;
  esac
done
