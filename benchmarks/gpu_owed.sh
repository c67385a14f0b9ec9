#!/usr/bin/env bash
# The GPU figures still owed (docs/benchmarks.md#still-owed-on-a-gpu), as one call that fits about 9 minutes of one
# H100/H200: SAM's overhead, the trainer against the peer loop, ViT-S/16's MFU, SAM's peak memory and the corruption
# suite's speed, each under its own time limit so one failure costs only its own figure.
#
#   benchmarks/gpu_owed.sh --prepare   here, with the network: the peer's wheel and the Fashion-MNIST files go to .gpu/
#                                      (git-ignored), for a machine that cannot download
#   benchmarks/gpu_owed.sh             there, from the repository root with .gpu/ beside it: the JSONs land in
#                                      benchmarks/results/ and, when $OUT is set, are copied there with the log
#   benchmarks/gpu_owed.sh --dry-run   prints the commands instead of running them
#
# Left out for its length: fmnist_recipes.py at full length (60 epochs x 4 recipes), sam_variants.py, m_sharpness.py
# and time_to_accuracy.py at full size, and the paper-gpu suite: each is its own resumable command (benchmarks/README.md).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
GPU=.gpu
mode=${1:-run}

if [ "$mode" = "--prepare" ]; then
  set -e
  mkdir -p "$GPU/wheels" "$GPU/fashion-mnist"
  grep -qx "/$GPU/" .git/info/exclude 2>/dev/null || echo "/$GPU/" >> .git/info/exclude
  # the GPU machine's Python is 3.12; pytorch-optimizer is pure Python, its one dependency (torch) is there
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d "$GPU/wheels" \
    "$(grep '^pytorch-optimizer==' requirements-bench.txt)"
  cp /usr/share/datasets/fashion-mnist/*-ubyte.gz "$GPU/fashion-mnist/"
  du -sh "$GPU"
  exit 0
fi
case "$mode" in run|--dry-run) ;; *) echo "gpu_owed.sh: unknown argument $mode (expected --prepare or --dry-run)" >&2; exit 2;; esac

steps=(
  "180 benchmarks/sam_overhead.py --device cuda"
  "150 benchmarks/peer_loop.py --device cuda --data-root $GPU/fashion-mnist"
  "90 benchmarks/mfu.py --device cuda"
  "45 benchmarks/sam_memory.py --device cuda"
  "60 benchmarks/corruptions_speed.py --device cuda"
)
if [ "$mode" = "--dry-run" ]; then
  for s in "${steps[@]}"; do echo "timeout ${s%% *} $PY ${s#* }"; done
  exit 0
fi

log=${OUT:-.}/gpu_owed.log
if compgen -G "$GPU/wheels/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_site "$GPU"/wheels/*.whl
  export PYTHONPATH=/tmp/gpu_site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())" \
  2>&1 | tee "$log" || exit 1
failed=0
for s in "${steps[@]}"; do
  echo "=== ${s#* }" | tee -a "$log"
  timeout "${s%% *}" "$PY" ${s#* } 2>&1 | tee -a "$log" || { echo "=== failed: ${s#* }" | tee -a "$log"; failed=1; }
done
if [ -n "${OUT:-}" ]; then cp benchmarks/results/*_cuda.json "$OUT"/ 2>/dev/null; fi
exit $failed
