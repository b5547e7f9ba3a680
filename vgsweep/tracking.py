"""MLflow: one experiment per study, one run per job, metrics sent in batches.

The embedded default store is `sqlite:///<project root>/mlflow.db` with artifacts beside it in
`mlartifacts/`; `tracking.uri` points anywhere else (another SQLite file, an `mlflow server`).
"""

from __future__ import annotations

import functools
import logging
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

PARAMS_PER_CALL = 100  # MLflow's log_batch limits
METRICS_PER_CALL = 1000
FLUSH_SECONDS = 5.0  # metrics are buffered and sent at most this often (and at the end)
MAX_PARAM_CHARS = 6000

TAG_HASH = "vgsweep.config_hash"
TAG_OVERRIDES = "vgsweep.overrides"


def project_root() -> Path:
    """The checkout that holds conf/ (editable install), else the current directory."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "conf").is_dir() else Path.cwd()


def default_uri() -> str:
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def resolve_uri(cfg: DictConfig) -> str:
    return cfg.tracking.uri or default_uri()


def artifact_root(uri: str, cfg: DictConfig) -> str | None:
    if cfg.tracking.artifact_root:
        return str(Path(cfg.tracking.artifact_root).resolve())
    if uri.startswith("sqlite:///"):
        return str(Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts")
    return None  # a server decides


@functools.lru_cache(maxsize=None)
def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=project_root(),
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def client_for(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(client, name: str, artifact_location: str | None) -> str:
    """Get or create the experiment; a concurrent creator is not an error."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _chunks(xs: list, n: int) -> Iterable[list]:
    for i in range(0, len(xs), n):
        yield xs[i:i + n]


class RunLogger:
    """The MLflow run of one job: params and tags at start, buffered metrics, artifacts at the end."""

    def __init__(self, client, exp_id: str, run_name: str, params: dict[str, Any], tags: dict[str, str]):
        from mlflow.entities import Param, RunTag

        self.client = client
        run = client.create_run(exp_id, run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in sorted(params.items())]
        for chunk in _chunks(items, PARAMS_PER_CALL):
            client.log_batch(self.run_id, params=chunk)
        self._pending: list = []
        self._last_flush = time.monotonic()
        self._RunTag = RunTag

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        if time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        for chunk in _chunks(self._pending, METRICS_PER_CALL):
            self.client.log_batch(self.run_id, metrics=chunk)
        self._pending = []
        self._last_flush = time.monotonic()

    def set_tags(self, tags: dict[str, str]) -> None:
        if tags:
            self.client.log_batch(self.run_id, tags=[self._RunTag(k, str(v)) for k, v in tags.items()])

    def log_config(self, cfg: DictConfig, hydra_dir: Path | None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "config.yaml"
            p.write_text(OmegaConf.to_yaml(cfg, resolve=True))
            self.client.log_artifact(self.run_id, str(p))
        if hydra_dir is not None and hydra_dir.is_dir():
            self.client.log_artifacts(self.run_id, str(hydra_dir), artifact_path="hydra")

    def log_figure(self, fig, name: str) -> None:
        self.client.log_figure(self.run_id, fig, name)

    def log_file(self, path: Path, artifact_path: str | None = None) -> None:
        if path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, status: str) -> None:
        self.flush()
        self.client.set_terminated(self.run_id, status=status)
