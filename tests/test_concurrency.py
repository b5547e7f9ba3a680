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
        return run_cli(["-m", *args[i], *SMALL, f"data.root={root}", f"tracking.uri={uri}",
                        f"hydra.sweep.dir={tmp / f'mr{i}'}"], cwd=tmp)

    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(sweep, (0, 1)))
    for p in procs:
        assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("agarap2019")
    return procs, c, c.search_runs([exp.experiment_id], max_results=1000)


def _two_sweeps_at_once(uri: str, root: Path, tmp: Path) -> None:
    _, c, runs = _at_once([["activation=relu,tanh", f"seed={s}"] for s in SEEDS], root, uri, tmp)
    assert len(runs) == 16
    assert len({(r.data.params["activation.name"], r.data.params["seed"]) for r in runs}) == 16
    for r in runs:
        assert r.info.status == "FINISHED"
        for m in ("train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds"):
            assert sorted(h.step for h in c.get_metric_history(r.info.run_id, m)) == [0, 1]
        assert "config.yaml" in {a.path for a in c.list_artifacts(r.info.run_id)}


def test_two_sweeps_into_one_sqlite_store(tiny_root, tmp_path):
    _two_sweeps_at_once(f"sqlite:///{tmp_path / 'shared.db'}", tiny_root, tmp_path)


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path).start()
    yield server.url
    server.stop()


def test_two_sweeps_into_one_mlflow_server(tiny_root, tmp_path, mlflow_server):
    _two_sweeps_at_once(mlflow_server, tiny_root, tmp_path)
