"""`vgsweep status`: where each experiment of the store stands, read from MLflow alone: how many
configs are finished, running, failed or killed, and one line for each that is not finished (a
running one's epoch, time left, heartbeat and process; a failed or killed one's reason). For a sweep
whose own terminal is elsewhere: on a cluster, under nohup, on another machine sharing the store.
It reads only: a run whose process is gone is said so, not marked (the next sweep marks it)."""

from __future__ import annotations

import time

import pandas as pd

from vgsweep import tracking
from vgsweep.config import command_line
from vgsweep.progress import duration
from vgsweep.executors import (LOCAL, TAG_JOB, TAG_QUEUED, TERMINAL, ended_for_requeue, local_sweep, read_eta,
                               read_queued, slurm_job, state_said)
from vgsweep.results.reader import (TAGS, chosen, config_keys, fill_neutral, held, open_experiment, select,
                                    store_args, store_uri, unmatched, where_arg)
from vgsweep.results.reader import said as said_where
from vgsweep.results.reader import told_apart as told_apart_frame

# the states of the lines, in the order shown: a config that is not finished (running; queued: in a
# SLURM pack job that has not started it; gone: left RUNNING by a process that is gone; unrun: its pack
# job ended without starting it; failed; killed), or a finished one trained again (rerun=true)
STATES = ("running", "queued", "gone", "unrun", "failed", "killed", "rerun")
STATE_WORDS = {"gone": "left running by a process that is gone",
               "unrun": "not trained: their pack job (or sweep) ended before it started them"}


def same_configs(runs: list) -> dict[str, str]:
    """Each config hash of `runs` (newest first) to the hash that speaks for its config: the newest run's,
    where runs under several hashes differ only in settings that do nothing in them (reader.config_keys:
    a store recorded before vgsweep hashed those at their defaults holds `init=xavier init.std=0.01` and
    `init.std=0.1` under two hashes, one config, as the table counts it). Runs whose params are the same
    keep their own hashes: what tells those apart is not in the params."""
    out = {r.data.tags[tracking.TAG_HASH]: r.data.tags[tracking.TAG_HASH] for r in runs}
    said = [r for r in runs if r.data.params]  # a run made a moment ago may not have its params yet
    if not said:
        return out
    df = fill_neutral(pd.DataFrame([r.data.params for r in said]))
    first: dict[str, tuple[str, str]] = {}  # config key: (its hash, its settings as given)
    for r, k, given in zip(said, config_keys(df), config_keys(df, blank_inert=False)):
        h = r.data.tags[tracking.TAG_HASH]
        h0, given0 = first.setdefault(k, (h, given))
        if h != h0 and given != given0:
            out[h] = h0
    return out


def told_apart(runs: list) -> dict[str, str]:
    """Run id -> its name and the settings that tell it from the other runs of the same name
    (reader.told_apart), for the runs whose name another of `runs` shares."""
    if not runs:
        return {}
    df = fill_neutral(pd.DataFrame([{**r.data.params, "run_name": r.info.run_name or ""} for r in runs]))
    return {r.info.run_id: label for r, label in zip(runs, told_apart_frame(df))
            if label != (r.info.run_name or "")}


def config_states(runs: list, alias: dict[str, str] | None = None) -> dict[str, object]:
    """The run that speaks for each config (hash, or the hash `alias` gives for it: same_configs): a
    FINISHED one, else a RUNNING one, else the newest. `runs` newest first, as tracking.training_runs
    gives them."""
    rank = {"FINISHED": 0, "RUNNING": 1}
    best: dict[str, object] = {}
    alias = alias or {}
    for r in runs:
        h = r.data.tags[tracking.TAG_HASH]
        h = alias.get(h, h)
        if h not in best or rank.get(r.info.status, 2) < rank.get(best[h].info.status, 2):
            best[h] = r
    return best


PACE_EPOCHS = 20  # an epoch's time, as the time left counts it: the mean of the last this many


def epochs_logged(client, run) -> tuple[int, float | None, float | None]:
    """Epochs whose metrics reached the store (metric steps are 0-based epochs; a writer thread sends
    them every tracking.flush_s, so a running run may be a moment ahead of this), when the last of them
    was logged (unix seconds; None before the first) and how long an epoch takes: the mean of its last
    PACE_EPOCHS epochs' `epoch_seconds` (None before the first), so that one slow epoch (another process
    on its cores: `vgsweep status` itself on a small machine made an epoch of 0.22 s take 1.5 s, and the
    time left read 8 min 42 s for 80 s) does not set the pace, and an epoch's periodic costs
    (diagnostics, a checkpoint every few epochs) count as often as they come. All three
    from one read: `run`'s latest metrics were read a moment earlier and may not hold these epochs yet
    (a flush between the two reads showed a run at epoch 7 with no time left). vgsweep has logged
    `epoch_seconds` with every epoch's metrics since its first version."""
    hist = sorted(tracking.retry(client.get_metric_history, run.info.run_id, "epoch_seconds"), key=lambda m: m.step)
    if not hist:
        return 0, None, None
    recent = [m.value for m in hist[-PACE_EPOCHS:]]
    return hist[-1].step + 1, hist[-1].timestamp / 1000, sum(recent) / len(recent)


