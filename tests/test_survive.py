"""Sweeps that survive: a diverging run, a faulty run in a pack, a rerun, Ctrl-C, SIGTERM and kill -9, and resume."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import (SMALL, assert_finishes_each_epoch_once, assert_interrupted, compose_cfg,
                            make_idx_dataset, run_cli, start_cli, torch_threads)
from vgsweep import activations
from vgsweep.jobs import Job
from vgsweep.runs import Heartbeat, RunLogger
from vgsweep.sweep import run_jobs


def _all_runs(uri, experiment="agarap2019"):
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(experiment)
    return c, c.search_runs([exp.experiment_id], max_results=1000)


@pytest.mark.e2e
def test_a_diverging_run_fails_alone_and_the_sweep_says_so(tiny_root, tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    proc = run_cli(["-m", "activation=relu", "optimizer.lr=0.01,1e20", "seed=0,1",
                    *[a for a in SMALL if "lr" not in a], f"data.root={tiny_root}", f"tracking.uri={uri}",
                    f"hydra.sweep.dir={tmp_path / 'mr'}"], cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "2 finished, 0 skipped (already in the store), 2 failed" in out
    epochs = next(a for a in SMALL if a.startswith("train.epochs=")).split("=")[1]
    assert f"NaN or inf in epoch 1 of {epochs} (metrics step 0)" in out
    # the closing line names each failed run's config, its swept setting too: both seeds' names are the 0.01 runs'
    assert re.match(r"vgsweep: 2 jobs failed: run \w+ \(mnist-d2-relu-baseline-s0 optimizer.lr=1e\+20\): training loss"
                    r".*; run \w+ \(mnist-d2-relu-baseline-s1 optimizer.lr=1e\+20\): ", proc.stderr.splitlines()[-1]), \
        proc.stderr[-2000:]
    client, runs = _all_runs(uri)
    by_lr = {}
    for r in runs:
        by_lr.setdefault(r.data.params["optimizer.lr"], []).append(r)
    assert {r.info.status for r in by_lr["0.01"]} == {"FINISHED"}
    for r in by_lr["1e+20"]:
        assert r.info.status == "FAILED"
        assert r.data.tags["vgsweep.failed_epoch"] == "0" and "NaN or inf" in r.data.tags["vgsweep.failure"]
        assert r.data.tags["vgsweep.verdict"] == "exploding"
    # the table keeps the failed configs visible instead of dropping them
    from vgsweep.results.table import build, fetch_runs

    df = build(uri, "agarap2019", tmp_path / "results").set_index("optimizer.lr")
    assert df.loc["1e+20", "n"] == 0 and df.loc["1e+20", "failed"] == 2
    assert df.loc["0.01", "n"] == 2 and df.loc["0.01", "failed"] == 0
    assert "— (2 failed)" in (tmp_path / "results" / "table.md").read_text()
    from vgsweep.results.report import failed_rows

    f = failed_rows(fetch_runs(uri, "agarap2019"))
    assert len(f) == 2 and set(f["status"]) == {"FAILED"} and f["reason"].str.contains("NaN or inf").all()
    assert "epoch" not in f  # the reason says which (from 1); a column of MLflow steps (from 0) beside it misled
    # a single run that diverges ends as a sweep does: vgsweep's line last, not Hydra's HYDRA_FULL_ERROR hint
    one = run_cli(["activation=relu", "optimizer.lr=1e20", "seed=5", *[a for a in SMALL if "lr" not in a],
                   f"data.root={tiny_root}", f"tracking.uri={uri}", f"hydra.run.dir={tmp_path / 'one'}"], cwd=tmp_path)
    [failed] = [r.info.run_id for r in _all_runs(uri)[1] if r.data.params["seed"] == "5"]
    assert one.returncode == 1 and "HYDRA_FULL_ERROR" not in one.stderr, one.stderr[-3000:]
    assert "Error executing job" not in one.stderr  # Hydra's line for a single run: vgsweep's says it
    assert one.stderr.rstrip().splitlines()[-1].startswith(
        f"vgsweep: 1 job failed: run {failed} (mnist-d2-relu-baseline-s5): training loss became NaN or inf in epoch "
        f"1 of {epochs}"), one.stderr
    # and so under Hydra's basic launcher, one job at a time
    basic = run_cli(["-m", "hydra/launcher=basic", "activation=relu", "optimizer.lr=1e20", "seed=6",
                     *[a for a in SMALL if "lr" not in a], f"data.root={tiny_root}", f"tracking.uri={uri}",
                     f"hydra.sweep.dir={tmp_path / 'basic'}"], cwd=tmp_path)
    [failed] = [r.info.run_id for r in _all_runs(uri)[1] if r.data.params["seed"] == "6"]
    assert basic.returncode == 1 and "Error executing job" not in basic.stderr, basic.stderr[-3000:]
    assert basic.stderr.rstrip().splitlines()[-1].startswith(f"vgsweep: 1 job failed: run {failed} "
                                                             "(mnist-d2-relu-baseline-s6): "), basic.stderr


def test_an_exception_in_one_run_does_not_take_down_its_pack(small_cfg, monkeypatch):
    def broken(h, a):
        raise RuntimeError("this activation is broken")

    monkeypatch.setitem(activations.ACTIVATIONS, "identity", broken)
    jobs = [Job(small_cfg(f"activation={a}", "seed=3")) for a in ("relu", "tanh", "identity", "swish")]
    outcomes = run_jobs(jobs)
    assert [o.status for o in outcomes] == ["FINISHED", "FINISHED", "FAILED", "FINISHED"]
    assert "this activation is broken" in outcomes[2].reason
    uri = jobs[0].cfg.tracking.uri
    client, runs = _all_runs(uri)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert sorted(r.data.params["activation.name"] for r in finished) == ["relu", "swish", "tanh"]
    assert all(r.data.metrics["test_acc"] > 0 for r in finished)


def test_rerun_skips_finished_configs_unless_forced(small_cfg):
    cfgs = [small_cfg(f"seed={s}") for s in (0, 1)]
    first = run_jobs([Job(c) for c in cfgs])
    second = run_jobs([Job(c) for c in cfgs] + [Job(small_cfg("seed=2"))])
    assert [o.status for o in second] == ["SKIPPED", "SKIPPED", "FINISHED"]
    assert [o.run_id for o in second[:2]] == [o.run_id for o in first]
    assert second[0].final["test_acc"] == pytest.approx(first[0].final["test_acc"])
    forced = run_jobs([Job(small_cfg("seed=0", "rerun=true"))])
    assert forced[0].status == "FINISHED" and forced[0].run_id != first[0].run_id
    _, runs = _all_runs(cfgs[0].tracking.uri)
    assert len(runs) == 4


def test_runs_deleted_in_mlflow_are_gone_for_the_sweep_and_status(small_cfg, monkeypatch):
    """A run deleted in MLflow's UI: status counts without it, and the sweep trains its config again; an
    interrupted run deleted beside its checkpoint is not resumed (its config starts afresh)."""
    from vgsweep import runs as open_runs, sweep
    from vgsweep.results.status import summary

    first = run_jobs([Job(small_cfg(f"seed={s}")) for s in (0, 1)])
    client, _ = _all_runs(small_cfg().tracking.uri)
    client.delete_run(first[0].run_id)
    exp = client.get_experiment_by_name(small_cfg().tracking.experiment)
    assert summary(client, exp)[0].endswith("1 config: 1 finished")
    again = run_jobs([Job(small_cfg(f"seed={s}")) for s in (0, 1)])
    assert [o.status for o in again] == ["FINISHED", "SKIPPED"] and again[0].run_id != first[0].run_id

    job = lambda: Job(small_cfg("seed=5", "train.epochs=3", "checkpoint.every=1"))  # noqa: E731
    save = sweep.save_checkpoint

    def interrupted(path, state):  # its checkpoint after epoch 1 written, then the sweep interrupted
        save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "save_checkpoint", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_jobs([job()])
    finally:
        open_runs.end_open_runs("KILLED", "the test's interruption")
    monkeypatch.setattr(sweep, "save_checkpoint", save)
    j = job()
    killed = sweep.load_checkpoint(sweep.checkpoint_path(j.cfg, j.key()))["run_id"]
    assert "resume run " + killed in sweep.Sweep([job()], dry_run=True).describe()
    client.delete_run(killed)
    assert "#0 mnist-d2-logistic-baseline-s5: train, pack 1" in sweep.Sweep([job()], dry_run=True).describe()
    [done] = run_jobs([job()])
    assert done.status == "FINISHED" and done.run_id != killed
    assert [m.step for m in client.get_metric_history(done.run_id, "test_acc")] == [0, 1, 2]


@pytest.mark.e2e
def test_ctrl_c_then_sigterm_end_the_runs_killed_and_the_same_command_finishes_them(tmp_path, ctrl_c_reaches_children):
    """Ctrl-C (SIGINT) after the first checkpoints, then SIGTERM to the resumed sweep after its next
    ones: each time one line, exit 130 / 143, no traceback, the runs KILLED in the store with the
    reason (not left RUNNING by a process that ended); the third time the same command finishes them
    in the same MLflow runs, every epoch logged once across the three processes."""
    data = make_idx_dataset(tmp_path / "data", n_train=3000, n_test=500)
    uri, epochs, ckdir = f"sqlite:///{tmp_path / 'm.db'}", 12, tmp_path / "checkpoints"
    args = ["-m", "activation=relu,tanh", "seed=0", *SMALL, "model.hidden=[128,128]", f"train.epochs={epochs}",
            f"data.root={data}", "checkpoint.every=2", f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / 'mr'}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ids = None
    for sig, name, code in ((signal.SIGINT, "SIGINT (Ctrl-C)", 130), (signal.SIGTERM, "SIGTERM", 143)):
        t0 = time.time()
        proc = start_cli(args, cwd=tmp_path, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 240
        while len([p for p in ckdir.glob("*.pt") if p.stat().st_mtime > t0]) < 2:  # this process's checkpoints
            assert proc.poll() is None, "the sweep ended before it was interrupted: make it longer"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        killed = assert_interrupted(proc.returncode, err, name, code, uri)
        assert ids is None or killed == ids  # the second process resumed the same runs
        ids = killed
    assert_finishes_each_epoch_once(args, tmp_path, uri, ids, epochs)
    assert not list(ckdir.glob("*.pt"))


def test_ctrl_c_while_a_sweep_composes_its_jobs_is_one_line_and_leaves_nothing(tiny_root, tmp_path,
                                                                              ctrl_c_reaches_children):
    """Ctrl-C before any job began (Hydra's sweeper has written its multirun.yaml; the jobs are being composed,
    by forked processes where cores allow, while torch is imported beside them): one line and exit 130, no
    traceback (`partially initialized module 'torch'` and exit 1 where it came during that import); no process
    of it left (the composers ignore Ctrl-C: Python's exit waited for every chunk queued, 40 s of a 75-job study
    on two cores); and, as for a refused sweep, no sweep folder left and no store made."""
    sweep_dir, store = tmp_path / "mr", tmp_path / "m.db"
    args = ["-m", "seed=range(60)", "activation=relu,tanh", *SMALL, f"data.root={tiny_root}",
            f"tracking.uri=sqlite:///{store}", f"hydra.sweep.dir={sweep_dir}"]
    proc = start_cli(args, cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     start_new_session=True)
    deadline = time.monotonic() + 120
    while not (sweep_dir / "multirun.yaml").exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert err.splitlines()[-1] == "vgsweep: interrupted by SIGINT (Ctrl-C): no run was in progress", err[-3000:]
    assert "Launching" not in out + err  # it was stopped before its jobs were launched
    group = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(proc.pid)], capture_output=True, text=True)
    assert not [p for p in group.stdout.splitlines() if p.split()[1][0] != "Z"], group.stdout
    assert not sweep_dir.exists() and not store.exists(), sorted(p.name for p in tmp_path.iterdir())


def _in_a_terminal(argv: list[str], cwd, ready, timeout: float = 240) -> int:
    """Run argv in a real pseudo-terminal (its controlling terminal, as a login shell's command, SIGHUP
    at its default whatever this harness has), read what it prints until `ready(printed)`, then close
    the terminal as an ssh connection that drops does (the kernel sends SIGHUP). Its exit status."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once (this process has threads)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        os.chdir(cwd)
        os.execve(argv[0], argv, {**os.environ, "PYTHONUNBUFFERED": "1"})
    seen, deadline, open_ = b"", time.monotonic() + timeout, True
    try:
        while not ready(seen):
            assert time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG)[0] == 0, seen[-3000:]
            if not open_:  # nothing holds the terminal open (nohup sends its output to nohup.out)
                time.sleep(0.2)
            elif select.select([fd], [], [], 0.2)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO
                    chunk = b""
                open_, seen = bool(chunk), seen + chunk
    finally:
        os.close(fd)
    while (st := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    return os.waitstatus_to_exitcode(st[1])


@pytest.mark.e2e
def test_a_sweep_whose_terminal_closes_ends_its_runs_killed_and_one_under_nohup_goes_on(tmp_path):
    """An ssh connection that drops closes the sweep's terminal: SIGHUP. The runs end KILLED with the
    reason at once (they were left RUNNING: a sweep on another host sharing a server store skipped them as
    running until their heartbeat was stale), exit 129. Started under nohup, the sweep ignores it and
    finishes."""
    data = make_idx_dataset(tmp_path / "data", n_train=3000, n_test=500)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    args = ["-m", "activation=relu,tanh", *SMALL, "model.hidden=[128,128]", f"data.root={data}",
            f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / 'mr'}"]  # a live progress line
    code = _in_a_terminal([sys.executable, "-m", "vgsweep", *args, "train.epochs=100000"], tmp_path,
                          ready=lambda printed: b"epoch 2/100000" in printed)
    assert code == 129  # not killed by the signal (-1)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("agarap2019")
    runs = client.search_runs([exp.experiment_id])
    assert [(r.info.status, r.data.tags["vgsweep.failure"]) for r in runs] == \
        [("KILLED", "interrupted by SIGHUP (its terminal closed)")] * 2

    out = tmp_path / "nohup.out"  # where nohup sends what would go to the terminal
    code = _in_a_terminal([shutil.which("nohup"), sys.executable, "-m", "vgsweep", *args, "train.epochs=6", "seed=1"],
                          tmp_path, ready=lambda _: out.is_file() and "epoch 1/6" in out.read_text())
    assert code == 0, out.read_text()[-3000:]
    runs = client.search_runs([exp.experiment_id], "params.seed = '1'")
    assert [r.info.status for r in runs] == ["FINISHED"] * 2


@pytest.mark.e2e
def test_kill_9_mid_sweep_then_resume_from_checkpoints(tmp_path):
    """Kill the sweep after its first checkpoint; the same command again finishes every config once,
    continuing the killed runs from their checkpoints into the same MLflow runs, step by step once."""
    data = make_idx_dataset(tmp_path / "data", n_train=3000, n_test=500)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    epochs = 12
    common = ["seed=0", *SMALL, "model.hidden=[128,128]", f"train.epochs={epochs}", f"data.root={data}"]
    args = ["-m", "activation=relu,tanh", *common, "checkpoint.every=2", f"tracking.uri={uri}",
            f"hydra.sweep.dir={tmp_path / 'mr'}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = start_cli(args, cwd=tmp_path, env=env,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ckdir = tmp_path / "checkpoints"
    deadline = time.monotonic() + 240
    while not (ckdir.is_dir() and len(list(ckdir.glob("*.pt"))) == 2):
        assert proc.poll() is None, "the sweep ended before it could be killed: make it longer"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    client, runs = _all_runs(uri)
    assert len(runs) == 2 and {r.info.status for r in runs} == {"RUNNING"}  # left behind by the kill
    killed_ids = {r.info.run_id for r in runs}

    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    out = again.stdout + again.stderr
    assert "marked KILLED" in out and "from its checkpoint at epoch" in out
    client, runs = _all_runs(uri)
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.info.run_id for r in runs} == killed_ids  # continued into the same runs
    for r in runs:
        assert "vgsweep.failure" not in r.data.tags, r.data.tags
        assert r.data.tags["vgsweep.resumed_after"].startswith("left RUNNING by a process that is gone (process ")
        for m in ("train_loss", "test_acc"):
            steps = [h.step for h in client.get_metric_history(r.info.run_id, m)]
            assert sorted(steps) == list(range(epochs)), (m, steps)
    assert not list(ckdir.glob("*.pt"))  # checkpoints of finished runs are removed

    # On the CPU the resumed runs are bit-identical to uninterrupted ones, run alone here with the one
    # compute thread the CLI had (OMP_NUM_THREADS=1, conftest): MKL rounds a product differently
    # with another thread count, which is the machine, not the checkpoint.
    fresh_uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    with torch_threads(int(os.environ["OMP_NUM_THREADS"])):
        ref = run_jobs([Job(compose_cfg(["activation=relu", *common, f"tracking.uri={fresh_uri}",
                                         "checkpoint.every=0"]))])
    relu = next(r for r in runs if r.data.params["activation.name"] == "relu")
    hist = sorted(client.get_metric_history(relu.info.run_id, "test_loss"), key=lambda h: h.step)
    fresh_client = MlflowClient(fresh_uri)
    ref_hist = sorted(fresh_client.get_metric_history(ref[0].run_id, "test_loss"), key=lambda h: h.step)
    assert [h.value for h in hist] == [h.value for h in ref_hist]


@pytest.mark.e2e
def test_rerunning_the_same_command_trains_nothing(tiny_root, tmp_path):
    """A sweep run again skips every config the store holds; within one sweep, a job that repeats a
    config (here the slope of a leaky ReLU, which relu and tanh do not have) is trained once and
    counted as such."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    args = ["-m", "activation=relu,tanh", "seed=0,1", "activation.negative_slope=0.2,0.3", *SMALL,
            f"data.root={tiny_root}", f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / 'mr'}"]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0
    assert "sweep done: 4 finished, 4 skipped (0 already in the store, 4 repeating a config of this sweep), 0 failed" in first.stdout + first.stderr
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0
    assert "sweep done: 0 finished, 8 skipped (already in the store), 0 failed" in again.stdout + again.stderr
    client, runs = _all_runs(uri)
    assert len(runs) == 4
    assert "made by another vgsweep commit" not in again.stdout + again.stderr
    # runs made by another commit of vgsweep (one of them recorded no commit it can tell): skipped, and said so
    from vgsweep.tracking import git_commit, short_commit

    now = short_commit(git_commit())
    older, unknown = (r for r in runs if r.data.params["seed"] == "0")
    client.set_tag(older.info.run_id, "vgsweep.git_commit", "0123456789abcdef0123456789abcdef01234567")
    client.set_tag(unknown.info.run_id, "vgsweep.git_commit", "unknown")
    # this commit with or without changes not committed: nothing tells the code apart, so nothing is said
    same = next(r for r in runs if r.data.params["seed"] == "1")
    base = git_commit().removesuffix("-dirty")
    client.set_tag(same.info.run_id, "vgsweep.git_commit", base if git_commit().endswith("-dirty") else base + "-dirty")
    for dry in (False, True):
        third = run_cli([*args, *["hydra.launcher.dry_run=true"] * dry], cwd=tmp_path)
        lines = (third.stdout + third.stderr).splitlines()
        assert third.returncode == 0 and len(_all_runs(uri)[1]) == 4, third.stderr[-3000:]
        said = [x for x in lines if f"made by vgsweep commit 0123456789ab, not this one ({now})" in x]
        assert len(said) == 2 + 2 * dry and all(older.info.run_id in x for x in said), lines  # its two jobs (and plan)
        assert not any(r.info.run_id in x and "commit" in x for x in lines for r in (unknown, same)), lines
        done = "sweep done: 0 finished, 8 skipped (already in the store), 0 failed"
        assert any(x.endswith(done) for x in lines) != dry
        assert any(x.endswith(f"1 of the runs skipped was made by another vgsweep commit (0123456789ab) than this one "
                              f"({now}): rerun=true trains it again") for x in lines) != dry, lines


def test_training_runs_reads_every_page(small_cfg, monkeypatch):
    from vgsweep import tracking

    cfgs = [small_cfg(f"seed={s}", "train.epochs=1") for s in range(5)]
    run_jobs([Job(c) for c in cfgs])
    client = tracking.client_for(cfgs[0].tracking.uri)
    exp = client.get_experiment_by_name("agarap2019").experiment_id
    monkeypatch.setattr(tracking, "SEARCH_PAGE", 2)  # 5 runs: 3 pages
    runs = list(tracking.training_runs(client, exp))
    assert len(runs) == 5 and len({r.info.run_id for r in runs}) == 5
    assert [r.info.start_time for r in runs] == sorted((r.info.start_time for r in runs), reverse=True)


def test_runs_by_hash_reads_only_the_hashes_asked_for_the_same_runs_either_way(small_cfg, monkeypatch):
    """Planning asks the store for its jobs' hashes only: one page when the experiment is small, one
    search per hash when it is not; either way the runs (newest first) of those hashes, as reading
    the whole experiment gives them."""
    from vgsweep import tracking

    cfgs = [small_cfg(f"seed={s}", "train.epochs=1") for s in range(3)]
    run_jobs([Job(c) for c in cfgs])
    run_jobs([Job(small_cfg("seed=0", "train.epochs=1", "rerun=true"))])  # a second run of one hash
    client = tracking.client_for(cfgs[0].tracking.uri)
    whole = tracking.runs_by_hash(client, "agarap2019")
    assert sorted(len(v) for v in whole.values()) == [1, 1, 2]
    ids = {h: [r.info.run_id for r in rs] for h, rs in whole.items()}
    asked = {Job(cfgs[0]).key(), Job(cfgs[2]).key()}
    for probe in (50, 1):  # 4 runs: read in one page; then, with a first page of 2, hash by hash
        monkeypatch.setattr(tracking, "PROBE_RUNS", probe)
        monkeypatch.setattr(tracking, "PROBE_PER_HASH", 1)
        got = tracking.runs_by_hash(client, "agarap2019", asked)
        assert {h: [r.info.run_id for r in rs] for h, rs in got.items()} == {h: ids[h] for h in asked}, probe
    searches = []
    monkeypatch.setattr(client, "search_runs", lambda *a, **k: searches.append(a[1]) or type(client).search_runs(client, *a, **k))
    tracking.runs_by_hash(client, "agarap2019", asked)
    assert len(searches) == 3 and all(Job(cfgs[1]).key() not in f for f in searches)  # the probe, then 2 hashes
    assert tracking.runs_by_hash(client, "no-such-experiment", asked) == {}


def _fake_running_run(cfg, host: str, pid: str, heartbeat: float | None):
    """A RUNNING run of cfg's config, as a process on `host` would have left it."""
    from vgsweep import tracking
    from vgsweep.config import config_hash, flatten, to_container

    uri = cfg.tracking.uri
    client = tracking.client_for(uri)
    exp = tracking.experiment_id(client, uri, cfg.tracking.experiment, tracking.artifact_root(uri, cfg))
    tags = {tracking.TAG_HASH: config_hash(cfg), tracking.TAG_HOST: host, tracking.TAG_PID: pid}
    if heartbeat is not None:
        tags[tracking.TAG_HEARTBEAT] = f"{heartbeat:.0f}"
    return RunLogger.create(client, exp, "left-running", flatten(to_container(cfg)), tags).run_id


def test_a_run_that_stopped_on_other_data_is_not_resumed_on_this_data(small_cfg, tiny_root, tmp_path, monkeypatch,
                                                                       caplog):
    """A run that failed after its checkpoint, then its config launched again on other files (data.root is not
    in the config hash): going on from the checkpoint would make one run of two data sets. It trains anew,
    and says why; the failed run stays as it was. The same files in another folder resume it, as before."""
    import logging

    from tests.conftest import make_idx_dataset
    from vgsweep import sweep

    on_epoch = sweep._PackRecorder.on_epoch

    def fail_in_the_second(self, r):
        if r.epoch == 1:
            raise RuntimeError("stopped in epoch 2")
        on_epoch(self, r)

    def cfg(root):
        return small_cfg("checkpoint.every=1", f"checkpoint.dir={tmp_path / 'checkpoints'}", f"data.root={root}")

    with monkeypatch.context() as m:
        m.setattr(sweep._PackRecorder, "on_epoch", fail_in_the_second)
        [failed] = run_jobs([Job(cfg(tiny_root))])
    assert failed.status == "FAILED"
    same = Job(cfg(shutil.copytree(tiny_root, tmp_path / "copy")))
    assert sweep.plan([same]) == [None] and same.resume_run == failed.run_id  # the same files elsewhere
    other = Job(cfg(make_idx_dataset(tmp_path / "other", seed=1)))
    with caplog.at_level(logging.WARNING, logger="vgsweep"):
        [anew] = run_jobs([other])
    assert anew.status == "FINISHED" and anew.run_id != failed.run_id, anew
    assert (f"is not resumed from its checkpoint at epoch 1 into run {failed.run_id}, which trained on other data "
            "(its train set's digest") in caplog.text and "): it trains anew" in caplog.text, caplog.text
    client = MlflowClient(other.cfg.tracking.uri)
    assert client.get_run(failed.run_id).info.status == "FAILED"
    assert [h.step for h in client.get_metric_history(anew.run_id, "test_acc")] == [0, 1]  # both epochs: its own


def test_a_run_whose_host_went_silent_is_killed_and_retrained(small_cfg):
    """Another host's RUNNING run: skipped while its heartbeat is fresh, KILLED and retrained once stale."""
    cfg = small_cfg("seed=7", "tracking.stale_after_s=600")
    stale = _fake_running_run(cfg, "node-that-died", "12345", time.time() - 601)
    [o] = run_jobs([Job(cfg)])
    assert o.status == "FINISHED" and o.run_id != stale
    client, runs = _all_runs(cfg.tracking.uri)
    assert client.get_run(stale).info.status == "KILLED"

    other = small_cfg("seed=8")
    alive = _fake_running_run(other, "busy-node", "12345", time.time() - 30)
    [o] = run_jobs([Job(other)])
    assert o.status == "SKIPPED" and o.run_id == alive and client.get_run(alive).info.status == "RUNNING"
    # Judged by heartbeat only when asked: stale_after_s=0 leaves another host's run alone forever.
    quiet = small_cfg("seed=9", "tracking.stale_after_s=0")
    old = _fake_running_run(quiet, "node-that-died", "12345", time.time() - 10**6)
    assert run_jobs([Job(quiet)])[0].status == "SKIPPED" and client.get_run(old).info.status == "RUNNING"


def test_runs_that_alone_need_more_than_the_memory_budget_are_said_before_training(small_cfg, caplog):
    """A pack splits down to one run to fit the budget; a run that alone needs more is named in the dry run
    and in one warning before anything trains (it may still fit: the estimate is an upper one)."""
    from vgsweep.packing import bytes_per_run
    from vgsweep.sweep import Sweep

    jobs = lambda: [Job(small_cfg(f"seed={s}")) for s in (1, 2)]  # noqa: E731
    need = bytes_per_run(jobs()[0].cfg)
    tight, roomy = need * 0.9 / 2**30, need * 2.5 / 2**30  # GiB: under one run, over two
    text = Sweep(jobs(), memory_budget_gb=tight, dry_run=True).describe()
    assert text.count("one run alone needs more and may run out of memory") == 2, text  # 2 packs of one
    assert "needs more" not in Sweep(jobs(), memory_budget_gb=roomy, dry_run=True).describe()
    with caplog.at_level("WARNING", logger="vgsweep.sweep"):
        Sweep(jobs(), memory_budget_gb=tight)
        Sweep(jobs(), memory_budget_gb=roomy)
    said = [r.getMessage() for r in caplog.records if "budget" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("packs 1, 2: one run needs about ") and "may run out" in said[0]
    assert f"more than the {tight:.3g} GiB budget" in said[0] and f"of a {tight:.3g} GiB budget" in text  # not "0.0"


def test_a_dry_run_says_what_the_sweep_would_do_and_changes_nothing(small_cfg, tmp_path):
    """hydra.launcher.dry_run=true plans as the sweep would (skip a FINISHED config, retrain one whose
    run another host left RUNNING with a stale heartbeat, train a config listed twice once) and writes
    nothing: no store where there was none, the orphan left RUNNING, no run created."""
    from vgsweep.sweep import Sweep

    seeds = (1, 2, 3, 3)
    jobs = lambda: [Job(small_cfg(f"seed={s}"), overrides=[f"seed={s}", "train.epochs=2"]) for s in seeds]  # noqa: E731
    text = Sweep(jobs(), dry_run=True).describe()
    assert not (tmp_path / "mlflow.db").exists()
    assert text.startswith("dry run: 4 jobs: 3 to train, 0 to resume from their checkpoints, in 1 pack; 1 skipped")
    assert Sweep(jobs()[:1], dry_run=True).describe().startswith("dry run: 1 job: 1 to train,")  # not "1 jobs"
    assert "  #0 seed=1: train, pack 1" in text and "  #3 seed=3: skip: the same config as job #2" in text
    assert "  pack 1: 3 runs, mlp 16-16 on mnist, epochs 1-2, batch 32, fp32 on cpu, about " in text
    deep = Sweep([Job(small_cfg("model.hidden=[32,32,16,16,16,16,8]")),
                  Job(small_cfg("model.hidden=[32,32,16,16,16,16,8]", "model.residual=true"))], dry_run=True).describe()
    assert "  pack 1: 1 run, mlp 32-32-16x4-8 on mnist," in deep  # three or more equal widths in a row as one
    assert "  pack 2: 1 run, mlp 32-32-16x4-8 with skips on mnist," in deep  # what sets it apart from pack 1

    [done] = run_jobs([jobs()[0]])
    orphan = _fake_running_run(jobs()[1].cfg, "node-that-died", "12345", time.time() - 10**6)
    text = Sweep(jobs(), dry_run=True).describe()
    assert f"  #0 seed=1: skip: already FINISHED (run {done.run_id})" in text
    assert "  #1 seed=2: train, pack 1" in text and "2 to train" in text
    assert f"note: run {orphan} (mnist-d2-logistic-baseline-s2) was left RUNNING by a process that is gone " \
           "(no heartbeat from node-that-died" in text and "it would be marked KILLED" in text
    client, runs = _all_runs(jobs()[0].cfg.tracking.uri)
    assert len(runs) == 2 and client.get_run(orphan).info.status == "RUNNING"


def test_the_heartbeat_keeps_stamping_until_stopped(small_cfg):
    from vgsweep import tracking

    cfg = small_cfg("seed=1")
    run_id = _fake_running_run(cfg, "here", "1", 1000.0)
    client = tracking.client_for(cfg.tracking.uri)
    lg = RunLogger(client, run_id)
    with Heartbeat([lg], interval=0.05):
        time.sleep(0.5)
    first = float(client.get_run(run_id).data.tags[tracking.TAG_HEARTBEAT])
    assert abs(first - time.time()) < 5  # stamped with the time, not the 1000 it started with
    time.sleep(1.2)
    assert float(client.get_run(run_id).data.tags[tracking.TAG_HEARTBEAT]) == first  # stopped


def test_a_runs_process_is_gone_when_it_ended_unreaped_or_its_pid_is_anothers():
    """A RUNNING run whose process on this host has ended is an orphan even while the process is a
    zombie (a container whose init never reaps it: os.kill(pid, 0) still succeeds on one), and when
    its pid now belongs to another process (after a reboot, or pids wrapped round): the run's
    `vgsweep.process` stamp (boot id and start time) differs from the live process's."""
    import socket
    from types import SimpleNamespace

    from vgsweep import tracking

    def run(pid: int, stamp: str | None = None):
        tags = {tracking.TAG_HOST: socket.gethostname(), tracking.TAG_PID: str(pid)}
        if stamp:
            tags[tracking.TAG_PROCESS] = stamp
        return SimpleNamespace(info=SimpleNamespace(status="RUNNING"), data=SimpleNamespace(tags=tags))

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        own = tracking.process_stamp(child.pid)
        assert own and tracking.orphan_reason(run(child.pid)) is None and tracking.orphan_reason(run(child.pid, own)) is None
        # its very process alive here outweighs a heartbeat that looks stale (a clock stepped forward, a
        # stopped process): not KILLED and trained again; a pid alone (no stamp) might be reused: judged by it
        old = run(child.pid, own)
        old.data.tags[tracking.TAG_HEARTBEAT] = f"{time.time() - 10**4:.0f}"
        assert tracking.orphan_reason(old, stale_after_s=600) is None
        del old.data.tags[tracking.TAG_PROCESS]
        assert tracking.orphan_reason(old, stale_after_s=600).startswith("no heartbeat from ")
        boot, start = own.rsplit(":", 1)
        for other in (f"{boot}:{int(start) - 1}", f"another-boot:{start}"):  # an earlier process; another boot
            assert tracking.orphan_reason(run(child.pid, other)) == \
                f"process {child.pid} on this host has ended (the pid is another process's now)"
        child.kill()
        deadline = time.monotonic() + 10
        while "Z" not in open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1][:3]:  # ended, not reaped
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert tracking.orphan_reason(run(child.pid)) == f"process {child.pid} on this host has ended"
    finally:
        child.kill()
        child.wait()
    assert tracking.orphan_reason(run(child.pid)) == f"process {child.pid} on this host is gone"


def test_a_run_judged_gone_is_read_again_before_it_counts_as_an_orphan(tmp_path):
    """confirmed_orphan: a run read RUNNING whose process is gone is read again. Still held by that
    process: an orphan. Ended meanwhile (its process finished it, then exited): that status, no orphan.
    Taken by another process (resumed) or beating again on another host: judged again, alive."""
    import socket

    from vgsweep import tracking

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    c = tracking.client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = c.create_experiment("orphans")
    here = {tracking.TAG_HOST: socket.gethostname(), tracking.TAG_PID: str(dead.pid)}
    elsewhere = {tracking.TAG_HOST: "another-node", tracking.TAG_PID: "7",
                 tracking.TAG_HEARTBEAT: f"{time.time() - 700:.0f}"}
    ids = {name: c.create_run(exp, tags=tags).info.run_id
           for name, tags in (("held", here), ("ended", here), ("resumed", here), ("beats", elsewhere))}
    old = {name: c.get_run(i) for name, i in ids.items()}
    c.set_terminated(ids["ended"], "FINISHED")
    c.set_tag(ids["resumed"], tracking.TAG_PID, str(os.getpid()))
    c.set_tag(ids["beats"], tracking.TAG_HEARTBEAT, f"{time.time():.0f}")
    judged = {name: tracking.confirmed_orphan(c, r, stale_after_s=600) for name, r in old.items()}
    assert judged["held"][0] == f"process {dead.pid} on this host is gone"
    assert (judged["ended"][0], judged["ended"][1].info.status) == (None, "FINISHED")
    assert (judged["resumed"][0], judged["resumed"][1].data.tags[tracking.TAG_PID]) == (None, str(os.getpid()))
    assert judged["beats"][0] is None and tracking.orphan_reason(old["beats"], 600).startswith("no heartbeat")
    assert all(r.info.run_id == ids[name] for name, (_, r) in judged.items())


def test_runs_carry_their_process_stamp(small_cfg):
    from vgsweep import tracking

    run_jobs([Job(small_cfg("seed=5"))])
    client, [r] = _all_runs(small_cfg("seed=5").tracking.uri)
    assert r.data.tags[tracking.TAG_PROCESS] == tracking.process_stamp(os.getpid())


def test_a_pack_that_fails_while_its_runs_are_made_leaves_none_running(small_cfg, tmp_path):
    """A failure while a pack's runs are being created (here the job log of one job cannot be
    opened) ends the runs already made FAILED with the reason before the pack is split and retried:
    the live sweep leaves no run RUNNING, and only the culprit fails."""
    bad = tmp_path / "not-a-file"
    bad.mkdir()
    jobs = [Job(small_cfg(f"seed={s}"), log_file=tmp_path / f"job{s}.log") for s in (0, 1, 2)]
    jobs[1].log_file = bad
    outcomes = run_jobs(jobs)
    assert [o.status for o in outcomes] == ["FINISHED", "FAILED", "FINISHED"]
    assert "IsADirectoryError" in outcomes[1].reason
    client, runs = _all_runs(jobs[0].cfg.tracking.uri)
    assert "RUNNING" not in {r.info.status for r in runs}, [(r.info.run_name, r.info.status) for r in runs]
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert failed and all("IsADirectoryError" in r.data.tags["vgsweep.failure"] for r in failed)


def test_runs_a_failed_pack_could_not_close_do_not_stop_its_retry(small_cfg, monkeypatch):
    """When a pack fails and even marking its runs FAILED fails, those runs stay RUNNING under this
    very process: its retry must not take them for another sweep's and skip the configs."""
    def broken(h, a):
        raise RuntimeError("this activation is broken")

    def cannot_fail(self, reason):
        raise RuntimeError("store hiccup")

    monkeypatch.setitem(activations.ACTIVATIONS, "identity", broken)
    monkeypatch.setattr(RunLogger, "fail", cannot_fail)
    jobs = [Job(small_cfg(f"activation={a}", "seed=4")) for a in ("relu", "identity")]
    assert [o.status for o in run_jobs(jobs)] == ["FINISHED", "FAILED"]


def test_only_runs_of_this_very_process_count_as_its_own():
    """A claim ignores this process's own RUNNING runs (a failed attempt at a pack), not another
    host's run that happens to carry the same pid."""
    import socket
    from types import SimpleNamespace

    from vgsweep import tracking

    def run(host: str, pid: int):
        return SimpleNamespace(data=SimpleNamespace(tags={tracking.TAG_HOST: host, tracking.TAG_PID: str(pid)}))

    assert tracking.made_here(run(socket.gethostname(), os.getpid()))
    assert not tracking.made_here(run("another-node", os.getpid()))
    assert not tracking.made_here(run(socket.gethostname(), os.getpid() + 1))


def test_the_progress_line_leaves_out_runs_another_sweep_took(small_cfg, caplog):
    """A config another sweep finished after this one planned is skipped by the pack's claim: the
    progress line counts the runs this sweep trains (2 of 2), and says how many were taken, not
    3 runs of which one 'finished' untrained."""
    from vgsweep import tracking
    from vgsweep.sweep import Sweep

    jobs = [Job(small_cfg(f"seed={s}")) for s in (0, 1, 2)]
    sweep = Sweep(jobs, progress="log")  # planned: three to train
    [done] = run_jobs([Job(small_cfg("seed=1"))])  # meanwhile "another sweep" trains seed 1...
    client = MlflowClient(jobs[0].cfg.tracking.uri)
    client.set_tag(done.run_id, tracking.TAG_PID, str(os.getppid()))  # ...in another process
    with caplog.at_level("INFO", logger="vgsweep.progress"):
        outcomes = [sweep.outcome(i) for i in range(3)]
    assert [o.status for o in outcomes] == ["FINISHED", "SKIPPED", "FINISHED"]
    lines = [r.getMessage() for r in caplog.records if r.name == "vgsweep.progress" and "| epoch " in r.getMessage()]
    assert lines and all("(2 runs)" in ln and "/2 | 1 taken by another sweep" in ln for ln in lines), lines


def test_ctrl_c_while_a_pack_writes_its_checkpoints_comes_after_the_last_of_them(small_cfg, monkeypatch,
                                                                                 ctrl_c_reaches_children):
    """An interruption that lands between two runs' checkpoints used to leave them at different epochs, and
    the pack then resumed as two packs (with submitit_local two pack jobs). Ctrl-C now waits for the
    pack's checkpoints, all of one epoch, then acts as it would have. (ctrl_c_reaches_children: under a
    harness started in the background SIGINT is ignored, and the Ctrl-C below would not arrive.)"""
    import signal as sig

    from vgsweep import runs, sweep
    from vgsweep.sweep import checkpoint_path, load_checkpoint

    jobs = [Job(small_cfg(f"seed={s}", "train.epochs=3", "checkpoint.every=1")) for s in (1, 2)]
    save = sweep.save_checkpoint
    calls = []

    def interrupted_save(path, state):
        save(path, state)
        calls.append(path)
        if len(calls) == 1:  # the first run's checkpoint written, the second's not yet: Ctrl-C
            os.kill(os.getpid(), sig.SIGINT)

    monkeypatch.setattr(sweep, "save_checkpoint", interrupted_save)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_jobs(jobs)
    finally:
        runs.end_open_runs("KILLED", "the test's Ctrl-C")
    assert len(calls) == 2 and sig.getsignal(sig.SIGINT) is sig.default_int_handler
    assert [(load_checkpoint(checkpoint_path(j.cfg, j.key())) or {}).get("epochs_done") for j in jobs] == [1, 1]


def test_each_pack_says_where_its_time_went(small_cfg, caplog):
    """After each pack one line: its runs created, set up, N epochs (the first apart: on a GPU it also
    pays for the first kernels, the graph's capture, compilation), closed; the parts add up to no more than
    the whole. With a progress line it comes once the pack's line has ended (after its last epoch's)."""
    import re

    from vgsweep.sweep import Sweep

    jobs = [Job(small_cfg(f"seed={s}", *d)) for s in (1, 2) for d in ((), ("model.hidden=[16,16,16]", "model.depth=3"))]
    sweep = Sweep(jobs, progress="log")  # two packs: depth 2 and depth 3
    with caplog.at_level("INFO"):
        [sweep.outcome(i) for i in range(4)]
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("pack of ")]
    lines = [r.getMessage() for r in caplog.records if r.name == "vgsweep.progress"]
    assert len(said) == 2 and lines.index(said[0]) == lines.index(next(x for x in lines if "epoch 2/2" in x)) + 1
    for text in said:
        m = re.fullmatch(r"pack of 2 runs took ([\d.]+) s: its runs created in ([\d.]+) s, set up in ([\d.]+) s "
                         r"\(data, model\), 2 epochs in ([\d.]+) s \(the first ([\d.]+) s\), closed in ([\d.]+) s "
                         r"\(curves, artifacts, verdicts\)", text)
        assert m, text
        total, created, setup, epochs, first, closed = map(float, m.groups())
        assert 0 < first <= epochs and created > 0 and closed > 0
        assert created + setup + epochs + closed <= total + 0.02, text
    # the benchmark reads them (bench/grid.py: where a row's time outside its epochs goes)
    import importlib.util

    spec = importlib.util.spec_from_file_location("grid", Path(__file__).parents[1] / "bench" / "grid.py")
    grid = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grid)
    ph = grid.pack_phases("\n".join(f"[t][vgsweep.progress][INFO] - {x}" for x in said))
    assert ph["packs"] == 2 and ph["took"] == pytest.approx(sum(float(x.split(" took ")[1].split(" s")[0])
                                                                for x in said))
    assert 0 < ph["first"] <= ph["epochs"] < ph["took"]
    assert grid.seconds("1 min 05 s") == 65 and grid.seconds("1 h 02 min") == 3720


