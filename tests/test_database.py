"""A database as the store (tracking.uri=postgresql://...): a real PostgreSQL server started for the
module (initdb into a temporary folder, 127.0.0.1, a free port), the real CLI into it."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import SMALL, free_port, run_cli

pytestmark = pytest.mark.e2e


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
    return str(Path(found[-1]).parent) if found[-1] else None


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server; its URI (user vgsweep, any password: trust on 127.0.0.1)."""
    bindir = _bindir()
    if bindir is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("CI=true but PostgreSQL's initdb is not installed (apt install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="vgsweep-pg-"))  # not under pytest's root-only tmp: the server's user reads it
    as_user = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []  # initdb refuses root
    if as_user:
        shutil.chown(folder, "postgres")
    port = free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True, timeout=120)  # noqa: E731
    run(f"{bindir}/initdb", "-D", f"{folder}/data", "-A", "trust", "-U", "vgsweep")
    run(f"{bindir}/pg_ctl", "-D", f"{folder}/data", "-l", f"{folder}/log", "-w", "start",
        "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1")
    try:
        run(f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "vgsweep", "mlflow")
        yield f"postgresql+psycopg://vgsweep:s3cret@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", f"{folder}/data", "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_sweep_into_postgresql_keeps_its_password_out_of_the_store(postgres, tiny_root, tmp_path):
    """Two jobs into a PostgreSQL store: FINISHED runs, a second launch skips them, the report reads
    them back. The URI's password is in none of what the store keeps (config.yaml, hydra/*.yaml,
    tags, params: the config's tracking.uri is one) nor in report.md and report.tex, which name the store: ***
    stands there."""
    args = ["-m", "activation=relu,tanh", *SMALL, f"data.root={tiny_root}", f"tracking.uri={postgres}",
            f"tracking.artifact_root={tmp_path / 'art'}", f"hydra.sweep.dir={tmp_path / 'mr'}"]
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    c = MlflowClient(postgres)
    runs = c.search_runs([c.get_experiment_by_name("agarap2019").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    kept = [str(v) for r in runs for v in [*r.data.tags.values(), *r.data.params.values()]]
    for r in runs:
        for name in ("config.yaml", "hydra/overrides.yaml", "hydra/config.yaml", "hydra/hydra.yaml"):
            kept.append(Path(c.download_artifacts(r.info.run_id, name, str(tmp_path / r.info.run_id))).read_text())
    assert not [k for k in kept if "s3cret" in k]
    assert any("vgsweep:***@127.0.0.1" in k for k in kept)
    assert {r.data.params["tracking.uri"] for r in runs} == {postgres.replace("s3cret", "***")}
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0 and "0 finished, 2 skipped" in again.stdout + again.stderr, again.stderr[-3000:]
    out = tmp_path / "results"
    report = run_cli(["report", "--tracking-uri", postgres, "--out", str(out)], cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "| baseline | relu |" in (out / "table.md").read_text()
    written = (out / "report.md").read_text() + (out / "report.tex").read_text()  # files a paper's repository holds
    assert "s3cret" not in written + report.stdout + report.stderr and "vgsweep:***@127.0.0.1" in written


@pytest.mark.parametrize("uri,says", [
    ("postgresql+psycopg://vgsweep:s3cret@127.0.0.1:{closed}/mlflow", "the database does not answer (connection"),
    ("postgresql+pg8000://vgsweep:s3cret@127.0.0.1:{closed}/mlflow",
     "its database driver is not installed (no module 'pg8000'): pip install 'pg8000'")])
def test_a_database_store_that_cannot_be_used_is_one_line_at_once(tiny_root, tmp_path, uri, says):
    """Nothing listens there, or the driver is missing: one line, exit 2, the password hidden. Before,
    MLflow retried its engine for minutes, printing every attempt, or a ModuleNotFoundError came."""
    uri = uri.format(closed=free_port())
    proc = run_cli(["-m", "activation=relu", *SMALL, f"data.root={tiny_root}", f"tracking.uri={uri}",
                    f"hydra.sweep.dir={tmp_path / 'mr'}"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("vgsweep: ")]
    assert line.startswith("vgsweep: invalid config: tracking.uri='postgresql+") and says in line, line
    assert "s3cret" not in proc.stdout + proc.stderr and "vgsweep:***@" in line


def test_a_database_stores_artifacts_default_to_the_projects_folder():
    """MLflow's own default for a database store is mlruns/ in whatever folder the command ran from."""
    from vgsweep import tracking
    from vgsweep.app import compose

    cfg = compose(["tracking.uri=postgresql://u@h/db"])
    assert tracking.artifact_root("postgresql://u@h/db", cfg) == str(tracking.project_root() / "mlartifacts")
    assert tracking.artifact_root("http://127.0.0.1:5000", cfg) is None  # a server decides
