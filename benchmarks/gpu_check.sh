#!/usr/bin/env bash
# The GPU check: the tests marked `gpu`, then the one-GPU benchmark (benchmarks/bench_gpu.py),
# which writes bench_gpu.json (BENCHMARKS.md, "The GPU check", says what each figure means).
#
# Run on a machine with a CUDA GPU, from the repository root:
#     benchmarks/gpu_check.sh                    # aim: under 8 minutes on one H100 (unmeasured)
#     GPU_CHECK_DRY=1 benchmarks/gpu_check.sh    # no GPU needed: the CPU, scaled-down models
# PYTHON names the interpreter (default .venv/bin/python, else python3); GPU_CHECK_OUT the
# folder for the figures (default gpu-check/); GPU_CHECK_MEMORY_TRIALS the trials of the
# memory-growth figure (default 20). The figures go to BENCHMARKS.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
out="${GPU_CHECK_OUT:-gpu-check}"
mkdir -p "$out"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false
export GOMP_SPINCOUNT="${GOMP_SPINCOUNT:-1000}"  # as the Makefile: idle threads sleep soon
trials=(--memory-trials "${GPU_CHECK_MEMORY_TRIALS:-20}")
if [[ "${GPU_CHECK_DRY:-0}" == "1" ]]; then
    echo "gpu_check: dry run (CPU, scaled-down models with real vocabularies)"
    "$PYTHON" benchmarks/bench_gpu.py --dry-run "${trials[@]}" --out "$out/bench_gpu.json"
    exit 0
fi
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible; GPU_CHECK_DRY=1 runs the dry run')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.csv" || true
"$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/trainers_tests/test_gpu.py | tee "$out/pytest-gpu.txt"
"$PYTHON" benchmarks/bench_gpu.py "${trials[@]}" --out "$out/bench_gpu.json"
