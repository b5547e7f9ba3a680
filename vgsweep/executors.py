"""Where a sweep's packs train: in the launching process (`hydra.launcher.executor=local`, the
default), or each pack as one job of a scheduler through submitit: `slurm` (one SLURM job per pack,
submitted as one array) or `submitit_local` (submitit's LocalExecutor: each pack a subprocess of
this machine, through the same pickles, for trying a cluster setup out and for the tests).

A pack job plans its jobs again when it starts: a job SLURM requeued (preemption, `scontrol
requeue`, a time limit reached: submitit requeues it up to `max_num_timeout` times) finds the runs
its earlier incarnation ended KILLED on SIGTERM (or left RUNNING, killed without one: tag
`vgsweep.job`; it marks them KILLED) and continues them from their checkpoints into the same MLflow
runs. Checkpoints must therefore live where every node sees
them (`checkpoint.dir`, or `checkpoints/` beside a SQLite store or in the launch folder).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

from vgsweep.jobs import Job, Outcome

log = logging.getLogger(__name__)

EXECUTORS = ("local", "slurm", "submitit_local")
TAG_JOB = "vgsweep.job"  # the scheduler's id of the job that trains the run (SLURM: <array>_<task>)


def scheduler_job_id() -> Optional[str]:
    """The id of the submitit job this process runs, or None outside one."""
    if "SUBMITIT_EXECUTOR" not in os.environ:
        return None
    import submitit

    try:
        return str(submitit.JobEnvironment().job_id)
    except RuntimeError:
        return None


def _outcomes_from_store(jobs: list[Job], reason: str, job_id: str) -> list[Outcome]:
    """After pack job `job_id` ended without a result: each job's run as the store has it (a FINISHED
    one counts), else FAILED; the runs that job left RUNNING end FAILED with `reason` (it has ended)."""
    from vgsweep import tracking

    out = []
    for j in jobs:
        try:
            client = tracking.client_for(tracking.resolve_uri(j.cfg))
            runs = tracking.runs_by_hash(client, j.cfg.tracking.experiment, {j.key()}).get(j.key(), [])
            for r in runs:
                if r.info.status == "RUNNING" and r.data.tags.get(TAG_JOB) == job_id:
                    _end(client, r, "FAILED", reason)
        except tracking.TrackingError:
            runs = []
        done = next((r for r in runs if r.info.status == "FINISHED"), None)
        mine = next((r for r in runs if r.data.tags.get(TAG_JOB) == job_id), runs[0] if runs else None)
        out.append(Outcome("FINISHED", done.info.run_id, dict(done.data.metrics)) if done
                   else Outcome("FAILED", mine.info.run_id if mine else None, {}, reason))
    return out


# A SLURM pack job that waits in the queue has no run in the store yet (its runs are made when it
# starts): the configs it will train are an experiment tag until then, for `vgsweep status` and for a
# sweep run again meanwhile (which waits for that job rather than submitting them twice). Removed when the job
# ends (kept when it ends on SIGTERM: requeued, it resumes them) and when the sweep collects it; a record whose
# job SLURM no longer knows is ignored.
# A local sweep of several packs records the same way the configs of the packs it has not started yet
# (its "job": LOCAL + host, pid and a count, with the process's pid and stamp in the record), so that
# `vgsweep status` counts them while the first packs train; removed once its last pack has trained, kept
# by a sweep that ended before (status: not trained), removed by a later sweep on that host then.
TAG_QUEUED = "vgsweep.queued."  # + the job's id; JSON {"submitted": unix s, "host": ..., "configs": {hash: name}}
# (and "rerun": true when made with rerun=true)
QUEUED_MAX = 5000  # characters of an experiment tag's value (MLflow 3.9; later releases allow 20000)
LOCAL = "local-"  # the id of a local sweep's record: local-<host>-<pid>-<n>
# Beside a local sweep's record, its own estimate of the time it has left (progress.Progress, written at
# most once a minute while it trains; removed with the record): JSON {"left_s": s or null, "at": unix s,
# "pack": its pack now, from 1, "packs": n}
TAG_ETA = "vgsweep.eta."  # + the record's id


def queued_records(jobs: list[Job], now: float | None = None, extra: dict | None = None) -> list[str]:
    """The tag values for a pack job of `jobs` (of one experiment): one, or more for a pack too large
    for one MLflow tag (about 100 configs each), written under `<job id>`, `<job id>/2`, ... With rerun=true
    (every job's), `"rerun": true`: its finished configs are to be trained again."""
    head = {"submitted": round(time.time() if now is None else now, 3), "host": socket.gethostname(), **(extra or {})}
    if jobs and all(j.cfg.rerun for j in jobs):
        head["rerun"] = True
    room = QUEUED_MAX - len(json.dumps({**head, "configs": {}}))
    chunks: list[dict[str, str]] = [{}]
    used = 0
    for j in jobs:
        size = len(json.dumps({j.key(): j.name}))  # `"hash": "name"` and its `, `
        if used + size > room and chunks[-1]:
            chunks.append({})
            used = 0
        chunks[-1][j.key()] = j.name
        used += size
    return [json.dumps({**head, "configs": c}) for c in chunks]


def read_queued(tags: dict[str, str]) -> list[tuple[str, dict]]:
    """The experiment's queued records (job id, record: its parts merged), newest first; a part that
    cannot be read is left out."""
    jobs: dict[str, dict] = {}
    for k, v in tags.items():
        if not k.startswith(TAG_QUEUED):
            continue
        try:
            rec = json.loads(v)
            float(rec["submitted"]), dict(rec["configs"])
        except (ValueError, TypeError, KeyError):
            continue
        job = k[len(TAG_QUEUED):].split("/")[0]
        if job in jobs:
            jobs[job]["configs"].update(rec["configs"])
        else:
            jobs[job] = rec
    return sorted(jobs.items(), key=lambda x: -float(x[1]["submitted"]))


def _queued_keys(job_id: str, tags: dict[str, str]) -> list[str]:
    key = TAG_QUEUED + job_id
    return [k for k in tags if k == key or k.startswith(key + "/") or k == TAG_ETA + job_id]


def record_eta(job_id: str, jobs: list[Job], left_s: float, pack: int, packs: int) -> None:
    """Write beside local sweep record `job_id` (of `jobs`) the sweep's estimate of the time it has left,
    for `vgsweep status` (TAG_ETA)."""
    from vgsweep import tracking

    value = json.dumps({"left_s": round(left_s, 1) if math.isfinite(left_s) else None, "at": round(time.time(), 3),
                        "pack": pack, "packs": packs})
    for (uri, name), _ in _experiments(jobs).items():
        client = tracking.client_for(uri)
        exp = tracking.retry(client.get_experiment_by_name, name)
        if exp is not None:
            tracking.retry(client.set_experiment_tag, exp.experiment_id, TAG_ETA + job_id, value)


def read_eta(tags: dict[str, str], job_id: str) -> Optional[dict]:
    """The estimate record_eta wrote beside record `job_id`, or None (none yet, or unreadable)."""
    try:
        eta = json.loads(tags[TAG_ETA + job_id])
        float(eta["at"]), int(eta["pack"]), int(eta["packs"])
        return eta if eta["left_s"] is None or math.isfinite(float(eta["left_s"])) else None
    except (KeyError, ValueError, TypeError):
        return None


def _experiments(jobs: list[Job]) -> dict[tuple[str, str], list[Job]]:
    from vgsweep import tracking

    out: dict[tuple[str, str], list[Job]] = {}
    for j in jobs:
        out.setdefault((tracking.resolve_uri(j.cfg), str(j.cfg.tracking.experiment)), []).append(j)
    return out


def record_queued(job_id: str, jobs: list[Job], extra: dict | None = None) -> None:
    """Say in the store which configs the submitted pack job `job_id` will train (TAG_QUEUED); `extra`
    goes into the record."""
    from vgsweep import tracking

    for (uri, name), js in _experiments(jobs).items():
        art = tracking.artifact_root(uri, js[0].cfg)
        client = tracking.client_for(uri, art)
        exp_id = tracking.experiment_id(client, uri, name, art)
        for n, value in enumerate(queued_records(js, extra=extra), 1):
            tracking.retry(client.set_experiment_tag, exp_id, TAG_QUEUED + job_id + (f"/{n}" if n > 1 else ""), value)


_LOCAL_SWEEPS = iter(range(1, 10**9))  # this process's local sweeps (a search makes one per batch)


def record_local(jobs: list[Job]) -> str:
    """Record the configs a local sweep will train in its later packs; the record's id."""
    from vgsweep import tracking

    job_id = f"{LOCAL}{socket.gethostname()}-{os.getpid()}-{next(_LOCAL_SWEEPS)}"
    record_queued(job_id, jobs, {"pid": os.getpid(), "process": tracking.process_stamp(os.getpid())})
    return job_id


def local_sweep(rec: dict) -> tuple[str, str]:
    """(state, words) of the local sweep that wrote record `rec`: ALIVE, GONE (with why) or UNKNOWN (on
    another host: its runs' heartbeats speak for it)."""
    from vgsweep import tracking

    pid = str(rec.get("pid", ""))
    state = tracking.process_state(rec.get("host"), pid, rec.get("process"))
    if state == tracking.ALIVE:
        return "ALIVE", f"pid {pid} on this host"
    if state is not None:
        return "GONE", state
    return "UNKNOWN", f"pid {pid} on {rec.get('host', '?')}"


def forget_queued(job_id: str, jobs: list[Job]) -> None:
    """Remove pack job `job_id`'s record: it has ended, or its results are collected. Already removed
    (by the job, or the sweep) is fine; a store that does not answer leaves it (a record whose job
    SLURM no longer knows is ignored)."""
    from vgsweep import tracking

    for (uri, name), _ in _experiments(jobs).items():
        try:
            client = tracking.client_for(uri)
            exp = tracking.retry(client.get_experiment_by_name, name)
            for key in _queued_keys(job_id, exp.tags if exp is not None else {}):
                tracking.retry(client.delete_experiment_tag, exp.experiment_id, key)
        except Exception as e:  # noqa: BLE001 - a leftover record is harmless; the job's own result matters
            log.debug("the record of pack job %s stays: %s", job_id, e)


def wait_queued(job_id: str, submitted: float, jobs: list[Job], poll_s: float = 5.0,
                grace_s: float = 15.0) -> list[Outcome]:
    """Wait for the SLURM pack job `job_id` that an earlier sweep submitted (at `submitted`) to train `jobs`:
    each one's outcome from the store, once its run has FINISHED or FAILED (SKIPPED with the run's metrics:
    this sweep did not train it), or, grace_s after the job has ended or is gone (its last writes landing),
    ended KILLED or never made (FAILED, saying so). A run KILLED while the job lives was requeued
    (preemption): it goes on."""
    from vgsweep import tracking

    WAITING[job_id] = None  # until it has ended (an interrupted wait leaves it: the job goes on)
    log.info("waiting for SLURM pack job %s of an earlier sweep: %d of this sweep's configs", job_id, len(jobs))
    out: dict[int, Outcome] = {}
    said, ended_at = "", None
    while True:
        state, why = slurm_job(job_id)
        ended = state in TERMINAL
        ended_at = (ended_at or time.monotonic()) if ended else None
        final = ended and time.monotonic() - ended_at >= grace_s  # its last writes have landed
        stores: dict[tuple[str, str], list[int]] = {}
        for k, j in enumerate(jobs):
            if k not in out:
                stores.setdefault((tracking.resolve_uri(j.cfg), str(j.cfg.tracking.experiment)), []).append(k)
        for (uri, name), ks in stores.items():
            runs = tracking.runs_by_hash(tracking.client_for(uri), name, {jobs[k].key() for k in ks})
            for k in ks:
                rs = runs.get(jobs[k].key(), [])
                done = next((r for r in rs if r.info.status == "FINISHED"), None)
                last = rs[0] if rs and (rs[0].info.end_time or 0) / 1000 >= submitted else None
                if done is not None:
                    out[k] = Outcome("SKIPPED", done.info.run_id, dict(done.data.metrics),
                                     f"trained by SLURM pack job {job_id} of an earlier sweep")
                elif last is not None and (last.info.status == "FAILED" or (final and last.info.status == "KILLED")):
                    out[k] = Outcome("FAILED", last.info.run_id, {}, f"{last.info.status} in SLURM pack job {job_id} "
                                     f"of an earlier sweep: {last.data.tags.get(tracking.TAG_FAILURE, 'no reason recorded')}")
                elif final:
                    out[k] = Outcome("FAILED", last.info.run_id if last else None, {},
                                     f"SLURM pack job {job_id} of an earlier sweep ended {state} without training it")
        if len(out) == len(jobs):
            WAITING.pop(job_id, None)
            return [out[k] for k in range(len(jobs))]
        now = state_said(state, why)
        if now != said:
            log.info("pack job %s of an earlier sweep: %s", job_id, now)
            said = now
        time.sleep(poll_s)


def _end(client, run, status: str, reason: str) -> None:
    """End a run another process left RUNNING, with the reason (tag vgsweep.failure)."""
    from vgsweep import tracking

    tracking.retry(client.set_tag, run.info.run_id, tracking.TAG_FAILURE, reason[:5000])
    tracking.retry(client.set_terminated, run.info.run_id, status=status)


def _import_submitit():
    import submitit

    logging.getLogger("submitit").setLevel(logging.ERROR)  # its sacct warnings where accounting is off
    return submitit


TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
            "PREEMPTED", "SPECIAL_EXIT", "GONE")


