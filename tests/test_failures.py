"""Nothing silent, nothing stuck: a failure after training, a store killed while it is created, a
tracking server that dies mid-sweep."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from unittest import mock
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import SMALL, MlflowServer, make_idx_dataset, run_cli, sleeps_of, start_cli

LONGER = [*SMALL, "model.hidden=[128,128]", "train.epochs=30", "checkpoint.every=0"]


def _runs(uri: str):
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("agarap2019")
    return c, (c.search_runs([exp.experiment_id], max_results=1000) if exp else [])


def _popen(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return start_cli(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(cond, proc: subprocess.Popen, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert proc.poll() is None, f"the command ended before {what}: make it longer"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def bigger(tmp_path_factory) -> Path:
    """Enough data that a sweep trains for a few seconds on the CPU."""
    return make_idx_dataset(tmp_path_factory.mktemp("bigger"), n_train=3000, n_test=500)


@pytest.mark.e2e
def test_a_failure_after_training_ends_the_runs_failed_and_the_sweep_nonzero(bigger, tmp_path):
    """The artifact folder becomes a file while the pack trains: every run trained, none could be
    recorded. Each is FAILED with the reason, the sweep counts them and exits 1; nothing is RUNNING.
    Run again, the unusable folder is refused before anything trains."""
    uri, art = f"sqlite:///{tmp_path / 'm.db'}", tmp_path / "art"
    args = ["-m", "activation=relu,tanh", *LONGER, f"data.root={bigger}", f"tracking.uri={uri}",
            f"tracking.artifact_root={art}", f"hydra.sweep.dir={tmp_path / 'mr'}"]
    proc = _popen(args, tmp_path)
    log = tmp_path / "mr" / "0" / "app.log"
    _wait_for(lambda: log.is_file() and "epoch 1:" in log.read_text(), proc, 240, "the first epoch")
    shutil.rmtree(art, ignore_errors=True)
    art.write_text("not a folder")  # the disk holding the artifacts went away
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    assert "0 finished, 0 skipped (already in the store), 2 failed" in out + err
    assert "recording its results failed after training" in out + err
    _, runs = _runs(uri)
    assert len(runs) == 2
    for r in runs:
        assert r.info.status == "FAILED"
        assert r.data.tags["vgsweep.failure"].startswith("recording its results failed after training")
        assert len(r.data.metrics) > 0  # what was recorded before the failure is kept
    db = (tmp_path / "m.db").read_bytes()
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 2 and "tracking.artifact_root=" in again.stderr and "is a file" in again.stderr
    assert "Traceback" not in again.stderr and (tmp_path / "m.db").read_bytes() == db


def test_a_store_killed_while_being_created_is_never_half_built(tmp_path):
    """A process killed at any moment while creating the SQLite store leaves either no store or a
    whole one; a later command works."""
    from vgsweep import tracking

    db = tmp_path / "store.db"
    code = f"from vgsweep import tracking; tracking.client_for('sqlite:///{db}')"
    (tmp_path / "not-a-folder").write_text("")  # no cache folder: MLflow builds the store, as without a copy
    no_cache = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "not-a-folder")}
    seen_states = set()
    for delay in (0.0, 0.15, 0.4, 0.8):
        if db.exists():
            db.unlink()  # every round creates the store anew
        proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True,
                                start_new_session=True, env=no_cache)
        started = threading.Event()

        def watch(p=proc, ev=started):
            for line in p.stderr:
                if "Creating initial MLflow database tables" in line:
                    ev.set()
        threading.Thread(target=watch, daemon=True).start()
        assert started.wait(60) or proc.poll() is not None
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if db.exists():
            complete, runs = tracking._store_complete(db)
            assert complete and runs == 0, f"half-built store after a kill at +{delay} s"
            seen_states.add("whole")
        else:
            seen_states.add("absent")
    # whatever the last kill left (a stray .building file, or nothing), the store is made and used
    client = tracking.client_for(f"sqlite:///{db}")
    assert client.search_experiments() and not list(tmp_path.glob("store.db.building-*"))
    assert "absent" in seen_states  # the kills did land during creation


def _dump(db: Path) -> tuple[list, dict]:
    """A SQLite file's schema (each statement's lines sorted: two builds by MLflow order a table's
    constraints differently), and each table's rows without their times."""
    import sqlite3

    def lines(sql: str | None) -> list[str]:
        return sorted(x.strip().rstrip(",") for x in (sql or "").splitlines())

    c = sqlite3.connect(db)
    try:
        schema = sorted((t, n, lines(sql)) for t, n, sql in c.execute("SELECT type, name, sql FROM sqlite_master"))
        rows = {}
        for (t,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            cur = c.execute(f'SELECT * FROM "{t}"')
            keep = [i for i, d in enumerate(cur.description) if not d[0].endswith("_time")]
            rows[t] = sorted(tuple(r[i] for i in keep) for r in cur.fetchall())
    finally:
        c.close()
    return schema, rows


def test_a_new_store_is_mlflows_own_empty_store_copied(tmp_path, monkeypatch):
    """A new SQLite store is a copy of this MLflow version's empty store (built once by MLflow in the
    user's cache: a second saved on every new store) with its Default experiment's artifact location and
    times set: the same schema, schema version and rows as MLflow's own build at that artifact root, and
    MLflow records runs in it. Without a cache folder, or with VGSWEEP_CACHE=0, MLflow builds the store itself."""
    import sqlite3

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from vgsweep import tracking

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = str(tmp_path / "artifacts")
    SqlAlchemyStore(f"sqlite:///{tmp_path / 'mlflow.db'}", root).engine.dispose()
    built: list[str] = []  # the stores MLflow builds from here on (its own constructor, counted, not replaced)
    real_init = SqlAlchemyStore.__init__

    def counted(self, db_uri, *a, **kw):
        built.append(db_uri)
        real_init(self, db_uri, *a, **kw)

    monkeypatch.setattr(SqlAlchemyStore, "__init__", counted)
    for name in ("copy.db", "again.db"):  # the first builds the cached store, the second only copies it
        t0 = int(time.time() * 1000)
        built.clear()
        tracking.ensure_sqlite_store(f"sqlite:///{tmp_path / name}", root)
        assert len(built) == (name == "copy.db") and all("/cache/vgsweep/" in u for u in built)
        assert _dump(tmp_path / name) == _dump(tmp_path / "mlflow.db")
        with sqlite3.connect(tmp_path / name) as c:
            [(made, updated)] = c.execute("SELECT creation_time, last_update_time FROM experiments").fetchall()
        assert t0 <= made == updated <= time.time() * 1000
    assert [p.name for p in (tmp_path / "cache" / "vgsweep").iterdir()] == [
        f"mlflow-{__import__('mlflow').__version__}-empty.db"]
    monkeypatch.setenv("VGSWEEP_CACHE", "0")  # no cache: MLflow builds the store, the cached one unread
    built.clear()
    tracking.ensure_sqlite_store(f"sqlite:///{tmp_path / 'uncached.db'}", root)
    assert len(built) == 1 and "/cache/" not in built[0], built
    assert _dump(tmp_path / "uncached.db") == _dump(tmp_path / "mlflow.db")
    monkeypatch.delenv("VGSWEEP_CACHE")
    monkeypatch.setattr(SqlAlchemyStore, "__init__", real_init)
    client = tracking.client_for(f"sqlite:///{tmp_path / 'again.db'}")
    run = client.create_run(client.create_experiment("e"))
    client.log_metric(run.info.run_id, "m", 1.0)
    client.set_terminated(run.info.run_id, "FINISHED")
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert client.get_experiment("0").artifact_location == root + "/0"

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file"))  # no cache folder to be had
    tracking.ensure_sqlite_store(f"sqlite:///{tmp_path / 'built.db'}", root)
    assert _dump(tmp_path / "built.db") == _dump(tmp_path / "mlflow.db")


def test_a_half_built_store_is_rebuilt_and_one_with_runs_never_rewritten(tmp_path, monkeypatch):
    """Stores left half-built by earlier versions: without runs, moved aside and built again; with
    runs, refused with one clear reason and left byte for byte as they were."""
    import sqlalchemy
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    from vgsweep import tracking

    def half_built(p: Path, with_run: bool) -> None:
        engine = sqlalchemy.create_engine(f"sqlite:///{p}")
        InitialBase.metadata.create_all(engine)  # killed after the first tables, before the migrations
        if with_run:
            with engine.begin() as c:
                c.execute(sqlalchemy.text("INSERT INTO experiments (experiment_id, name, lifecycle_stage) "
                                          "VALUES (1, 'e', 'active')"))
                c.execute(sqlalchemy.text("INSERT INTO runs (run_uuid, experiment_id, lifecycle_stage, status) "
                                          "VALUES ('r1', 1, 'active', 'FINISHED')"))
        engine.dispose()

    empty = tmp_path / "empty.db"
    half_built(empty, with_run=False)
    assert tracking._store_complete(empty) == (False, 0)
    client = tracking.client_for(f"sqlite:///{empty}")
    assert client.search_experiments() and tracking._store_complete(empty)[0]
    assert len(list(tmp_path.glob("empty.db.broken-*"))) == 1  # the old file is kept beside it

    # the same answers where MLflow no longer has the private helpers it reads the revisions with
    import sqlalchemy as sa
    from mlflow.store.db import utils as db_utils

    engine = sa.create_engine(f"sqlite:///{empty}")
    theirs = tracking._schema_revisions(engine, db_utils)
    assert theirs[0] and theirs[0] == theirs[1]
    assert tracking._schema_revisions(engine, object()) == theirs  # Alembic's own reading
    with engine.begin() as c:  # a store at another revision than this MLflow's newest (an older one)
        c.execute(sa.text("UPDATE alembic_version SET version_num = 'a8c4a736bde6'"))
    engine.dispose()
    with monkeypatch.context() as m:
        m.delattr(db_utils, "_get_schema_version")
        assert tracking._store_complete(empty)[0] is False
    assert tracking._store_complete(empty)[0] is False

    used = tmp_path / "used.db"
    half_built(used, with_run=True)
    before = used.read_bytes()
    with pytest.raises(tracking.TrackingError, match="holds 1 runs .* does not rewrite a store that holds runs"):
        tracking.client_for(f"sqlite:///{used}")
    assert used.read_bytes() == before


def test_a_store_that_is_not_sqlite_under_the_lock_is_refused_never_deleted(tmp_path, monkeypatch):
    """What the look without the lock (check_sqlite_store) passed, and what then reads as no SQLite
    under the lock (another program's file put there, or a read that failed), is refused and kept;
    it used to be deleted as if it were an empty file."""
    from vgsweep import tracking

    db = tmp_path / "store.db"
    db.write_bytes(b"not a database, but somebody's data" * 100)
    monkeypatch.setattr(tracking, "check_sqlite_store", lambda uri: None)  # the file appears after that look
    with pytest.raises(tracking.TrackingError, match="is not a SQLite database"):
        tracking.ensure_sqlite_store(f"sqlite:///{db}")
    assert db.read_bytes() == b"not a database, but somebody's data" * 100


@pytest.mark.parametrize("error", ["disk I/O error", "database is locked"])
def test_a_store_file_that_cannot_be_read_is_one_clear_line(tmp_path, monkeypatch, error):
    """A SQLite error other than a lock, reading a store before anything trains (the disk, the file's
    permissions), is the preflight's one line, not a traceback; a store locked this moment by another
    sweep is not an error (ensure_sqlite_store waits for it under the lock)."""
    import sqlite3

    from vgsweep import preflight, tracking
    from vgsweep.config import ConfigError

    db = tmp_path / "store.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE runs (x)")
    con.close()

    class Refusing:
        def __init__(self, *a, **k):
            pass

        def execute(self, *a):
            raise sqlite3.OperationalError(error)

        def close(self):
            pass

    monkeypatch.setattr(tracking.sqlite3, "connect", Refusing)
    uri = f"sqlite:///{db}"
    if "locked" in error:
        preflight.check_store(uri)
        return
    with pytest.raises(ConfigError) as e:
        preflight.check_store(uri)
    assert e.value.key == "tracking.uri" and f"{db} cannot be read as SQLite (disk I/O error)" in str(e.value)


