"""A sweep's jobs: skip what is done, group the rest into packs, train each pack, record every run.

Both launchers end here: Hydra's basic launcher (and a single run) through `run_jobs` with one job,
the packed launcher through `Sweep`, which trains a job's pack the first time one of its jobs is
asked for. One code path:

1. preflight (vgsweep/preflight.py): everything checked before anything is written.
2. plan: a job whose config hash has a FINISHED run in the store is skipped (unless `rerun`); RUNNING
   runs whose process is gone are marked KILLED; a job with a checkpoint continues from it, into
   the same MLflow run.
3. packs (vgsweep/packing.py): jobs grouped by pack key (and checkpoint epoch), sized to memory.
   Just before a pack trains, it looks at the store again and creates its runs under the store's
   lock: a config another sweep has finished or started meanwhile is skipped (_claim).
4. a pack that raises (out of memory, a bug one config triggers) is split in halves and retried,
   down to single runs, so one bad run cannot take the others down. A store that stops answering
   stops the whole sweep (SweepStopped): nothing is retried against it.
5. after training each run is closed: FINISHED with its artifacts, or FAILED with the reason, also
   when recording its results fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from omegaconf import DictConfig

from vgsweep import host, tracking
from vgsweep.config import ConfigError, flatten, inert_differences, resolve_device, to_container
from vgsweep.data.sets import DATASETS
from vgsweep.diagnostics import RunDiagnostics, verdict
from vgsweep.jobs import Job, Outcome, SweepStopped, override_values, widths
from vgsweep.families import family_of
from vgsweep.packing import bytes_per_run, group_packs, input_shape, memory_budget, pack_key, work_per_run_epoch
from vgsweep.progress import duration
from vgsweep.runs import Heartbeat, RunLogger, dataset_inputs, run_tags
from vgsweep.trainer import CHECKPOINT_FORMAT, EpochReport, device_name, train_pack

log = logging.getLogger(__name__)


# --- checkpoints ---------------------------------------------------------------------------------
def checkpoint_dir(cfg: DictConfig) -> Path:
    if cfg.checkpoint.dir:
        return Path(cfg.checkpoint.dir)
    p = tracking.sqlite_path(tracking.resolve_uri(cfg))
    return (p.parent if p else Path.cwd()) / "checkpoints"


def checkpoint_path(cfg: DictConfig, h: str) -> Path:
    return checkpoint_dir(cfg) / f"{h}.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a checkpoint atomically. It is serialised in memory first and then written by Python, so
    that a full disk is an OSError that says so (torch.save writing a file itself fails with a
    RuntimeError of its zip writer: `unexpected pos 576 vs 534`)."""
    import io

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    buf = io.BytesIO()
    torch.save(state, buf)
    try:
        with open(tmp, "wb") as f:
            f.write(buf.getbuffer())
            f.flush()
            # on the disk before the rename: after a power cut or a node's crash the file system may
            # otherwise show the new name over no data, the last good checkpoint gone with it
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: a kill never leaves half a checkpoint
    except BaseException:  # a full disk, Ctrl-C: no half-written file left beside the last good checkpoint
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # the rename itself on the disk


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable, where the system allows a folder to be synced (not Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # a file system that does not sync folders: the rename is as durable as it makes it
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: Path) -> dict | None:
    """A checkpoint written by this version, read with weights_only=True: tensors and plain values
    only, so a file planted in a shared checkpoint folder cannot run code. Anything else is ignored."""
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol: torch asks for a bug report; the line below says it
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unreadable, foreign or unsafe: the run starts from scratch
        log.warning("checkpoint %s ignored: it is not one this version reads safely (%s)", path,
                    str(e).splitlines()[0][:200])
        return None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        log.warning("checkpoint %s ignored: written by another version of vgsweep", path)
        return None
    return state


def _diag_to_tensors(epochs: list[dict]) -> dict | None:
    if not epochs:
        return None
    return {k: torch.from_numpy(np.stack([e[k] for e in epochs]).astype(np.float32)) for k in epochs[0]}


def _diag_from_tensors(d: dict | None) -> list[dict]:
    if not d:
        return []
    n = len(next(iter(d.values())))
    return [{k: v[i].numpy() for k, v in d.items()} for i in range(n)]


# --- planning ------------------------------------------------------------------------------------
def plan(jobs: list[Job], adopt: Optional[str] = None, dry: Optional[list[str]] = None) -> list[Optional[Outcome]]:
    """Decide per job: skip (outcome given), resume from a checkpoint, or train anew (None).

    adopt: the id of the scheduler job planning (a requeued pack job): the RUNNING runs that job's
    earlier incarnation left (tag vgsweep.job) are its own, not another process's: KILLED, resumed.
    dry: a dry run's notes; the store is only read (an orphan is taken as KILLED, not marked so, and
    a SQLite store that does not exist yet is not created)."""
    from vgsweep.executors import TAG_JOB

    out: list[Optional[Outcome]] = []
    queued: dict = {}  # per store and experiment: the pack jobs SLURM holds for it (executors.TAG_QUEUED)
    for j, (client, runs) in zip(jobs, stored_runs(jobs, create=dry is None)):
        runs, status = list(runs), {}
        for n, r in enumerate(runs):
            if adopt and r.info.status == "RUNNING" and r.data.tags.get(TAG_JOB) == adopt:
                why = f"its scheduler job {adopt} was requeued"  # this job's own earlier incarnation
            else:  # one judged gone is read again: it may have ended FINISHED as its process exited
                why, r = tracking.confirmed_orphan(client, r, float(j.cfg.tracking.stale_after_s))
                runs[n] = r
            status[r.info.run_id] = r.info.status
            if why and dry is not None:
                dry.append(f"run {r.info.run_id} ({j.name}) was left RUNNING by a process that is gone "
                           f"({why}): it would be marked KILLED")
                status[r.info.run_id] = "KILLED"
            elif why:
                log.warning("run %s (%s) was left RUNNING by a process that is gone (%s): marked KILLED",
                            r.info.run_id, j.name, why)
                tracking.retry(client.set_tag, r.info.run_id, tracking.TAG_FAILURE,
                               f"left RUNNING by a process that is gone ({why})"[:5000])
                tracking.retry(client.set_terminated, r.info.run_id, status="KILLED")
                status[r.info.run_id] = "KILLED"
        skip = _done_or_running(j, runs, status) or (None if adopt else _queued(j, client, runs, queued, dry is not None))
        if skip:
            out.append(skip)
            continue
        ck = checkpoint_path(j.cfg, j.hash)
        if ck.is_file() and not j.cfg.rerun:
            state = load_checkpoint(ck)
            owner = next((r for r in runs if state and r.info.run_id == state["run_id"]), None)
            if owner is not None and status[owner.info.run_id] in ("KILLED", "FAILED"):
                if seen := other_data(j, owner):  # its epochs so far saw other examples: not one run of two data sets
                    log.warning("%s is not resumed from its checkpoint at epoch %d into run %s, which trained on "
                                "other data (%s): it trains anew", j.name, state["epochs_done"], state["run_id"], seen)
                else:
                    j.resume_run, j.resume_state = state["run_id"], state
                    log.info("resume %s from its checkpoint at epoch %d into run %s", j.name,
                             state["epochs_done"], state["run_id"])
        out.append(None)
    return out


