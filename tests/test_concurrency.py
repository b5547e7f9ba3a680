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
        lines += [f"--- sweep {i} (pid in its runs' tags), exit {p.returncode}:"]
        lines += [ln for ln in (p.stdout + p.stderr).splitlines()
                  if any(w in ln for w in ("skip", "run ", "KILLED", "retrying", "failed", "pack", "sweep done"))]
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


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path).start()
    yield server.url
    server.stop()


def test_two_sweeps_into_one_mlflow_server(tiny_root, tmp_path, mlflow_server):
    """... and each names the experiment's address in MLflow's UI once, at its end, instead of MLflow's
    client printing two lines per run (through the progress line)."""
    exp_id = None
    for p in _two_sweeps_at_once(mlflow_server, tiny_root, tmp_path):
        out = p.stdout + p.stderr
        assert "View run" not in out and "View experiment" not in out, out[-3000:]
        [line] = [x for x in out.splitlines() if "the runs of experiment agarap2019: " in x]
        exp_id = MlflowClient(mlflow_server).get_experiment_by_name("agarap2019").experiment_id
        assert line.endswith(f"{mlflow_server}/#/experiments/{exp_id}?workflowType=machine_learning"), line
    assert exp_id is not None


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

    job = Job(small_cfg("seed=3", f"tracking.uri={mlflow_server}"))
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

    job = Job(small_cfg("seed=5", f"tracking.uri={mlflow_server}"))
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

    job = Job(small_cfg("seed=6", f"tracking.uri={mlflow_server}"))
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