def slurm_job(job_id: str) -> tuple[str, str]:
    """(state, reason) of a SLURM job from the controller (`scontrol`: no accounting database needed);
    GONE once the controller has forgotten it (an array task cancelled while pending: at once); UNKNOWN
    where scontrol is missing or does not answer. The reason is why a PENDING job waits."""
    fields = scontrol_job(job_id)
    return fields.get("JobState", "UNKNOWN").split("+")[0], fields.get("Reason", "")


def scontrol_job(job_id: str) -> dict[str, str]:
    """`scontrol show job`'s fields of a SLURM job (JobState, Reason, ExitCode, ...); JobState GONE once
    the controller has forgotten it, UNKNOWN where scontrol is missing or does not answer."""
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {"JobState": "UNKNOWN"}
    if out.returncode != 0:
        said = out.stderr + out.stdout  # a job id: "Invalid job id specified"; an array task: "Job 12_3 not found"
        return {"JobState": "GONE" if "Invalid job id" in said or f"Job {job_id} not found" in said else "UNKNOWN"}
    return dict(w.split("=", 1) for w in out.stdout.split() if "=" in w)


def exit_said(code: str) -> str:
    """SLURM's ExitCode of a job's script (`3:0`: exit status 3; `0:9`: signal 9) in words; '' for 0:0."""
    status, _, signal_ = code.partition(":")
    if signal_ not in ("", "0"):
        return f"signal {signal_}"
    return f"exit status {status}" if status not in ("", "0") else ""