def stored_runs(jobs: list[Job], create: bool = True) -> list[tuple]:
    """Per job: a client of its store, and the training runs of its config hash, or of the hash an earlier
    version gave it (Job.earlier_key), newest first (one query per store).
    create=False: a SQLite store that does not exist yet is not made; its jobs have no runs (client None)."""
    stores: dict[tuple[str, str], dict] = {}
    wanted: dict[tuple[str, str], set[str]] = {}
    earlier = {id(j): j.earlier_key() for j in jobs}
    for j in jobs:
        wanted.setdefault((tracking.resolve_uri(j.cfg), j.cfg.tracking.experiment), set()).update(
            h for h in (j.key(), earlier[id(j)]) if h)
    out = []
    for j in jobs:
        uri = tracking.resolve_uri(j.cfg)
        p = tracking.sqlite_path(uri)
        if not create and p is not None and not p.is_file():
            out.append((None, []))
            continue
        client = tracking.client_for(uri)
        skey = (uri, j.cfg.tracking.experiment)
        if skey not in stores:
            stores[skey] = tracking.runs_by_hash(client, j.cfg.tracking.experiment, wanted[skey])
        runs = stores[skey].get(j.hash, [])
        if earlier[id(j)]:
            runs = sorted([*runs, *stores[skey].get(earlier[id(j)], [])], key=lambda r: -(r.info.start_time or 0))
        out.append((client, runs))
    return out


def other_commit(made_at: str) -> str:
    """A run's vgsweep.git_commit where it names another commit than the one this process runs ('' where either
    is unknown, or they are the same): the code that made a FINISHED run a sweep skips may not be today's. The
    commits are compared without their -dirty: what changes were not committed, neither says."""
    now = tracking.git_commit()
    known = made_at not in ("", "unknown") and now != "unknown"
    return made_at if known and made_at.removesuffix("-dirty") != now.removesuffix("-dirty") else ""


def other_data(j: Job, run) -> str:
    """Where the FINISHED `run` of job j's config recorded the digests of the data it trained on (its MLflow
    dataset inputs) and a split of j's data now has another (the config hash leaves data.root out: a copy of
    the data elsewhere is the same data, a smoke test's small set there is not), which splits and digests, as
    `its train set's digest a0037d06, here e8c78536`; '' where they agree, or the run recorded none, or
    the data cannot be read here."""
    from vgsweep.data import DataError
    from vgsweep.data.loader import digests

    recorded = {c: d.split("+") for c, d in tracking.data_digests(run).items()}
    if not recorded:
        return ""
    try:
        now = digests(j.cfg.data)
    except (DataError, OSError) as e:
        log.debug("the digests of %s's data are not known here: %s", j.name, e)
        return ""
    differ = [c for c in now if c in recorded and now[c] not in recorded[c]]
    differ += [c for c in recorded if c not in now]  # it held out a validation split this config does not
    return "; ".join(f"its {c} set's digest {', '.join(recorded[c])}, here " + now.get(c, "none") for c in differ)


def on_other_data(outcomes: list[Optional[Outcome]]) -> str:
    """The line a sweep ends with where some of its skipped jobs' FINISHED runs trained on other data than
    the data set the sweep names ('' where none): the results it hands on are not of these examples."""
    runs = {o.run_id for o in outcomes if o is not None and o.other_data}  # two jobs, one run
    if not runs:
        return ""
    one = len(runs) == 1
    return (f"{len(runs)} of the runs skipped trained on other data than this sweep's (their data set's digests "
            f"differ; see the skip lines above): rerun=true trains {'it' if one else 'them'} again on this data")


def other_code(outcomes: list[Optional[Outcome]]) -> str:
    """The line a sweep ends with where some of its skipped jobs were FINISHED by another vgsweep commit ('' where
    none): the results it hands on may not be what today's code would give."""
    made = list({o.run_id: o.made_at for o in outcomes if o is not None and o.made_at}.values())  # two jobs, one run
    if not made:
        return ""
    commits, one = list(dict.fromkeys(tracking.short_commit(c) for c in made)), len(made) == 1
    return (f"{len(made)} of the runs skipped {'was' if one else 'were'} made by another vgsweep commit "
            f"({', '.join(commits[:3])}{', ...' * (len(commits) > 3)}) than this one "
            f"({tracking.short_commit(tracking.git_commit())}): rerun=true trains {'it' if one else 'them'} again")


def _done_or_running(j: Job, runs: list, status: dict[str, str]) -> Optional[Outcome]:
    """Job j's SKIPPED outcome if its config has a FINISHED run, or one RUNNING in a live process
    (`status`: each run's status, orphans already KILLED); None if it is to be trained, or `rerun`."""
    if j.cfg.rerun:
        return None
    finished = [r for r in runs if status[r.info.run_id] == "FINISHED"]
    running = [r for r in runs if status[r.info.run_id] == "RUNNING"]
    if finished:
        r = finished[0]
        at = ""
        if other := other_commit(r.data.tags.get("vgsweep.git_commit", "")):
            at = (f", made by vgsweep commit {tracking.short_commit(other)}, not this one "
                  f"({tracking.short_commit(tracking.git_commit())})")
        seen = other_data(j, r)
        at += f", which trained on other data ({seen})" if seen else ""
        (log.warning if seen else log.info)("skip %s: FINISHED as run %s%s (rerun=true trains it again)", j.name,
                                            r.info.run_id, at)
        return Outcome("SKIPPED", r.info.run_id, dict(r.data.metrics), "already FINISHED" + at, made_at=other,
                       other_data=bool(seen))
    if running:
        r = running[0]
        age = tracking.heartbeat_age(r)
        beat = "" if age is None else f", last heartbeat {age:.0f} s ago"
        log.info("skip %s: RUNNING as run %s in process %s on %s%s", j.name, r.info.run_id,
                 r.data.tags.get(tracking.TAG_PID), r.data.tags.get(tracking.TAG_HOST), beat)
        return Outcome("SKIPPED", r.info.run_id, {}, "running in another process")
    return None


