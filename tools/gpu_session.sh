#!/usr/bin/env bash
# Everything a session with the GPU machine has to do, in one device call (about 15 minutes on an H100).
#
# Here, once:   ../shared/tools/device-prep.sh          (fills .whl/ and .devdata/)
# Device call:  carry [".whl", ".devdata"], command `bash tools/gpu_session.sh`, timeout 600 or split:
#               STEPS=bench | STEPS=grid | STEPS=bench,grid (default)
# It writes into $OUT (the device tool brings it back): gpu.txt, bench.txt, bench.json, grid.log,
# results.tgz (paper-grid table, report, figures). Unpack results.tgz into results/ and commit.
set -euo pipefail
OUT=${OUT:-$PWD/results/gpu-session}
STEPS=${STEPS:-bench,grid}
SEEDS=${SEEDS:-0,1,2,3,4}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --find-links .whl hydra-core==1.3.8 mlflow-skinny sqlalchemy alembic
python3 -m pip install -q --no-deps --no-build-isolation -e .
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0])"
  date -u; } | tee "$OUT/gpu.txt"

if [[ $STEPS == *bench* ]]; then
  python3 bench/grid.py --data-root .devdata --out /tmp/bench | tee "$OUT/bench.txt"
  cp /tmp/bench/bench.json "$OUT/"
fi

if [[ $STEPS == *grid* ]]; then
  store=/tmp/paper-grid.db
  t0=$(date +%s)
  python3 -m vgsweep experiment=paper_table1 "seed=$SEEDS" data.root=.devdata "tracking.uri=sqlite:///$store" \
    hydra.launcher.progress=log > "$OUT/grid.log" 2>&1 || { tail -50 "$OUT/grid.log"; exit 1; }
  t1=$(date +%s)
  python3 -m vgsweep.report --tracking-uri "sqlite:///$store" --out /tmp/results > /dev/null
  {
    echo "# The paper grid on the GPU (Agarap et al. 2019, Table 1)"
    echo
    echo "\`python -m vgsweep experiment=paper_table1 seed=$SEEDS\` through the packed launcher, 100 epochs."
    echo "Device and versions:"; echo; sed 's/^/    /' "$OUT/gpu.txt"; echo
    echo "Wall time, launch to exit (last MLflow run FINISHED): $((t1 - t0)) s."
    echo
    tail -n +2 /tmp/results/table.md
  } > /tmp/results/paper-grid.md
  tar czf "$OUT/results.tgz" -C /tmp results
  tail -3 "$OUT/grid.log"
  cat /tmp/results/paper-grid.md | head -40
fi
