#!/usr/bin/env bash
# One prepared run on a lent GPU machine: the CUDA paths (AMP training, DDP over NCCL),
# a full-width U-Net on ISBI 2012, and the CamVid comparison; numbers written to $OUT.
#
# Needs: wheels for packages missing on that machine in .whl/ (albumentations and its
# needs, see benchmarks/README.md) and the data copied into .gpudata/ (the shared data
# folder does not travel; CamVid frames re-encoded as JPEG q95 to fit the transfer).
set -u
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$OUT/log.txt"
step() { echo "=== $* ($(date +%T))" | tee -a "$log"; }
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" \
  2>&1 | tee -a "$log"

step "DDP over NCCL: torchrun, 1 process on the one GPU, fp16 AMP"
timeout 60 torchrun --nproc_per_node=1 -m unetlab train configs/membranes.yaml \
  --set train.device=cuda --set train.amp=fp16 --set train.epochs=3 \
  --set train.progress=false --out /tmp/run_ddp --json "$OUT/train_ddp_fp16.json" 2>&1 \
  | tail -4 | tee -a "$log"

step "ISBI 2012: full-width U-Net (64..1024, batch norm), bf16, 100 s budget"
timeout 150 python3 -m unetlab train configs/isbi2012_cpu30.yaml \
  --set data.root=.gpudata/isbi2012 --set "model.options.channels=[64,128,256,512,1024]" \
  --set train.device=cuda --set train.amp=bf16 --set train.time_budget_s=100 \
  --set data.tile_size=256 --set data.batch_size=8 --set train.val_every=25 \
  --set train.progress=false --out /tmp/isbi 2>&1 | tail -3 | tee -a "$log"
timeout 40 python3 -m unetlab evaluate /tmp/isbi/checkpoints/best --dataset isbi2012 \
  --data .gpudata/isbi2012 --split val --device cuda --json "$OUT/isbi_gpu_eval.json" \
  2>&1 | tail -8 | tee -a "$log"

step "CamVid comparison (20 s of training per model)"
timeout 170 python3 -m unetlab compare --config configs/compare_camvid.yaml --models \
  --data .gpudata/camvid --device cuda --set train.time_budget_s=20 --out /tmp/cmp \
  --json "$OUT/compare_camvid_cuda.json" 2>&1 | tail -14 | tee -a "$log"
cp /tmp/cmp/*.md "$OUT/" 2>/dev/null
step "done"