def _queued(j: Job, client, runs: list, cache: dict, dry: bool) -> Optional[Outcome]:
    """If an earlier sweep submitted a SLURM pack job for job j's config that waits in SLURM's queue or
    trains its other configs (its record is newer than the config's last run, and `scontrol` knows the
    job): j.queued_in names it, and a SKIPPED outcome without a run stands until the sweep waits for it
    (Sweep.outcome). None otherwise, and with `rerun`. Not asked by a pack job planning its own."""
    from vgsweep.executors import (LOCAL, TERMINAL, ended_for_requeue, forget_queued, local_sweep, read_queued,
                                   slurm_job, state_said)

    if j.cfg.rerun or client is None:
        return None
    key = (tracking.resolve_uri(j.cfg), str(j.cfg.tracking.experiment))
    if key not in cache:
        exp = tracking.retry(client.get_experiment_by_name, key[1])
        records = read_queued(exp.tags) if exp is not None else []
        cache[key] = [(job, rec, slurm_job(job)) for job, rec in records if not job.startswith(LOCAL)]
        # records with nothing left to say: a job SLURM has forgotten (a while after it ended), a local
        # sweep of this host that ended before its last packs (this sweep trains their configs)
        gone = [job for job, _, (state, _) in cache[key] if state == "GONE"]
        gone += [job for job, rec in records if job.startswith(LOCAL) and local_sweep(rec)[0] == "GONE"]
        for job in gone if not dry else []:
            forget_queued(job, [j])
    for job, rec, (state, why) in cache[key]:
        if j.key() not in rec["configs"]:
            continue
        # a run the job itself ended on SIGTERM does not count: requeued, the job resumes it
        last = max(((r.info.end_time or r.info.start_time or 0) / 1000 for r in runs
                    if not ended_for_requeue(r, job)), default=0.0)
        if float(rec["submitted"]) < last or state in TERMINAL or state == "UNKNOWN":
            return None  # trained (or tried) since; a job that ended, or one SLURM cannot tell of here
        said = state_said(state, why, inside=True)
        if any(ended_for_requeue(r, job) for r in runs):
            said = f"requeued, {said}"
        log.info("wait for %s: queued in SLURM pack job %s (%s), submitted by an earlier sweep from %s; this sweep "
                 "waits for it (scancel %s and run this again to train it here)", j.name, job, said, rec.get("host"), job)
        j.queued_in = (job, float(rec["submitted"]))
        return Outcome("SKIPPED", None, {}, f"queued in SLURM pack job {job} of an earlier sweep ({said}): waits for it")
    return None


# A run whose memory estimate (an upper one) exceeds the budget alone: said in the dry run and before training.
OVER_BUDGET = ("may run out of memory (a smaller train.batch_size or model; hydra.launcher.memory_budget_gb where "
               "the device has the room)")
CLAIM_TRIES = 6  # claims withdrawn in a row (two hosts colliding each time) before training anyway


def _claim(pack: list[Job], progress) -> tuple[list[Optional[Outcome]], Optional["_PackRecorder"]]:
    """Look again at the pack's configs (another sweep may have finished or started some since this one
    planned) and create the runs of the others: (per job, its SKIPPED outcome or None; the recorder of
    the jobs left, or None).

    A SQLite store's lock (a file beside it) makes look-and-create one step. A server's or a database's
    lock is only this host's (tracking.store_lock), so a sweep on another host may create a run of the
    same config between this one's look and create. Hence, for those stores, a look after the create:
    a live run of one of the configs made by another process since is a rival. Then this claim is
    withdrawn (its new runs end KILLED and are deleted, a resumed one is KILLED again) and made again
    after a random wait, when it skips what the rival holds. Of two claims made at the same moment
    each sees the other and both withdraw; the one that comes back first wins. The first to look after
    its create without seeing a rival may train: any later claim sees its run.

    A run to resume is shared by every process that finds its checkpoint, so its creation tells no
    claim apart: before resuming it, each stakes a claim of its own on it and looks (_stake_resumes)."""
    for attempt in range(CLAIM_TRIES):
        last = attempt == CLAIM_TRIES - 1
        taken, rec, contested = _claim_once(pack, progress, force=last)
        rivals = rec.rivals() if rec is not None and not contested else {}
        if not contested and not rivals:
            return taken, rec
        if last:  # a run to resume that is still claimed was left to its claimant (taken): never two writers
            log.warning("%d claims in a row were contested by other sweeps; training anyway (a config may be "
                        "trained twice; a run to resume that another process claims is left to it)", CLAIM_TRIES)
            return taken, rec
        for why in contested:
            log.info("%s; claiming again", why)
        if rivals:
            rec.withdraw(rivals)
        _backoff(attempt)
    raise AssertionError("unreachable")


def _backoff(attempt: int) -> None:
    """A random wait before claiming again, longer after each collision (0.25-0.75 s, then doubling)."""
    import random

    time.sleep(random.SystemRandom().uniform(0.25, 0.75) * 2 ** attempt)


def _claim_once(pack: list[Job], progress, force: bool = False
                ) -> tuple[list[Optional[Outcome]], Optional["_PackRecorder"], list[str]]:
    """_claim's look and create, under the stores' locks; the third item says which runs to resume
    other processes claimed too (then nothing is created; with `force` the rest is, and those jobs are
    SKIPPED, left to the other process)."""
    with contextlib.ExitStack() as locks:
        for uri in sorted({tracking.resolve_uri(j.cfg) for j in pack}):
            locks.enter_context(tracking.store_lock(uri))
        taken = []
        for j, (client, runs) in zip(pack, stored_runs(pack)):
            # an orphan, or a run this process gave up (a failed attempt at this pack), claims nothing
            runs, alive = list(runs), {}
            for n, r in enumerate(runs):
                why = tracking.made_here(r)
                if not why:  # one judged gone is read again: it may have ended FINISHED as its process exited
                    why, runs[n] = tracking.confirmed_orphan(client, r, float(j.cfg.tracking.stale_after_s))
                alive[r.info.run_id] = "GONE" if why else runs[n].info.status
            taken.append(_done_or_running(j, runs, alive))
        mine = [i for i, o in enumerate(taken) if o is None]
        staked, contested = _stake_resumes([pack[i] for i in mine])
        try:
            if contested and force:
                for k, why in contested.items():
                    log.warning("%s: left to it", why)
                    taken[mine[k]] = Outcome("SKIPPED", pack[mine[k]].resume_run, {}, "resumed by another process")
                mine = [i for i in mine if taken[i] is None]
            if (contested and not force) or not mine:
                return taken, None, list(contested.values())
            # resumes the runs: RUNNING, with this process's tags
            return taken, _PackRecorder([pack[i] for i in mine], progress), list(contested.values())
        except tracking.TrackingUnavailable:  # not a second wait of tracking.retry_s to drop them: they end
            staked = []                       # with this process (judged as its runs are)
            raise
        finally:  # once resumed, the run itself says who holds it
            for client, run_id, key in staked:
                tracking.drop_claim(client, run_id, key)