STALL_EPOCHS, STALL_MIN_S = 10, 600  # no epoch for this many epochs' time (and at least this long): stuck?
TAGS_RESUMED = "vgsweep.resumed_after"  # runs.RunLogger.resume: a run continued from a checkpoint


def stalled_since(tags: dict[str, str], last_epoch_at: float | None) -> float | None:
    """Since when a running run has made no progress (unix seconds): its last logged epoch, or its resume
    when later (the last epoch may be the earlier process's). None for a run resumed before vgsweep
    recorded when (`vgsweep.resumed_at`), or with no epoch logged."""
    try:
        resumed = float(tags[tracking.TAG_RESUMED_AT])
    except (KeyError, ValueError):
        return None if TAGS_RESUMED in tags else last_epoch_at
    return resumed if last_epoch_at is None else max(resumed, last_epoch_at)


def run_line(client, run, now: float) -> tuple[str, str]:
    """(state, what) of one run that is not finished: running (its epoch, time left, heartbeat and
    process), gone (RUNNING, but its process is gone), failed or killed (why)."""
    p, tags, status = run.data.params, run.data.tags, run.info.status
    epochs = p.get("train.epochs", "?")
    done, at, secs = epochs_logged(client, run)
    if status == "RUNNING":
        gone = tracking.orphan_reason(run, float(p.get("tracking.stale_after_s", 0) or 0), now)
        if gone:
            return "gone", f"epoch {done}/{epochs}; {gone}"
        # the epochs left at its last epoch's pace, less what of the one in progress has passed since then
        left = (f", about {duration(secs * (int(epochs) - done) - min(max(now - at, 0), secs))} left"
                if secs is not None and str(epochs).isdigit() and done and at is not None else "")
        since = stalled_since(tags, at)
        if secs is not None and since is not None and now - since > max(STALL_EPOCHS * secs, STALL_MIN_S):
            # its process beats, but its training does not move (a hung device, a stuck file system)
            took = duration(secs) if secs >= 10 else f"{secs:.2g} s"
            after = "" if since == at else " since it was resumed"
            left = (f"; no epoch logged for {duration(now - since)}{after} (an epoch took {took}): stuck? its "
                    "process lives")
        age = tracking.heartbeat_age(run, now)
        beat = f"heartbeat {duration(max(age, 0))} ago" if age is not None else "no heartbeat"
        job = f", job {tags[TAG_JOB]}" if tags.get(TAG_JOB) else ""
        return "running", (f"epoch {done}/{epochs}{left}; {beat} "
                           f"({tags.get(tracking.TAG_HOST, '?')}, pid {tags.get(tracking.TAG_PID, '?')}{job})")
    why = " ".join(tags.get(tracking.TAG_FAILURE, "no reason recorded").split())
    at = ("" if tags.get(TAGS["failed_epoch"])  # the reason names the epoch
          else f"after epoch {done}/{epochs}: " if done else "before its first epoch: ")
    return status.lower(), f"{at}{why[:300]}"


RERUN_QUEUED = "queued to train again: "  # a finished config waiting for its rerun (rerun=true)


