#!/usr/bin/env bash
# The prepared run on a lent GPU machine for `unetlab fit`, in two calls (the CamVid
# frames need two transfers; benchmarks/gpu_camvid_pack.py packs them losslessly):
#   stage 1 (carry .whl .gpudata/p1): the CUDA tests, DDP over NCCL, a synthetic fit;
#   stage 2 (carry .whl .gpudata/p2): `unetlab fit` on CamVid, GPU budget $FIT_BUDGET.
# What it needs travels in ignored folders: wheels for albumentations and its needs in
# .whl/, the CamVid parts in .gpudata/; $KEEP (outside the checkout) keeps what stage 2 reuses.
set -u -o pipefail
fail=0
KEEP=${KEEP:-/tmp/gpukeep}  # the checkout is re-sent each call; /tmp stays while warm
stage=${1:?stage 1 or 2}
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT" $KEEP
log="$OUT/log$stage.txt"
step() { echo "=== $* ($(date +%T))" | tee -a "$log"; }
if [ ! -d $KEEP/site ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target $KEEP/site .whl/*.whl || exit 1
fi
export PYTHONPATH="$PWD/src:$KEEP/site" PYTHONUNBUFFERED=1
for p in .gpudata/p*; do [ -d "$p" ] && cp -r "$p" $KEEP/; done
python3 -c "import torch, os; print('torch', torch.__version__, torch.cuda.get_device_name(),
  'cpus', os.cpu_count())" 2>&1 | tee -a "$log"

if [ "$stage" = 1 ]; then
  step "CUDA tests"
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py \
    tests/test_metrics_gpu.py 2>&1 | tail -15 | tee -a "$log" || fail=1
  step "DDP over NCCL: torchrun, 1 process, bf16"
  timeout 60 torchrun --nproc_per_node=1 -m unetlab train configs/membranes.yaml \
    --set train.device=cuda --set train.amp=bf16 --set train.epochs=2 \
    --set train.progress=false --out /tmp/run_ddp 2>&1 | tail -4 | tee -a "$log" || fail=1
  step "fit on synthetic membranes, 45 s, cuda"
  timeout 90 python3 -m unetlab fit --dataset membranes --budget 45s --device cuda \
    --out /tmp/fit_smoke --no-progress 2>&1 | tail -25 | tee -a "$log" || fail=1
  cp /tmp/fit_smoke/report.md "$OUT/smoke_report.md" 2>/dev/null
else
  step "unpack CamVid (pixels checked against the shared data's)"
  [ -d $KEEP/camvid ] || python3 benchmarks/gpu_camvid_pack.py unpack $KEEP/p1 \
    $KEEP/p2 --to $KEEP/camvid 2>&1 | tail -2 | tee -a "$log"
  step "fit CamVid, budget ${FIT_BUDGET:-7m}, cuda"
  timeout 600 python3 -m unetlab fit --dataset camvid --data $KEEP/camvid \
    --budget "${FIT_BUDGET:-7m}" --device cuda --out /tmp/fit_camvid --no-progress \
    2>&1 | tail -40 | tee -a "$log" || fail=1
  for f in report.md report.json plan.yaml metrics.csv; do
    cp "/tmp/fit_camvid/$f" "$OUT/" 2>/dev/null; done
  cp /tmp/fit_camvid/curves.png /tmp/fit_camvid/probe.json "$OUT/" 2>/dev/null
fi
[ "$fail" = 0 ] || echo "=== some step failed" | tee -a "$log"
step "done"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>&1 | tee -a "$log"
exit "$fail"
