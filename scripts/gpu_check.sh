#!/usr/bin/env bash
# For users with a CUDA 11.2 GPU: install the GPU build of MXNet into its own
# environment (.venv-gpu), check the golden forward pass on the GPU, and time
# the 19-class network on a 2x3x504x504 batch and the evaluation loop on
# 1024x2048 images with and without the next forward launched first, for
# both post-processing paths (pil on the host, device on the GPU), and check
# that the two paths give the same numbers on the GPU.
#   bash scripts/gpu_check.sh [GPU_ID]
set -euo pipefail
cd "$(dirname "$0")/.."
gpu=${1:-0}
if [ ! -x .venv-gpu/bin/python ]; then
  python3 -m venv .venv-gpu
fi
.venv-gpu/bin/python -m pip install -q --upgrade pip
# CBST_MXNET=gpu leaves the CPU build out: both builds provide `mxnet`.
CBST_MXNET=gpu .venv-gpu/bin/python -m pip install -q -e ".[gpu]"
bash scripts/headless_cv2.sh .venv-gpu/bin/python
.venv-gpu/bin/python -c "import mxnet as mx; n = mx.context.num_gpus(); print('GPUs seen by MXNet:', n); assert n > 0, 'no GPU visible to the CUDA build'"
.venv-gpu/bin/python -m bench.gpu_check --gpus "$gpu" --batch 2 --size 504
