#!/usr/bin/env bash
# The GPU check of docs/PERFORMANCE.md, as one script for a lent GPU machine: CUDA inference against the
# CPU, training steps on CUDA (encoders fine-tuned, so backward runs there too), then the serving benchmark
# with --device cuda. Meant to finish in well under 10 minutes.
#
# Usage, from the repository root: scripts/gpu_check.sh DATA [OUT]
#   DATA  a manifest with real photos (e.g. a few hundred rows of MVSA-Single copied into the checkout)
#   OUT   where the logs and cuda.md / cuda.json go (default: $OUT, else /tmp/gpu_check)
# PYTHON picks the interpreter (default python3); it must have the project's dependencies.
set -euo pipefail
data=${1:?usage: scripts/gpu_check.sh DATA [OUT]}
out=${2:-${OUT:-/tmp/gpu_check}}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$py" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print("torch", torch.__version__, torch.cuda.get_device_name(0))'

echo "== CUDA inference matches the CPU"
"$py" -m pytest -q -rs tests/model/test_predictor.py -k cuda 2>&1 | tee "$out/pytest.log"

echo "== training steps on CUDA"
"$py" -m model demo-data "$out/demo" --n-per-class 64
time "$py" -m model train "$out/demo" --device cuda --epochs 2 --batch-size 32 --finetune all \
    --out "$out/checkpoint" --progress json 2>&1 | tail -n 5 | tee "$out/train.log"

echo "== serving benchmark on CUDA"
"$py" -m bench.serve_bench --device cuda --data "$data" --duration 10 --warmup 2 --ceiling-seconds 4 \
    --requests-for-rss 5000 --json "$out/cuda.json" 2>"$out/serve_bench.log" | tee "$out/cuda.md"
