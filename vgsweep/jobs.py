"""Jobs: check everything, skip what is done, group the rest into packs, train, record in MLflow.

Both launchers end here: Hydra's basic launcher calls `run_jobs` with one job at a time (from the
task function in app.py), the packed launcher with all jobs of a sweep. One code path:

1. preflight: every config validated, every store reachable, every data set present and intact,
   batch sizes that fit the data. Any failure raises before anything is trained or written.
2. resume: a job whose config hash has a FINISHED run in the store is skipped (unless `rerun`);
   RUNNING runs whose process is gone are marked KILLED; a job with a checkpoint continues from
   it, into the same MLflow run.
3. packs: jobs grouped by pack key (and checkpoint epoch), sized to the memory budget.
4. a pack that raises (out of memory, a bug that one config triggers) is split in halves and
   retried, down to single runs, so one bad run cannot take the others down.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig

import vgsweep
from vgsweep import plots, tracking
from vgsweep.config import ConfigError, config_hash, flatten, resolve_device, to_container, validate
from vgsweep.data import DATASETS
from vgsweep.diagnostics import RunDiagnostics, verdict
from vgsweep.trainer import EpochReport, bytes_per_run, device_name, memory_budget, pack_key, train_pack

log = logging.getLogger(__name__)


@dataclass
class Job:
    cfg: DictConfig
    output_dir: Optional[Path] = None  # the job's Hydra output dir (holds .hydra/ and the log)
    overrides: list[str] = field(default_factory=list)  # the job's command-line overrides
    log_file: Optional[Path] = None  # per-epoch lines of this job are appended here
    # set by `plan`:
    hash: str = ""
    resume_run: Optional[str] = None  # MLflow run to continue
    resume_state: Optional[dict] = None  # its checkpoint


@dataclass
class Outcome:
    status: str  # FINISHED | FAILED | SKIPPED (already FINISHED in the store, or running elsewhere)
    run_id: Optional[str]
    final: dict[str, float]  # last epoch's metrics
    reason: str = ""


def run_name(cfg: DictConfig) -> str:
    return f"{cfg.data.name}-d{cfg.model.depth}-{cfg.activation.name}-{cfg.regime.name}-s{cfg.seed}"


def _where(j: Job) -> str:
    return f" in job [{' '.join(j.overrides)}]" if j.overrides else ""


def _in_job(e: ConfigError, j: Job) -> ConfigError:
    return ConfigError(e.key, e.value, e.accepted, e.hint, _where(j))


def preflight(jobs: list[Job]) -> None:
    """Raise ConfigError (key, value, accepted) for the first job that cannot run. Writes nothing."""
    from vgsweep.data import DataError, read_checked

    for j in jobs:
        try:
            validate(j.cfg)
        except ConfigError as e:
            raise _in_job(e, j) from None
    for uri in sorted({tracking.resolve_uri(j.cfg) for j in jobs}):
        try:
            tracking.check_reachable(uri)
        except tracking.TrackingError as e:
            raise ConfigError("tracking.uri", uri, "a reachable MLflow tracking server or sqlite:///<path>",
                              str(e)) from None
    seen = {}
    for j in jobs:
        d = j.cfg.data
        key = (d.name, str(d.root), bool(d.download), bool(d.verify))
        if key not in seen:
            try:
                seen[key] = read_checked(d.name, d.root, d.download, d.verify)
            except DataError as e:
                raise ConfigError("data.root", str(d.root), f"a folder with intact {d.name} files", str(e)) from None
        n = len(seen[key]["train_y"]) if d.limit_train is None else min(d.limit_train, len(seen[key]["train_y"]))
        if j.cfg.train.drop_last and j.cfg.train.batch_size > n:
            raise ConfigError("train.batch_size", j.cfg.train.batch_size, f"at most {n}, the training examples used",
                              "Or set train.drop_last=false", _where(j))


def checkpoint_dir(cfg: DictConfig) -> Path:
    if cfg.checkpoint.dir:
        return Path(cfg.checkpoint.dir)
    p = tracking.sqlite_path(tracking.resolve_uri(cfg))
    return (p.parent if p else Path.cwd()) / "checkpoints"


def checkpoint_path(cfg: DictConfig, h: str) -> Path:
    return checkpoint_dir(cfg) / f"{h}.pt"


def plan(jobs: list[Job]) -> list[Optional[Outcome]]:
    """Decide per job: skip (outcome given), resume from a checkpoint, or train anew (None)."""
    out: list[Optional[Outcome]] = []
    stores: dict[tuple[str, str], dict] = {}
    for j in jobs:
        j.hash = config_hash(j.cfg)
        uri = tracking.resolve_uri(j.cfg)
        client = tracking.client_for(uri)
        skey = (uri, j.cfg.tracking.experiment)
        if skey not in stores:
            exp = tracking.retry(client.get_experiment_by_name, j.cfg.tracking.experiment)
            stores[skey] = tracking.runs_by_hash(client, exp.experiment_id) if exp else {}
        runs = stores[skey].get(j.hash, [])
        status = {r.info.run_id: r.info.status for r in runs}
        for r in runs:
            why = tracking.orphan_reason(r, float(j.cfg.tracking.stale_after_s))
            if why:
                log.warning("run %s (%s) was left RUNNING by a process that is gone (%s): marked KILLED",
                            r.info.run_id, run_name(j.cfg), why)
                tracking.retry(client.set_terminated, r.info.run_id, status="KILLED")
                status[r.info.run_id] = "KILLED"
        finished = [r for r in runs if status[r.info.run_id] == "FINISHED"]
        running = [r for r in runs if status[r.info.run_id] == "RUNNING"]
        if finished and not j.cfg.rerun:
            r = finished[0]
            log.info("skip %s: FINISHED as run %s (rerun=true trains it again)", run_name(j.cfg), r.info.run_id)
            out.append(Outcome("SKIPPED", r.info.run_id, {k: v for k, v in r.data.metrics.items()},
                               "already FINISHED"))
            continue
        if running and not j.cfg.rerun:
            r = running[0]
            age = tracking.heartbeat_age(r)
            beat = "" if age is None else f", last heartbeat {age:.0f} s ago"
            log.info("skip %s: RUNNING as run %s in process %s on %s%s", run_name(j.cfg), r.info.run_id,
                     r.data.tags.get(tracking.TAG_PID), r.data.tags.get(tracking.TAG_HOST), beat)
            out.append(Outcome("SKIPPED", r.info.run_id, {}, "running in another process"))
            continue
        ck = checkpoint_path(j.cfg, j.hash)
        if ck.is_file() and not j.cfg.rerun:
            state = torch.load(ck, map_location="cpu", weights_only=False)
            owner = next((r for r in runs if r.info.run_id == state["run_id"]), None)
            if owner is not None and status[owner.info.run_id] in ("KILLED", "FAILED"):
                j.resume_run, j.resume_state = state["run_id"], state
                log.info("resume %s from its checkpoint at epoch %d into run %s", run_name(j.cfg),
                         state["epochs_done"], state["run_id"])
        out.append(None)
    return out


def group_packs(jobs: list[Job], max_pack: int | None = None, memory_budget_gb: float | None = None) -> list[list[int]]:
    """Indices of jobs grouped by pack key (and checkpoint epoch), in first-seen order; a pack holds at
    most `max_pack` runs and at most what fits the memory budget, split into near-equal parts."""
    groups: dict[tuple, list[int]] = {}
    for i, j in enumerate(jobs):
        start = j.resume_state["epochs_done"] if j.resume_state else 0
        groups.setdefault((pack_key(j.cfg), start), []).append(i)
    packs = []
    for idx in groups.values():
        cfg = jobs[idx[0]].cfg
        fit = max(1, memory_budget(resolve_device(cfg.device), memory_budget_gb) // bytes_per_run(cfg))
        n = min(max_pack or len(idx), fit, len(idx))
        parts = -(-len(idx) // n)  # ceil: as few packs as allowed, of near-equal size
        size = -(-len(idx) // parts)
        packs += [idx[i:i + size] for i in range(0, len(idx), size)]
    return packs


def rival(job: Job, client, exp_id: str, own=None):
    """Another process's run of the same config that takes precedence over training it here, or None.

    Before this process creates a run (own=None): a FINISHED run, or a RUNNING one that is alive.
    After it created `own`: a FINISHED run, or a live RUNNING one created earlier (start time, then
    run id). Two processes that created runs of one config at once both see both runs and agree on
    which came first, so exactly one trains it. `rerun=true` has no rivals."""
    if job.cfg.rerun:
        return None
    stale = float(job.cfg.tracking.stale_after_s)
    flt = f"tags.`{tracking.TAG_HASH}` = '{job.hash or config_hash(job.cfg)}'"
    first = None
    for r in tracking.training_runs(client, exp_id, flt):
        if own is not None and r.info.run_id == own.info.run_id:
            continue
        if r.info.status == "FINISHED":
            return r
        if r.info.status == "RUNNING" and not tracking.orphan_reason(r, stale):
            if own is None or (r.info.start_time, r.info.run_id) < (own.info.start_time, own.info.run_id):
                first = r if first is None or r.info.start_time < first.info.start_time else first
    return first


def _tags(job: Job, pack_size: int, device: str) -> dict[str, str]:
    return {
        tracking.TAG_HASH: job.hash or config_hash(job.cfg),
        tracking.TAG_OVERRIDES: " ".join(job.overrides),
        tracking.TAG_HOST: socket.gethostname(),
        tracking.TAG_PID: str(os.getpid()),
        tracking.TAG_HEARTBEAT: f"{time.time():.0f}",
        "vgsweep.version": vgsweep.__version__,
        "vgsweep.git_commit": tracking.git_commit(),
        "vgsweep.torch_version": torch.__version__,
        "vgsweep.device": device,
        "vgsweep.pack_size": str(pack_size),
    }


def _save_checkpoint(job: Job, run_id: str, state: dict, diag: list) -> None:
    path = checkpoint_path(job.cfg, job.hash or config_hash(job.cfg))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({**state, "run_id": run_id, "diagnostics": list(diag)}, tmp)
    os.replace(tmp, path)  # atomic: a kill never leaves half a checkpoint


def _claimed(j: Job, r) -> Outcome:
    log.info("skip %s: run %s of another process has it (%s)", run_name(j.cfg), r.info.run_id, r.info.status)
    return Outcome("SKIPPED", r.info.run_id, dict(r.data.metrics) if r.info.status == "FINISHED" else {},
                   f"{r.info.status} in another process")


def run_pack(pack: list[Job], progress=None) -> list[Outcome]:
    """Train one pack and record every job of it as its own MLflow run. A job that another process
    finished or claimed since the sweep was planned is skipped (see `rival`)."""
    device = device_name(resolve_device(pack[0].cfg.device))
    skipped: dict[int, Outcome] = {}
    jobs, loggers, logged_upto = [], [], []
    for i, j in enumerate(pack):
        uri = tracking.resolve_uri(j.cfg)
        client = tracking.client_for(uri)
        exp = tracking.experiment_id(client, uri, j.cfg.tracking.experiment, tracking.artifact_root(uri, j.cfg))
        if not j.resume_run and (r := rival(j, client, exp)) is not None:
            skipped[i] = _claimed(j, r)
            continue
        params = flatten(to_container(j.cfg))
        lg = tracking.RunLogger(client, exp, run_name(j.cfg), params, _tags(j, len(pack), device), run_id=j.resume_run)
        if not j.resume_run and (r := rival(j, client, exp, own=tracking.retry(client.get_run, lg.run_id))) is not None:
            # Created at the same time as another process's run of this config, and later: give way.
            # The run holds nothing but params and tags; deleted, it leaves no trace in the table.
            lg.set_tags({"vgsweep.duplicate_of": r.info.run_id})
            tracking.retry(client.delete_run, lg.run_id)
            skipped[i] = _claimed(j, r)
            continue
        jobs.append(j)
        loggers.append(lg)
        # A resumed run may have logged epochs past its checkpoint before it was killed: not again.
        upto = -1
        if j.resume_run:
            hist = tracking.retry(client.get_metric_history, j.resume_run, "test_acc")
            upto = max((m.step for m in hist), default=-1)
        logged_upto.append(upto)
        log.info("run %s: %s%s", lg.run_id, run_name(j.cfg), " (resumed)" if j.resume_run else "")
    if not jobs:
        return [skipped[i] for i in range(len(pack))]
    if skipped:
        for lg in loggers:
            lg.set_tags({"vgsweep.pack_size": str(len(jobs))})
        if progress is not None:
            progress.skipped(len(skipped))

    files = [open(j.log_file, "a") if j.log_file else None for j in jobs]  # noqa: SIM115
    diag_hist: list[list[dict]] = [list(j.resume_state.get("diagnostics", [])) if j.resume_state else [] for j in jobs]
    dcfg = jobs[0].cfg.diagnostics
    epochs = int(jobs[0].cfg.train.epochs)

    def on_epoch(r: EpochReport) -> None:
        for k, lg in enumerate(loggers):
            m = r.metrics[k]
            if m is not None and r.diagnostics is not None:
                diag_hist[k].append(r.diagnostics[k])
            if m is not None and r.epoch > logged_upto[k]:
                extra = {}
                if r.diagnostics is not None and ((r.epoch + 1) % dcfg.metrics_every == 0 or r.epoch in (0, epochs - 1)):
                    extra = RunDiagnostics.from_epochs([r.diagnostics[k]], dcfg.hist_min, dcfg.hist_max).metrics(0)
                lg.log_metrics({**m, "epoch_seconds": r.seconds, **extra}, step=r.epoch)
                if files[k]:
                    files[k].write(f"epoch {r.epoch + 1}: " + " ".join(f"{n}={v:.6g}" for n, v in m.items())
                                   + f" (pack of {len(jobs)}, {r.seconds:.3f} s)\n")
                    files[k].flush()
        done = [m for m in r.metrics if m is not None]
        if progress is not None:
            progress.epoch_done(r.epoch, len(done))
        else:
            best = max((m["test_acc"] for m in done), default=float("nan"))
            log.info("epoch %d/%d: %d runs, %.2f s, best test acc %.4f", r.epoch + 1,
                     jobs[0].cfg.train.epochs, len(done), r.seconds, best)

    def on_checkpoint(epochs_done: int, states: list[dict]) -> None:
        for j, lg, st, dh in zip(jobs, loggers, states, diag_hist):
            lg.flush(wait=True)  # the store holds every epoch the checkpoint holds
            _save_checkpoint(j, lg.run_id, st, dh)

    try:
        with tracking.Heartbeat(loggers, float(jobs[0].cfg.tracking.heartbeat_s)):
            result = train_pack([j.cfg for j in jobs], on_epoch=on_epoch, on_checkpoint=on_checkpoint,
                                resume=[j.resume_state for j in jobs])
    except Exception as e:  # noqa: BLE001 - the runs are closed as FAILED; the caller may split and retry
        reason = f"{type(e).__name__}: {e}"
        for lg in loggers:
            lg.set_tags({"vgsweep.failure": reason[:5000]})
            lg.finish("FAILED")
        log.debug("pack failed: %s\n%s", reason, traceback.format_exc())
        raise
    finally:
        for f in files:
            if f:
                f.close()

    outcomes = []
    for j, lg, hist, div, dh in zip(jobs, loggers, result.history, result.diverged_at, diag_hist):
        final = hist[-1] if hist else {}
        rd = RunDiagnostics.from_epochs(dh, dcfg.hist_min, dcfg.hist_max) if dh else None
        if rd is not None:
            lg.log_bytes(rd.to_npz(), "diagnostics/diagnostics.npz")
        v, why = verdict(rd, final.get("test_acc"), DATASETS[j.cfg.data.name][2], dcfg.verdict, div is not None)
        lg.set_tags({"vgsweep.verdict": v, "vgsweep.verdict_reason": why})
        if j.cfg.tracking.learning_curve and hist:
            fig = plots.learning_curve(hist, run_name(j.cfg))
            lg.log_figure(fig, "learning_curve.png")
            plots.close(fig)
        lg.log_config(j.cfg, j.output_dir / ".hydra" if j.output_dir else None)
        if div is None:
            lg.finish("FINISHED")
            outcomes.append(Outcome("FINISHED", lg.run_id, final))
        else:
            reason = f"training loss became NaN or inf at epoch {div}"
            lg.set_tags({"vgsweep.failure": reason, "vgsweep.failed_epoch": str(div)})
            lg.finish("FAILED")
            outcomes.append(Outcome("FAILED", lg.run_id, final, reason))
        checkpoint_path(j.cfg, j.hash or config_hash(j.cfg)).unlink(missing_ok=True)
    trained = iter(outcomes)
    return [skipped[i] if i in skipped else next(trained) for i in range(len(pack))]


def _run_isolated(jobs: list[Job], progress) -> list[Outcome]:
    """run_pack, and on an exception split the pack in halves and retry, down to single runs."""
    try:
        return run_pack(jobs, progress)
    except Exception as e:  # noqa: BLE001
        reason = f"{type(e).__name__}: {e}"
        if isinstance(e, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        if len(jobs) == 1:
            log.error("run %s failed: %s", run_name(jobs[0].cfg), reason)
            return [Outcome("FAILED", None, {}, reason)]
        log.warning("pack of %d failed (%s): retrying it as two packs", len(jobs), reason)
        for j in jobs:
            j.resume_run = j.resume_state = None  # the failed attempt's runs stay FAILED; start afresh
        half = len(jobs) // 2
        return _run_isolated(jobs[:half], progress) + _run_isolated(jobs[half:], progress)


def run_jobs(jobs: list[Job], max_pack: int | None = None, memory_budget_gb: float | None = None,
             progress: str | None = None) -> list[Outcome]:
    """Check all jobs, skip the finished ones, train the rest pack by pack; one Outcome per job.

    progress: None logs every epoch (a single job); auto | bar | log show the sweep's progress."""
    from vgsweep.progress import Progress

    preflight(jobs)
    outcomes = plan(jobs)
    todo = [i for i, o in enumerate(outcomes) if o is None]
    skipped = len(jobs) - len(todo)
    if skipped:
        log.info("%d of %d jobs skipped: already FINISHED (or running) in the store", skipped, len(jobs))
    packs = [[todo[i] for i in p] for p in group_packs([jobs[i] for i in todo], max_pack, memory_budget_gb)]
    if packs:
        log.info("%d jobs to train in %d packs: %s", len(todo), len(packs), ", ".join(str(len(p)) for p in packs))
    prog = Progress([(len(p), int(jobs[p[0]].cfg.train.epochs)) for p in packs], progress) if progress and packs else None
    for pack in packs:
        for i, o in zip(pack, _run_isolated([jobs[i] for i in pack], prog)):
            outcomes[i] = o
        if prog:
            prog.pack_done()
    return outcomes  # type: ignore[return-value]