def _stake_resumes(jobs: list[Job]) -> tuple[list[tuple], dict[int, str]]:
    """Before resuming runs in a store whose lock is only this host's: stake this process's claim on
    each (a tag of its own), then read each run. Another live process's claim on it, or the run RUNNING
    in another live process, means another sweep is resuming it too: contested. Of two processes that
    stake and read at the same moment each sees the other's claim (both claim again after a wait, the
    first back wins); a later one sees the earlier's claim, or the run it resumed (a claim is dropped
    only once its run is resumed). Claims whose process is gone are dropped. Returns the claims staked,
    as (client, run id, key), and per contested job (its index) a line saying who else holds its run."""
    shared = [k for k, j in enumerate(jobs)
              if j.resume_run and tracking.sqlite_path(tracking.resolve_uri(j.cfg)) is None]
    staked = []
    for k in shared:
        client = tracking.client_for(tracking.resolve_uri(jobs[k].cfg))
        staked.append((client, jobs[k].resume_run, tracking.stake_claim(client, jobs[k].resume_run)))
    contested = {}
    for k, (client, run_id, key) in zip(shared, staked):
        j = jobs[k]
        stale = float(j.cfg.tracking.stale_after_s)
        r = tracking.retry(client.get_run, run_id)
        holders = []
        if r.info.status == "RUNNING" and not tracking.made_here(r):
            gone, r = tracking.confirmed_orphan(client, r, stale)
            if not gone and r.info.status == "RUNNING":
                holders.append(f"it is RUNNING in process {r.data.tags.get(tracking.TAG_PID)} on "
                               f"{r.data.tags.get(tracking.TAG_HOST)}")
        if r.info.status == "FINISHED":  # resumed and finished by another process since the look
            holders.append(f"it was FINISHED since by process {r.data.tags.get(tracking.TAG_PID)} on "
                           f"{r.data.tags.get(tracking.TAG_HOST)}")
        for other, (who, gone) in tracking.claims(r, stale).items():
            if other == key:
                continue
            if gone:
                tracking.drop_claim(client, run_id, other)
            else:
                holders.append(f"process {who.get(tracking.TAG_PID)} on {who.get(tracking.TAG_HOST)} claimed it")
        if holders:
            contested[k] = f"resume {j.name} into run {run_id}: {'; '.join(holders)}"
    return staked, contested


# --- one pack ------------------------------------------------------------------------------------
def summary_metrics(hist: list[dict]) -> dict[str, float]:
    """With a validation split: the best validation epoch and the test metrics of the model then
    (the course code evaluates the test set with the best validation model)."""
    if not hist or "val_acc" not in hist[0]:
        return {}
    best = max(range(len(hist)), key=lambda e: (hist[e]["val_acc"], -e))
    return {"best_val_acc": hist[best]["val_acc"], "best_val_epoch": float(best),
            "test_acc_at_best_val": hist[best]["test_acc"], "test_loss_at_best_val": hist[best]["test_loss"]}


