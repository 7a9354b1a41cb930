#!/usr/bin/env bash
# One device session (a lent H200), run from the repository root by the device tool:
#   bash scripts/gpu_session.sh        (OUT must name an empty folder; results come back from there)
# Before it, here: bash scripts/gpu_prepare.sh (makes .gpu_data and sets aside what the GPU does not read, so the
# tree fits the 64 MiB the tool carries); call the tool with carry [".gpu_data"]; after it: gpu_prepare.sh back.
# Stages (STAGES, a list of these), in issue 16's order of value:
#   fmnist  the shipped Fashion-MNIST U-Net, continued (scripts/gpu_fashion_mnist.py --init-from fashion-mnist-unet:
#           a warm start from its EMA weights, the step count going on) for TRAIN_S seconds, then measured before
#           and after: bits/dim on BPD_N test images (all 1000 terms, paired), 2000 samples of 1000 ancestral steps
#           for the FCD, the 64-sample grid. INIT_FROM= (empty) trains from scratch instead. Back here:
#           tar xzf bundle.tgz -C DIR; cp unet.part.* DIR/; python scripts/promote_unet.py DIR (it installs the new
#           model only if both figures improve; then bash scripts/make_trajectory.sh and the chapters it names);
#   abl     the Table 2 rows that data/ablations/fashion_mnist_table2.json lists as not measured, one
#           process per row side by side (each stopped after ABL_TIMEOUT s), with the settings of the rows
#           already there; then merged into that table (scripts/ablations.py --merge), which comes back
#           in the bundle: cp DIR/fashion_mnist_table2.{json,md} data/ablations/; re-execute chapter 11;
#   bench   the CIFAR-10 network's training/sampling throughput against the paper
#           (benchmarks/bench_cifar10_gpu.py, eager and torch.compile, BENCH_S seconds), alone on the GPU:
#           python benchmarks/bench_cifar10_gpu.py --write-results DIR/results_gpu.json.
# The device tool runs one command for at most 10 minutes: fmnist with TRAIN_S=300 takes about 9 (training, then
# about 200 s of sampling and bits/dim); run abl and bench as later calls (or later windows) of their own.
# Everything but the checkpoint parts is packed into $OUT/bundle.tgz (the tool returns at most 8 files).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=.
: "${OUT:?OUT must be set}"
TRAIN_S=${TRAIN_S:-300}
BENCH_S=${BENCH_S:-240}
: "${STAGES:?STAGES must name the stages to run: bench, abl, fmnist (see the top of this file)}"
has() { case " $STAGES " in *" $1 "*) return 0;; esac; return 1; }
ABL_STEPS=${ABL_STEPS:-3000}
W=${WORK_DIR:-/tmp/gpu_session}; rm -rf $W; mkdir -p $W/fmnist
GPU_DATA=${GPU_DATA:-.gpu_data}   # the training split's files (scripts/gpu_prepare.sh), carried to the device
t0=$(date +%s); stamp() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a $W/timeline.txt; }
finish() {
  stamp "packing"
  mv $W/fmnist/unet.part.* "$OUT"/ 2>/dev/null
  tar czf "$OUT/bundle.tgz" -C $W . && ls -la "$OUT"
}
trap finish EXIT
nvidia-smi > $W/nvidia-smi.txt 2>&1
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" | tee $W/torch.txt

if has bench; then
  stamp "benchmark"
  timeout $((BENCH_S + 90)) python3 benchmarks/bench_cifar10_gpu.py --compile --compile-modes default reduce-overhead \
    --inline-loss --formats channels_last --profile 10 \
    --max-seconds $BENCH_S --out $W/results_gpu.json > $W/bench.log 2>&1; stamp "benchmark rc=$?"
fi

stamp "fashion-mnist and ablations"
if has fmnist; then
( s=$(date +%s)
  FM_ARGS=(--out $W/fmnist --data-root $GPU_DATA/fashion-mnist --bpd-subset ${BPD_N:-1000} --fcd-samples 2000
           --split-mb 15)
  INIT=${INIT_FROM-fashion-mnist-unet}; [ -n "$INIT" ] && FM_ARGS+=(--init-from "$INIT")
  FM_ARGS+=(${FM_EXTRA:-})   # a rehearsal on the CPU overrides settings here (see tests/test_gpu_window.py)
  timeout $((TRAIN_S + 240)) python3 scripts/gpu_fashion_mnist.py "${FM_ARGS[@]}" --train-seconds $TRAIN_S \
    > $W/fmnist.log 2>&1
  rc=$?
  if [ $rc -ne 0 ] && [ $(( $(date +%s) - s )) -lt 120 ]; then   # torch.compile failed early: train eagerly
    echo "compiled run failed (rc=$rc); retrying without torch.compile" >> $W/fmnist.log
    timeout $((TRAIN_S + 120)) python3 scripts/gpu_fashion_mnist.py "${FM_ARGS[@]}" --no-compile \
      --train-seconds $((TRAIN_S - 120)) >> $W/fmnist.log 2>&1
    rc=$?
  fi
  echo "fmnist done rc=$rc" >> $W/timeline.txt ) &
fi
TABLE=data/ablations/fashion_mnist_table2.json
if has abl; then   # one process per row (rows are independent: same seeds, data, steps and evaluation)
  ROWS=${ABL_ROWS:-$(python3 -c "import json; print(' '.join(json.load(open('$TABLE')).get('not_measured', {}).get('rows', [])))")}
  stamp "ablation rows: ${ROWS:-none}"
  for row in $ROWS; do
    ( OMP_NUM_THREADS=2 timeout ${ABL_TIMEOUT:-420} python3 scripts/ablations.py --dataset fashion_mnist --preset tiny \
        --steps $ABL_STEPS --rows $row --device cuda --data-root $GPU_DATA/fashion-mnist --bpd-n 500 \
        --sample-n 1000 --curve-every 1000 --curve-n 64 --out $W/abl_$row/fashion_mnist_table2.json \
        > $W/abl_$row.log 2>&1
      echo "ablation $row done rc=$?" >> $W/timeline.txt ) &
  done
fi
wait
if has abl && [ -n "${ROWS:-}" ]; then
  for part in $W/abl_*/fashion_mnist_table2.json; do   # one at a time: a row that did not finish is refused alone
    [ -f "$part" ] && python3 scripts/ablations.py --merge $TABLE $part >> $W/merge.log 2>&1; stamp "merge $part rc=$?"
  done
  cp $TABLE ${TABLE%.json}.md $W/
fi
stamp "all done"