def _killed_mid_write(db: Path) -> None:
    """A process that writes to the SQLite file, more than its page cache holds (so that it writes into
    the file itself, with the original pages in the journal), killed before it commits: what kill -9
    or a lost node leaves when it lands while a sweep writes. SQLite calls the journal hot."""
    import sqlite3

    code = ("import sqlite3, time\n"
            f"con = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
            "con.execute('PRAGMA cache_size = 10')\n"
            "con.execute('BEGIN IMMEDIATE')\n"
            "con.execute('UPDATE filler SET x = x + 1')\n"
            "print('written', flush=True)\n"
            "time.sleep(60)\n")
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "written\n"
    writer.kill()
    writer.wait()
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # a read-only connection cannot roll it back
        sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("SELECT COUNT(*) FROM runs").fetchall()


@pytest.mark.e2e
def test_a_store_left_mid_write_by_a_killed_process_is_read_and_swept_into(tiny_root, tmp_path):
    """The results commands and a sweep check a SQLite store before anything else, reading it read-only;
    a read-only connection cannot roll back the journal a killed writer left, so `vgsweep status` after a
    kill -9 said `m.db cannot be read as SQLite (attempt to write a readonly database)`, exit 2, and so did
    the sweep's own command run again (seen when test_status's kill -9 landed while the sweep wrote). The
    journal is rolled back (what MLflow's connection does at its first read) and the last committed
    state is read: the finished run, the filler's committed values."""
    import sqlite3

    db = tmp_path / "m.db"
    uri = f"sqlite:///{db}"
    sweep = ["-m", *SMALL, f"data.root={tiny_root}", f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / 'mr'}"]
    first = run_cli([*sweep, "seed=0"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE filler (x, y)")  # another table in the file: MLflow's own rows stay as they are
    con.executemany("INSERT INTO filler VALUES (?, ?)", [(i, "y" * 200) for i in range(20000)])
    con.commit()
    con.close()

    _killed_mid_write(db)
    status = run_cli(["status", "--tracking-uri", uri], cwd=tmp_path)
    assert status.returncode == 0 and "agarap2019: 1 config: 1 finished" in status.stdout, status.stdout + status.stderr
    assert not (tmp_path / "m.db-journal").exists()
    _killed_mid_write(db)
    again = run_cli([*sweep, "seed=0,1"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "sweep done: 1 finished, 1 skipped (already in the store), 0 failed" in again.stdout + again.stderr
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*), SUM(x) FROM filler").fetchone() == (20000, sum(range(20000)))
    con.close()


@pytest.mark.e2e
def test_a_moved_store_draws_its_gradients_and_diagnostics_that_cannot_be_read_fail_the_report(tiny_root, tmp_path):
    """MLflow records each run's artifacts by absolute path: a store copied from the GPU machine or a
    cluster, or whose folder was renamed, drew its gradient figures empty, without gradients.csv.gz or
    the gradient-ratio figure, and exited 0. Now its runs' files are read from the folder of that name
    beside the store (the figures run's go there too, no folder is made at the old path); a sweep into
    it, whose new runs' files MLflow would write at the old path, is refused until that path is made a
    link to the folder; and a run whose diagnostics cannot be read is named in report.md and on the
    figures it leaves, exit 1."""
    import pandas as pd

    from vgsweep import ui

    was = tmp_path / "gpu-out"
    was.mkdir()
    sweep_args = ["-m", *SMALL, "activation=relu,tanh", f"data.root={tiny_root}", f"hydra.sweep.dir={tmp_path / 'mr'}"]
    sweep = run_cli([*sweep_args, f"tracking.uri=sqlite:///{was / 'm.db'}"], cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert "keeps its runs' files in" not in sweep.stdout + sweep.stderr
    # a copy whose original is still there: a sweep into it is said to write its files into the original's
    shutil.copytree(was, tmp_path / "copy")
    dry = run_cli([*sweep_args, f"tracking.uri=sqlite:///{tmp_path / 'copy' / 'm.db'}", "seed=42,1",
                   "hydra.launcher.dry_run=true"], cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr[-3000:]
    said = dry.stdout + dry.stderr
    assert (f"experiment 'agarap2019' keeps its runs' files in {was / 'mlartifacts'}, not in "
            f"{tmp_path / 'copy' / 'mlartifacts'} beside the store") in said, said[-3000:]
    here = tmp_path / "copied"
    was.rename(here)
    uri = f"sqlite:///{here / 'm.db'}"
    c, runs = _runs(uri)
    assert len(runs) == 2 and all(r.info.artifact_uri.startswith(str(was)) for r in runs)

    figs = run_cli(["figures", "--tracking-uri", uri, "--out", str(tmp_path / "figs")], cwd=tmp_path)
    assert figs.returncode == 0, figs.stderr[-3000:]
    grads = pd.read_csv(tmp_path / "figs" / "agarap2019" / "gradients.csv.gz")
    assert set(grads.run_id) == {r.info.run_id for r in runs}
    assert not was.exists()  # the figures run's artifacts went beside the others
    [fig_run] = [r for r in _runs(uri)[1] if r.data.tags.get("vgsweep.kind") == "figures"]
    assert (here / "mlartifacts" / fig_run.info.run_id / "artifacts" / "figures" / "gradient_flow_d2.png").is_file()

    # a sweep into the moved store: MLflow would write the new runs' files at the old path; refused before
    # training, saying how to make the old path the moved folder
    more = [*sweep_args, f"tracking.uri={uri}", "seed=42,1"]
    refused = run_cli(more, cwd=tmp_path)
    assert refused.returncode == 2 and not was.exists(), refused.stderr[-3000:]
    [line] = refused.stderr.strip().splitlines()
    assert f"ln -s {here / 'mlartifacts'} {was / 'mlartifacts'}" in line and "is gone" in line, line
    assert len(_runs(uri)[1]) == 3  # the two runs and the figures run: nothing trained
    # MLflow's UI reads the runs' files at the recorded path only: vgsweep ui says so, with the same link
    [said] = ui.moved_lines(uri)
    assert said.startswith(f"agarap2019: its runs' files are in {here / 'mlartifacts'}, recorded as "
                           f"{was / 'mlartifacts'}, which is gone"), said
    assert said.endswith(f"ln -s {here / 'mlartifacts'} {was / 'mlartifacts'}"), said
    was.mkdir()
    (was / "mlartifacts").symlink_to(here / "mlartifacts")
    assert ui.moved_lines(uri) == []
    linked = run_cli(more, cwd=tmp_path)
    assert linked.returncode == 0, linked.stderr[-3000:]
    assert "2 finished, 2 skipped" in linked.stdout + linked.stderr
    new = [r for r in _runs(uri)[1] if r.info.run_id not in {x.info.run_id for x in runs} and "seed" in r.data.params]
    assert len(new) == 2 and all((here / "mlartifacts" / r.info.run_id / "artifacts" / "config.yaml").is_file()
                                 for r in new)
    (was / "mlartifacts").unlink()
    was.rmdir()

    # the tanh run of seed 1: every gradient figure draws it, and the gradient distribution (of tanh, one
    # run per panel, its first seed) draws seed 42's instead
    [lost] = [r.info.run_id for r in new if r.data.params["activation.name"] == "tanh"]
    (here / "mlartifacts" / lost / "artifacts" / "diagnostics" / "diagnostics.npz").unlink()
    report = run_cli(["report", "--tracking-uri", uri, "--out", str(tmp_path / "res")], cwd=tmp_path)
    assert report.returncode == 1, report.stderr[-3000:]
    [line] = [x for x in report.stderr.splitlines() if x.startswith("vgsweep: ")]
    assert line.startswith("vgsweep: the diagnostics of 1 run of experiment 'agarap2019' could not be read, so its "
                           f"gradient figures and gradients.csv.gz leave them out (run {lost}: "), line
    # MLflow's words for it differ by version: "No such artifact: 'diagnostics.npz'", "[Errno 2] No such file ..."
    assert f"{lost}/artifacts/diagnostics/diagnostics.npz: " in line and "No such " in line, line
    page = (tmp_path / "res" / "report.md").read_text()
    assert "**The diagnostics of 1 run could not be read**" in page and f"- `{lost}`: " in page
    tex = (tmp_path / "res" / "figures" / "agarap2019" / "figures.tex").read_text()
    assert "Left out: the diagnostics of 1 run of its 4, which could not be read." in tex
    assert "Diagnostics that could not be read: baseline, seed 1 (seed 42 drawn)." in tex
    assert tex.count("Left out: the diagnostics") == 1  # the distribution's runs are counted only where drawn
    grads = pd.read_csv(tmp_path / "res" / "figures" / "agarap2019" / "gradients.csv.gz")
    assert set(grads.run_id) == {r.info.run_id for r in [*runs, *new]} - {lost}


@pytest.mark.e2e
def test_a_sweep_whose_server_dies_stops_with_one_line_then_resumes(bigger, tmp_path):
    """The tracking server is killed mid-sweep and left down: the sweep retries for tracking.retry_s,
    then stops with one line (exit 3), its checkpoints kept. With the server back, the same command
    resumes the runs from their checkpoints into the same MLflow runs, every epoch logged once."""
    server = MlflowServer(tmp_path).start()
    try:
        ck = tmp_path / "ck"
        args = ["-m", "activation=relu,tanh", *[a for a in LONGER if not a.startswith(("checkpoint", "train.epochs"))],
                "train.epochs=10", "data.limit_train=2000",
                f"data.root={bigger}", f"tracking.uri={server.url}", "tracking.retry_s=4", "checkpoint.every=2",
                f"checkpoint.dir={ck}", f"hydra.sweep.dir={tmp_path / 'mr'}"]
        proc = _popen(args, tmp_path)
        _wait_for(lambda: len(list(ck.glob("*.pt"))) == 2, proc, 240, "the first checkpoints")
        server.stop(kill=True)
        out, err = proc.communicate(timeout=180)  # it stops on its own: 4 s of retries, a flush interval, then out
        assert proc.returncode == 3, err[-3000:]
        lines = [x for x in err.splitlines() if x.startswith("vgsweep: ")]
        assert len(lines) == 1 and "Traceback" not in err
        assert f"the tracking store {server.url} has not answered since" in lines[0]
        assert int(re.search(r"\(retried (\d+) s, tracking.retry_s=4\)", lines[0])[1]) >= 4, lines[0]  # all of it
        assert "tracking.retry_s=4" in lines[0] and str(ck) in lines[0]
        assert len(list(ck.glob("*.pt"))) == 2

        server.start()
        again = run_cli(args, cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "from its checkpoint at epoch" in again.stdout + again.stderr
        client, runs = _runs(server.url)
        assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
        for r in runs:
            steps = [m.step for m in client.get_metric_history(r.info.run_id, "test_acc")]
            assert sorted(steps) == list(range(10))
        assert not list(ck.glob("*.pt"))

        # a single run on a server names its page in MLflow's UI (MLflow's own two lines are not printed)
        one = run_cli([*(a for a in args[1:] if not a.startswith(("activation=", "hydra.sweep.dir", "train.epochs"))),
                       "seed=9", "train.epochs=1", f"hydra.run.dir={tmp_path / 'one'}"], cwd=tmp_path)
        assert one.returncode == 0, one.stderr[-3000:]
        [r] = [r for r in _runs(server.url)[1] if r.data.params["seed"] == "9"]
        assert f"run {r.info.run_id} in MLflow's UI: {server.url}/#/experiments/{r.info.experiment_id}/runs/" \
               f"{r.info.run_id}?workflowType=machine_learning" in one.stdout + one.stderr
        assert "View run" not in one.stdout + one.stderr
    finally:
        server.stop()


# The sweep's CLI in a subprocess whose SQLite connections may grow their database only to the number of
# pages written in the file PAGES ("" or missing: no limit). SQLite then refuses to grow the store with
# SQLITE_FULL, "database or disk is full": what a full disk or quota gives, without filling a disk.
_CAPPED_CLI = """
import os, sqlite3, sys
from sqlalchemy import event
from sqlalchemy.pool import Pool

@event.listens_for(Pool, "checkout")
def cap(dbapi_connection, record, proxy):
    if isinstance(dbapi_connection, sqlite3.Connection):
        pages = open(os.environ["PAGES"]).read().strip() if os.path.exists(os.environ["PAGES"]) else ""
        dbapi_connection.execute(f"PRAGMA max_page_count={pages or 1073741823}")

from vgsweep.app import cli
sys.argv[0] = "vgsweep"
cli()
"""


@pytest.mark.e2e
def test_a_store_whose_disk_fills_stops_the_sweep_with_one_line_then_resumes(bigger, tmp_path):
    """The SQLite store cannot grow mid-sweep (its disk full): the sweep retries for tracking.retry_s
    (one warning, no MLflow tracebacks), then stops with one line saying the disk is full (exit 3,
    bounded: the metrics queued for the writer do not each wait again), its checkpoints kept. With space
    again, the same command resumes the runs from their checkpoints."""
    import sqlite3

    db, pages, ck = tmp_path / "m.db", tmp_path / "pages", tmp_path / "ck"
    args = ["-m", "activation=relu,tanh", *[a for a in LONGER if not a.startswith(("checkpoint", "train.epochs"))],
            "train.epochs=20", "data.limit_train=2000", f"data.root={bigger}", f"tracking.uri=sqlite:///{db}",
            "tracking.retry_s=3", "checkpoint.every=2", f"checkpoint.dir={ck}", f"hydra.sweep.dir={tmp_path / 'mr'}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PAGES": str(pages)}
    proc = subprocess.Popen([sys.executable, "-c", _CAPPED_CLI, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for(lambda: len(list(ck.glob("*.pt"))) == 2, proc, 240, "the first checkpoints")
    with sqlite3.connect(db) as c:
        pages.write_text(str(c.execute("PRAGMA page_count").fetchone()[0]))  # no page more: the disk is full
    out, err = proc.communicate(timeout=180)  # it stops on its own: 3 s of retries, then out
    assert proc.returncode == 3, err[-3000:]
    lines = [x for x in err.splitlines() if x.startswith("vgsweep: ")]
    assert len(lines) == 1 and "Traceback" not in err + out, err[-3000:]
    assert f"the tracking store sqlite:///{db} has not written since" in lines[0]
    assert int(re.search(r"; retried (\d+) s, tracking.retry_s=3\)", lines[0])[1]) >= 3, lines[0]  # all of it
    assert "its disk is full (database or disk is full; retried" in lines[0] and "tracking.retry_s=3" in lines[0]
    assert "when the store has space again, run the same command" in lines[0] and str(ck) in lines[0]
    warned = [x for x in (out + err).splitlines() if "cannot write: its disk is full" in x]
    assert len(warned) == 1 and "free space there" in warned[0], out[-3000:]

    pages.write_text("")  # space again
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "from its checkpoint at epoch" in again.stdout + again.stderr
    _, runs = _runs(f"sqlite:///{db}")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}


def test_a_store_whose_file_system_fails_is_retried_then_stops_the_sweep_saying_so(tmp_path):
    """A real SQLite "disk I/O error" (the kernel refuses the store's writes: the file size limit,
    RLIMIT_FSIZE, stands in for a network file system's hiccup or a failing disk) is retried as a store
    that does not answer: once writes pass again the call goes through (one warning, no MLflow
    traceback); where they never do, TrackingUnavailable stops the sweep with one line saying the file
    system fails and that the checkpoints are kept. It used to fail the pack: its runs marked FAILED in
    a store that could not take the mark."""
    import logging
    import resource

    from mlflow.entities import Metric

    from vgsweep import sweep, tracking
    from vgsweep.app import compose

    db = tmp_path / "m.db"
    uri = f"sqlite:///{db}"
    tracking.ensure_sqlite_store(uri)
    client = tracking.client_for(uri)
    run = client.create_run(tracking.experiment_id(client, uri, "io", None))
    metrics = [Metric(f"m{i}", 0.5, 0, s) for i in range(200) for s in range(5)]

    limits, handler = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    budget = tracking.retry_budget()

    def limited() -> None:
        """No file may be written beyond its first 4 KiB."""
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))

    real_sleep = time.sleep

    def heal_then_sleep(seconds: float) -> None:  # the retry's first wait: the error was met, the file system heals
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        real_sleep(seconds)

    class Kept(logging.Handler):  # on the loggers themselves: an earlier test's logging set-up may stop propagation
        def __init__(self, level: int):
            super().__init__(level)
            self.said: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.said.append(self.format(record))

    loggers = [logging.getLogger(n) for n in ("vgsweep.tracking", "mlflow.store.db.utils")]
    kept, was = Kept(logging.INFO), [(lg.disabled, lg.level) for lg in loggers]
    for lg in loggers:
        lg.disabled = False
        lg.setLevel(logging.INFO)
        lg.addHandler(kept)
    try:
        tracking.configure(30)
        tracking.start_over()
        limited()  # healed at the retry's first wait, not by a timer (under load the call came after it: no error)
        with mock.patch.object(time, "sleep", heal_then_sleep):
            tracking.retry(client.log_batch, run.info.run_id, metrics=metrics)
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        assert len(client.get_metric_history(run.info.run_id, "m7")) == 5
        assert len(kept.said) == 1 and "cannot be read or written (disk I/O error" in kept.said[0], kept.said
        assert "Traceback" not in kept.said[0]  # MLflow's own, for each retried error, is not printed

        tracking.configure(0.5)
        tracking.start_over()
        limited()
        with pytest.raises(tracking.TrackingUnavailable) as e:
            tracking.retry(client.log_batch, run.info.run_id, metrics=[Metric(f"n{i}", 0.5, 0, 0) for i in range(500)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
        tracking.configure(budget)
        tracking.start_over()
        for lg, (disabled, level) in zip(loggers, was):
            lg.removeHandler(kept)
            lg.disabled, lg.level = disabled, level
    assert e.value.error == "disk I/O error"
    cfg = compose([f"tracking.uri={uri}", "tracking.retry_s=0.5", f"checkpoint.dir={tmp_path / 'ck'}"])
    said = str(sweep.stopped(cfg, e.value))
    assert f"the tracking store {uri} has failed to read or write its file since" in said
    assert "its disk or file system fails (disk I/O error; retried" in said and "tracking.retry_s=0.5" in said
    assert f"Checkpoints are kept in {tmp_path / 'ck'}" in said and "when the store can be written again" in said


def test_a_full_store_is_waited_for_once_and_space_freed_meanwhile_goes_on(tmp_path):
    """retry waits tracking.retry_s for a store SQLite cannot grow (SQLITE_FULL), then raises; a later
    call meeting it again raises at once (the sweep is stopping); a new sweep waits again, and space
    freed while it waits lets the call through."""
    import sqlite3

    from vgsweep import tracking

    c = sqlite3.connect(tmp_path / "s.db")
    c.execute("CREATE TABLE t (x)")
    c.commit()
    c.execute(f"PRAGMA max_page_count={c.execute('PRAGMA page_count').fetchone()[0]}")

    def write() -> None:
        try:
            c.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
            c.commit()
        except sqlite3.OperationalError:
            c.rollback()
            raise

    budget = tracking.retry_budget()
    try:
        tracking.configure(0.5)
        tracking.start_over()
        t0 = time.monotonic()
        with sleeps_of(tracking, really=True) as slept, pytest.raises(tracking.TrackingUnavailable) as first:
            tracking.retry(write)
        assert time.monotonic() - t0 >= 0.5 and first.value.error == "database or disk is full"
        assert slept and slept == [0.05 * 2 ** i for i in range(len(slept))]  # it waited: 0.05 s, then doubling
        with sleeps_of(tracking) as slept, pytest.raises(tracking.TrackingUnavailable) as again:
            tracking.retry(write)
        assert slept == [] and again.value.since == first.value.since  # at once: no wait again
        tracking.start_over()
        calls = []

        def freed() -> None:
            calls.append(1)
            if len(calls) == 3:
                c.execute("PRAGMA max_page_count=1073741823")
            write()

        tracking.retry(freed)
        assert len(calls) == 3 and c.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    finally:
        tracking.configure(budget)
        tracking.start_over()
