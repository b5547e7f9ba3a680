"""Two sweeps at once into one store: a SQLite file, and a real `mlflow server` on 127.0.0.1."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import SMALL, MlflowServer, run_cli

pytestmark = pytest.mark.e2e
SEEDS = ("0,1,2,3", "4,5,6,7")


def _at_once(args: list[list[str]], root: Path, uri: str, tmp: Path):
    """Two sweeps (args[i] each) launched together into one store; their processes and the store's
    active runs once both succeeded."""
    def sweep(i: int):
        return run_cli(["-m", *SMALL, *args[i], f"data.root={root}", f"tracking.uri={uri}",
                        f"hydra.sweep.dir={tmp / f'mr{i}'}"], cwd=tmp)

    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(sweep, (0, 1)))
    for p in procs:
        assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("agarap2019")
    return procs, c, c.search_runs([exp.experiment_id], max_results=1000)


def _story(runs, procs) -> str:
    """What each run and each sweep did: what a failure of the tests below needs to be understood."""
    from vgsweep import tracking

    lines = [f"{r.data.params.get('model.hidden')} s{r.data.params.get('seed')} {r.info.status} pid "
             f"{r.data.tags.get(tracking.TAG_PID)} start {r.info.start_time} end {r.info.end_time} {r.info.run_id}"
             for r in sorted(runs, key=lambda r: r.info.start_time)]
    for i, p in enumerate(procs):
        lines += [f"--- sweep {i} (pid in its runs' tags), exit {p.returncode}, all it wrote (last 300 lines):"]
        lines += (p.stdout + p.stderr).splitlines()[-300:]
    return "\n".join(lines)


def _two_sweeps_at_once(uri: str, root: Path, tmp: Path) -> list:
    procs, c, runs = _at_once([["activation=relu,tanh", f"seed={s}"] for s in SEEDS], root, uri, tmp)
    assert len(runs) == 16
    assert len({(r.data.params["activation.name"], r.data.params["seed"]) for r in runs}) == 16
    for r in runs:
        assert r.info.status == "FINISHED"
        for m in ("train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds"):
            assert sorted(h.step for h in c.get_metric_history(r.info.run_id, m)) == [0, 1]
        assert "config.yaml" in {a.path for a in c.list_artifacts(r.info.run_id)}
    return procs


def test_two_sweeps_into_one_sqlite_store(tiny_root, tmp_path):
    _two_sweeps_at_once(f"sqlite:///{tmp_path / 'shared.db'}", tiny_root, tmp_path)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """One server for the module (starting one takes seconds); each test but the first sweeps writes
    into a study of its own."""
    server = MlflowServer(tmp_path_factory.mktemp("server")).start()
    yield server.url
    server.stop()


def test_two_sweeps_into_one_mlflow_server(tiny_root, tmp_path, mlflow_server):
    """... and each names the experiment's address in MLflow's UI once, at its end, instead of MLflow's
    client printing two lines per run (through the progress line). The figures read each run's diagnostics
    through the server from where the run's artifacts are (mlflow-artifacts:/..., which the server proxies)."""
    import numpy as np

    from vgsweep.diagnostics import RunDiagnostics
    from vgsweep.results import reader

    exp_id = None
    for p in _two_sweeps_at_once(mlflow_server, tiny_root, tmp_path):
        out = p.stdout + p.stderr
        assert "View run" not in out and "View experiment" not in out, out[-3000:]
        [line] = [x for x in out.splitlines() if "the runs of experiment agarap2019: " in x]
        exp_id = MlflowClient(mlflow_server).get_experiment_by_name("agarap2019").experiment_id
        assert line.endswith(f"{mlflow_server}/#/experiments/{exp_id}?workflowType=machine_learning"), line
    assert exp_id is not None
    client = MlflowClient(mlflow_server)
    ended = reader.runs_frame(client, exp_id)
    assert len(ended) == 16 and ended.artifact_uri.str.startswith("mlflow-artifacts:").all()
    memo = reader.Memo(client, ended)
    client.download_artifacts = None  # each run's file is read from its artifact_uri, not looked up by run id
    for rid in ended.run_id:
        got = reader.diagnostics(memo, rid, tmp_path / "memo")
        own = MlflowClient(mlflow_server).download_artifacts(rid, "diagnostics/diagnostics.npz", str(tmp_path / rid))
        want = RunDiagnostics.from_npz(Path(own).read_bytes())
        assert got is not None and np.array_equal(got.grad, want.grad) and np.array_equal(got.hist, want.hist), rid


