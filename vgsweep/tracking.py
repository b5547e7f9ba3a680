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
SEARCH_PAGE = 5000  # runs per search call; training_runs reads page after page
FLUSH_SECONDS = 5.0  # metrics are buffered and sent at most this often (and at the end)
MAX_PARAM_CHARS = 6000

TAG_HASH = "vgsweep.config_hash"
TAG_OVERRIDES = "vgsweep.overrides"
TAG_HOST, TAG_PID = "vgsweep.host", "vgsweep.pid"
TAG_HEARTBEAT = "vgsweep.heartbeat"  # unix seconds of the training process's last sign of life
SQLITE_BUSY_MS = 60_000  # a writer waits this long for another process's lock before failing
RETRY_SECONDS = 120.0  # and MLflow calls that still meet a locked database are retried this long


class TrackingError(RuntimeError):
    pass


def _install_sqlite_busy_timeout() -> None:
    """Every SQLite connection SQLAlchemy opens in this process waits for locks instead of failing
    at once with "database is locked" (Python's default is 5 s)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if getattr(_install_sqlite_busy_timeout, "done", False):
        return

    @event.listens_for(Engine, "connect")
    def _busy(dbapi_conn, _record):  # noqa: ANN001
        if type(dbapi_conn).__module__.startswith("sqlite3"):
            dbapi_conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")

    _install_sqlite_busy_timeout.done = True  # type: ignore[attr-defined]


def retry(fn, *args, **kwargs):
    """Call an MLflow function, retrying with backoff while SQLite reports a lock."""
    deadline, wait = time.monotonic() + RETRY_SECONDS, 0.05
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - only lock errors are retried
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(wait)
            wait = min(wait * 2, 2.0)


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


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def _lock(uri: str):
    """A file lock beside a SQLite store (creating the schema or an experiment is not atomic)."""
    import contextlib

    from filelock import FileLock

    p = sqlite_path(uri)
    return FileLock(str(p) + ".lock", timeout=RETRY_SECONDS) if p else contextlib.nullcontext()


@functools.lru_cache(maxsize=None)
def client_for(uri: str):
    """An MlflowClient whose store exists (SQLite schema created under a file lock)."""
    from mlflow.tracking import MlflowClient

    _install_sqlite_busy_timeout()
    with _lock(uri):  # the constructor creates or migrates a SQLite schema: one process at a time
        client = MlflowClient(tracking_uri=uri)
        retry(client.search_experiments, max_results=1)
    return client


def check_reachable(uri: str) -> None:
    """Fail fast, before anything trains, when the store cannot be used."""
    p = sqlite_path(uri)
    if p is not None:
        if not p.parent.is_dir():
            raise TrackingError(f"tracking.uri={uri!r}: folder {p.parent} does not exist "
                                "(create it, or leave tracking.uri unset for the project's mlflow.db)")
        return
    if uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).read()
        except (urllib.error.URLError, OSError) as e:
            raise TrackingError(f"tracking.uri={uri!r}: no MLflow server answers there ({e}); start one "
                                "(mlflow server --host 127.0.0.1 --port 5000) or leave tracking.uri unset "
                                "for the embedded SQLite store") from None


def experiment_id(client, uri: str, name: str, artifact_location: str | None) -> str:
    """Get or create the experiment; a concurrent creator is not an error."""
    from mlflow.exceptions import MlflowException

    exp = retry(client.get_experiment_by_name, name)
    if exp is not None:
        return exp.experiment_id
    with _lock(uri):
        try:
            return retry(client.create_experiment, name, artifact_location=artifact_location)
        except MlflowException:
            exp = retry(client.get_experiment_by_name, name)
            if exp is None:
                raise
            return exp.experiment_id


def training_runs(client, exp_id: str, filter_string: str = ""):
    """Every training run (one that carries a config hash) of the experiment matching the filter,
    newest first, page by page: no experiment is too large to be read whole."""
    token = None
    while True:
        page = retry(client.search_runs, [exp_id], filter_string, max_results=SEARCH_PAGE, page_token=token,
                     order_by=["attributes.start_time DESC"])
        yield from (r for r in page if TAG_HASH in r.data.tags)  # not e.g. the `figures` run
        token = page.token
        if not token:
            return


def runs_by_hash(client, exp_id: str) -> dict[str, list]:
    """Every training run of the experiment, grouped by config hash, newest first."""
    out: dict[str, list] = {}
    for r in training_runs(client, exp_id):
        out.setdefault(r.data.tags[TAG_HASH], []).append(r)
    return out


def orphan_reason(run, stale_after_s: float = 0.0, now: float | None = None) -> str | None:
    """Why a RUNNING run's process is gone, or None if it may be alive: on this host, its pid no
    longer exists; on any host, its heartbeat is older than `stale_after_s` (0: never judged so).
    Runs recorded before heartbeats existed are judged by their pid only."""
    import os
    import socket

    if run.info.status != "RUNNING":
        return None
    host, pid = run.data.tags.get(TAG_HOST), run.data.tags.get(TAG_PID)
    if host == socket.gethostname() and (pid or "").isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return f"process {pid} on this host is gone"
        except PermissionError:
            pass
    age = heartbeat_age(run, now)
    if stale_after_s > 0 and age is not None and age > stale_after_s:
        return f"no heartbeat from {host} for {age:.0f} s (tracking.stale_after_s={stale_after_s:g})"
    return None


def heartbeat_age(run, now: float | None = None) -> float | None:
    """Seconds since the run's last heartbeat, or None for runs recorded before heartbeats existed."""
    beat = run.data.tags.get(TAG_HEARTBEAT, "")
    if not beat.replace(".", "", 1).isdigit():
        return None
    return (time.time() if now is None else now) - float(beat)


