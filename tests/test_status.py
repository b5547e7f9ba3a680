"""`vgsweep status`: where each study stands, read from the store alone, while a sweep trains, after it
was killed, after Ctrl-C, and for a config that failed."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from tests.conftest import SMALL, run_cli, start_cli
from vgsweep import tracking


def _status(tmp_path, uri: str) -> str:
    proc = run_cli(["status", "--tracking-uri", uri], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _sweep(tmp_path, args: list[str]) -> subprocess.Popen:
    return start_cli(args, cwd=tmp_path, text=True,
                     env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE, start_new_session=True)


def _until(tmp_path, uri: str, proc: subprocess.Popen, done) -> str:
    """The status, read again until `done(status)` (the sweep must still be training meanwhile)."""
    deadline = time.monotonic() + 120
    while True:
        out = _status(tmp_path, uri)
        if done(out):
            return out
        assert proc.poll() is None and time.monotonic() < deadline, (out, proc.stderr.read()[-3000:])
        time.sleep(0.5)


def _epochs(out: str, state: str) -> list[int]:
    """The epochs the lines of `state` show ("epoch 3/100000")."""
    return [int(line.split("epoch ")[1].split("/")[0]) for line in out.splitlines()
            if line.split()[:1] == [state] and "epoch " in line]


@pytest.mark.e2e
def test_status_while_a_sweep_trains_after_it_is_killed_and_after_ctrl_c(tiny_root, tmp_path, ctrl_c_reaches_children):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    base = [a for a in SMALL if "lr" not in a and "epochs" not in a] + [f"data.root={tiny_root}", f"tracking.uri={uri}",
                                                                       f"hydra.sweep.dir={tmp_path / 'mr'}"]
    # one config finished, one failed (its loss became inf at once): two packs, the second's config recorded
    # for status while the first trains, the record removed once the last pack has trained
    done = run_cli(["-m", "optimizer.lr=0.01,1e20", "activation=relu", "train.epochs=2", "hydra.launcher.max_pack=1",
                    *base], cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "2 jobs to train in 2 packs of 1 run" in done.stdout + done.stderr, done.stderr[-2000:]
    client = MlflowClient(uri)
    assert not [k for k in client.get_experiment_by_name("agarap2019").tags  # the sweep's estimate went with it
                if k.startswith(("vgsweep.queued.", "vgsweep.eta."))]
    # two configs training, for as long as the test lets them; a third waits for the sweep's second pack
    long = ["-m", "seed=7,8,9", "optimizer.lr=0.01", "train.epochs=100000", "checkpoint.every=0",
            "hydra.launcher.max_pack=2", *base]
    sweep = _sweep(tmp_path, long)
    try:
        out = _until(tmp_path, uri, sweep, lambda o: len(_epochs(o, "running")) == 2 and min(_epochs(o, "running")) >= 2)
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)  # as a node dies: nothing ends its runs
    sweep.wait(30)
    lines = out.splitlines()
    assert lines[0] == f"store {uri}"
    assert lines[1] == "agarap2019: 5 configs: 1 finished, 2 running, 1 queued, 1 failed", out
    running = [x for x in lines if x.startswith("  running")]
    assert len(running) == 2 and all("/100000, about " in x and " left; heartbeat " in x for x in running), out
    assert all(f"({socket.gethostname()}, pid {sweep.pid})" in x for x in running), out
    [queued] = [x for x in lines if x.startswith("  queued")]
    assert re.search(rf"-s9 +a later pack of the sweep of pid {sweep.pid} on this host; started \d+ s ago; the sweep: "
                     r"pack 1 of 2, about \d+ \w+( \d\d \w+)? left \(its estimate of \d+ s ago\)$", queued), out
    [failed] = [x for x in lines if x.startswith("  failed")]
    assert "training loss became NaN or inf in epoch 1" in failed, out

    # killed: said so, and the store is only read (the runs stay RUNNING until a sweep marks them)
    out = _status(tmp_path, uri)
    assert out.splitlines()[1] == ("agarap2019: 5 configs: 1 finished, 2 left running by a process that is gone, 1 not "
                                   "trained: their pack job (or sweep) ended before it started them, 1 failed"), out
    gone = [x for x in out.splitlines() if x.startswith("  gone")]
    assert len(gone) == 2 and all(f"process {sweep.pid} on this host is gone" in x for x in gone), out
    [unrun] = [x for x in out.splitlines() if x.startswith("  unrun")]
    assert re.search(rf"-s9 +its sweep ended before it started it \(process {sweep.pid} on this host is gone\); "
                     r"started \d+ s ago$", unrun), out
    assert "a run whose process is gone is marked KILLED first." in out
    exp = client.get_experiment_by_name("agarap2019")
    assert sorted(r.info.status for r in client.search_runs([exp.experiment_id])) == [
        "FAILED", "FINISHED", "RUNNING", "RUNNING"]

    # the same command again resumes them (marked KILLED, then RUNNING again under the new process), in place of
    # the record of the sweep that is gone its own; Ctrl-C
    again = _sweep(tmp_path, long)
    try:
        _until(tmp_path, uri, again, lambda o: f"pid {again.pid})" in o and len(_epochs(o, "running")) == 2)
    finally:
        again.send_signal(signal.SIGINT)
        assert again.wait(60) == 130, again.stderr.read()[-3000:]
    records = [k for k in client.get_experiment_by_name("agarap2019").tags if k.startswith("vgsweep.queued.")]
    assert records == [f"vgsweep.queued.local-{socket.gethostname()}-{again.pid}-1"], records
    out = _status(tmp_path, uri)
    lines = out.splitlines()
    assert lines[1] == ("agarap2019: 5 configs: 1 finished, 1 not trained: their pack job (or sweep) ended before it "
                        "started them, 1 failed, 2 killed"), out
    killed = [x for x in lines if x.startswith("  killed")]
    assert len(killed) == 2 and all("after epoch " in x and "interrupted by SIGINT (Ctrl-C)" in x for x in killed), out
    assert f"its sweep ended before it started it (process {again.pid} on this host is gone)" in out, out
    assert lines[-1].startswith("  The sweep's command, run again, skips the finished configs") and "gone)" not in \
        out.replace(f"process {again.pid} on this host is gone)", ""), out


def test_a_config_speaks_through_its_finished_run_and_a_rerun_in_progress_shows(tmp_path, small_cfg):
    """An old KILLED run and a FINISHED one of the same config: finished, no line. A RUNNING rerun
    (rerun=true) of a finished config is shown, though the config counts as finished, and so is one
    waiting for a later pack of a sweep made with rerun=true."""
    from vgsweep.executors import queued_records
    from vgsweep.jobs import Job
    from vgsweep.results.status import summary

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = tracking.client_for(uri)
    exp_id = client.create_experiment("study")
    here = {tracking.TAG_HOST: socket.gethostname(), tracking.TAG_PID: str(os.getpid()),
            tracking.TAG_PROCESS: tracking.process_stamp(os.getpid()), tracking.TAG_HEARTBEAT: f"{time.time():.0f}"}

    def run(name: str, h: str, status: str, **tags) -> str:
        r = client.create_run(exp_id, run_name=name, tags={tracking.TAG_HASH: h, **tags})
        client.log_param(r.info.run_id, "train.epochs", "10")
        for key in ("train_loss", "epoch_seconds"):  # an epoch's metrics, as vgsweep logs them
            client.log_metric(r.info.run_id, key, 1.0, step=0)
        if status != "RUNNING":
            client.set_terminated(r.info.run_id, status)
        return r.info.run_id

    run("a-old", "a", "KILLED", **{tracking.TAG_FAILURE: "interrupted by SIGTERM"})
    run("a", "a", "FINISHED")
    run("b", "b", "FINISHED")
    run("b-again", "b", "RUNNING", **here)
    lines = summary(client, client.get_experiment(exp_id))
    assert lines[0] == "study: 2 configs: 2 finished (1 of them training again: rerun=true)", lines
    assert len(lines) == 2 and lines[1].split()[:3] == ["rerun", "b-again", "epoch"], lines
    assert f"pid {os.getpid()})" in lines[1] and "1/10" in lines[1]

    # a local sweep made with rerun=true records its later packs' finished configs as to be trained again:
    # said until a run of theirs starts after the record (b's has; c's has not), and not once the sweep is gone
    assert json.loads(queued_records([Job(small_cfg("rerun=true"))])[0])["rerun"] is True
    assert "rerun" not in json.loads(queued_records([Job(small_cfg())])[0])
    run("c", "c", "FINISHED")
    run("d", "d", "FINISHED")
    time.sleep(0.01)
    rec = {"submitted": time.time(), "host": socket.gethostname(), "pid": os.getpid(),
           "process": tracking.process_stamp(os.getpid()), "configs": {"c": "c", "d": "d"}, "rerun": True}
    time.sleep(0.01)
    run("d-again", "d", "RUNNING", **here)
    client.set_experiment_tag(exp_id, "vgsweep.queued.local-x", json.dumps(rec))
    lines = summary(client, client.get_experiment(exp_id))
    assert lines[0] == "study: 4 configs: 4 finished (2 of them training again, 1 queued to train again: rerun=true)"
    assert [x.split()[:2] for x in lines[1:]] == [["rerun", "b-again"], ["rerun", "c"], ["rerun", "d-again"]], lines
    assert re.match(rf"  rerun +c +queued to train again: a later pack of the sweep of pid {os.getpid()} on this host; "
                    r"started \d s ago$", lines[2]), lines
    client.set_experiment_tag(exp_id, "vgsweep.queued.local-x", json.dumps({**rec, "pid": 2**22 + 1, "process": "x"}))
    assert summary(client, client.get_experiment(exp_id))[0] == "study: 4 configs: 4 finished (2 of them training " \
                                                                "again: rerun=true)"


def test_runs_under_two_hashes_that_differ_only_where_nothing_changes_are_one_config(tmp_path, small_cfg, monkeypatch):
    """A store recorded before inert settings were hashed at their defaults holds `init=xavier init.std=0.01`
    under a hash of its own; `init.std=0.1` trained since under the new one is the same config: status
    counts one, as the table does. A normal init, where init.std acts, stays two configs; and two runs
    whose params are the same but whose hashes differ stay apart (what tells them apart is not there)."""
    from vgsweep import config
    from vgsweep.jobs import Job
    from vgsweep.results.status import summary
    from vgsweep.sweep import run_jobs

    with monkeypatch.context() as m:
        m.setattr(config, "effective", lambda flat: flat)  # how config_hash was
        old = run_jobs([Job(small_cfg("init.std=0.01")), Job(small_cfg("init=normal", "init.std=0.01"))])
    new = run_jobs([Job(small_cfg("init.std=0.1")), Job(small_cfg("init=normal", "init.std=0.1"))])
    assert [j.status for j in old + new] == ["FINISHED"] * 4  # the xavier one trained again: its earlier hash is another
    client = tracking.client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name(small_cfg().tracking.experiment)
    assert summary(client, exp) == [f"{exp.name}: 3 configs: 3 finished"]

    twin = client.get_run(new[0].run_id)
    r = client.create_run(exp.experiment_id, tags={**twin.data.tags, tracking.TAG_HASH: "another"})
    client.log_batch(r.info.run_id, params=[Param(k, v) for k, v in twin.data.params.items()])
    client.set_terminated(r.info.run_id, "FINISHED")
    assert summary(client, exp) == [f"{exp.name}: 4 configs: 4 finished"]


def test_a_config_whose_name_another_shares_is_told_apart_by_its_settings(tmp_path, small_cfg):
    """`optimizer.lr=0.01,1e30`: two configs of one run name; the failed one's line shows the rate that
    tells it apart (and nothing that does nothing in it), where it said only the name both share; the
    report's tables of failed runs and of verdicts name them so too."""
    from vgsweep.jobs import Job
    from vgsweep.results.status import summary
    from vgsweep.sweep import run_jobs

    out = run_jobs([Job(small_cfg("activation=relu", "optimizer.lr=0.01")),
                    Job(small_cfg("activation=relu", "optimizer.lr=1e30", "init.std=0.3")), Job(small_cfg("seed=3"))])
    assert [o.status for o in out] == ["FINISHED", "FAILED", "FINISHED"]
    client = tracking.client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name(small_cfg().tracking.experiment)
    name = client.get_run(out[1].run_id).info.run_name
    lines = summary(client, exp)
    assert lines[0].endswith("3 configs: 2 finished, 1 failed") and len(lines) == 3, lines
    assert re.match(rf"  failed +{name} optimizer.lr=1e\+30  training loss became NaN", lines[1]), lines
    # the report names them so too: its failed runs and its verdicts
    from vgsweep.results.report import failed_rows, verdict_rows
    from vgsweep.results.table import fetch_runs

    runs = fetch_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", exp.name)
    assert list(failed_rows(runs)["run"]) == [f"{name} optimizer.lr=1e+30"]
    other = client.get_run(out[2].run_id).info.run_name
    assert sorted(verdict_rows(runs)["run"]) == sorted([f"{name} optimizer.lr=0.01", other])