class _PackRecorder:
    """The MLflow side of one pack: its runs, the per-epoch metrics and log lines, checkpoints."""

    def __init__(self, pack: list[Job], progress):
        self.jobs, self.progress = pack, progress
        self.loggers: list[RunLogger] = []
        self.files: list = []
        try:
            self._open(pack)
        except Exception as e:  # the runs made so far end FAILED (this process goes on: a retry makes new ones)
            for lg in self.loggers:
                _mark_failed(lg, f"{type(e).__name__}: {e}")
            self.close()
            if isinstance(e, tracking.TrackingUnavailable):
                raise
            raise PackFailed(e, [lg.run_id for lg in self.loggers]) from e

    def _open(self, pack: list[Job]) -> None:
        device = device_name(resolve_device(pack[0].cfg.device))
        self.logged_upto = []
        for j in pack:
            uri = tracking.resolve_uri(j.cfg)
            art = tracking.artifact_root(uri, j.cfg)
            client = tracking.client_for(uri, art)
            exp = tracking.experiment_id(client, uri, j.cfg.tracking.experiment, art)
            tags = run_tags(j.key(), j.overrides, len(pack), device)
            tags["vgsweep.parameters"] = str(family_of(j.cfg).parameter_count(
                j.cfg, input_shape(j.cfg.data), DATASETS[j.cfg.data.name].classes))
            flush_s = float(j.cfg.tracking.flush_s)
            lg = (RunLogger.resume(client, j.resume_run, tags, flush_s) if j.resume_run else
                  RunLogger.create(client, exp, j.name, flatten(to_container(j.cfg)), tags, flush_s))
            self.loggers.append(lg)
            upto = -1  # a resumed run may have logged epochs past its checkpoint before it was killed: not again
            if j.resume_run:
                hist = tracking.retry(client.get_metric_history, j.resume_run, "test_acc")
                upto = max((m.step for m in hist), default=-1)
            self.logged_upto.append(upto)
            log.info("run %s: %s%s", lg.run_id, j.name, " (resumed)" if j.resume_run else "")
        self.diag_hist: list[list[dict]] = [_diag_from_tensors(j.resume_state.get("diagnostics"))
                                            if j.resume_state else [] for j in pack]
        self.dcfg = pack[0].cfg.diagnostics
        self.layers: list[str] = []  # the model's weight and unit layer names, from the first epoch's report
        self.units: list[str] = []
        self.epochs = int(pack[0].cfg.train.epochs)
        for j in pack:
            if j.log_file:
                j.log_file.parent.mkdir(parents=True, exist_ok=True)
            self.files.append(open(j.log_file, "a") if j.log_file else None)  # noqa: SIM115
        for j, lg, f in zip(pack, self.loggers, self.files):  # each job's own log names its own run
            if f:
                f.write(f"run {lg.run_id}: {j.name}{' (resumed)' if j.resume_run else ''}, "
                        f"trained in a pack of {len(pack)}\n")
                f.flush()

    def on_data(self, data) -> None:
        """The data set loaded: each run records it (MLflow's dataset inputs)."""
        inputs = dataset_inputs(data)
        for lg in self.loggers:
            lg.log_inputs(inputs)

    def close(self) -> None:
        for f in self.files:
            if f:
                f.close()

    def rivals(self) -> dict[int, object]:
        """Per job (its index) whose store's lock is only this host's: a live RUNNING run of its config
        that another process made (see _claim), or one it finished since. Jobs with `rerun` train
        whatever else runs."""
        check = [k for k, j in enumerate(self.jobs)
                 if not j.cfg.rerun and tracking.sqlite_path(tracking.resolve_uri(j.cfg)) is None]
        if not check:
            return {}
        ours = {lg.run_id for lg in self.loggers}
        found = {}
        for k, (client, runs) in zip(check, stored_runs([self.jobs[k] for k in check])):
            stale = float(self.jobs[k].cfg.tracking.stale_after_s)
            for r in runs:
                if r.info.run_id in ours or r.info.status != "RUNNING" or tracking.made_here(r):
                    continue
                # read again if judged gone: a rival that finished and exited since the look is one still
                gone, r = tracking.confirmed_orphan(client, r, stale)
                if not gone and r.info.status in ("RUNNING", "FINISHED"):
                    found[k] = r
                    break
        return found

    def withdraw(self, rivals: dict[int, object]) -> None:
        """Give the claim up before training: new runs end KILLED and are deleted (they hold only their
        params), a resumed run is KILLED again as it was; each job's log says why."""
        for k, (j, lg, f) in enumerate(zip(self.jobs, self.loggers, self.files)):
            r = rivals.get(k)
            why = ("withdrawn before training: another sweep's run " + (
                f"{r.info.run_id} (process {r.data.tags.get(tracking.TAG_PID)} on {r.data.tags.get(tracking.TAG_HOST)})"
                " claimed this config at the same moment" if r is not None else "claimed a config of this pack at the "
                "same moment") + "; claiming again")
            log.info("run %s (%s) %s", lg.run_id, j.name, why)
            lg.end("KILLED", why)
            if not j.resume_run:
                tracking.retry(lg.client.delete_run, lg.run_id)
            if f:
                f.write(f"run {lg.run_id} {why}\n")
        self.close()

    def on_epoch(self, r: EpochReport) -> None:
        n = len(self.jobs)
        self.layers, self.units = r.layers, r.units
        for k, lg in enumerate(self.loggers):
            m = r.metrics[k]
            if m is not None and r.diagnostics is not None:
                self.diag_hist[k].append(r.diagnostics[k])
            if m is not None and r.epoch > self.logged_upto[k]:
                extra = {}
                if r.diagnostics is not None and ((r.epoch + 1) % self.dcfg.metrics_every == 0
                                                  or r.epoch in (0, self.epochs - 1)):
                    extra = RunDiagnostics.from_epochs([r.diagnostics[k]], self.dcfg.hist_min, self.dcfg.hist_max,
                                                       self.layers, self.units).metrics(0)
                lg.log_metrics({**m, "epoch_seconds": r.seconds, **extra}, step=r.epoch)
                if self.files[k]:
                    self.files[k].write(f"epoch {r.epoch + 1}: " + " ".join(f"{n_}={v:.6g}" for n_, v in m.items())
                                        + f" (pack of {n}, {r.seconds:.3f} s)\n")
                    self.files[k].flush()
        done = [m for m in r.metrics if m is not None]
        if self.progress is not None:
            self.progress.epoch_done(r.epoch, len(done))
        else:
            best = max((m["test_acc"] for m in done), default=float("nan"))
            log.info("epoch %d/%d: %d run%s, %.2f s, best test acc %.4f", r.epoch + 1, self.epochs, len(done),
                     "" if len(done) == 1 else "s", r.seconds, best)

    def on_checkpoint(self, epochs_done: int, states: list[dict]) -> None:
        """Each run's checkpoint after `epochs_done` epochs. One that cannot be written (a full disk, a
        folder gone) does not stop training: the run is warned about, in the log and in its tag
        `vgsweep.checkpoint_failed`, keeps its last good checkpoint (an interruption now resumes from
        there, or from scratch), and the next checkpoint is tried again."""
        for lg in self.loggers:
            lg.flush(wait=True)  # the store holds every epoch the checkpoints hold
        failed = []  # (run index, why)
        with signals_deferred():  # the pack's checkpoints all of one epoch: it resumes as one pack
            for k, (j, lg, st, dh) in enumerate(zip(self.jobs, self.loggers, states, self.diag_hist)):
                path = checkpoint_path(j.cfg, j.key())
                try:
                    save_checkpoint(path, {**st, "run_id": lg.run_id, "diagnostics": _diag_to_tensors(dh)})
                except OSError as e:
                    failed.append((k, f"checkpoint after epoch {epochs_done} not written to {path} "
                                      f"({e.strerror or e})"))
        for k, why in failed:
            self.loggers[k].set_tags({"vgsweep.checkpoint_failed": why})
            if self.files[k]:
                self.files[k].write(f"{why}: training goes on\n")
                self.files[k].flush()
        if failed:
            log.warning("%s%s: training goes on; an interruption now resumes from the last checkpoint written, or "
                        "from scratch (runs %s)", failed[0][1], f" (and {len(failed) - 1} more of this pack's runs)"
                        if len(failed) > 1 else "", ", ".join(self.loggers[k].run_id for k, _ in failed))

    def finish(self, k: int, hist: list[dict], diverged_at: Optional[int], curve=None,
               weights: Optional[dict] = None) -> Outcome:
        """Close run k after training: artifacts, verdict, status; `curve` is its learning curve being
        drawn (plots.draw_curve) or None; `weights` its trained model (trainer.Pack.weights) to store, or
        None. Raises only TrackingUnavailable."""
        j, lg = self.jobs[k], self.loggers[k]
        summary = summary_metrics(hist)
        final = {**(hist[-1] if hist else {}), **summary}
        try:
            dh = self.diag_hist[k]
            rd = RunDiagnostics.from_epochs(dh, self.dcfg.hist_min, self.dcfg.hist_max, self.layers,
                                            self.units) if dh else None
            v, why = verdict(rd, final.get("test_acc"), DATASETS[j.cfg.data.name].classes, self.dcfg.verdict,
                             diverged_at is not None)
            lg.set_tags({"vgsweep.verdict": v, "vgsweep.verdict_reason": why})
            if summary:
                lg.log_metrics(summary, step=len(hist) - 1)
            files: dict = {"diagnostics/diagnostics.npz": rd.to_npz()} if rd is not None else {}
            if curve is not None:
                files["learning_curve.png"] = curve.result()
            if weights is not None:
                from vgsweep.saved import WEIGHTS_ARTIFACT, weights_file

                files[WEIGHTS_ARTIFACT] = weights_file(weights, j.key(), len(hist))
            files.update(lg.config_file(j.cfg))
            if not j.hydra_later and j.output_dir is not None:
                files.update(lg.hydra_files(j.output_dir / ".hydra"))
            lg.log_files(files)  # one call to the store for all of them
            if diverged_at is None:
                lg.finish("FINISHED")
                outcome = Outcome("FINISHED", lg.run_id, final)
            else:
                # counted as the progress line counts (epoch 1 of E), the tag as MLflow's steps (from 0)
                reason = (f"training loss became NaN or inf in epoch {diverged_at + 1} of {j.cfg.train.epochs} "
                          f"(metrics step {diverged_at})")
                lg.fail(reason, {"vgsweep.failed_epoch": str(diverged_at)})
                outcome = Outcome("FAILED", lg.run_id, final, reason)
        except tracking.TrackingUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 - trained, but its record is incomplete: a failure, said so
            reason = f"recording its results failed after training: {type(e).__name__}: {e}"
            log.error("run %s (%s): %s", lg.run_id, j.name, reason)
            _mark_failed(lg, reason)
            return Outcome("FAILED", lg.run_id, final, reason)
        checkpoint_path(j.cfg, j.key()).unlink(missing_ok=True)
        return outcome


