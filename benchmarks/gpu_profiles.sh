#!/usr/bin/env bash
# The profiles stage's GPU checks, as one prepared script for a machine with CUDA:
# the GPU tests, then k-means and the factorization on CUDA against torch on the CPU, at the
# issue's sizes. Writes its outputs under ${OUT:-benchmarks/results}/gpu_*.txt.
#
#   bash benchmarks/gpu_profiles.sh            (from the repository root, venv in .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
out=${OUT:-benchmarks/results}
mkdir -p "$out"
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
"$python" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$out/gpu_device.txt"
"$python" -m pytest -m gpu -q tests/test_clustering.py tests/test_factorization.py | tee "$out/gpu_tests.txt"
"$python" benchmarks/kmeans.py --device cuda --compare-cpu | tee "$out/gpu_kmeans.txt"
"$python" benchmarks/factorization.py --device cuda --compare-cpu --repeats 2 | tee "$out/gpu_factorization.txt"