# Why a PENDING job waits, where it waits for something that will not come by itself: the request is
# more than its partition allows (SLURM keeps such a job pending rather than refusing it).
NEVER_AS_ASKED = {"PartitionConfig": "more CPUs, memory or GPUs than a node of the partition has",
                  "PartitionTimeLimit": "a longer time limit than the partition allows",
                  "PartitionNodeLimit": "more nodes than the partition allows",
                  "BadConstraints": "constraints no node meets"}


def state_said(state: str, why: str, inside: bool = False) -> str:
    """A SLURM job's state as vgsweep says it: `pending (Priority)` with the reason a pending job waits
    (`pending: Priority` inside parentheses), else `running`, `completed`, ..."""
    if state != "PENDING" or why in ("", "None"):
        return state.lower()
    return f"pending: {why}" if inside else f"pending ({why})"


def never_as_asked(reason: str) -> Optional[str]:
    """What a PENDING job's reason says it will never get as asked, or None if it may start later. Besides
    the partition's limits: a per-job or per-node maximum of its QOS or association (QOSMaxCpuPerJobLimit,
    AssocMaxWallDurationPerJobLimit, QOSMaxGRESPerNode, ...; a QOS minimum, QOSMin*: SLURM keeps such a job
    pending unless the QOS says DenyOnLimit). Their aggregate limits (QOSGrp*, AssocGrp*, Max*PerUser) free
    up as other jobs end."""
    if reason in NEVER_AS_ASKED:
        return NEVER_AS_ASKED[reason]
    for prefix, whose in (("QOSMax", "its QOS"), ("AssocMax", "its account (association)")):
        if reason.startswith(prefix) and ("PerJob" in reason or "PerNode" in reason):
            return f"more than {whose} allows a job"
    if reason.startswith("QOSMin"):  # QOSMinCpuNotSatisfied, QOSMinGRES, ...
        return "less than its QOS requires of a job"
    return None