def test_the_packs_are_numbered_in_the_order_they_train(small_cfg, caplog):
    """A sweep trains a pack when its first job's result is asked for, in job order. With two shapes whose
    jobs alternate (depth varied fastest) and each split (max_pack=2), the plan listed the first shape's
    two packs first, but the second shape's first pack trained second: the progress line then called it
    `pack 2/4 (1 run)` while it trained 2, and counted the runs trained wrong. Now the plan is the order
    of training, and each pack's line names the pack that trains."""
    import re

    from vgsweep.sweep import Sweep

    deep = ("model.hidden=[16,16,16]", "model.depth=3")
    jobs = [Job(small_cfg(f"seed={s}", *d)) for s in (1, 2, 3) for d in ((), deep)]
    sweep = Sweep(jobs, max_pack=2, progress="log")
    assert [len(p) for p in sweep.packs] == [2, 2, 1, 1] and [min(p) for p in sweep.packs] == [0, 1, 4, 5]
    with caplog.at_level("INFO"):
        [sweep.outcome(i) for i in range(len(jobs))]
    lines = [r.getMessage() for r in caplog.records if r.name == "vgsweep.progress"]
    last = [lines[i - 1] for i, x in enumerate(lines) if x.startswith("pack of ")]  # each pack's last epoch
    said = [re.match(r"pack (\d)/4 \((\d) runs?\) \| epoch 2/2 \| runs trained (\d)/6", x) for x in last]
    assert all(said), last
    took = [int(re.match(r"pack of (\d) runs? took", x).group(1)) for x in lines if x.startswith("pack of ")]
    assert [(int(m[1]), int(m[2]), int(m[3])) for m in said] == [(1, 2, 2), (2, 2, 4), (3, 1, 5), (4, 1, 6)]
    assert took == [2, 2, 1, 1]


