#!/usr/bin/env bash
# The generation stage's GPU checks, as one prepared script for a machine with CUDA: the GPU
# tests of the transformers and diffusers backends (bf16 on CUDA), then batched against
# one-at-a-time throughput of a random-weight Stable Diffusion pipeline and of the builtin
# copy model (benchmarks/gpu_generation.py). Writes its outputs under
# ${OUT:-benchmarks/results}/gpu_generation*.
#
#   bash benchmarks/gpu_generation.sh            (from the repository root, venv in .venv)
#   bash benchmarks/gpu_generation.sh --smoke    (tiny sizes; skips the CUDA check)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
out=${OUT:-benchmarks/results}
mkdir -p "$out"
export HF_HUB_OFFLINE=1
if [[ "${1:-}" != "--smoke" ]]; then
  "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
  "$python" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$out/gpu_generation_device.txt"
  # -rs names any skipped test; on a GPU machine none of these should be.
  "$python" -m pytest -m gpu -q -rs tests/test_transformers_backend.py tests/test_diffusers_backend.py | tee "$out/gpu_generation_tests.txt"
fi
OUT="$out" "$python" benchmarks/gpu_generation.py "$@" 2>"$out/gpu_generation_stderr.txt" | tee "$out/gpu_generation.txt"