# SIGTERM to a pack job comes from scancel, its time limit, preemption, a requeue or the node shutting
# down: in each case the job is ending. submitit's job wrapper ignores it ("Bypassing signal SIGTERM")
# until SLURM's SIGKILL follows (KillWait, 30 s by default), which left the runs RUNNING: a sweep run
# again from another host skipped them as running until their heartbeat was tracking.stale_after_s old.
# The pack job ends them KILLED instead (a requeued job resumes KILLED runs from their checkpoints).
ENDING = "ended by SIGTERM (scancel, the time limit, preemption, a requeue or the node shutting down)"


def ended_for_requeue(run, job_id: str) -> bool:
    """Run `run` was ended KILLED by pack job `job_id` on SIGTERM: if SLURM holds that job again (it was
    requeued), the job resumes it when it starts (sweep.plan's adopt)."""
    from vgsweep import tracking

    return (run.info.status == "KILLED" and run.data.tags.get(TAG_JOB) == job_id
            and run.data.tags.get(tracking.TAG_FAILURE) == ENDING)


class JobEnding(BaseException):
    """SIGTERM in a pack job, raised in its main thread (not an Exception: no `except Exception` on the
    way takes it for a failed run)."""


def _raise_ending(signum, frame) -> None:
    raise JobEnding()