class Heartbeat:
    """A daemon thread that stamps runs with the time every `interval` seconds, until stopped, so
    that a sweep on any host can tell a live run from one whose machine or process died."""

    def __init__(self, loggers: list, interval: float):
        import threading

        self.loggers, self.interval = loggers, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vgsweep-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            stamp = {TAG_HEARTBEAT: f"{time.time():.0f}"}
            for lg in self.loggers:
                try:
                    lg.set_tags(stamp)
                except Exception as e:  # noqa: BLE001 - a missed beat must not stop training
                    log.warning("heartbeat for run %s failed: %s", lg.run_id, e)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _chunks(xs: list, n: int) -> Iterable[list]:
    for i in range(0, len(xs), n):
        yield xs[i:i + n]


_WRITER = None


def _writer():
    """One background thread that sends metric batches in order, so training never waits on the store."""
    global _WRITER
    if _WRITER is None:
        from concurrent.futures import ThreadPoolExecutor

        _WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vgsweep-mlflow")
    return _WRITER


class RunLogger:
    """The MLflow run of one job: params and tags at start, buffered metrics, artifacts at the end.

    Metrics are buffered and sent in batches of up to 1000 by a background thread; `flush(wait=True)`
    and `finish` wait until the store holds them (and raise what the writer met)."""

    def __init__(self, client, exp_id: str, run_name: str, params: dict[str, Any], tags: dict[str, str],
                 run_id: str | None = None):
        from mlflow.entities import Param, RunTag

        self.client = client
        if run_id is None:
            run = retry(client.create_run, exp_id, run_name=run_name, tags=tags)
            self.run_id = run.info.run_id
            items = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in sorted(params.items())]
            for chunk in _chunks(items, PARAMS_PER_CALL):
                retry(client.log_batch, self.run_id, params=chunk)
        else:  # continue a run (resume from a checkpoint)
            self.run_id = run_id
            retry(client.update_run, run_id, status="RUNNING")
            retry(client.log_batch, run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        self._pending: list = []
        self._sent: list = []  # futures of batches handed to the writer
        self._last_flush = time.monotonic()
        self._RunTag = RunTag

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        if time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self, wait: bool = False) -> None:
        for chunk in _chunks(self._pending, METRICS_PER_CALL):
            self._sent.append(_writer().submit(retry, self.client.log_batch, self.run_id, metrics=chunk))
        self._pending = []
        self._last_flush = time.monotonic()
        if wait:
            for f in self._sent:
                f.result()
            self._sent = []

    def set_tags(self, tags: dict[str, str]) -> None:
        if tags:
            retry(self.client.log_batch, self.run_id, tags=[self._RunTag(k, str(v)) for k, v in tags.items()])

    def log_config(self, cfg: DictConfig, hydra_dir: Path | None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "config.yaml"
            p.write_text(OmegaConf.to_yaml(cfg, resolve=True))
            retry(self.client.log_artifact, self.run_id, str(p))
        if hydra_dir is not None and hydra_dir.is_dir():
            retry(self.client.log_artifacts, self.run_id, str(hydra_dir), artifact_path="hydra")

    def log_bytes(self, data: bytes, artifact_file: str) -> None:
        """Store bytes as an artifact at `artifact_file` (folders allowed)."""
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / Path(artifact_file).name
            p.write_bytes(data)
            parent = str(Path(artifact_file).parent)
            retry(self.client.log_artifact, self.run_id, str(p), None if parent == "." else parent)

    def log_figure(self, fig, name: str) -> None:
        retry(self.client.log_figure, self.run_id, fig, name)

    def log_file(self, path: Path, artifact_path: str | None = None) -> None:
        if path.is_file():
            retry(self.client.log_artifact, self.run_id, str(path), artifact_path)

    def finish(self, status: str) -> None:
        self.flush(wait=True)
        retry(self.client.set_terminated, self.run_id, status=status)
