#!/usr/bin/env bash
# One device session (a lent H200), run from the repository root by the device tool:
#   bash scripts/gpu_session.sh        (OUT must name an empty folder; results come back from there)
# 1. the CIFAR-10 network's training/sampling throughput against the paper (benchmarks/bench_cifar10_gpu.py),
#    alone on the GPU;
# 2. then, side by side: the shipped Fashion-MNIST U-Net (scripts/gpu_fashion_mnist.py: train on a time
#    budget, then 1000-step samples, a trajectory, samples for the Fréchet classifier distance and the whole
#    bound in bits/dim on 1000 test images), and, when scripts/ablations.py is there, the Table 2 ablations on
#    Fashion-MNIST.
# Everything but the checkpoint parts is packed into $OUT/bundle.tgz (the tool returns at most 8 files).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=.
: "${OUT:?OUT must be set}"
TRAIN_S=${TRAIN_S:-240}
BENCH_S=${BENCH_S:-80}
ABL_STEPS=${ABL_STEPS:-3000}
W=/tmp/gpu_session; rm -rf $W; mkdir -p $W/fmnist
t0=$(date +%s); stamp() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a $W/timeline.txt; }
finish() {
  stamp "packing"
  mv $W/fmnist/unet.part.* "$OUT"/ 2>/dev/null
  tar czf "$OUT/bundle.tgz" -C $W . && ls -la "$OUT"
}
trap finish EXIT
nvidia-smi > $W/nvidia-smi.txt 2>&1
# The training images travel xz-compressed (the device tool carries at most 64 MiB): unpack them, check the
# content against data/registry.json's content_sha256, gzip them, and accept that gzip's sha256 in this
# machine's copy of the registry (a variant, as for Debian's re-compressed file).
if [ -f .gpu_data/fashion-mnist/train-images-idx3-ubyte.xz ]; then python3 - <<'PY'
import gzip, hashlib, json, lzma
from pathlib import Path
d, key = Path(".gpu_data/fashion-mnist"), "fashion-mnist/train-images-idx3-ubyte.gz"
raw = lzma.decompress((d / "train-images-idx3-ubyte.xz").read_bytes())
reg_path = Path("data/registry.json"); reg = json.loads(reg_path.read_text())
entry = reg["files"][key]
assert hashlib.sha256(raw).hexdigest() == entry["content_sha256"] and len(raw) == entry["content_size"], "bad content"
gz = gzip.compress(raw, compresslevel=6, mtime=0)
(d / "train-images-idx3-ubyte.gz").write_bytes(gz)
entry.setdefault("variants", {})["device-regzip"] = {"size": len(gz), "sha256": hashlib.sha256(gz).hexdigest()}
reg_path.write_text(json.dumps(reg, indent=2))
print("unpacked and verified", key)
PY
fi
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" | tee $W/torch.txt

stamp "benchmark"
timeout $((BENCH_S + 60)) python3 benchmarks/bench_cifar10_gpu.py --compile --inline-loss --formats channels_last \
  --max-seconds $BENCH_S --out $W/results_gpu.json > $W/bench.log 2>&1; stamp "benchmark rc=$?"

stamp "fashion-mnist and ablations"
( s=$(date +%s)
  timeout $((TRAIN_S + 150)) python3 scripts/gpu_fashion_mnist.py --out $W/fmnist --train-seconds $TRAIN_S \
    --data-root .gpu_data/fashion-mnist --bpd-subset 1000 --fcd-samples 2000 --split-mb 15 > $W/fmnist.log 2>&1
  rc=$?
  if [ $rc -ne 0 ] && [ $(( $(date +%s) - s )) -lt 120 ]; then   # torch.compile failed early: train eagerly
    echo "compiled run failed (rc=$rc); retrying without torch.compile" >> $W/fmnist.log
    timeout $((TRAIN_S + 30)) python3 scripts/gpu_fashion_mnist.py --out $W/fmnist --no-compile \
      --train-seconds $((TRAIN_S - 120)) --data-root .gpu_data/fashion-mnist --bpd-subset 1000 --fcd-samples 2000 \
      --split-mb 15 >> $W/fmnist.log 2>&1
  fi
  echo "fmnist done rc=$?" >> $W/timeline.txt ) &
if [ -f scripts/ablations.py ]; then   # one process per row (rows are independent: same seeds, data, steps)
  for rows in mean-vlb-learned mean-vlb-fixed mean-mse-fixed eps-vlb-learned eps-vlb-fixed eps-simple-fixed,eps-simple-small; do
    ( OMP_NUM_THREADS=2 timeout $((TRAIN_S + 120)) python3 scripts/ablations.py --dataset fashion_mnist --preset tiny \
        --steps $ABL_STEPS --rows $rows --device cuda --data-root .gpu_data/fashion-mnist --out $W/abl_${rows%%,*} \
        > $W/abl_${rows%%,*}.log 2>&1
      echo "ablation $rows done rc=$?" >> $W/timeline.txt ) &
  done
fi
wait
stamp "all done"
