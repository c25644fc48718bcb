#!/usr/bin/env bash
# One prepared GPU check of at most 8 minutes: the GPU rows of docs/performance.md and the GPU
# paths of the engine, each figure written under OUT (default runs/bench/gpu).
#
#   bash benchmarks/gpu_check.sh /path/to/cifar10-png.zip [OUT]
#
# 1. `fast` on the CIFAR ResNet-18 (10 epochs, full 45k / 5k / 10k split): the wall time of each
#    epoch and its validation accuracy, so the time to 90 / 93 / 94% validation reads off its
#    log.jsonl (summarised in OUT/fast-summary.json);
# 2. the loader against the training step, and our models against torchvision's at inference;
# 3. the streaming path on a synthetic folder of JPEGs, decoded by CPU workers and by nvJPEG
#    (--gpu-decode), one epoch each;
# 4. a 1-GPU torchrun smoke run (DDP with NCCL) and the CUDA tests (resume after SIGKILL,
#    nvJPEG views), which skip on a machine without a GPU.
# Each step has its own time limit, so a slow step cannot take the others' time.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: bash benchmarks/gpu_check.sh CIFAR10_PNG_ZIP [OUT]}
OUT=${2:-runs/bench/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
L="$PY -m lenet2vit"
export PYTHONUNBUFFERED=1
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA device')" || exit 2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

step() {  # step NAME SECONDS COMMAND...: run, keep its output, say how it ended
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "$name: exit $? after $((SECONDS - t0)) s (limit $limit s)" | tee -a "$OUT/steps.txt"
}

step fast 240 $L train resnet18 --preset fast --device cuda --dataset cifar10 --data-dir "$DATA" \
  --no-progress --restart --out "$OUT/fast"
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = [json.loads(l) for l in (out / "fast" / "log.jsonl").read_text().splitlines() if '"val_top1"' in l]
elapsed, first = 0.0, {}
for r in rows:
    elapsed += r["epoch_seconds"]
    for target in (0.90, 0.93, 0.94):
        if r["val_top1"] >= target and target not in first:
            first[target] = {"epoch": r["epoch"], "seconds": round(elapsed, 1)}
summary = {"epochs": len(rows), "val_top1": [r["val_top1"] for r in rows], "time_to_val": {str(k): v for k, v in first.items()}}
(out / "fast-summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary))
EOF
step loader 60 "$PY" benchmarks/loader_speed.py --device cuda --out "$OUT/loader_speed.json"
step infer 90 "$PY" benchmarks/infer_vs_reference.py --device cuda --batch-size 256 --precision bf16 \
  --iters 20 --rounds 5 --out "$OUT/infer_gpu.json"

# the stream path: 4,000 JPEGs of 500x375, RandomResizedCrop 224, CPU workers vs nvJPEG
step stream-folder 60 "$PY" -c "
import sys; sys.path.insert(0, 'benchmarks')
from pathlib import Path; from stream_memory import make_folder
print(make_folder(Path('/tmp/gpu-check'), 4000, 500, 375, 8, val=400, vary=True))"
FOLDER=$(tail -n 1 "$OUT/stream-folder.log")
for decode in cpu gpu; do
  flag=$([ $decode = gpu ] && echo --gpu-decode || echo --no-gpu-decode)
  step "stream-$decode" 90 $L train resnet50 --dataset folder --data-dir "$FOLDER" --data-mode stream $flag \
    --device cuda --epochs 1 --batch-size 128 --workers 8 --no-progress --restart --out "$OUT/stream-$decode"
done

step ddp 90 $PY -m torch.distributed.run --standalone --nproc-per-node 1 -m lenet2vit train resnet20 \
  --device cuda --dataset cifar10 --data-dir "$DATA" --limit 5000 --epochs 1 --no-progress --restart \
  --out "$OUT/ddp"
step cuda-tests 120 "$PY" -m pytest -q -k "cuda or nvjpeg or gpu" tests/data/test_stream.py tests/engine
cat "$OUT/steps.txt"