def queued_lines(exp, best: dict[str, object], now: float, started: dict[str, float] | None = None,
                 alias: dict[str, str] | None = None) -> list[tuple[str, str, str, str]]:
    """(state, what, name, hash) of each config a SLURM pack job was submitted for and has not started:
    no run yet, or only one that ended before the job was submitted (it resumes or retrains it). Queued
    while SLURM has the job pending (or running, on its other configs); unrun once it has ended or is
    gone; as it is when `scontrol` cannot say (run elsewhere). The newest submission speaks for a config.
    A run the job ended on SIGTERM is queued again while SLURM holds the job again (requeued: preemption,
    its time limit), since it will resume it. The same for a config of a local sweep's later pack (_local_line).
    A finished config of a record made with rerun=true waits to train again (state rerun, RERUN_QUEUED) until
    a run of it starts after the record (`started`: each config's newest run's start, unix s)."""
    out, seen, jobs = [], set(), {}
    for job, rec in read_queued(exp.tags):
        when = float(rec["submitted"])
        for h, name in rec["configs"].items():
            h = (alias or {}).get(h, h)  # the hash its config's runs are counted under (same_configs)
            if h in seen:
                continue
            seen.add(h)
            r = best.get(h)
            requeued = r is not None and ended_for_requeue(r, job)
            rerun = (r is not None and rec.get("rerun") is True and r.info.status == "FINISHED"
                     and (started or {}).get(h, 0.0) < when)  # to train again; not started yet
            if r is not None and (r.info.status in ("FINISHED", "RUNNING") or (r.info.end_time or 0) / 1000 >= when) \
                    and not requeued and not rerun:
                continue  # the job (or another process) has trained it since
            name = name or (r.info.run_name if r is not None else None) or h[:12]  # the record's: with its swept settings
            if job not in jobs:  # once per job, not per config: its scontrol, or its local sweep's state
                jobs[job] = (_local_line(rec, best, now, read_eta(exp.tags, job)) if job.startswith(LOCAL)
                             else slurm_job(job))
            if rerun:  # said while it waits; a sweep or job that ended without it leaves the config finished
                state, what = jobs[job] if job.startswith(LOCAL) else _slurm_line(job, jobs[job], rec, now)
                if state == "queued":
                    out.append(("rerun", RERUN_QUEUED + what, name, h))
                continue
            if job.startswith(LOCAL):
                out.append((*jobs[job], name, h))
                continue
            state, why = jobs[job]
            if requeued and (state in TERMINAL or state == "UNKNOWN"):
                continue  # killed (its own line says so): the job has ended, or nothing says it was requeued
            sent = f"submitted {duration(max(now - when, 0))} ago from {rec.get('host', '?')}"
            if requeued:
                out.append(("queued", f"SLURM job {job}, requeued, {state_said(state, why)}: it resumes it "
                                      f"(ended by SIGTERM {duration(max(now - r.info.end_time / 1000, 0))} ago); {sent}",
                            name, h))
                continue
            out.append((*_slurm_line(job, (state, why), rec, now), name, h))
    return out


def _slurm_line(job: str, state_why: tuple[str, str], rec: dict, now: float) -> tuple[str, str]:
    """(state, what) of a config in SLURM pack job `job` (its (state, reason) from scontrol) that has not
    started it: queued while SLURM holds the job; unrun once it has ended or is gone."""
    state, why = state_why
    sent = f"submitted {duration(max(now - float(rec['submitted']), 0))} ago from {rec.get('host', '?')}"
    if state in TERMINAL:
        gone = "is gone from SLURM's queue (cancelled?)" if state == "GONE" else f"ended {state}"
        return "unrun", f"SLURM job {job} {gone} without starting it; {sent}"
    said = ("its state unknown here (scontrol did not say)" if state == "UNKNOWN"
            else state_said(state, why) + (", on its other configs first" if state == "RUNNING" else ""))
    return "queued", f"SLURM job {job}, {said}; {sent}"


def _local_line(rec: dict, best: dict[str, object], now: float, eta: dict | None = None) -> tuple[str, str]:
    """(state, what) of a config waiting for a later pack of a local sweep (executors.record_local):
    queued while that sweep lives, with the sweep's own estimate of the time it has left (`eta`,
    executors.read_eta); unrun once it has ended (it was interrupted, or failed, before it got there).
    From another host, one of its runs training speaks for it."""
    state, who = local_sweep(rec)
    started = f"started {duration(max(now - float(rec['submitted']), 0))} ago"
    if eta is not None and state != "GONE":  # its estimate, less the time since it was made
        age = max(now - float(eta["at"]), 0)
        left = ("its time left not known yet" if eta["left_s"] is None
                else f"about {duration(max(float(eta['left_s']) - age, 0))} left")
        started += f"; the sweep: pack {eta['pack']} of {eta['packs']}, {left} (its estimate of {duration(age)} ago)"
    if state == "GONE":
        return "unrun", f"its sweep ended before it started it ({who}); {started}"
    if state == "UNKNOWN":
        beats = any(r.info.status == "RUNNING" and r.data.tags.get(tracking.TAG_HOST) == rec.get("host")
                    and r.data.tags.get(tracking.TAG_PID) == str(rec.get("pid"))
                    and tracking.orphan_reason(r, float(r.data.params.get("tracking.stale_after_s", 0) or 0), now)
                    is None for r in best.values())
        if not beats:
            return "queued", (f"a later pack of the sweep of {who}, its state unknown here (none of its runs trains "
                              f"now); {started}")
    return "queued", f"a later pack of the sweep of {who}; {started}"


def meeting(best: dict[str, object], where: list) -> tuple[set[str], pd.DataFrame]:
    """The configs (hashes of `best`: config_states) whose run meets every `--where` condition
    (reader.where_item), and the params of all of them (what the others hold, said when none meets it)."""
    hashes = list(best)
    df = fill_neutral(pd.DataFrame([best[h].data.params for h in hashes], index=range(len(hashes))))
    return {hashes[i] for i in select(df, where).index}, df