def test_a_server_named_with_a_user_and_password_is_reached_and_its_password_kept_out(tiny_root, tmp_path,
                                                                                    mlflow_server):
    """tracking.uri=http://user:pw@host:port, as MLflow's client takes it (basic auth): the run is trained there;
    the password is in neither the run's params nor the addresses printed for a browser (which asks for it).
    vgsweep's own check of the server took `user:pw@127.0.0.1` for a host name: refused, exit 2, the line
    printing the password."""
    uri = mlflow_server.replace("http://", "http://ada:s3cret@")
    proc = run_cli([*SMALL, f"data.root={tiny_root}", f"tracking.uri={uri}", "study=with_a_password"], cwd=tmp_path)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said[-3000:]
    c = MlflowClient(mlflow_server)
    [run] = c.search_runs([c.get_experiment_by_name("with_a_password").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["tracking.uri"] == uri.replace("s3cret", "***")
    assert f"in MLflow's UI: {mlflow_server}/#/experiments/" in said
    ui = run_cli(["ui", "--tracking-uri", uri], cwd=tmp_path)
    assert ui.returncode == 0 and f"with_a_password: {mlflow_server}/#/experiments/" in ui.stdout, ui.stderr
    assert "s3cret" not in said + ui.stdout + ui.stderr


def test_two_overlapping_sweeps_train_each_shared_config_once(tiny_root, tmp_path):
    """Two sweeps launched together plan at about the same moment: each sees the configs they share
    (hidden [16,16], seeds 0 and 1: their second pack) as not yet trained, and trains its first pack
    (its own configs) meanwhile. A pack claims its configs under the SQLite store's lock just before
    it trains, so whichever comes second skips the shared ones: six configs, six runs."""
    common = ["activation=relu", "seed=0,1", "train.epochs=40"]
    procs, c, runs = _at_once([["model.hidden=[256,256],[16,16]", *common], ["model.hidden=[192,192],[16,16]", *common]],
                              tiny_root, f"sqlite:///{tmp_path / 'shared.db'}", tmp_path)
    configs = sorted((r.data.params["model.hidden"], r.data.params["seed"]) for r in runs)
    assert len(configs) == len(set(configs)) == 6, _story(runs, procs)
    assert {r.info.status for r in runs} == {"FINISHED"}
    counts = [(p.stdout + p.stderr).split("sweep done: ")[1].split("\n")[0] for p in procs]
    assert sorted(counts) == ["2 finished, 2 skipped (already in the store), 0 failed",
                              "4 finished, 0 skipped (already in the store), 0 failed"], counts


def test_a_claim_on_a_server_store_waits_for_another_sweeps_claim(small_cfg, mlflow_server, tmp_path):
    """With a server store the claims of the sweeps on one host take turns too (a lock of this host's,
    named after the server's URI). Another process holds that lock while it records this very config
    as FINISHED: a sweep that planned to train it (the store had nothing yet) must wait for the lock
    at its claim, then skip the config, not train it a second time."""
    import subprocess
    import sys

    from vgsweep import tracking
    from vgsweep.jobs import Job
    from vgsweep.sweep import run_jobs

    job = Job(small_cfg("seed=3", "study=claim_waits", f"tracking.uri={mlflow_server}"))
    other = subprocess.Popen([sys.executable, "-c", f"""
import time
from mlflow.tracking import MlflowClient
from vgsweep import tracking
c = MlflowClient({mlflow_server!r})
exp = c.create_experiment({job.cfg.tracking.experiment!r})
with tracking.store_lock({mlflow_server!r}):
    print("held", flush=True)
    time.sleep(3)
    r = c.create_run(exp, tags={{tracking.TAG_HASH: {job.key()!r}}})
    c.set_terminated(r.info.run_id, "FINISHED")
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        [outcome] = run_jobs([job])
    finally:
        assert other.wait(60) == 0
    assert (outcome.status, outcome.reason) == ("SKIPPED", "already FINISHED"), outcome
    c = MlflowClient(mlflow_server)
    [run] = c.search_runs([c.get_experiment_by_name(job.cfg.tracking.experiment).experiment_id])
    assert run.data.tags[tracking.TAG_HASH] == job.key()


def test_a_server_stores_lock_is_reentrant_and_best_effort(tmp_path, monkeypatch, caplog):
    """Taken again inside itself it is released once, at the outer end; where the temporary folder
    refuses lock files the claim goes on unlocked with one warning (as before there was a lock)."""
    import tempfile

    from vgsweep import tracking

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    lock = tracking.store_lock("http://127.0.0.1:9/")
    with lock:
        with tracking.store_lock("http://127.0.0.1:9"):
            assert lock.lock.is_locked
        assert lock.lock.is_locked
    assert not lock.lock.is_locked
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "file"))  # no folder can be made under a file
    with caplog.at_level("WARNING", logger="vgsweep.tracking"):
        for _ in range(2):
            with tracking.store_lock("http://127.0.0.1:9"):
                pass
    assert [r.getMessage()[:40] for r in caplog.records] == ["no lock for the store http://127.0.0.1:9"]


def _another_hosts_run_lands_after_the_look(monkeypatch, server: str, job):
    """Make a sweep on another host create a run of `job`'s config (RUNNING, alive) in the moment
    between this process's look at the store and its create: the race no lock of this host's can
    close. Returns the list that will hold that run's id."""
    from vgsweep import sweep, tracking

    looked, rival, looks = sweep.stored_runs, [], []

    def look_then_rival(jobs, *a, **kw):
        out = looked(jobs, *a, **kw)
        looks.append(1)
        if len(looks) == 2:  # the plan's look, then the claim's
            c = MlflowClient(server)
            exp = c.get_experiment_by_name(job.cfg.tracking.experiment)
            exp_id = exp.experiment_id if exp else c.create_experiment(job.cfg.tracking.experiment)
            rival.append(c.create_run(exp_id, run_name=job.name, tags={
                tracking.TAG_HASH: job.key(), tracking.TAG_HOST: "another-host", tracking.TAG_PID: "4242",
                tracking.TAG_HEARTBEAT: f"{__import__('time').time():.0f}"}).info.run_id)
        return out

    monkeypatch.setattr(sweep, "stored_runs", look_then_rival)
    return rival


def _all_runs(server: str, experiment: str):
    from mlflow.entities import ViewType

    c = MlflowClient(server)
    exp = c.get_experiment_by_name(experiment)
    return {r.info.run_id: r for r in c.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)}


def test_a_claim_raced_by_another_host_on_a_server_store_is_withdrawn(small_cfg, mlflow_server, monkeypatch):
    """Another host's sweep creates a run of the same config between this sweep's look and create (a
    lock of this host's cannot stop it). The look after the create sees that rival: this claim is
    withdrawn (its run KILLED, then deleted: it held only params) and made again, which skips the
    config as running elsewhere. Before, both trained it and both runs ended FINISHED."""
    from vgsweep import sweep
    from vgsweep.jobs import Job

    job = Job(small_cfg("seed=5", "study=claim_raced", f"tracking.uri={mlflow_server}"))
    rival = _another_hosts_run_lands_after_the_look(monkeypatch, mlflow_server, job)
    waits = []
    monkeypatch.setattr(sweep, "_backoff", waits.append)
    [outcome] = sweep.run_jobs([job])
    assert (outcome.status, outcome.run_id, outcome.reason) == ("SKIPPED", rival[0], "running in another process")
    assert waits == [0]
    runs = _all_runs(mlflow_server, job.cfg.tracking.experiment)
    [mine] = [r for i, r in runs.items() if i != rival[0]]
    assert (mine.info.status, mine.info.lifecycle_stage) == ("KILLED", "deleted")
    assert mine.data.tags["vgsweep.failure"].startswith(f"withdrawn before training: another sweep's run {rival[0]} "
                                                        "(process 4242 on another-host) claimed this config")
    assert "test_acc" not in mine.data.metrics


def test_two_claims_made_at_the_same_moment_both_withdraw_and_the_first_back_trains(small_cfg, mlflow_server,
                                                                                     monkeypatch):
    """Both sweeps saw each other's run after their creates: both withdraw. The other host's comes back
    later (its run deleted while this one waits): this sweep's second claim meets no rival and trains."""
    from vgsweep import sweep
    from vgsweep.jobs import Job

    job = Job(small_cfg("seed=6", "study=claims_at_once", f"tracking.uri={mlflow_server}"))
    rival = _another_hosts_run_lands_after_the_look(monkeypatch, mlflow_server, job)

    def the_other_withdraws_meanwhile(attempt: int) -> None:
        c = MlflowClient(mlflow_server)
        c.set_terminated(rival[0], "KILLED")
        c.delete_run(rival[0])

    monkeypatch.setattr(sweep, "_backoff", the_other_withdraws_meanwhile)
    [outcome] = sweep.run_jobs([job])
    assert outcome.status == "FINISHED" and outcome.run_id != rival[0]
    runs = _all_runs(mlflow_server, job.cfg.tracking.experiment)
    assert len(runs) == 3  # the rival's, this sweep's withdrawn claim, its run that trained
    assert [r.info.status for r in runs.values() if r.info.lifecycle_stage == "active"] == ["FINISHED"]
    assert "test_acc" in runs[outcome.run_id].data.metrics


def test_a_sqlite_stores_claims_need_no_second_look(small_cfg, tmp_path, monkeypatch):
    """Its lock makes look-and-create one step for every process on every host: no extra query."""
    from vgsweep import sweep
    from vgsweep.jobs import Job

    looks = []
    looked = sweep.stored_runs
    monkeypatch.setattr(sweep, "stored_runs", lambda jobs, *a, **kw: looks.append(1) or looked(jobs, *a, **kw))
    [outcome] = sweep.run_jobs([Job(small_cfg("seed=7"))])
    assert outcome.status == "FINISHED" and len(looks) == 2  # the plan's and the claim's


def _a_run_to_resume(small_cfg, server: str, seed: int, monkeypatch, tmp_path: Path):
    """A run of a 2-epoch config that failed in its second epoch, after its checkpoint of the first:
    the same command resumes it. Returns the job (planned again) and the run's id."""
    from vgsweep import sweep
    from vgsweep.jobs import Job

    cfg = small_cfg(f"seed={seed}", f"study=resume_s{seed}", f"tracking.uri={server}", "checkpoint.every=1",
                    f"checkpoint.dir={tmp_path / 'checkpoints'}")  # not the folder the tests run in
    on_epoch = sweep._PackRecorder.on_epoch

    def fail_in_the_second(self, r):
        if r.epoch == 1:
            raise RuntimeError("stopped in epoch 2")
        on_epoch(self, r)

    with monkeypatch.context() as m:
        m.setattr(sweep._PackRecorder, "on_epoch", fail_in_the_second)
        [o] = sweep.run_jobs([Job(cfg)])
    assert o.status == "FAILED"
    job = Job(cfg)
    assert sweep.plan([job]) == [None] and job.resume_run == o.run_id  # the checkpoint is there
    return job, o.run_id


def _another_host_resumes_after_the_look(monkeypatch, server: str, run_id: str, wins: bool):
    """Make a sweep on another host stake its claim on `run_id` (to resume it) between this process's
    look and its own claim; `wins`: it also resumes the run (RUNNING, with its host and a fresh
    heartbeat), else it withdraws (drops its claim) while this one waits. Returns the claim's key."""
    import json
    import time

    from vgsweep import sweep, tracking

    looked, looks, key = sweep.stored_runs, [], tracking.TAG_CLAIM + "0123456789abcdef"

    def look_then_rival(jobs, *a, **kw):
        out = looked(jobs, *a, **kw)
        looks.append(1)
        if len(looks) == 2:  # the plan's look, then the claim's
            c = MlflowClient(server)
            c.set_tag(run_id, key, json.dumps({tracking.TAG_HOST: "another-host", tracking.TAG_PID: "4242",
                                               tracking.TAG_HEARTBEAT: f"{time.time():.0f}"}))
            if wins:
                c.update_run(run_id, status="RUNNING")
                for t, v in {tracking.TAG_HOST: "another-host", tracking.TAG_PID: "4242",
                             tracking.TAG_HEARTBEAT: f"{time.time():.0f}"}.items():
                    c.set_tag(run_id, t, v)
                c.delete_tag(run_id, key)
        return out

    def the_other_withdraws_meanwhile(attempt: int) -> None:
        if not wins:
            MlflowClient(server).delete_tag(run_id, key)

    monkeypatch.setattr(sweep, "stored_runs", look_then_rival)
    monkeypatch.setattr(sweep, "_backoff", the_other_withdraws_meanwhile)
    return key


def test_a_run_another_host_resumes_at_the_same_moment_is_left_to_it(small_cfg, mlflow_server, monkeypatch, tmp_path):
    """Two hosts find the same checkpoint and both go to resume its run: the run exists already, so
    creating it tells no claim apart. Each stakes a claim of its own on the run before resuming it; this
    sweep sees the other host's claim (or the run it resumed), resumes nothing and skips the config as
    running elsewhere. Before, both resumed the run and trained into it at once."""
    from vgsweep import sweep, tracking

    job, run_id = _a_run_to_resume(small_cfg, mlflow_server, 11, monkeypatch, tmp_path)
    _another_host_resumes_after_the_look(monkeypatch, mlflow_server, run_id, wins=True)
    [o] = sweep.run_jobs([job])
    assert (o.status, o.run_id, o.reason) == ("SKIPPED", run_id, "running in another process")
    run = MlflowClient(mlflow_server).get_run(run_id)
    assert (run.info.status, run.data.tags[tracking.TAG_HOST]) == ("RUNNING", "another-host")  # left to it
    assert not tracking.claims(run, 600)  # this sweep's claim is gone with it
    assert max(m.step for m in MlflowClient(mlflow_server).get_metric_history(run_id, "test_acc")) == 0


def test_two_resumes_at_the_same_moment_both_wait_and_the_first_back_resumes(small_cfg, mlflow_server,
                                                                             monkeypatch, caplog, tmp_path):
    """Both hosts staked their claims before either read the run: both see the other's and wait. The
    other host's gives up meanwhile; this sweep's second claim meets none, resumes the run from its
    checkpoint and finishes it, leaving no claim on it."""
    import logging

    from vgsweep import sweep, tracking

    job, run_id = _a_run_to_resume(small_cfg, mlflow_server, 12, monkeypatch, tmp_path)
    _another_host_resumes_after_the_look(monkeypatch, mlflow_server, run_id, wins=False)
    with caplog.at_level(logging.INFO, "vgsweep.sweep"):
        [o] = sweep.run_jobs([job])
    assert (o.status, o.run_id) == ("FINISHED", run_id)
    assert f"into run {run_id}: process 4242 on another-host claimed it; claiming again" in caplog.text
    c = MlflowClient(mlflow_server)
    run = c.get_run(run_id)
    assert not tracking.claims(run, 600) and run.data.tags[tracking.TAG_HOST] != "another-host"
    assert [m.step for m in c.get_metric_history(run_id, "test_acc")] == [0, 1]  # epoch 2 from the checkpoint


def test_a_claim_whose_process_is_gone_does_not_hold_its_run(small_cfg, mlflow_server, monkeypatch, tmp_path):
    """A claim left by a process that died between staking it and resuming: on this host a pid that no
    longer runs, on another a claim older than tracking.stale_after_s. Neither stops the resume, and
    both are dropped from the run. A claim from another host that looks alive for ever (a claimant hung
    between staking and resuming) is waited for 6 times; then the run is left to it: SKIPPED, untouched,
    never two processes writing one run."""
    import json
    import time

    from vgsweep import sweep, tracking

    job, run_id = _a_run_to_resume(small_cfg, mlflow_server, 13, monkeypatch, tmp_path)
    c = MlflowClient(mlflow_server)
    dead = subprocess_pid_that_ended()
    c.set_tag(run_id, tracking.TAG_CLAIM + "a", json.dumps({tracking.TAG_HOST: __import__("socket").gethostname(),
                                                             tracking.TAG_PID: str(dead)}))
    c.set_tag(run_id, tracking.TAG_CLAIM + "b", json.dumps({tracking.TAG_HOST: "node-that-died", tracking.TAG_PID: "7",
                                                             tracking.TAG_HEARTBEAT: f"{time.time() - 601:.0f}"}))
    waits = []
    monkeypatch.setattr(sweep, "_backoff", waits.append)
    [o] = sweep.run_jobs([job])
    assert (o.status, o.run_id, waits) == ("FINISHED", run_id, [])
    assert not tracking.claims(c.get_run(run_id), 600)

    job, run_id = _a_run_to_resume(small_cfg, mlflow_server, 14, monkeypatch, tmp_path)
    c.set_tag(run_id, tracking.TAG_CLAIM + "c", json.dumps({tracking.TAG_HOST: "node-that-hangs", tracking.TAG_PID: "7",
                                                             tracking.TAG_HEARTBEAT: f"{time.time() + 10**6:.0f}"}))
    [o] = sweep.run_jobs([job])
    assert (o.status, o.run_id, o.reason, waits) == ("SKIPPED", run_id, "resumed by another process", [0, 1, 2, 3, 4])
    run = c.get_run(run_id)
    assert run.info.status == "FAILED" and list(tracking.claims(run, 600)) == [tracking.TAG_CLAIM + "c"]
    assert [m.step for m in c.get_metric_history(run_id, "test_acc")] == [0]


def subprocess_pid_that_ended() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


class _Holder:
    """Another sweep's process on this host: told `make`, it creates a run of `job`'s config, RUNNING
    with its host, pid and process stamp as a sweep's run has them; told `finish`, it ends that run
    FINISHED (one test_acc) and exits. The test waits for each step."""

    def __init__(self, uri: str, job):
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-c", f"""
import os, socket, sys, time
from vgsweep import tracking
c = tracking.client_for({uri!r})
sys.stdin.readline()
exp = c.get_experiment_by_name({job.cfg.tracking.experiment!r})
exp_id = exp.experiment_id if exp else c.create_experiment({job.cfg.tracking.experiment!r})
r = c.create_run(exp_id, run_name={job.name!r}, tags={{tracking.TAG_HASH: {job.key()!r},
    tracking.TAG_HOST: socket.gethostname(), tracking.TAG_PID: str(os.getpid()),
    tracking.TAG_PROCESS: tracking.process_stamp(os.getpid()), tracking.TAG_HEARTBEAT: f"{{time.time():.0f}}"}})
print(r.info.run_id, flush=True)
sys.stdin.readline()
c.log_metric(r.info.run_id, "test_acc", 0.5, step=0)
c.set_terminated(r.info.run_id, "FINISHED")
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.run_id = None

    def make(self) -> str:
        self.proc.stdin.write("make\n")
        self.proc.stdin.flush()
        self.run_id = self.proc.stdout.readline().strip()
        return self.run_id

    def finish_and_exit(self) -> None:
        self.proc.stdin.write("finish\n")
        self.proc.stdin.flush()
        assert self.proc.wait(60) == 0


def _holder_ends_after_look(monkeypatch, holder: _Holder, make_at: int, finish_at: int) -> None:
    """Around this process's looks at the store (sweep.stored_runs, counted from 1): the holder makes
    its run right after look `make_at`, and ends it FINISHED and exits right after look `finish_at`,
    which therefore read it RUNNING and judge its process after it has gone."""
    from vgsweep import sweep

    looked, looks = sweep.stored_runs, []

    def look(jobs, *a, **kw):
        out = looked(jobs, *a, **kw)
        looks.append(1)
        if len(looks) == make_at:
            holder.make()
        if len(looks) == finish_at:
            holder.finish_and_exit()
        return out

    monkeypatch.setattr(sweep, "stored_runs", look)


def test_a_run_that_ends_finished_as_its_process_exits_is_not_marked_killed(small_cfg, monkeypatch, caplog):
    """A sweep plans just as another sweep finishes its last run and exits (two overlapping sweeps
    sharing configs, the second started late): the plan reads the run RUNNING, then finds its process
    gone. Before, it marked that FINISHED run KILLED (overwriting what was recorded) and trained the
    config again: two FINISHED runs of one config, the failure seen now and then in the test above.
    Now a run judged gone is read again: it is FINISHED, the config skipped."""
    import logging

    from vgsweep import sweep
    from vgsweep.jobs import Job

    job = Job(small_cfg("seed=21"))
    holder = _Holder(str(job.cfg.tracking.uri), job)
    holder.make()
    _holder_ends_after_look(monkeypatch, holder, make_at=0, finish_at=1)
    with caplog.at_level(logging.WARNING, "vgsweep.sweep"):
        [o] = sweep.run_jobs([job])
    assert (o.status, o.run_id, o.reason) == ("SKIPPED", holder.run_id, "already FINISHED")
    assert o.final == {"test_acc": 0.5}  # the run as read again, not as first read
    assert "marked KILLED" not in caplog.text
    c = MlflowClient(str(job.cfg.tracking.uri))
    [run] = c.search_runs([c.get_experiment_by_name(job.cfg.tracking.experiment).experiment_id])
    assert run.info.status == "FINISHED" and "vgsweep.failure" not in run.data.tags


def test_a_run_that_ends_finished_as_its_process_exits_is_not_trained_again_by_the_claim(small_cfg, monkeypatch):
    """The same moment at a pack's claim: the other sweep made its run after this one planned, and
    finished it and exited between the claim's look and its judgement. Before, the claim took the run
    for an orphan's and trained the config a second time."""
    from vgsweep import sweep
    from vgsweep.jobs import Job

    job = Job(small_cfg("seed=22"))
    holder = _Holder(str(job.cfg.tracking.uri), job)
    _holder_ends_after_look(monkeypatch, holder, make_at=1, finish_at=2)
    [o] = sweep.run_jobs([job])
    assert (o.status, o.run_id, o.reason) == ("SKIPPED", holder.run_id, "already FINISHED")
    c = MlflowClient(str(job.cfg.tracking.uri))
    runs = c.search_runs([c.get_experiment_by_name(job.cfg.tracking.experiment).experiment_id])
    assert [(r.info.run_id, r.info.status) for r in runs] == [(holder.run_id, "FINISHED")]


def test_a_rival_that_finishes_and_exits_during_the_second_look_still_withdraws_the_claim(small_cfg, mlflow_server,
                                                                                          monkeypatch):
    """On a server store: another sweep's run of the config appears between this sweep's look and its
    create, and ends FINISHED (its process exiting) between the look after the create and its judgement.
    It is a rival all the same: this claim is withdrawn, and the claim made again skips the config."""
    from vgsweep import sweep
    from vgsweep.jobs import Job

    job = Job(small_cfg("seed=23", "study=rival_finishes", f"tracking.uri={mlflow_server}"))
    holder = _Holder(mlflow_server, job)
    _holder_ends_after_look(monkeypatch, holder, make_at=2, finish_at=3)  # plan, claim, the look after the create
    waits = []
    monkeypatch.setattr(sweep, "_backoff", waits.append)
    [o] = sweep.run_jobs([job])
    assert (o.status, o.run_id, o.reason, waits) == ("SKIPPED", holder.run_id, "already FINISHED", [0])
    runs = _all_runs(mlflow_server, job.cfg.tracking.experiment)
    assert {i: (r.info.status, r.info.lifecycle_stage) for i, r in runs.items() if i != holder.run_id} == {
        i: ("KILLED", "deleted") for i in runs if i != holder.run_id}
    assert runs[holder.run_id].info.status == "FINISHED" and len(runs) == 2


def test_a_run_to_resume_that_another_host_finished_since_the_look_is_not_resumed(small_cfg, mlflow_server,
                                                                                monkeypatch, tmp_path):
    """Between this sweep's look (the run FAILED, its checkpoint there) and its claim, another host
    resumed the run and finished it. Before, the claim found no live holder and resumed the FINISHED
    run, training into it again. Now a run no longer FAILED or KILLED is contested: the claim made again
    skips the config."""
    from vgsweep import sweep, tracking

    job, run_id = _a_run_to_resume(small_cfg, mlflow_server, 15, monkeypatch, tmp_path)
    looked, looks = sweep.stored_runs, []

    def look_then_finished_elsewhere(jobs, *a, **kw):
        out = looked(jobs, *a, **kw)
        looks.append(1)
        if len(looks) == 2:  # the plan's look, then the claim's
            c = MlflowClient(mlflow_server)
            c.set_tag(run_id, tracking.TAG_HOST, "another-host")
            c.log_metric(run_id, "test_acc", 0.5, step=1)
            c.set_terminated(run_id, "FINISHED")
        return out

    monkeypatch.setattr(sweep, "stored_runs", look_then_finished_elsewhere)
    waits = []
    monkeypatch.setattr(sweep, "_backoff", waits.append)
    [o] = sweep.run_jobs([job])
    assert (o.status, o.run_id, o.reason, waits) == ("SKIPPED", run_id, "already FINISHED", [0])
    c = MlflowClient(mlflow_server)
    run = c.get_run(run_id)
    assert (run.info.status, run.data.tags[tracking.TAG_HOST]) == ("FINISHED", "another-host")
    assert [(m.step, m.value) for m in c.get_metric_history(run_id, "test_acc")][-1] == (1, 0.5)
    assert not tracking.claims(run, 600)
