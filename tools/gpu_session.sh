#!/usr/bin/env bash
# Everything a session with the GPU machine has to do, in one device call (about 15 minutes on an H100).
#
# Here, once:   ../shared/tools/device-prep.sh filelock submitit   (fills .whl/ and .devdata/)
# Device call:  carry [".whl", ".devdata"], command `bash tools/gpu_session.sh`, timeout 600 or split:
#               STEPS=bench | STEPS=profile | STEPS=grid | STEPS=vgg | STEPS=bench,profile,grid,vgg (default)
# Rehearsal on a CPU (what the tests cannot cover), e.g.:
#   SKIP_INSTALL=1 DATA=../shared/data EXTRA="train.epochs=1 data.limit_train=2048" \
#   BENCH_ARGS="--epochs 1 --basic-epochs 1 --limit-train 2048 --precision fp32" SEEDS=0 bash tools/gpu_session.sh
# It writes into $OUT (the device tool brings it back): gpu.txt, bench.txt, bench.json, profile.txt,
# traces.tgz (Chrome traces: chrome://tracing or ui.perfetto.dev), grid.log,
# results.tgz (paper-grid table, report, figures). Unpack results.tgz into results/ and commit.
set -euo pipefail
OUT=${OUT:-$PWD/results/gpu-session}
STEPS=${STEPS:-bench,profile,grid,vgg}
PROFILE_ARGS=${PROFILE_ARGS:-}
SEEDS=${SEEDS:-0,1,2,3,4}
DATA=${DATA:-.devdata}
EXTRA=${EXTRA:-}
BENCH_ARGS=${BENCH_ARGS:-}
BENCH_VGG_ARGS=${BENCH_VGG_ARGS:-}
PY=${PY:-python3}
mkdir -p "$OUT"
if [[ -z ${SKIP_INSTALL:-} ]]; then
  $PY -m pip install -q --no-index --find-links .whl hydra-core==1.3.8 mlflow-skinny sqlalchemy alembic
  $PY -m pip install -q --no-index --find-links .whl filelock submitit || echo "(filelock/submitit not in .whl)"
  $PY -m pip install -q --no-deps --no-build-isolation -e .
fi
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "no nvidia-smi"
  $PY -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0])"
  date -u; } | tee "$OUT/gpu.txt"

if [[ $STEPS == *bench* ]]; then
  # shellcheck disable=SC2086
  $PY bench/grid.py --data-root "$DATA" --out /tmp/bench $BENCH_ARGS | tee "$OUT/bench.txt"
  cp /tmp/bench/bench.json "$OUT/"
fi

if [[ $STEPS == *profile* ]]; then
  # The paper grid's largest packs (baseline + gna, 5 activations): where a step's time goes.
  rm -rf /tmp/traces && mkdir -p /tmp/traces
  : > "$OUT/profile.txt"
  for depth in 2 5; do
    for prec in fp32 tf32; do
      # shellcheck disable=SC2086
      $PY -m vgsweep.profile activation=logistic,tanh,relu,leaky_relu,swish regime=baseline,gna,gna_bn \
        depth=$depth precision=$prec "data.root=$DATA" $EXTRA $PROFILE_ARGS \
        --trace "/tmp/traces/d${depth}_${prec}.json.gz" --json "/tmp/traces/d${depth}_${prec}.json" \
        2>&1 | grep -v '^USDT\|^ERROR:.*DeviceProperties' | tee -a "$OUT/profile.txt" \
        || echo "(profile of depth $depth, $prec failed; the grid still runs)" | tee -a "$OUT/profile.txt"
      echo | tee -a "$OUT/profile.txt"
    done
  done
  tar czf "$OUT/traces.tgz" -C /tmp traces
fi

if [[ $STEPS == *vgg* ]]; then
  # The CNN family: VGG38 BN + RC packed K=7 vs one at a time vs the course code's DataLoader way.
  $PY bench/vgg.py --out "$OUT/vgg.json" $BENCH_VGG_ARGS 2>&1 | tee "$OUT/vgg.txt" || echo "(vgg bench failed)"
fi

if [[ $STEPS == *grid* ]]; then
  store=/tmp/paper-grid.db
  rm -rf /tmp/results "$store" /tmp/paper-grid-sweep
  t0=$(date +%s)
  # shellcheck disable=SC2086
  $PY -m vgsweep experiment=paper_table1 "seed=$SEEDS" "data.root=$DATA" "tracking.uri=sqlite:///$store" \
    hydra.launcher.progress=log hydra.sweep.dir=/tmp/paper-grid-sweep $EXTRA > "$OUT/grid.log" 2>&1 \
    || { tail -50 "$OUT/grid.log"; exit 1; }
  t1=$(date +%s)
  $PY -m vgsweep report --tracking-uri "sqlite:///$store" --out /tmp/results > /dev/null
  {
    echo "# The paper grid on the GPU (Agarap et al. 2019, Table 1)"
    echo
    echo "\`python -m vgsweep experiment=paper_table1 seed=$SEEDS $EXTRA\` through the packed launcher."
    echo "Device and versions:"; echo; sed 's/^/    /' "$OUT/gpu.txt"; echo
    echo "Wall time, launch to exit (last MLflow run FINISHED): $((t1 - t0)) s."
    echo
    tail -n +2 /tmp/results/table.md
  } > /tmp/results/paper-grid.md
  tar czf "$OUT/results.tgz" -C /tmp results
  tail -3 "$OUT/grid.log"
  cat /tmp/results/paper-grid.md | head -40
fi