@contextlib.contextmanager
def signals_deferred(signums=(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)):
    """Ctrl-C, SIGTERM and SIGHUP wait until the block is done, then act as they would have (once): for a
    few file writes that belong together. Python runs signal handlers in the main thread, so this swaps
    the handlers (blocking the signal in one thread would not hold it); elsewhere, and for a signal
    Python does not handle (ignored, or the default action), it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[tuple[int, object]] = []
    before = {n: signal.getsignal(n) for n in signums}
    before = {n: h for n, h in before.items() if callable(h)}
    for n in before:
        signal.signal(n, lambda signum, frame: held.append((signum, frame)))
    try:
        yield
    finally:
        for n, h in before.items():
            signal.signal(n, h)
        if held:
            signum, frame = held[0]
            before[signum](signum, frame)


def _mark_failed(lg: RunLogger, reason: str) -> None:
    """End a run FAILED with its reason; if even that fails, say so (a store that is gone stops the sweep)."""
    try:
        lg.fail(reason)
    except tracking.TrackingUnavailable:
        raise
    except Exception as e:  # noqa: BLE001
        log.error("run %s: could not be marked FAILED: %s", lg.run_id, e)


def run_pack(pack: list[Job], progress=None) -> list[Outcome]:
    """Train one pack and record every job of it as its own MLflow run; a job that another sweep
    has finished or started since this one planned is skipped (see _claim)."""
    host.training()
    t0 = time.monotonic()
    taken, rec = _claim(pack, progress)
    if progress is not None and any(o is not None for o in taken):
        progress.taken_elsewhere({j.key() for j, o in zip(pack, taken) if o is not None})
    if rec is None:
        return taken  # type: ignore[return-value]
    claimed = time.monotonic() - t0
    outcomes, timing, close_s = _train_pack(rec)
    said = pack_time(len(rec.jobs), time.monotonic() - t0, claimed, timing, close_s)
    if progress is not None:
        progress.after_pack(said)  # after the live line has ended
    else:
        log.info(said)
    trained = iter(outcomes)
    return [o if o is not None else next(trained) for o in taken]


def pack_time(runs: int, total: float, claimed: float, timing: dict, close_s: float) -> str:
    """Where a pack's time went, in one line: what `make bench` and a slow sweep are read by."""
    def secs(s: float) -> str:
        return f"{s:.2f} s" if s < 60 else duration(s)

    n = timing.get("n_epochs", 0)
    return (f"pack of {runs} run{'s' if runs != 1 else ''} took {secs(total)}: its runs created in {secs(claimed)}, "
            f"set up in {secs(timing.get('set_up', 0))} (data, model), {n} epoch{'s' if n != 1 else ''} in "
            f"{secs(timing.get('epochs', 0))} (the first {secs(timing.get('first_epoch', 0))}), closed in "
            f"{secs(close_s)} (curves, artifacts, verdicts)")


def _train_pack(rec: "_PackRecorder") -> tuple[list[Outcome], dict, float]:
    """Train the runs `rec` has created, one per job of its pack: their outcomes in its order, the
    training's timing (PackResult.timing) and the seconds closing the runs took."""
    pack = rec.jobs
    drawn = [bool(j.cfg.tracking.learning_curve) for j in pack]
    if any(drawn):  # matplotlib only where a curve is drawn: a quarter of a second of start-up otherwise
        from vgsweep import plots

        plots.start_curve_pool(sum(drawn))
    try:
        with Heartbeat(rec.loggers, float(pack[0].cfg.tracking.heartbeat_s)):
            result = train_pack([j.cfg for j in pack], on_epoch=rec.on_epoch, on_checkpoint=rec.on_checkpoint,
                                resume=[j.resume_state for j in pack], on_data=rec.on_data)
    except tracking.TrackingUnavailable:
        raise  # the store is gone: nothing can be recorded, the runs keep their checkpoints
    except Exception as e:  # noqa: BLE001 - the runs are closed as FAILED; the caller may split and retry
        reason = f"{type(e).__name__}: {e}"
        for lg in rec.loggers:
            _mark_failed(lg, reason)
        log.debug("pack failed: %s\n%s", reason, traceback.format_exc())
        raise PackFailed(e, [lg.run_id for lg in rec.loggers]) from e
    finally:
        rec.close()
    t0 = time.monotonic()
    curves = [plots.draw_curve(h, j.name) if want and h else None  # all of them at once: see plots
              for j, h, want in zip(pack, result.history, drawn)] if any(drawn) else [None] * len(pack)
    weights = result.weights or [None] * len(pack)
    outcomes = [rec.finish(k, h, d, curves[k], weights[k])
                for k, (h, d) in enumerate(zip(result.history, result.diverged_at))]
    return outcomes, result.timing, time.monotonic() - t0


class PackFailed(Exception):
    """A pack's runs failed together: `cause` is why, `run_ids` the runs made for it (closed FAILED)."""

    def __init__(self, cause: BaseException, run_ids: list[str]):
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause, self.run_ids = cause, run_ids