@pytest.mark.parametrize("flush_s, streamed", [(0.01, True), (600.0, False)])
def test_metrics_reach_the_store_while_the_pack_trains(small_cfg, monkeypatch, flush_s, streamed):
    """tracking.flush_s: a run's epochs are in the store before its pack ends (what `make ui` shows during a
    sweep, and what keeps a GPU pack's close short); with a long interval they wait for the end."""
    from vgsweep import trainer

    cfg = small_cfg("seed=3", "train.epochs=4", "checkpoint.every=0", f"tracking.flush_s={flush_s}")
    seen = []
    run_epoch = trainer.Pack.run_epoch

    def slow_epoch(self, epoch):
        time.sleep(0.05)  # every epoch outlasts flush_s=0.01 (a tiny epoch on a fast CPU may not: CI saw it)
        if epoch == 3:  # before the last epoch: which earlier epochs can another reader see?
            deadline = time.monotonic() + (10 if streamed else 0.3)  # a busy machine's writer may take a while
            while True:
                time.sleep(0.1)
                client, [run] = _all_runs(cfg.tracking.uri)
                seen[:] = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train_loss"))
                if (streamed and seen == [0, 1, 2]) or time.monotonic() > deadline:
                    break
        return run_epoch(self, epoch)

    monkeypatch.setattr(trainer.Pack, "run_epoch", slow_epoch)
    [o] = run_jobs([Job(cfg)])
    assert o.status == "FINISHED"
    assert seen == ([0, 1, 2] if streamed else []), seen
    client, [run] = _all_runs(cfg.tracking.uri)
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train_loss")) == [0, 1, 2, 3]
