#!/usr/bin/env bash
# Everything a session with the GPU machine has to do, in as few device calls as its time allows. Since
# 2026-12 a task's device time is 15 minutes in all, the machine's start (minutes) included, a call at most
# 10; the machine goes back after about 30 s idle, and with it /tmp: issue the next call at once.
#
# Here, once:   ../shared/tools/device-prep.sh filelock submitit pytest pytest-timeout hydra-optuna-sweeper
#               && rm -f .whl/numpy-* .whl/scipy-*   (fills .whl/ and .devdata/; the image has numpy and scipy, and
#               a call carries 64 MiB at most)
# Device call:  carry [".whl", ".devdata"], timeout_s 590, command (after 2026-12-04's sessions: the grid ran)
#               `STEPS=gputest,bench,profile DEADLINE_S=480 BENCH_ARGS="--rows tf32,compile,compilewarm,fp32,basic"
#               bash tools/gpu_session.sh`, begun with VGSWEEP_GIT_COMMIT=<git rev-parse HEAD here, written out>
#               (the device's copy has no .git: its runs record that commit, not `unknown`)
#               (bench/grid.py --rows: the rows to run; all of them take over 9 minutes;
#               PROFILE_RUNS: the profiled packs, depth:precision:cuda_graph[:compile] each)
#               The steps run in the order STEPS names them, the most wanted first; DEADLINE_S starts no step
#               after that many seconds (from the end of the install), so a slow one leaves the rest untried
#               instead of the call timing out with nothing written. A second call, if time is left: the rest.
#               (steps: gputest | bench | profile | vgg | grid | why | search, a comma list; `why` runs
#               experiment=double_softmax, bn_mode, noise_scale (or WHY=a,b) into the grid's store in /tmp, so
#               with `grid`; bn_mode's table needs the grid's runs, the other two are studies of their own.
#               The grid is 150 runs, the three experiments 600: scale by bench.txt's fp32 row before choosing;
#               time left over: STEPS=why WHY=paper_table1_as_coded, the table as the original code ran it, 150 runs;
#               STEPS=why WHY=init_scale: Xavier x gain 1, 2, 4 with and without gna, all 5 activations, 300 runs
#               (results/cpu-check's last section has its logistic and swish cells on one seed);
#               STEPS=search: experiment=lr_search, an Optuna search of the 5-layer logistic net's SGD rate and
#               momentum, 40 trials in 4 packs of 10 (SEARCH="activation=tanh" ... for another net))
# Rehearsal on a CPU (what the tests cannot cover), e.g.:
#   SKIP_INSTALL=1 DATA=../shared/data EXTRA="train.epochs=1 data.limit_train=2048" \
#   BENCH_ARGS="--epochs 1 --basic-epochs 1 --limit-train 2048 --precision fp32" SEEDS=0 bash tools/gpu_session.sh
# It writes into $OUT (the device tool brings back at most 8 files a call: gpu.txt and two per step at most):
# gpu.txt; gputest.txt (pytest -m gpu); bench.txt, bench.tgz (bench.json, the rows' logs); profile.txt, traces.tgz (Chrome traces:
# chrome://tracing or ui.perfetto.dev); vgg.txt, vgg.json; grid.log, results.tgz (paper-grid table, report,
# figures: unpack into results/ and commit); why.txt, results-why.tgz (the three experiments' report and logs);
# search.txt, results-search.tgz (the search's report, figures, optimization_results.yaml and log).
set -euo pipefail
OUT=${OUT:-$PWD/results/gpu-session}
STEPS=${STEPS:-gputest,bench,profile,grid,why,vgg}
PROFILE_ARGS=${PROFILE_ARGS:-}
PROFILE_RUNS=${PROFILE_RUNS:-2:fp32:true 5:tf32:true 2:tf32:false 2:fp32:true:compile 5:tf32:true:compile}
SEEDS=${SEEDS:-0,1,2,3,4}
DATA=${DATA:-.devdata}
EXTRA=${EXTRA:-}
BENCH_ARGS=${BENCH_ARGS:-}
BENCH_VGG_ARGS=${BENCH_VGG_ARGS:-}
SEARCH=${SEARCH:-}
WHY=${WHY:-double_softmax,bn_mode,noise_scale}  # with 5 seeds: 300, 50 (beside the grid's runs) and 250 runs
PY=${PY:-python3}
[[ $PY == */* ]] && PY=$(realpath -s "$PY")  # a path to a venv's python still works from /tmp (step_grid's report)
mkdir -p "$OUT"
if [[ -z ${SKIP_INSTALL:-} ]]; then
  $PY -m pip install -q --no-index --find-links .whl hydra-core==1.3.8 mlflow-skinny sqlalchemy alembic
  $PY -m pip install -q --no-index --find-links .whl filelock submitit || echo "(filelock/submitit not in .whl)"
  $PY -m pip install -q --no-index --find-links .whl pytest pytest-timeout || echo "(pytest not in .whl)"
  $PY -m pip install -q --no-index --find-links .whl hydra-optuna-sweeper || echo "(hydra-optuna-sweeper not in .whl)"
  $PY -m pip install -q --no-deps --no-build-isolation -e .
fi
export PYTHONUNBUFFERED=1
# the device and versions, kept apart for paper-grid.md: gpu.txt gets each step's time appended
DEVICE_INFO=$({ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "no nvidia-smi"
  $PY -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0])"
  echo "vgsweep commit ${VGSWEEP_GIT_COMMIT:-unknown (VGSWEEP_GIT_COMMIT not set)}"; date -u; })
echo "$DEVICE_INFO" | tee "$OUT/gpu.txt"

pack() {
  # Folders and files of /tmp as one tarball for $OUT; a file comes back only up to 16 MiB: over that, once
  # more without the figures' CSV (curves.csv.gz, gradients.csv.gz: `vgsweep figures` remakes them from a
  # store), then without the store (a *.db beside: `vgsweep table --tracking-uri sqlite:///paper-grid.db` here
  # remakes the tables from it, with no GPU).
  local out=$1; shift
  tar czf "$out" -C /tmp "$@"
  if (( $(stat -c %s "$out") > 15 * 1024 * 1024 )); then
    tar czf "$out" -C /tmp --exclude='*.csv.gz' "$@"
    echo "($out: over 15 MiB with the figures' CSV files; packed without them)"
  fi
  if (( $(stat -c %s "$out") > 15 * 1024 * 1024 )); then
    tar czf "$out" -C /tmp --exclude='*.csv.gz' --exclude='*.db' "$@"
    echo "($out: still over 15 MiB; packed without the store)"
  fi
}

step_gputest() {
  # What only the GPU can test (tests/test_gpu.py): the captured step against the eager one, tf32/bf16,
  # the memory budget, a pack split after running out of memory, deterministic=true.
  $PY -m pytest -m gpu tests/test_gpu.py -q -rs -p no:cacheprovider --timeout 120 2>&1 | tee "$OUT/gputest.txt" \
    || echo "(gpu tests failed: see gputest.txt)"
}

step_bench() {
  # shellcheck disable=SC2086
  # bench.txt has every row's numbers as it ends; bench.tgz (bench.json and each row's CLI log, whose timestamps say
  # where a row's time went besides its epochs) is written once the rows are done
  # a failed row still leaves the others' numbers and logs to bring back: the step goes on to the tarball
  $PY bench/grid.py --data-root "$DATA" --out /tmp/bench $BENCH_ARGS 2>&1 | tee "$OUT/bench.txt" \
    || echo "(bench/grid.py failed: see bench.txt and the rows' logs in bench.tgz)" | tee -a "$OUT/bench.txt"
  mkdir -p /tmp/bench
  tar czf "$OUT/bench.tgz" -C /tmp/bench $(cd /tmp/bench && ls bench.json ./*.log 2>/dev/null) || echo "(no bench.tgz)"
  { echo; echo "bench/port.py (the paper grid as a plain PyTorch port, one run at a time)"
    $PY bench/port.py --data-root "$DATA"
    $PY bench/port.py --data-root "$DATA" --tf32 | tail -1; } 2>&1 | tee -a "$OUT/bench.txt" || echo "(port bench failed)"
  { echo; echo "bench/flush.py (this machine's CPU: a GPU pack's metric traffic, emulated)"; $PY bench/flush.py; } 2>&1 \
    | grep -v "^20[0-9][0-9]/" | tee -a "$OUT/bench.txt"
}

step_profile() {
  # The paper grid's packs (baseline + gna + gna_bn, 5 activations: 15 runs): where a step's time goes.
  rm -rf /tmp/traces && mkdir -p /tmp/traces
  : > "$OUT/profile.txt"
  # with the step's CUDA graph (the default), once without it (replayed steps hide their phases), and with
  # compile=true: depth:precision:cuda_graph[:compile] each
  for run in $PROFILE_RUNS; do
    IFS=: read -r depth prec graph comp <<< "$run"
    comp=$([[ ${comp:-} == compile ]] && echo true || echo false)
    tag="d${depth}_${prec}_graph${graph}$([[ $comp == true ]] && echo _compile || true)"
    echo "## depth $depth, $prec, cuda_graph=$graph, compile=$comp" | tee -a "$OUT/profile.txt"
    # shellcheck disable=SC2086
    $PY -m vgsweep.profile activation=logistic,tanh,relu,leaky_relu,swish regime=baseline,gna,gna_bn \
      depth=$depth precision=$prec cuda_graph=$graph compile=$comp "data.root=$DATA" $EXTRA $PROFILE_ARGS \
      --trace "/tmp/traces/$tag.json.gz" --json "/tmp/traces/$tag.json" \
      2>&1 | grep -v '^USDT\|^ERROR:.*DeviceProperties' | tee -a "$OUT/profile.txt" \
      || echo "(profile $tag failed; the grid still runs)" | tee -a "$OUT/profile.txt"
    echo | tee -a "$OUT/profile.txt"
  done
  tar czf "$OUT/traces.tgz" -C /tmp traces
}

step_vgg() {
  # The CNN family: VGG38 BN + RC packed K=7 vs one at a time vs the course code's DataLoader way.
  $PY bench/vgg.py --out "$OUT/vgg.json" $BENCH_VGG_ARGS 2>&1 | tee "$OUT/vgg.txt" || echo "(vgg bench failed)"
}

step_grid() {
  store=/tmp/paper-grid.db
  rm -rf /tmp/results "$store" /tmp/paper-grid-sweep
  t0=$(date +%s)
  # shellcheck disable=SC2086
  $PY -m vgsweep experiment=paper_table1 "seed=$SEEDS" "data.root=$DATA" "tracking.uri=sqlite:///$store" \
    hydra.launcher.progress=log hydra.sweep.dir=/tmp/paper-grid-sweep $EXTRA > "$OUT/grid.log" 2>&1 \
    && rc=0 || rc=$?
  t1=$(date +%s)
  # a failed run (exit 1) is a result too: the report lists it; only no store at all ends the step here
  [[ $rc == 0 ]] || { tail -50 "$OUT/grid.log"; [[ -f $store ]] || exit 1; }
  # from /tmp into results/: figures.tex then finds its PDFs under results/figures, as in this checkout once unpacked
  (cd /tmp && $PY -m vgsweep report --tracking-uri "sqlite:///$store" --out results > /dev/null) || echo "(report exit $?)"
  {
    echo "# The paper grid on the GPU (Agarap et al. 2019, Table 1)"
    echo
    echo "\`python -m vgsweep experiment=paper_table1 seed=$SEEDS $EXTRA\` through the packed launcher."
    echo "Device and versions:"; echo; echo "$DEVICE_INFO" | sed 's/^/    /'; echo
    echo "Wall time, launch to exit (last MLflow run FINISHED): $((t1 - t0)) s; exit status $rc."
    echo
    tail -n +2 /tmp/results/table.md
    echo
    echo "![the table as a figure](figures/agarap2019/results.png)"
    echo "![the deltas to the baseline, published beside](figures/agarap2019/deltas.png)"
  } > /tmp/results/paper-grid.md
  pack "$OUT/results.tgz" results paper-grid.db
  tail -3 "$OUT/grid.log"
  cat /tmp/results/paper-grid.md | head -40
}

step_why() {
  # What the framework's own experiments say about the grid's cells, each one command, same seeds. Their
  # logs travel inside results-why.tgz: the device brings back at most 8 files a call.
  store=/tmp/paper-grid.db
  rm -rf /tmp/results-why && mkdir -p /tmp/results-why/logs
  for e in ${WHY//,/ }; do
    t0=$(date +%s)
    # shellcheck disable=SC2086
    $PY -m vgsweep experiment=$e "seed=$SEEDS" "data.root=$DATA" "tracking.uri=sqlite:///$store" \
      hydra.launcher.progress=log hydra.sweep.dir=/tmp/why-$e $EXTRA > "/tmp/results-why/logs/why-$e.log" 2>&1 \
      || echo "(experiment=$e failed: see logs/why-$e.log in results-why.tgz)"
    echo "experiment=$e: $(( $(date +%s) - t0 )) s; $(tail -1 "/tmp/results-why/logs/why-$e.log")" | tee -a "$OUT/why.txt"
  done
  $PY -m vgsweep report --tracking-uri "sqlite:///$store" --out /tmp/results-why > /dev/null
  pack "$OUT/results-why.tgz" results-why paper-grid.db
}

step_search() {
  # experiment=lr_search (Optuna over the packed launcher): is the 5-layer logistic net's failure a matter of
  # SGD's step size? Its report, figures and the sweeper's optimization_results.yaml travel in results-search.tgz.
  store=/tmp/search.db
  rm -rf /tmp/results-search "$store" /tmp/search-sweep && mkdir -p /tmp/results-search
  t0=$(date +%s)
  # shellcheck disable=SC2086
  $PY -m vgsweep experiment=lr_search "data.root=$DATA" "tracking.uri=sqlite:///$store" hydra.launcher.progress=log \
    hydra.sweep.dir=/tmp/search-sweep $EXTRA $SEARCH > /tmp/results-search/search.log 2>&1 \
    || echo "(experiment=lr_search exit $?: a failed trial, or worse: see search.log)"
  echo "experiment=lr_search $SEARCH: $(( $(date +%s) - t0 )) s" | tee "$OUT/search.txt"
  cp /tmp/search-sweep/optimization_results.yaml /tmp/results-search/ 2>/dev/null || true
  $PY -m vgsweep report --tracking-uri "sqlite:///$store" --out /tmp/results-search > /dev/null || true
  tail -3 /tmp/results-search/search.log | tee -a "$OUT/search.txt"
  pack "$OUT/results-search.tgz" results-search
}

# The steps run in the order STEPS names them. DEADLINE_S (seconds from the start of this script) starts no
# step after it: the device's time is short (15 minutes a task, its start included), so name the steps that
# matter most first and let the rest go.
T0=$(date +%s)
for s in ${STEPS//,/ }; do
  declare -F "step_$s" > /dev/null || { echo "unknown step '$s' (gputest bench profile vgg grid why search)"; exit 2; }
done
for s in ${STEPS//,/ }; do
  if [[ -n ${DEADLINE_S:-} ]] && (( $(date +%s) - T0 >= DEADLINE_S )); then
    echo "step $s not started: ${DEADLINE_S} s passed" | tee -a "$OUT/gpu.txt"; continue
  fi
  t=$(date +%s)
  "step_$s"
  echo "step $s: $(( $(date +%s) - t )) s" | tee -a "$OUT/gpu.txt"
done