def run_isolated(jobs: list[Job], progress) -> list[Outcome]:
    """run_pack, and on an exception split the pack in halves and retry, down to single runs."""
    try:
        return run_pack(jobs, progress)
    except tracking.TrackingUnavailable:
        raise
    except Exception as e:  # noqa: BLE001
        cause, made = (e.cause, e.run_ids) if isinstance(e, PackFailed) else (e, [])
        reason = f"{type(cause).__name__}: {cause}"
        if isinstance(cause, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        if len(jobs) == 1:
            log.error("%s failed: %s", f"run {made[0]} ({jobs[0].name})" if made else jobs[0].name, reason)
            return [Outcome("FAILED", made[0] if made else None, {}, reason)]
        log.warning("pack of %d failed (%s): retrying it as two packs", len(jobs), reason)
        for j in jobs:
            j.resume_run = j.resume_state = None  # the failed attempt's runs stay FAILED; start afresh
        half = len(jobs) // 2
        return run_isolated(jobs[:half], progress) + run_isolated(jobs[half:], progress)


# --- a whole sweep -------------------------------------------------------------------------------


class Sweep:
    """The jobs of one launch, planned at once and trained pack by pack on demand: `outcome(i)` trains
    job i's pack the first time one of its jobs is asked for. Call after preflight."""

    def __init__(self, jobs: list[Job], max_pack: int | None = None, memory_budget_gb: float | None = None,
                 progress: str | None = None, remote=None, dry_run: bool = False, notes: Optional[list[str]] = None,
                 waits: tuple[float, float] = (5.0, 15.0)):
        """waits: (poll_s, result_grace_s) of the launcher, for the pack jobs of an earlier sweep this one
        waits for (executors.wait_queued)."""
        from vgsweep.progress import Progress

        self.jobs, self.remote, self.waits = jobs, remote, waits
        # a dry run's notes: what it would change (given: the preflight's, e.g. a data set to download)
        self.notes: Optional[list[str]] = (notes if notes is not None else []) if dry_run else None
        self.budget_gb = memory_budget_gb
        tracking.configure(float(jobs[0].cfg.tracking.retry_s))
        tracking.start_over()
        self.t0 = time.time()
        try:
            self.outcomes: list[Optional[Outcome]] = plan(jobs, dry=self.notes)
        except tracking.TrackingUnavailable as e:
            raise stopped(jobs[0].cfg, e) from None
        except tracking.TrackingError as e:  # a store found unusable on opening it: bad input, nothing written
            shown = tracking.hide_passwords(tracking.resolve_uri(jobs[0].cfg))
            raise ConfigError(tracking.uri_key(jobs[0].cfg), shown, "an MLflow store vgsweep can use",
                              str(e).removeprefix(f"tracking.uri={shown!r}: ")) from None
        # A config listed twice (`seed=1,1`) is trained once; the later job reports the earlier's run.
        first: dict[tuple, int] = {}
        self.twin: dict[int, int] = {}
        for i, o in enumerate(self.outcomes):
            if o is None and not jobs[i].cfg.rerun:
                key = (tracking.resolve_uri(jobs[i].cfg), str(jobs[i].cfg.tracking.experiment), jobs[i].key())
                if key in first:
                    self.twin[i] = first[key]
                else:
                    first[key] = i
        todo = [i for i, o in enumerate(self.outcomes) if o is None and i not in self.twin]
        skipped = len(jobs) - len(todo) - len(self.twin)
        if skipped:
            queued = sum(bool(j.queued_in) for j in jobs)
            if skipped > queued:
                log.info("%d of %d jobs skipped: already FINISHED (or running) in the store", skipped - queued, len(jobs))
            if queued:
                log.info("%d of %d jobs queued in SLURM pack jobs of an earlier sweep: this one waits for them", queued,
                         len(jobs))
        if self.twin:
            log.info("%d of %d jobs repeat a config of this sweep: each config is trained once (jobs %s)",
                     len(self.twin), len(jobs), ", ".join(f"#{i} = #{f}{self._inert_note(i)}"
                                                          for i, f in self.twin.items()))
        sub = group_packs([jobs[i].cfg for i in todo], [jobs[i].start_epoch for i in todo], max_pack,
                          memory_budget_gb, here=remote is None)
        self.packs = [[todo[i] for i in p] for p in sub]
        self.pack_of = {i: p for p in self.packs for i in p}
        if self.packs:
            sizes = [str(len(p)) for p in self.packs]  # "2 packs of 15 runs", "3 packs of 15, 15 and 1 runs"
            log.info("%d job%s to train in %d pack%s of %s run%s", len(todo), "s" if len(todo) > 1 else "",
                     len(self.packs), "s" if len(self.packs) > 1 else "",
                     sizes[0] if len(set(sizes)) == 1 else ", ".join(sizes[:-1]) + " and " + sizes[-1],
                     "" if set(sizes) == {"1"} else "s")
        if remote is None and len(self.packs) > 1:  # several GPUs, and all but one idle: say how to use them
            from vgsweep.executors import several_gpus_note

            note = several_gpus_note(str(jobs[self.packs[0][0]].cfg.device), len(self.packs))
            if note and self.notes is not None:
                self.notes.append(note)
            elif note:
                log.info(note)
        if not dry_run and remote is None:  # runs that alone need more than the budget: said before they train
            over: dict[int, tuple[int, list[int]]] = {}  # bytes one run needs -> (the budget, its packs)
            for n, p in enumerate(self.packs, 1):
                cfg = jobs[p[0]].cfg
                budget = memory_budget(resolve_device(cfg.device), memory_budget_gb)
                if budget is not None and bytes_per_run(cfg) > budget:
                    over.setdefault(bytes_per_run(cfg), (budget, []))[1].append(n)
            for need, (budget, packs) in over.items():
                log.warning("pack%s %s: one run needs about %.2f GiB, more than the %.3g GiB budget, and %s",
                            "s" if len(packs) > 1 else "", ", ".join(map(str, packs)), need / 2**30, budget / 2**30,
                            OVER_BUDGET)
        self.progress = Progress([(len(p), int(jobs[p[0]].cfg.train.epochs), jobs[p[0]].start_epoch,
                                   pack_key(jobs[p[0]].cfg), work_per_run_epoch(jobs[p[0]].cfg)) for p in self.packs],
                                 progress) \
            if progress and self.packs and not dry_run else None
        if remote is not None and self.packs and not dry_run:  # every pack a job of the scheduler, submitted now
            remote.start([[jobs[i] for i in p] for p in self.packs])
        self.record, self.packs_done = None, 0
        if remote is None and len(self.packs) > 1 and not dry_run:
            self.later = [jobs[i] for p in self.packs[1:] for i in p]
            self.record = self._record(self.later)
            if self.record and self.progress:  # and the sweep's estimate of the time it has left beside it
                self.progress.on_eta = self._write_eta

    @staticmethod
    def _record(later: list[Job]) -> Optional[str]:
        """The configs of the packs after the first, in the store until the last pack has trained, for
        `vgsweep status` (they have no run until their pack starts); its id, or None if it could not be
        written (the sweep goes on: it is an aid, not a result)."""
        from vgsweep.executors import record_local

        try:
            return record_local(later)
        except tracking.TrackingUnavailable as e:
            raise stopped(later[0].cfg, e) from None
        except Exception as e:  # noqa: BLE001 - status will not count them; the training is unaffected
            log.warning("the configs of the later packs could not be recorded for vgsweep status: %s", e)
            return None

    def _write_eta(self, left_s: float, pack: int, packs: int) -> None:
        """The sweep's estimate of the time it has left, beside its record (executors.TAG_ETA). A store that
        stops answering stops the sweep as its metrics would; any other failure leaves the last estimate."""
        from vgsweep.executors import record_eta

        try:
            record_eta(self.record, self.later, left_s, pack, packs)
        except tracking.TrackingUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 - an aid for vgsweep status; the training is unaffected
            log.debug("the sweep's estimate could not be written: %s", e)

    def describe(self, nums: Optional[list[int]] = None) -> str:
        """What this sweep would do (hydra.launcher.dry_run=true): per job, skip (why), resume (from which
        epoch) or train (in which pack); per pack, its runs, epochs and memory against the budget."""
        from vgsweep.config import enum_value

        nums = nums if nums is not None else list(range(len(self.jobs)))
        pack_no = {i: k for k, p in enumerate(self.packs, 1) for i in p}
        given = [override_values(j.overrides) for j in self.jobs]
        axes = [k for k in dict.fromkeys(k for g in given for k in g) if len({g.get(k) for g in given}) > 1]
        c = self.counts_planned()
        waits = sum(bool(j.queued_in) for j in self.jobs)
        n = len(self.jobs)
        lines = [f"dry run: {n} job{'s' if n != 1 else ''}: {c['train']} to train, {c['resume']} to resume from their "
                 f"checkpoints, in {len(self.packs)} pack{'s' if len(self.packs) != 1 else ''}; {c['skip'] - waits} "
                 "skipped; " + (f"{waits} to wait for (queued in pack jobs of an earlier sweep); " if waits else "")
                 + "nothing was trained or written"]
        for i, j in enumerate(self.jobs):
            o = self.outcomes[i]
            if i in self.twin:
                what = f"skip: the same config as job #{nums[self.twin[i]]}{self._inert_note(i)}"
            elif j.queued_in:
                what = f"wait: {o.reason}"
            elif o is not None:
                what = f"skip: {o.reason} (run {o.run_id})"
            elif j.resume_run:
                what = f"resume run {j.resume_run} at epoch {j.resume_state['epochs_done']}, pack {pack_no[i]}"
            else:
                what = f"train, pack {pack_no[i]}"
            named = " ".join(f"{k}={given[i][k]}" for k in axes if k in given[i]) or j.name
            lines.append(f"  #{nums[i]} {named}: {what}")
        for k, p in enumerate(self.packs, 1):
            cfg = self.jobs[p[0]].cfg
            device = resolve_device(cfg.device)
            need, budget = len(p) * bytes_per_run(cfg), memory_budget(device, self.budget_gb)
            start = self.jobs[p[0]].start_epoch
            shape = cfg.model.name if cfg.model.family != "mlp" else " ".join(
                ["mlp", widths(cfg.model.hidden)] + ["with skips"] * bool(cfg.model.residual)
                + ["with weight norm"] * bool(cfg.regime.weight_norm))  # what tells packs of one width apart
            lines.append(f"  pack {k}: {len(p)} run{'s' if len(p) != 1 else ''}, {shape} on {cfg.data.name}, "
                         f"epochs {start + 1}-{int(cfg.train.epochs)}, batch {int(cfg.train.batch_size)}, "
                         f"{enum_value(cfg.precision)} on {device}, about {need / 2**30:.2f} GiB"
                         + (f" of a {budget / 2**30:.3g} GiB budget" if budget is not None else
                            " (no GPU here to size it by: its pack job splits it where its device's memory does "
                            "not hold it)")
                         + (f": one run alone needs more and {OVER_BUDGET}" if budget is not None and need > budget
                            else ""))
        lines += [f"  note: {n}" for n in self.notes or []]
        return "\n".join(lines)

    def _inert_note(self, i: int) -> str:
        """Where twin job i differs from the job it repeats (settings that change nothing there), in brackets."""
        inert = inert_differences(self.jobs[i].cfg, self.jobs[self.twin[i]].cfg)
        return f" ({', '.join(inert)}: no effect there)" if inert else ""

    def counts_planned(self) -> dict[str, int]:
        todo = [i for p in self.packs for i in p]
        resume = sum(bool(self.jobs[i].resume_run) for i in todo)
        return {"train": len(todo) - resume, "resume": resume, "skip": len(self.jobs) - len(todo)}

    def outcome(self, i: int) -> Outcome:
        if self.outcomes[i] is None and i in self.twin:
            o = self.outcome(self.twin[i])
            why = f"the same config as job {self.twin[i]} of this sweep"
            self.outcomes[i] = Outcome("FAILED" if o.status == "FAILED" else "SKIPPED", o.run_id, dict(o.final),
                                       f"{why}: {o.reason}" if o.status == "FAILED" else why)
        if self._waits(i):
            self._wait_queued(self.jobs[i].queued_in[0])
        if self.outcomes[i] is None:
            pack = self.pack_of[i]
            try:
                results = (run_isolated([self.jobs[j] for j in pack], self.progress) if self.remote is None
                           else self.remote.result(self.packs.index(pack)))
            except tracking.TrackingUnavailable as e:
                raise stopped(self.jobs[i].cfg, e) from None
            for j, o in zip(pack, results):
                self.outcomes[j] = o
            if self.progress:
                self.progress.pack_done()
            self.packs_done += 1
            if self.record and self.packs_done == len(self.packs):  # every config has its run now
                from vgsweep.executors import forget_queued

                forget_queued(self.record, self.jobs)
        return self.outcomes[i]  # type: ignore[return-value]

    def _waits(self, i: int) -> bool:
        """Job i's config is queued in an earlier sweep's pack job not waited for yet (plan's placeholder)."""
        o = self.outcomes[i]
        return bool(self.jobs[i].queued_in) and o is not None and o.status == "SKIPPED" and o.run_id is None

    def _wait_queued(self, job_id: str) -> None:
        """Wait for the earlier sweep's SLURM pack job `job_id` to train the configs of this sweep queued in
        it (its interrupted sweep would have): their outcomes, read from the store."""
        from vgsweep.executors import wait_queued

        mine = [i for i, j in enumerate(self.jobs) if self._waits(i) and j.queued_in[0] == job_id]
        try:
            got = wait_queued(job_id, self.jobs[mine[0]].queued_in[1], [self.jobs[i] for i in mine], *self.waits)
        except tracking.TrackingUnavailable as e:
            raise stopped(self.jobs[mine[0]].cfg, e) from None
        for i, o in zip(mine, got):
            self.outcomes[i] = o

    def counts(self) -> dict[str, int]:
        done = [o for o in self.outcomes if o is not None]
        return {s: sum(o.status == s for o in done) for s in ("FINISHED", "SKIPPED", "FAILED")}


def stopped(cfg: DictConfig, e: tracking.TrackingUnavailable) -> SweepStopped:
    uri, since = tracking.resolve_uri(cfg), time.strftime('%H:%M:%S', time.localtime(e.since))
    full, ioerr = tracking.full_error(e.error), tracking.io_error(e.error)
    what = (f"has not written since {since}: its disk is full ({e.error}; retried" if full
            else f"has failed to read or write its file since {since}: its disk or file system fails ({e.error}; "
                 "retried" if ioerr
            else f"has not answered since {since} (retried")
    return SweepStopped(
        f"the tracking store {tracking.hide_passwords(uri)} {what} {e.seconds:.0f} s, tracking.retry_s="
        f"{cfg.tracking.retry_s:g}): the sweep stopped. Checkpoints are kept in {checkpoint_dir(cfg).resolve()}; "
        f"when the store {'has space' if full else 'can be written' if ioerr else 'answers'} again, run the same "
        "command: finished runs are skipped, the others resume from their checkpoints")


def run_jobs(jobs: list[Job], max_pack: int | None = None, memory_budget_gb: float | None = None,
             progress: str | None = None) -> list[Outcome]:
    """Check all jobs, skip the finished ones, train the rest pack by pack; one Outcome per job.

    progress: None logs every epoch (a single job); auto | bar | log show the sweep's progress."""
    from vgsweep.preflight import check_jobs

    check_jobs(jobs)
    sweep = Sweep(jobs, max_pack, memory_budget_gb, progress)
    return [sweep.outcome(i) for i in range(len(jobs))]