def summary(client, exp, now: float | None = None, where: list | tuple = ()) -> list[str]:
    """The experiment's lines: its configs counted by state, then one line per config that is not
    finished and per RUNNING rerun of a finished one, in the order of STATES. `where` (reader.where_item):
    only the configs whose runs meet it; a config queued with no run yet is counted apart, since its
    settings reach the store only when it starts."""
    now = time.time() if now is None else now
    runs = list(tracking.training_runs(client, exp.experiment_id))
    alias = same_configs(runs)
    config_of = lambda r: alias[r.data.tags[tracking.TAG_HASH]]  # noqa: E731
    best = config_states(runs, alias)
    started: dict[str, float] = {}  # each config's newest run's start
    for r in runs:
        started.setdefault(config_of(r), (r.info.start_time or 0) / 1000)
    queued = queued_lines(exp, best, now, started, alias)
    unseen = 0  # queued configs without a run, which `where` cannot read
    if where:
        kept, params = meeting(best, list(where))
        unseen = len({x[3] for x in queued if x[3] not in best})
        queued = [x for x in queued if x[3] in kept]
        runs = [r for r in runs if config_of(r) in kept]
        best = {h: r for h, r in best.items() if h in kept}
        apart = (f"{unseen} config{'s' if unseen != 1 else ''} queued with no run yet, whose settings the store "
                 "does not hold until it starts") if unseen else ""
        if not best:
            have = held([params], list(where))
            notes = [f"its configs have {have}"] * bool(have) + [apart] * bool(apart)
            return [f"{exp.name}: no config where {said_where(where)}" + (f" ({'; '.join(notes)})" if notes else "")]
    waiting = {x[3] for x in queued}
    lines = [x[:3] for x in queued]
    names = told_apart(list(best.values()))
    name_of = lambda r: names.get(best[config_of(r)].info.run_id) or r.info.run_name or r.info.run_id  # noqa: E731
    lines += [(*run_line(client, r, now), name_of(r)) for h, r in best.items()
              if r.info.status != "FINISHED" and h not in waiting]
    lines += [("rerun", run_line(client, r, now)[1], name_of(r)) for r in runs
              if r.info.status == "RUNNING" and best[config_of(r)].info.status == "FINISHED"]
    lines.sort(key=lambda x: (STATES.index(x[0]) if x[0] in STATES else len(STATES), x[2]))
    counts = {"finished": sum(r.info.status == "FINISHED" for r in best.values()),
              **{s: sum(x[0] == s for x in lines) for s in STATES}}
    counts.pop("rerun")
    waits = sum(x[0] == "rerun" and x[1].startswith(RERUN_QUEUED) for x in lines)
    training = sum(x[0] == "rerun" for x in lines) - waits
    again = ", ".join(f"{n} {what}" for n, what in ((training, "of them training again"),
                                                    (waits, "queued to train again")) if n)
    words = {**STATE_WORDS, "finished": f"finished ({again}: rerun=true)" if again else "finished"}
    said = ", ".join(f"{n} {words.get(s, s)}" for s, n in counts.items() if n)
    configs = len(best.keys() | waiting)
    only = f" where {said_where(where)}" if where else ""
    out = [f"{exp.name}: {configs} config{'s' if configs != 1 else ''}{only}: {said}"]
    if where:
        none = unmatched(params, list(where))  # a value no config has: a typo the others hide
        notes = [f"none has {', '.join(none)}"] * bool(none) + [f"not counted: {apart}"] * bool(apart)
        out[0] += f" ({'; '.join(notes)})" if notes else ""
    width = max((len(x[2]) for x in lines), default=0)
    out += [f"  {state:<8} {name:<{width}}  {what}" for state, what, name in lines]
    if counts["gone"] or counts["unrun"] or counts["failed"] or counts["killed"]:
        out.append("  The sweep's command, run again, skips the finished configs and trains the others (from their "
                   "checkpoints where checkpoint.every kept one)"
                   + ("; a run whose process is gone is marked KILLED first." if counts["gone"] else "."))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = command_line("vgsweep status", __doc__.split("\n\n")[0].replace("\n", " "))
    store_args(ap)
    where_arg(ap)
    args = ap.parse_args(argv)
    uri = store_uri(args.tracking_uri)
    names = chosen(uri, args.experiment, also=lambda e: any(k.startswith(TAG_QUEUED) for k in e.tags))
    print(f"store {tracking.hide_passwords(uri)}")
    for name in names:
        client, exp = open_experiment(uri, name)
        print("\n".join(summary(client, exp, where=args.where)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