class PackJob:
    """What a scheduler job runs: one pack of jobs, planned again on the node (see the module doc).
    submitit pickles it; `checkpoint` (submitit's requeue hook) resubmits it as it is."""

    def __init__(self, jobs: list[Job], same_devices: bool = False, gpus: Optional[str] = None,
                 max_pack: Optional[int] = None, memory_budget_gb: Optional[float] = None):
        """same_devices: the job runs on this machine (submitit_local) and sees the GPUs this process
        sees, or `gpus` of them (CUDA_VISIBLE_DEVICES' form); submitit's local executor would set
        CUDA_VISIBLE_DEVICES to none (gpus_per_node 0). max_pack, memory_budget_gb: the launcher's,
        for splitting the pack on the node (None: as the node's device allows)."""
        # what the node needs: configs, output folders and logs (planning state is made there again)
        self.jobs = [replace(j, resume_run=None, resume_state=None) for j in jobs]
        self.same_devices = same_devices
        self.visible = gpus if gpus is not None else os.environ.get("CUDA_VISIBLE_DEVICES")
        self.max_pack, self.memory_budget_gb = max_pack, memory_budget_gb

    def __call__(self) -> list[Outcome]:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return self.train()
        previous = signal.signal(signal.SIGTERM, _raise_ending)
        job_id = None if self.same_devices else scheduler_job_id()
        ending = False
        try:
            return self.train()
        except JobEnding:
            from vgsweep.runs import end_open_runs

            ending = True
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM does not cut the ending short
            ended = end_open_runs("KILLED", ENDING)
            log.error("pack job %s: %s; %d run%s it was training marked KILLED (the same command, or the requeued "
                      "job, resumes them from their checkpoints)", scheduler_job_id() or os.getpid(), ENDING,
                      len(ended), "" if len(ended) == 1 else "s")
            raise SystemExit(143) from None
        finally:
            signal.signal(signal.SIGTERM, previous)
            if job_id and not ending:  # its runs (or their failure) speak for its configs now
                forget_queued(job_id, self.jobs)
            # ended by SIGTERM, the record stays: SLURM may requeue the job (preemption, its time limit,
            # scontrol requeue), and until it starts again the record says it will resume these configs
            # (ended_for_requeue); cancelled, the record is ignored as the job's is ended, and removed with it

    def train(self) -> list[Outcome]:
        from vgsweep import tracking
        from vgsweep.packing import group_packs
        from vgsweep.sweep import plan, run_isolated

        self.see_devices()
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
        tracking.configure(float(self.jobs[0].cfg.tracking.retry_s))
        tracking.start_over()
        refused = self.check_devices()
        if refused:
            return refused
        outcomes = plan(self.jobs, adopt=scheduler_job_id())
        todo = [i for i, o in enumerate(outcomes) if o is None]
        starts = [self.jobs[i].start_epoch for i in todo]
        # resumed runs may be at other epochs; a job pickled by an older vgsweep has no max_pack or budget
        for part in group_packs([self.jobs[i].cfg for i in todo], starts, getattr(self, "max_pack", None),
                                getattr(self, "memory_budget_gb", None)):
            idx = [todo[i] for i in part]
            for i, o in zip(idx, run_isolated([self.jobs[i] for i in idx], None)):
                outcomes[i] = o
        return outcomes  # type: ignore[return-value]

    def check_devices(self) -> list[Outcome]:
        """The login node could not check `device` and `precision` against this node's devices: here,
        before any run is trained. Refused (a pack shares both), every job is FAILED with the one line
        that says why and where, and the runs an earlier incarnation of this job (requeued) left
        RUNNING end FAILED with it; else []."""
        import socket

        from vgsweep.config import ConfigError, check_device

        try:
            for j in self.jobs:
                check_device(j.cfg)
        except ConfigError as e:
            reason = f"on {socket.gethostname()}: {e}"
            log.error("%s", reason)
            job_id = scheduler_job_id()
            return (_outcomes_from_store(self.jobs, reason, job_id) if job_id
                    else [Outcome("FAILED", None, {}, reason) for _ in self.jobs])
        return []

    def see_devices(self) -> None:
        """With same_devices, the GPUs of the submitting process: its CUDA_VISIBLE_DEVICES, or none
        set. Before anything initialises CUDA in this process."""
        if not self.same_devices:
            return
        if self.visible is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = self.visible

    def checkpoint(self, *args, **kwargs):
        """Preempted or out of time: requeue this same pack (its runs resume from their checkpoints)."""
        submitit = _import_submitit()
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


PENDING_SLURM: dict[str, None] = {}  # SLURM job ids this process submitted and has not collected yet
WAITING: dict[str, None] = {}  # SLURM pack jobs of an earlier sweep this process waits for (wait_queued)
PENDING_LOCAL: dict[str, tuple] = {}  # submitit_local: job id -> (its handle, its pack's jobs), until collected


def stop_local_jobs(reason: str, wait_s: float = 30.0) -> list[str]:
    """The sweep was interrupted: stop its submitit_local pack jobs (a terminal's Ctrl-C has reached
    them already; SIGTERM to the sweep alone has not), wait for their processes to end (submitit sends
    SIGINT, then SIGKILL 1 s later), and end the runs they left RUNNING KILLED with `reason`; their
    buffered metrics are lost, and trained again from the last checkpoint. Returns those runs' ids."""
    from vgsweep import tracking
    from vgsweep.sweep import stored_runs

    pending = dict(PENDING_LOCAL)
    PENDING_LOCAL.clear()
    handles = [h for h, _ in pending.values()]
    _wait_for(lambda: all(h.done() for h in handles), 2.0)  # those a terminal's Ctrl-C reached are ending
    for h in handles:
        if not h.done():
            h.cancel()  # SIGINT to its controller, which stops the job's process
    _wait_for(lambda: all(h.done() for h in handles), wait_s)
    left = [(client, r) for job_id, (_, jobs) in pending.items() for client, runs in stored_runs(jobs)
            for r in runs if r.data.tags.get(TAG_JOB) == job_id and r.info.status == "RUNNING"]
    _wait_for(lambda: all(tracking.orphan_reason(r) for _, r in left), 5.0)  # their processes' last moments
    killed = []
    for client, r in left:
        gone, r = tracking.confirmed_orphan(client, r)  # read again: it may have ended as its job exited
        if not gone:
            if r.info.status == "RUNNING":
                log.warning("run %s: its pack job %s is still alive; left to it", r.info.run_id, r.data.tags[TAG_JOB])
            continue
        _end(client, r, "KILLED", reason)
        killed.append(r.info.run_id)
    return killed


