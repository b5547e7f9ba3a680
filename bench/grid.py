"""Benchmark: the paper grid through the real CLI with MLflow logging, packed vs one job at a time.

    python bench/grid.py --data-root .devdata              # on the GPU machine (make bench)
    python bench/grid.py --data-root ../shared/data --epochs 2 --limit-train 6000   # a CPU smoke

Packed: `python -m vgsweep experiment=paper_table1` (30 runs x --epochs), timed from launch to the
process exit, which comes after the last MLflow run is FINISHED; once per --precision, and once
more at the first precision with diagnostics off, which gives the diagnostics' cost, and on CUDA once
more with cuda_graph=false, which gives the step graph's worth, and once (tf32) with the packs at
once as processes sharing the GPU (executor=submitit_local), which says whether concurrent packs gain,
and once (tf32) with tracking.flush_s=5, which says what sending metrics during training saves, and
with compile=true at tf32 and the first precision (the compiler's cache cold), then tf32 again (warm).
One at a time: the same 30 configs with `hydra/launcher=basic` and only --basic-epochs epochs each;
each job's time at --epochs is extrapolated from its MLflow record: (run wall time - its epochs'
seconds) + mean epoch seconds x --epochs, plus the process start-up once. Prints the ratio.
Each row starts from a fresh store: the files of an earlier benchmark in --out are removed first. The
rows run in this order: the precisions, one at a time, then the extra questions; each prints its line
as it ends and bench.json is rewritten after each, so a run cut off by a time limit keeps the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli(args: list[str], log: Path, must: bool = True) -> float | None:
    """Wall seconds of one CLI run; a failure stops the benchmark, or (must=False) gives None."""
    t0 = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run([sys.executable, "-m", "vgsweep", *args], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        msg = f"command failed ({proc.returncode}); see {log}:\n" + log.read_text()[-3000:]
        if must:
            sys.exit(msg)
        print(msg, flush=True)
        return None
    return wall


def runs(uri: str):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("bench")
    return c, c.search_runs([exp.experiment_id], max_results=1000)


def training_seconds(client, rs) -> float:
    """Seconds the packs spent in their epochs (training, evaluation, diagnostics), from the store: the
    runs of one pack share their `epoch_seconds` history, so each distinct history is one pack's."""
    packs = {tuple(m.value for m in sorted(client.get_metric_history(r.info.run_id, "epoch_seconds"),
                                           key=lambda m: m.step)) for r in rs}
    return sum(sum(h) for h in packs)


PHASES = ("took", "created", "set_up", "epochs", "first", "closed")
_PACK_LINE = (r"pack of \d+ runs? took (.+?): its runs created in (.+?), set up in (.+?) \(data, model\), \d+ "
              r"epochs? in (.+?) \(the first (.+?)\), closed in (.+?) \(")


def seconds(text: str) -> float:
    """A duration as the sweep's log writes it (`1.25 s`, `2 min 05 s`, `1 h 02 min`) in seconds."""
    import re

    unit = {"d": 86400, "h": 3600, "min": 60, "s": 1}
    return sum(float(n) * unit[u] for n, u in re.findall(r"([\d.]+) (d|h|min|s)\b", text))