def test_status_where_counts_only_the_configs_that_meet_it(tmp_path, small_cfg):
    """`vgsweep status --where`: the configs whose runs meet every condition, counted and listed as
    without it; a value no config holds is named (a typo the others hide); none meeting it says what
    the configs hold; a config queued with no run yet is counted apart (its settings are not in the
    store before it starts)."""
    from vgsweep.jobs import Job
    from vgsweep.results.reader import where_item
    from vgsweep.results.status import summary
    from vgsweep.sweep import run_jobs

    out = run_jobs([Job(small_cfg("activation=relu", "optimizer.lr=0.01")), Job(small_cfg("activation=relu",
                    "optimizer.lr=1e30")), Job(small_cfg("activation=tanh", "seed=3"))])
    assert [o.status for o in out] == ["FINISHED", "FAILED", "FINISHED"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client_for(uri)
    exp = client.get_experiment_by_name(small_cfg().tracking.experiment)
    where = lambda *items: [where_item(i) for i in items]  # noqa: E731
    lines = summary(client, exp, where=where("activation=relu"))
    assert lines[0] == f"{exp.name}: 2 configs where activation=relu: 1 finished, 1 failed", lines
    assert lines[1].split()[0] == "failed" and len(lines) == 3, lines
    assert summary(client, exp, where=where("activation=tanh,swish", "seed=3")) == [
        f"{exp.name}: 1 config where activation=tanh,swish and seed=3: 1 finished (none has activation.name=swish)"]
    assert summary(client, exp, where=where("seed=7")) == [f"{exp.name}: no config where seed=7 (its configs have "
                                                           "seed 3, 42)"]
    rec = {"submitted": time.time(), "host": socket.gethostname(), "pid": os.getpid(),
           "process": tracking.process_stamp(os.getpid()), "configs": {"h-not-run": "later-one"}}
    client.set_experiment_tag(exp.experiment_id, "vgsweep.queued.local-x", json.dumps(rec))
    exp = client.get_experiment(exp.experiment_id)  # with the record
    assert summary(client, exp)[0].endswith(": 4 configs: 2 finished, 1 queued, 1 failed")
    assert summary(client, exp, where=where("seed=3"))[0] == (
        f"{exp.name}: 1 config where seed=3: 1 finished (not counted: 1 config queued with no run yet, whose "
        "settings the store does not hold until it starts)")
    assert summary(client, exp, where=where("seed=7")) == [
        f"{exp.name}: no config where seed=7 (its configs have seed 3, 42; 1 config queued with no run yet, whose "
        "settings the store does not hold until it starts)"]
    proc = run_cli(["status", "--tracking-uri", uri, "--where", "optimizer.lr=1e30"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{exp.name}: 1 config where optimizer.lr=1e30: 1 failed (not counted" in proc.stdout, proc.stdout


def test_a_local_sweeps_estimate_is_written_once_a_minute_and_each_pack_and_read_less_its_age(monkeypatch):
    """Progress hands the sweep's estimate on after an epoch, at most once a minute, as soon as it is first
    known, and again at each new pack; status takes from it the time since it was made, and reads an
    unusable one as none."""
    from vgsweep import progress
    from vgsweep.executors import TAG_ETA, read_eta
    from vgsweep.results.status import _local_line

    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    heard = []
    p = progress.Progress([(2, 3), (1, 3)], "log")
    p.on_eta = lambda left, pack, packs: heard.append((left if left != left else round(left), pack, packs))
    for epoch, took in enumerate((100, 40, 40)):  # the first epoch of the 2-run pack pays its start-up (60 s)
        clock[0] += took
        p.epoch_done(epoch, 2)
    clock[0] += 10  # its close
    p.pack_done()
    clock[0] += 80
    p.epoch_done(0, 1)
    nan = heard[0][0]
    # not known after a first epoch; then 40 s for the last epoch + 0 close + 3 run-epochs at 20 s + 60 s start-up;
    # the minute not up after the third; the new pack: its 2 epochs left at 20 s + its close (10 s)
    assert nan != nan and heard[1:] == [(160, 1, 2), (50, 2, 2)], heard

    rec = {"pid": os.getpid(), "process": tracking.process_stamp(os.getpid()), "host": socket.gethostname(),
           "submitted": time.time() - 300}
    now = time.time()
    tags = {TAG_ETA + "x": f'{{"left_s": 4000, "at": {now - 600}, "pack": 2, "packs": 5}}', TAG_ETA + "y": "{]",
            TAG_ETA + "z": f'{{"left_s": null, "at": {now}, "pack": 1, "packs": 2}}'}
    assert _local_line(rec, {}, now, read_eta(tags, "x"))[1].endswith(
        "started 5 min 00 s ago; the sweep: pack 2 of 5, about 56 min 40 s left (its estimate of 10 min 00 s ago)")
    assert read_eta(tags, "y") is None and read_eta(tags, "w") is None
    assert _local_line(rec, {}, now, read_eta(tags, "z"))[1].endswith(
        "the sweep: pack 1 of 2, its time left not known yet (its estimate of 0 s ago)")


def test_a_run_whose_process_lives_but_whose_epochs_stopped_is_said_to_be_stuck(tmp_path):
    """Its heartbeat is fresh (the beating thread lives) but no epoch came for ten epochs' time and at least
    ten minutes: a hung device or file system. A run within that is not. A resumed run counts from its
    resume (its last epoch may be the earlier process's, before this one's first); one resumed before
    vgsweep recorded when is not judged."""
    from vgsweep.results.status import summary

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = tracking.client_for(uri)
    exp_id = client.create_experiment("study")
    here = {tracking.TAG_HOST: socket.gethostname(), tracking.TAG_PID: str(os.getpid()),
            tracking.TAG_PROCESS: tracking.process_stamp(os.getpid()), tracking.TAG_HEARTBEAT: f"{time.time():.0f}"}
    now = time.time()
    resumed = {"vgsweep.resumed_after": "interrupted by SIGINT (Ctrl-C)"}  # its last epoch may be the last process's
    cases = (("hung", 3600, {}), ("slow", 500, {}), ("fresh", 10, {}),
             ("resumed", 3600, {**resumed, "vgsweep.resumed_at": f"{now - 60}"}),
             ("resumed-hung", 3600, {**resumed, "vgsweep.resumed_at": f"{now - 2000}"}), ("resumed-old", 3600, resumed))
    for name, ago, more in cases:
        r = client.create_run(exp_id, run_name=name, tags={tracking.TAG_HASH: name, **here, **more})
        client.log_param(r.info.run_id, "train.epochs", "100")
        for step in range(3):
            client.log_metric(r.info.run_id, "train_loss", 1.0, step=step, timestamp=int((now - ago) * 1000))
        client.log_metric(r.info.run_id, "epoch_seconds", 30.0, step=2, timestamp=int((now - ago) * 1000))
    lines = summary(client, client.get_experiment(exp_id), now=now)
    hung, slow, fresh, resumed, resumed_hung, resumed_old = (next(x for x in lines if x.split()[1:2] == [n])
                                                              for n, _, _ in cases)
    assert "epoch 3/100; no epoch logged for 1 h" in hung and "(an epoch took 30 s): stuck? its process lives; " \
        "heartbeat" in hung, hung
    # 97 epochs of 30 s left, less the one under way: 10 s of it passed; a whole epoch's time or more
    assert "epoch 3/100, about 48 min 20 s left; heartbeat" in fresh, fresh
    assert "stuck" not in slow and "epoch 3/100, about 48 min 00 s left; heartbeat" in slow, slow
    assert "stuck" not in resumed and "stuck" not in resumed_old, (resumed, resumed_old)
    assert "epoch 3/100; no epoch logged for 33 min 20 s since it was resumed (an epoch took 30 s): stuck?" \
        in resumed_hung, resumed_hung


def _running_run(tmp_path):
    """(client, run): a run of 100 epochs that this live process trains, as a sweep's would be, no epoch yet."""
    client = tracking.client_for(f"sqlite:///{tmp_path / 'm.db'}")
    exp_id = client.create_experiment("study")
    tags = {tracking.TAG_HASH: "h", tracking.TAG_HOST: socket.gethostname(), tracking.TAG_PID: str(os.getpid()),
            tracking.TAG_PROCESS: tracking.process_stamp(os.getpid()), tracking.TAG_HEARTBEAT: f"{time.time():.0f}"}
    run = client.create_run(exp_id, tags=tags)
    client.log_param(run.info.run_id, "train.epochs", "100")
    return client, run


def test_a_running_runs_epochs_and_time_left_are_read_together(tmp_path):
    """The run as a search found it, then seven epochs flushed before its line is made: the line shows
    them with their time left (it showed `epoch 7/100000` and no time left when the epochs were read
    apart from their seconds)."""
    from vgsweep.results.status import run_line

    client, run = _running_run(tmp_path)
    found = client.get_run(run.info.run_id)  # no metrics yet
    now = time.time()
    for step in range(7):
        for key, value in (("train_loss", 1.0), ("epoch_seconds", 2.0)):
            client.log_metric(run.info.run_id, key, value, step=step, timestamp=int(now * 1000))
    assert found.data.metrics == {}
    state, line = run_line(client, found, now)
    assert state == "running" and line.startswith("epoch 7/100, about 3 min 06 s left; heartbeat"), line


def test_the_time_left_goes_by_the_pace_of_the_last_epochs_not_one_slow_epoch(tmp_path):
    """29 epochs of 2 s, then one of 20 s (the cores taken by another process): 70 epochs left at the
    mean of the last 20 epochs' 2.9 s, 3 min 23 s (at the last epoch's 20 s it said 23 min 20 s)."""
    from vgsweep.results.status import run_line

    client, run = _running_run(tmp_path)
    now = time.time()
    for step in range(30):
        client.log_metric(run.info.run_id, "epoch_seconds", 20.0 if step == 29 else 2.0, step=step,
                          timestamp=int(now * 1000))
    state, line = run_line(client, client.get_run(run.info.run_id), now)
    assert state == "running" and line.startswith("epoch 30/100, about 3 min 23 s left; heartbeat"), line


@pytest.mark.e2e
def test_status_of_a_store_that_does_not_exist_or_is_not_one(tmp_path):
    missing = run_cli(["status", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"], cwd=tmp_path)
    assert missing.returncode == 1 and "no store at" in missing.stderr and not missing.stdout
    assert not (tmp_path / "none.db").exists()
    bad = run_cli(["status", "--tracking-uri", "ftp://x"], cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("vgsweep: invalid argument: --tracking-uri='ftp://x'")


def test_the_results_commands_start_without_torch():
    """vgsweep status, table, figures and report read the store only: they do not import torch (a second
    of start-up each; `vgsweep status` polled on a login node)."""
    code = ("import sys; import vgsweep.app, vgsweep.results.status, vgsweep.results.table, vgsweep.results.figures, "
            "vgsweep.results.report; print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout[-2000:], out.stderr[-2000:])
