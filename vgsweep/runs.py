"""The MLflow run of one job: created (or continued) before training, fed per-epoch metrics while the
pack trains, and closed after it: FINISHED with its artifacts, or FAILED with the reason.

Metrics are buffered and sent in batches by one background thread, so training never waits on the
store; `flush(wait=True)` and `finish` wait until the store holds them, and a batch the store
refused is raised at the next `log_metrics` or `flush`. A heartbeat thread stamps RUNNING runs so
that a sweep on any host can tell a live run from one whose process died.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import torch
from omegaconf import DictConfig, OmegaConf

import vgsweep
from vgsweep import tracking
from vgsweep.config import TrackingConfig
from vgsweep.executors import TAG_JOB, scheduler_job_id
from vgsweep.tracking import retry

log = logging.getLogger(__name__)

PARAMS_PER_CALL = 100  # MLflow's log_batch limits
METRICS_PER_CALL = 1000
FLUSH_SECONDS = TrackingConfig.flush_s  # the schema's default: buffered metrics are sent this often (and at the end)
MAX_PARAM_CHARS = 6000


def _chunks(xs: list, n: int) -> Iterable[list]:
    for i in range(0, len(xs), n):
        yield xs[i:i + n]


_WRITER = None


_OPEN: dict[str, "RunLogger"] = {}  # runs this process made RUNNING and has not ended yet


def end_open_runs(status: str, reason: str, retry_s: float = 10.0) -> list[str]:
    """End every run this process still holds RUNNING (a sweep interrupted by SIGINT or SIGTERM): its
    buffered metrics sent if the store takes them within `retry_s`, the reason tagged, the status set.
    Returns the ids of the runs it could end."""
    tracking.configure(min(tracking.retry_budget(), retry_s))
    ended = []
    for lg in list(_OPEN.values()):
        try:
            lg.end(status, reason)
            ended.append(lg.run_id)
        except Exception as e:  # noqa: BLE001 - the next sweep marks it KILLED when its heartbeat stops
            log.warning("run %s could not be marked %s: %s", lg.run_id, status, e)
        _OPEN.pop(lg.run_id, None)
    return ended


def _writer():
    """One background thread that sends metric batches in order."""
    global _WRITER
    if _WRITER is None:
        from concurrent.futures import ThreadPoolExecutor

        _WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vgsweep-mlflow")
    return _WRITER


def dataset_inputs(ds) -> list:
    """MLflow's record of the data a run sees (vgsweep.data.loader.Dataset `ds`): one DatasetInput per split,
    named after the data set, with the split's digest, its context (mlflow.data.context: train,
    validation, test), the folder read (a local source), and its tensors' schema and shapes as MLflow's
    NumpyDataset writes them. MLflow's UI shows them as the run's Datasets; `datasets.digest = '...'`
    finds the runs that saw the same examples."""
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag

    def spec(dtype: str, shape: list[int]) -> str:
        return json.dumps([{"type": "tensor", "tensor-spec": {"dtype": dtype, "shape": [-1, *shape[1:]]}}])

    made = []
    for context, split in zip(tracking.SPLITS, (ds.train, ds.val, ds.test)):
        if split is None:
            continue
        x, y = list(split.x.shape), list(split.y.shape)
        schema = {"mlflow_tensorspec": {"features": spec("float32", x), "targets": spec("int64", y)}}
        profile = {"features_shape": x, "features_size": split.x.numel(), "features_nbytes": split.x.numel() * 4,
                   "targets_shape": y, "targets_size": split.y.numel(), "targets_nbytes": split.y.numel() * 8}
        made.append(DatasetInput(Dataset(ds.name, ds.digests[context], "local", json.dumps({"uri": ds.source}),
                                         json.dumps(schema), json.dumps(profile)),
                                 tags=[InputTag(tracking.DATA_CONTEXT, context)]))
    return made


def run_tags(config_hash: str, overrides: list[str], pack_size: int, device: str) -> dict[str, str]:
    return {
        **tracking.system_tags(),
        tracking.TAG_HASH: config_hash,
        tracking.TAG_OVERRIDES: tracking.hide_passwords(" ".join(overrides)),
        tracking.TAG_HOST: socket.gethostname(),
        tracking.TAG_PID: str(os.getpid()),
        **({tracking.TAG_PROCESS: stamp} if (stamp := tracking.process_stamp(os.getpid())) else {}),
        tracking.TAG_HEARTBEAT: f"{time.time():.0f}",
        "vgsweep.version": vgsweep.__version__,
        "vgsweep.git_commit": tracking.git_commit(),
        "vgsweep.torch_version": torch.__version__,
        "vgsweep.device": device,
        "vgsweep.pack_size": str(pack_size),
        **({TAG_JOB: job} if (job := scheduler_job_id()) else {}),
        **({"vgsweep.cuda_visible_devices": v} if (v := os.environ.get("CUDA_VISIBLE_DEVICES")) is not None else {}),
    }


class RunLogger:
    """A handle on one run of the store; `create` and `resume` make one for a job."""

    def __init__(self, client, run_id: str, flush_s: float = FLUSH_SECONDS):
        from mlflow.entities import RunTag

        self.client, self.run_id = client, run_id
        self._pending: list = []
        self._sent: list = []  # futures of batches handed to the writer
        self._last_flush = time.monotonic()
        self.flush_s = flush_s  # tracking.flush_s
        self._RunTag = RunTag

    @classmethod
    def create(cls, client, exp_id: str, run_name: str, params: dict[str, Any], tags: dict[str, str],
               flush_s: float = FLUSH_SECONDS) -> RunLogger:
        from mlflow.entities import Param

        run = retry(client.create_run, exp_id, run_name=run_name, tags=tags)
        lg = cls(client, run.info.run_id, flush_s)
        _OPEN[lg.run_id] = lg
        # a database URI's password (tracking.uri=postgresql://user:pw@host/db) is not kept: MLflow shows
        # params to everyone who can read the store
        items = [Param(k, tracking.hide_passwords(str(v))[:MAX_PARAM_CHARS]) for k, v in sorted(params.items())]
        # the writer sends them, before the run's metrics, while the pack trains (15 ms a run on the
        # sweep's critical path otherwise); finishing the run waits for them
        for chunk in _chunks(items, PARAMS_PER_CALL):
            lg._send(params=chunk)
        return lg

    @classmethod
    def resume(cls, client, run_id: str, tags: dict[str, str], flush_s: float = FLUSH_SECONDS) -> RunLogger:
        """Continue a run (from a checkpoint): RUNNING again, with this process's tags. Why it stopped
        (`vgsweep.failure`) moves to `vgsweep.resumed_after`: a run that finishes carries no failure.
        `vgsweep.resumed_at` (unix seconds) is when: `vgsweep status` counts a stall from it, not from
        the last epoch the earlier process logged."""
        lg = cls(client, run_id, flush_s)
        old = retry(client.get_run, run_id).data.tags
        retry(client.update_run, run_id, status="RUNNING")
        _OPEN[run_id] = lg
        gone = {tracking.TAG_FAILURE: "resumed_after", "vgsweep.failed_epoch": None}
        lg.set_tags({**tags, **{f"vgsweep.{new}": old[t] for t, new in gone.items() if new and t in old},
                     tracking.TAG_RESUMED_AT: f"{time.time():.0f}"})
        for t in gone:
            if t in old:
                retry(client.delete_tag, run_id, t)
        return lg

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        if time.monotonic() - self._last_flush > self.flush_s:
            self.flush()

    def _raise_failed(self) -> None:
        """Re-raise (here, in the training thread) what the writer met sending an earlier batch."""
        done = [f for f in self._sent if f.done()]
        for f in done:
            f.result()
        self._sent = [f for f in self._sent if not f.done()]

    def flush(self, wait: bool = False) -> None:
        self._raise_failed()
        for chunk in _chunks(self._pending, METRICS_PER_CALL):
            self._send(metrics=chunk)
        self._pending = []
        self._last_flush = time.monotonic()
        if wait:
            sent, self._sent = self._sent, []
            for f in sent:
                f.result()

    def _send(self, **batch) -> None:
        """Hand one log_batch to the writer thread (in order); what it meets is raised at a flush."""
        self._sent.append(_writer().submit(retry, self.client.log_batch, self.run_id, **batch))

    def log_inputs(self, datasets: list) -> None:
        """Record the data set the run trains on (MLflow DatasetInputs, see dataset_inputs), sent by the
        writer while the pack trains; the store keeps one of each (name, digest) per run."""
        self._sent.append(_writer().submit(retry, self.client.log_inputs, self.run_id, datasets))

    def set_tags(self, tags: dict[str, str]) -> None:
        if tags:
            retry(self.client.log_batch, self.run_id, tags=[self._RunTag(k, str(v)) for k, v in tags.items()])

    @staticmethod
    def config_file(cfg: DictConfig) -> dict[str, str]:
        """The run's resolved config as its `config.yaml` artifact (passwords in URIs as ***)."""
        return {"config.yaml": tracking.hide_passwords(OmegaConf.to_yaml(cfg, resolve=True))}

    @staticmethod
    def hydra_files(hydra_dir: Path | None) -> dict[str, str]:
        """The job's `.hydra/` files (config, hydra, overrides) as the run's `hydra/` artifacts, with any
        password in a URI (`postgresql://user:pw@host/db`) written as ***: whoever reads the store's
        artifacts need not learn the database's password. Text files only: a callback's pickles are left."""
        if hydra_dir is None or not hydra_dir.is_dir():
            return {}
        out = {}
        for f in sorted(hydra_dir.iterdir()):
            if f.is_file():
                try:
                    out[f"hydra/{f.name}"] = tracking.hide_passwords(f.read_bytes().decode())
                except UnicodeDecodeError:  # a callback's binary file (Hydra's PickleJobInfoCallback: config.pickle,
                    continue  # the config again, whose passwords could not be hidden)
        return out

    def log_files(self, files: dict[str, bytes | str]) -> None:
        """Store artifacts (path in the run's artifacts -> content) in one call to the store: each call
        is a round trip (to a tracking server, over the network), and a run ends with three or four."""
        if not files:
            return
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files.items():
                p = Path(tmp) / name
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data) if isinstance(data, bytes) else p.write_text(data)
            retry(self.client.log_artifacts, self.run_id, tmp)

    def log_hydra_dir(self, hydra_dir: Path | None) -> None:
        self.log_files(self.hydra_files(hydra_dir))

    def finish(self, status: str) -> None:
        self.flush(wait=True)
        retry(self.client.set_terminated, self.run_id, status=status)
        _OPEN.pop(self.run_id, None)

    def fail(self, reason: str, extra: dict[str, str] | None = None) -> None:
        """End the run FAILED with its reason; whatever the store still holds of it is kept."""
        self.end("FAILED", reason, extra)

    def end(self, status: str, reason: str, extra: dict[str, str] | None = None) -> None:
        """End the run FAILED or KILLED with its reason (tag vgsweep.failure), buffered metrics sent if
        the store takes them."""
        self.set_tags({tracking.TAG_FAILURE: reason[:5000], **(extra or {})})
        try:
            self.flush(wait=True)
        except tracking.TrackingUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 - the metrics that could not be sent are lost; the status is not
            log.warning("run %s: metrics not recorded: %s", self.run_id, e)
        retry(self.client.set_terminated, self.run_id, status=status)
        _OPEN.pop(self.run_id, None)


class Heartbeat:
    """A daemon thread that stamps runs with the time every `interval` seconds, until stopped. One
    attempt per beat: a store that does not answer costs a warning, never a wait."""

    def __init__(self, loggers: list[RunLogger], interval: float):
        import threading

        self.loggers, self.interval = loggers, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vgsweep-heartbeat", daemon=True)
        self._warned = False

    def _run(self) -> None:
        from mlflow.entities import RunTag

        while not self._stop.wait(self.interval):
            stamp = [RunTag(tracking.TAG_HEARTBEAT, f"{time.time():.0f}")]
            for lg in self.loggers:
                try:
                    lg.client.log_batch(lg.run_id, tags=stamp)
                except Exception as e:  # noqa: BLE001 - a missed beat must not stop training
                    if not self._warned:
                        log.warning("heartbeat for run %s failed: %s", lg.run_id, str(e).splitlines()[0][:200])
                        self._warned = True

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5 + min(self.interval, 60))