def pack_phases(log_text: str) -> dict[str, float]:
    """The packs' own account of their time (the sweep's `pack of N runs took ...` lines), summed over
    the packs: runs created, set-up, epochs (the first apart), closing; `packs` counts them."""
    import re

    found = re.findall(_PACK_LINE, log_text)
    out = {k: sum(seconds(m[i]) for m in found) for i, k in enumerate(PHASES)}
    return {**out, "packs": len(found)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--basic-epochs", type=int, default=2, help="epochs per job in the one-at-a-time run")
    ap.add_argument("--precision", default="fp32,tf32,bf16", help="comma list for the packed runs")
    ap.add_argument("--limit-train", type=int, default=None, help="fewer training examples (CPU smoke)")
    ap.add_argument("--extra", nargs="*", default=[], help="more overrides for every run")
    ap.add_argument("--out", type=Path, default=None, help="folder for bench.json and logs")
    ap.add_argument("--json", type=Path, default=None, help="bench.json also here (rewritten after every row)")
    ap.add_argument("--rows", default=None,
                    help="only these rows, in the usual order (comma list of: the precisions, basic, nodiag, nograph, "
                         "procs, flush5, compile, compilewarm); default all. A device session too short for all "
                         "of them picks")
    a = ap.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="vgsweep-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    stale = [*out.glob("*.db"), *out.glob("*.db.lock"), *out.glob("*.log"), *out.glob("packed_*"), out / "basic",
             out / "mlartifacts", out / "bench.json", out / "inductor-cache"]
    if any(p.exists() for p in stale):  # every row times a fresh store (an old one would also hold old runs)
        print(f"(the previous benchmark's files in {out} removed)")
        for p in stale:
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    # compile=true's cache of compiled kernels, emptied with the rest: the first compile row finds it cold
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(out / "inductor-cache")
    common = ["experiment=paper_table1", f"data.root={Path(a.data_root).resolve()}", "data.download=false",
              "study=bench", *a.extra]
    if a.limit_train:
        common.append(f"data.limit_train={a.limit_train}")

    import torch

    result = {"date": date.today().isoformat(), "torch": torch.__version__, "python": platform.python_version(),
              "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
              "epochs": a.epochs, "packed": {}}

    def save() -> None:
        for f in {out / "bench.json", *([a.json] if a.json else [])}:
            f.write_text(json.dumps(result, indent=2))

    def packed_row(prec: str, extra: list[str]) -> None:
        uri = f"sqlite:///{out / f'packed_{prec}.db'}"
        wall = cli([*common, f"train.epochs={a.epochs}", f"precision={prec.split('-')[0]}", f"tracking.uri={uri}",
                    *extra, f"hydra.sweep.dir={out / f'packed_{prec}'}"], out / f"packed_{prec}.log",
                   must=not prec.endswith("-procs"))  # an extra question: the rest of the table stands without it
        if wall is None:
            return
        client, rs = runs(uri)
        assert len(rs) == 30 and all(r.info.status == "FINISHED" for r in rs), "packed grid incomplete"
        train = training_seconds(client, rs)
        ph = pack_phases((out / f"packed_{prec}.log").read_text())
        result["packed"][prec] = {"wall_s": wall, "training_s": train,
                                  "packs": sorted({int(r.data.tags["vgsweep.pack_size"]) for r in rs}),
                                  "phases_s": {**ph, "outside_packs": wall - ph["took"]}}
        save()
        print(f"packed {prec}: {wall:.1f} s for 30 runs x {a.epochs} epochs; training {train:.1f} s, the other "
              f"{wall - train:.1f} s: outside the packs (start-up, composing and checking the configs, the store, "
              f"exit) {wall - ph['took']:.1f} s; in its {ph['packs']} packs: runs created {ph['created']:.1f} s, set-up "
              f"{ph['set_up']:.1f} s, closing {ph['closed']:.1f} s (and of the training, the packs' first epochs "
              f"{ph['first']:.1f} s: on a GPU with the first kernels and the graphs' capture)", flush=True)

    def basic_row() -> None:
        uri = f"sqlite:///{out / 'basic.db'}"
        wall = cli([*common, f"train.epochs={a.basic_epochs}", "hydra/launcher=basic", f"tracking.uri={uri}",
                    f"hydra.sweep.dir={out / 'basic'}"], out / "basic.log")
        client, rs = runs(uri)
        per_job, run_total = [], 0.0
        for r in rs:
            secs = [m.value for m in client.get_metric_history(r.info.run_id, "epoch_seconds")]
            run_s = (r.info.end_time - r.info.start_time) / 1000
            run_total += run_s
            per_job.append(run_s - sum(secs) + sum(secs) / len(secs) * a.epochs)
        startup = max(wall - run_total, 0.0)
        total = startup + sum(per_job)
        result["basic"] = {"measured_wall_s": wall, "epochs_run": a.basic_epochs, "startup_s": startup,
                           "extrapolated_s": total}
        save()
        print(f"one job at a time: {wall:.1f} s for 30 runs x {a.basic_epochs} epochs; {total:.1f} s extrapolated "
              f"to {a.epochs} epochs", flush=True)

    precisions = a.precision.split(",")
    if not torch.cuda.is_available() and precisions != ["fp32"]:  # tf32, bf16 are refused on the CPU
        print(f"no CUDA: packed at fp32 only (not {', '.join(p for p in precisions if p != 'fp32')})")
        precisions = ["fp32"]
    p0 = precisions[0]
    # The rows that answer the targets first (each precision, then one job at a time for the ratio), then
    # the extra questions: a benchmark cut off by a time limit keeps what matters most (bench.json is
    # rewritten after every row, and every row prints its line as it ends).
    extras = [(f"{p0}-nodiag", ["diagnostics.enabled=false"])]  # the diagnostics' cost
    if torch.cuda.is_available():
        fast = "tf32" if "tf32" in precisions else p0
        extras += [
            (f"{p0}-nograph", ["cuda_graph=false"]),  # what capturing the step as a CUDA graph is worth
            # the two packs (one per depth) at once, as two processes sharing the GPU (submitit_local):
            # whether packs of different shapes gain from running concurrently
            (f"{fast}-procs", ["hydra.launcher.executor=submitit_local", "hydra.launcher.poll_s=0.2"]),
            # metrics sent every 5 s (the default until 2026-11-24) instead of every 0.5 s: most of a fast
            # pack's metrics then wait for its end; whether streaming them during training gains on the GPU
            (f"{fast}-flush5", ["tracking.flush_s=5"]),
            # the step through torch.compile (Triton kernels inside the graph); the first time compiles each
            # pack shape with the compiler's on-disk cache cold, the second finds it warm
            *[(f"{p}-compile", ["compile=true"]) for p in dict.fromkeys([fast, p0])],
            (f"{fast}-compilewarm", ["compile=true"]),
        ]
    wanted = None if a.rows is None else set(a.rows.split(","))
    known = {*precisions, "basic", *(name.split("-", 1)[1] for name, _ in extras)}
    if wanted is not None and wanted - known:
        ap.error(f"--rows: {', '.join(sorted(wanted - known))} not among the rows here ({', '.join(sorted(known))})")

    def want(row: str) -> bool:
        return wanted is None or row in wanted or row.split("-", 1)[-1] in wanted

    for prec, extra in [(p, []) for p in precisions]:
        if want(prec):
            packed_row(prec, extra)
    if want("basic"):
        basic_row()
    for prec, extra in extras:
        if want(prec):
            packed_row(prec, extra)

    basic_total = result["basic"]["extrapolated_s"] if "basic" in result else None
    print(f"\n{result['device']}, torch {result['torch']}, {result['date']}; paper grid, 30 runs x {a.epochs} epochs"
          + (f", {a.limit_train} training examples" if a.limit_train else ""))
    print("| mode | wall time (s) | of which in epochs (s) | speed-up vs one at a time |\n|---|---|---|---|")
    if basic_total is not None:
        print(f"| one job at a time (extrapolated from {a.basic_epochs} epochs each) | {basic_total:.1f} | | 1.0x |")
    for prec, r in result["packed"].items():
        label = (prec.replace("-nodiag", ", diagnostics off").replace("-nograph", ", cuda_graph=false")
                 .replace("-procs", ", its packs at once as processes (submitit_local)")
                 .replace("-flush5", ", metrics sent every 5 s (tracking.flush_s=5)")
                 .replace("-compilewarm", ", compile=true again (the compiler's cache warm)")
                 .replace("-compile", ", compile=true (the compiler's cache cold)"))
        ratio = f"{basic_total / r['wall_s']:.1f}x" if basic_total is not None else "(not measured)"
        print(f"| packed, {label} | {r['wall_s']:.1f} | {r['training_s']:.1f} | {ratio} |")
    if p0 in result["packed"] and f"{p0}-nodiag" in result["packed"]:
        on, off = result["packed"][p0]["wall_s"], result["packed"][f"{p0}-nodiag"]["wall_s"]
        print(f"\ndiagnostics cost: {100 * (on - off) / off:+.1f}% of packed {p0} wall time (end to end, logging included)")
    print(f"\nfull numbers and logs: {out}")


if __name__ == "__main__":
    main()