def _wait_for(done, seconds: float):
    """Poll `done()` until it is true or `seconds` have passed; its last value."""
    deadline = time.monotonic() + seconds
    while not (value := done()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


@contextlib.contextmanager
def _output_to(path: Path):
    """submitit's LocalExecutor starts each job's controller process with this process's stdout and
    stderr, where a Ctrl-C makes it print a traceback (the job's own output goes to its logs): the
    controllers started inside this block write to `path` instead."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "ab") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            yield
    finally:
        for fd, s in zip((1, 2), saved):
            os.dup2(s, fd)
            os.close(s)


# What sbatch's refusal names -> the launcher option that asked for it (first match in its words)
SBATCH_WORDS = (("partition", "partition", "`sinfo -s` lists the partitions"),
                ("gres", "gpus_per_node", "0 for nodes without GPUs; `sinfo -o '%P %G'` lists each partition's GPUs"),
                ("memory", "mem_gb", "`sinfo -o '%P %m'` lists each partition's memory per node (MB)"),
                ("feature", "constraint", "`sinfo -o '%P %f'` lists each partition's features"),
                ("account", "account", "`sacctmgr show assoc user=$USER` lists yours"),
                ("qos", "qos", "`sacctmgr show assoc user=$USER` lists yours"),
                ("time limit", "timeout_min", "`sinfo -o '%P %l'` lists each partition's time limit"),
                ("processors", "cpus_per_task", "`sinfo -o '%P %c'` lists each partition's CPUs per node"))


def sbatch_refused(stderr: str, o) -> "ConfigError":
    """The one-line error for packs sbatch would not take (`o`: the launcher's options): the option
    its words point at, else the whole request; and what sbatch said."""
    from vgsweep.config import ConfigError, Shown

    said = "; ".join(x.strip() for x in stderr.splitlines() if x.strip()) or "sbatch failed"
    # a flag of additional_parameters (submitit writes each key as --key, `_` as `-`) that sbatch names:
    # "unrecognized option '--bogus=1'", "Invalid --mail-type specification"
    extra = {str(k).replace("_", "-"): k for k in (o.additional_parameters or {})}
    for flag in re.findall(r"--([A-Za-z][\w-]*)", said):
        if (k := extra.get(flag.replace("_", "-"))) is not None:
            return ConfigError(f"hydra.launcher.additional_parameters.{k}", o.additional_parameters[k],
                               "an sbatch flag and value this cluster's SLURM accepts",
                               f"sbatch refused the pack jobs ({said}): `sbatch --help` lists its flags")
    low = said.lower()
    for word, key, hint in SBATCH_WORDS:
        if word in low:
            return ConfigError(f"hydra.launcher.{key}", getattr(o, key), "what this cluster's SLURM accepts",
                               f"sbatch refused the pack jobs ({said}): {hint}")
    keys = [k for _, k, _ in SBATCH_WORDS] + ["exclude"]  # exclude: "Requested node configuration is not available"
    request = " ".join([f"{k}={getattr(o, k)}" for k in keys if getattr(o, k) is not None]
                       + [f"additional_parameters.{k}={v}" for k, v in (o.additional_parameters or {}).items()])
    return ConfigError("hydra.launcher", Shown(f"[{request}]"), "a request this cluster's SLURM accepts",
                       f"sbatch refused the pack jobs ({said})")


def local_gpus() -> list[str]:
    """This machine's GPUs as this process sees them: the entries of its CUDA_VISIBLE_DEVICES (indices,
    UUIDs or MIG names, as given), else one index per GPU CUDA counts (none without CUDA)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:  # CUDA reads the list up to its first invalid entry ("-1" hides every GPU)
        gpus = []
        for g in (g.strip() for g in visible.split(",")):
            if not g or g.startswith("-"):
                break
            gpus.append(g)
        return gpus
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def several_gpus_note(device: str, packs: int) -> Optional[str]:
    """What a local sweep of `packs` packs on `device` says where this process sees several GPUs: its packs
    train one after another on one of them; submitit_local would train them at once. None otherwise."""
    from vgsweep.config import resolve_device

    dev = resolve_device(device)
    gpus = local_gpus() if dev.type == "cuda" and packs > 1 else []
    if len(gpus) < 2:
        return None
    return (f"the {packs} packs train one after another on one of the {len(gpus)} GPUs this process sees ({dev}); "
            f"hydra.launcher.executor=submitit_local trains them at once, each on its own GPU")


def spread_gpus(gpus: list[str], per_job: Optional[int], jobs: int) -> list[Optional[str]]:
    """The GPUs each of `jobs` local pack jobs sees (CUDA_VISIBLE_DEVICES), `per_job` each, in turn:
    with 4 GPUs and 1 per job, packs 1-4 train at once on GPUs 0-3 and pack 5 shares GPU 0. None
    (every job sees all of this process's GPUs, as before) where the machine has no more GPUs than
    one job asks for, or per_job is 0 or null."""
    if not per_job or len(gpus) <= per_job:
        return [None] * jobs
    return [",".join(gpus[(k * per_job + t) % len(gpus)] for t in range(per_job)) for k in range(jobs)]


class SubmititPacks:
    """Submits every pack as one job (one SLURM array) and hands back each pack's outcomes."""

    def __init__(self, o, max_pack: Optional[int] = None, memory_budget_gb: Optional[float] = None):
        """o: the launcher's executor options (PackedLauncherConf); max_pack, memory_budget_gb: the
        launcher's, passed on to each pack job (PackJob)."""
        submitit = _import_submitit()
        self.cluster = cluster = "slurm" if o.executor == "slurm" else "local"
        self.ex = submitit.AutoExecutor(folder=str(o.submitit_folder), cluster=cluster,
                                        slurm_max_num_timeout=o.max_num_timeout)
        params = {"timeout_min": o.timeout_min, "name": o.name, "nodes": 1, "tasks_per_node": 1}
        for k in ("cpus_per_task", "mem_gb") + (("gpus_per_node",) if cluster == "slurm" else ()):
            if getattr(o, k):
                params[k] = getattr(o, k)
        slurm = {"partition": o.partition, "qos": o.qos, "account": o.account, "constraint": o.constraint,
                 "exclude": o.exclude, "comment": o.comment, "array_parallelism": o.array_parallelism,
                 "signal_delay_s": o.signal_delay_s, "setup": list(o.setup) if o.setup else None,
                 "additional_parameters": dict(o.additional_parameters) or None}
        params.update({f"slurm_{k}": v for k, v in slurm.items() if v is not None})
        self.ex.update_parameters(**params)
        self.poll_s, self.grace_s, self.options = float(o.poll_s), float(o.result_grace_s), o
        self.max_pack, self.memory_budget_gb = max_pack, memory_budget_gb
        self.folder = Path(str(o.submitit_folder))
        while "%" in self.folder.name:  # the part submitit names after each job
            self.folder = self.folder.parent
        self.handles: list = []
        self.packs: list[list[Job]] = []
        self._last_report = ""
        self._warned: set[str] = set()
        self._cancelled: dict[str, str] = {}  # job id -> why it was cancelled as unrunnable

    def start(self, packs: list[list[Job]]) -> None:
        """Submit the packs; sbatch refusing them (a partition, GPUs, memory the cluster does not have)
        is bad input: a ConfigError naming the setting, before anything trains."""
        self.packs = packs
        made_folder = not self.folder.exists()
        local = self.cluster == "local"
        gpus = spread_gpus(local_gpus(), self.options.gpus_per_node, len(packs)) if local else [None] * len(packs)
        said, refused = io.StringIO(), False
        try:
            with contextlib.ExitStack() as stack:
                if local:
                    stack.enter_context(_output_to(self.folder / "controllers.log"))
                else:  # submitit prints what sbatch said on stderr before it raises: the refusal's line says it
                    stack.enter_context(contextlib.redirect_stderr(said))
                try:
                    with self.ex.batch():
                        self.handles = [self.ex.submit(PackJob(p, same_devices=local, gpus=g, max_pack=self.max_pack,
                                                               memory_budget_gb=self.memory_budget_gb))
                                        for p, g in zip(packs, gpus)]
                except _import_submitit().core.utils.FailedJobError as e:
                    if self.cluster != "slurm":
                        raise
                    if made_folder:  # the refused jobs' script and pickles: nothing was submitted
                        shutil.rmtree(self.folder, ignore_errors=True)
                    refused = True
                    raise sbatch_refused(str(e), self.options) from None
        finally:
            if not refused and said.getvalue():  # anything else said meanwhile (a warning) is passed on
                sys.stderr.write(said.getvalue())
        ids = [h.job_id for h in self.handles]
        if self.cluster == "slurm":
            PENDING_SLURM.update(dict.fromkeys(ids))
            for h, p in zip(self.handles, packs):
                record_queued(h.job_id, p)
        else:
            PENDING_LOCAL.update({h.job_id: (h, p) for h, p in zip(self.handles, packs)})
        log.info("submitted %d pack job%s (%s): %s%s", len(ids), "" if len(ids) == 1 else "s", self.ex.cluster,
                 ", ".join(ids), "" if gpus[0] is None else "; their GPUs (CUDA_VISIBLE_DEVICES): " + " ".join(gpus))

    def _state(self, h) -> str:
        return self._job(h)[0]

    def _job(self, h) -> tuple[str, str]:
        if self.cluster != "slurm":
            return h.state, ""
        return ("FINISHED", "") if h.paths.result_pickle.exists() else slurm_job(h.job_id)

    def _report(self) -> None:
        """The pack jobs' states when they change (a pending one's reason beside it); a job that waits
        for what its partition cannot give is named once, with the settings that asked for it."""
        jobs = [self._job(h) for h in self.handles]
        counts: dict[str, int] = {}
        for s, why in jobs:
            key = state_said(s, why)
            counts[key] = counts.get(key, 0) + 1
        text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        if text != self._last_report:
            log.info("pack jobs: %s", text)
            self._last_report = text
        stuck = {h.job_id: why for h, (s, why) in zip(self.handles, jobs)
                 if s == "PENDING" and never_as_asked(why) and h.job_id not in self._warned}
        if not stuck:
            return
        self._warned.update(stuck)
        o = self.options
        asked = " ".join(f"hydra.launcher.{k}={getattr(o, k)}" for k in
                         ("partition", "qos", "account", "timeout_min", "cpus_per_task", "mem_gb", "gpus_per_node",
                          "constraint")
                         if getattr(o, k) is not None)
        said = {j: f"{never_as_asked(why)} (SLURM reason {why}); the request: {asked}" for j, why in stuck.items()}
        ids, jobs_ = " ".join(stuck), "s" if len(stuck) > 1 else ""
        refused = ""
        if o.cancel_unrunnable:
            try:
                out = subprocess.run(["scancel", *stuck], capture_output=True, text=True, timeout=60)
                refused = "" if out.returncode == 0 else (out.stderr.strip() or f"exit status {out.returncode}")
            except (OSError, subprocess.SubprocessError) as e:
                refused = str(e)
        if not o.cancel_unrunnable or refused:  # waits: the jobs start if the cluster's admins change the partition
            log.warning("pack job%s %s will not start as asked: %s.%s Cancel (scancel %s) and change those settings, "
                        "or wait if the cluster's admins change the partition", jobs_, ids, next(iter(said.values())),
                        f" scancel failed ({refused})." if refused else "", ids)
            return
        log.error("pack job%s %s will not start as asked: %s. Cancelled: change those settings and run the same "
                  "command again (hydra.launcher.cancel_unrunnable=false waits instead)", jobs_, ids,
                  next(iter(said.values())))
        self._cancelled.update({j: f"was cancelled: it will not start as asked: {why}" for j, why in said.items()})

    def result(self, k: int) -> list[Outcome]:
        """Wait for pack k's job; its outcomes, or FAILED ones saying why the job failed."""
        h = self.handles[k]
        outcomes = self._result(k, h)
        if self.cluster == "slurm" and all(o.run_id for o in outcomes):  # else it says why those have no run
            forget_queued(h.job_id, self.packs[k])  # the job removes it too, unless it was killed before
        PENDING_SLURM.pop(h.job_id, None)  # collected (not when the wait is interrupted: it goes on)
        PENDING_LOCAL.pop(h.job_id, None)
        return outcomes

    def _result(self, k: int, h) -> list[Outcome]:
        gone_since = None
        while not (h.paths.result_pickle.exists() if self.cluster == "slurm" else h.done()):  # slurm: no sacct
            self._report()
            if h.job_id in self._cancelled:  # said so when it was cancelled; it never started, so has no log
                return _outcomes_from_store(self.packs[k], f"pack job {h.job_id} {self._cancelled[h.job_id]}", h.job_id)
            if self.cluster == "slurm" and self._state(h) in TERMINAL:  # ended, and no result came (yet)
                gone_since = gone_since or time.monotonic()
                if time.monotonic() - gone_since >= self.grace_s:  # a shared filesystem may lag
                    return self._failed(k, h, self._ended_without_result(h))
            time.sleep(self.poll_s)
        self._report()
        if self.cluster == "local" and not h.paths.result_pickle.exists():  # written before it ended: no lag here
            return self._failed(k, h, "ended without a result (killed, or its process died)")
        try:
            return h.result()
        except Exception as e:  # noqa: BLE001 - the job failed, was cancelled or ran out of time for good
            first = next((x for x in str(e).splitlines() if x.strip()), type(e).__name__)
            if "has not produced any output" in str(e):  # submitit's UncompletedJobError
                first = "ended without a result"
            return self._failed(k, h, f"failed: {first[:300]}")

    def _ended_without_result(self, h) -> str:
        """Why a SLURM pack job ended without a result, as far as SLURM and its log tell: its state, its
        script's exit status, and where its error log is empty, that it ended before its pack started."""
        fields = scontrol_job(h.job_id)
        state = fields["JobState"].split("+")[0]
        if state == "GONE" and not h.paths.stderr.exists():
            return "is gone from SLURM's queue without a result (cancelled before it started, or ended long ago)"
        code = exit_said(fields.get("ExitCode", ""))
        what = f"ended {state}" + (f" ({code})" if code else "") + " without a result"
        if h.paths.stderr.exists() and not h.paths.stderr.stat().st_size:  # the pack's process writes there first
            what += (", before its pack started (its error log is empty"
                     + ("; did a line of hydra.launcher.setup end its script?)" if self.options.setup else ")"))
        return what

    def _failed(self, k: int, h, what: str) -> list[Outcome]:
        logs = [p for p in (h.paths.stderr, h.paths.stdout) if p.exists()]
        shown = next((p for p in logs if p.stat().st_size), logs[0] if logs else None)  # the one that says something
        reason = f"pack job {h.job_id} {what}" + (f" (its log: {shown})" if shown else "")
        log.error(reason)
        return _outcomes_from_store(self.packs[k], reason, h.job_id)
