"""Shared fixtures: tiny data in the real IDX format, the real Hydra config shrunk for the CPU."""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

# make test runs two workers on two cores, each starting CLI subprocesses: one compute thread per
# process (inherited by the subprocesses) instead of every process spinning up one per core.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# A developer's own MLFLOW_TRACKING_URI (a team's server) is the store of every command that names none: not
# the tests' (the one that needs it sets it).
os.environ.pop("MLFLOW_TRACKING_URI", None)

import torch  # noqa: E402

# The tests' own processes keep that one thread too (two a worker on two cores cost the unit tests 18%
# more). The in-process equalities (a run alone and packed, bit for bit) take the fixture
# `several_threads`: only with more than one thread does MKL round a batch of products differently
# from a single one, which is how CI found packing changing a run.

import numpy as np
import pytest
from omegaconf import DictConfig, OmegaConf

from vgsweep.app import compose
from vgsweep.data.idx import write_idx
from tests.warm import ZYGOTE, WarmPopen

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
# Overrides that shrink any job to seconds on the CPU.
SMALL = ["device=cpu", "data.verify=false", "train.epochs=2", "model.hidden=[16,16]", "train.batch_size=32",
         "optimizer.lr=0.01", "data.download=false", "tracking.learning_curve=false"]


def make_idx_dataset(root: Path, n_train: int = 384, n_test: int = 128, seed: int = 0,
                     folder: str = "MNIST") -> Path:
    """Write a small learnable data set in MNIST's file format: class prototypes plus noise."""
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, size=(10, 28, 28))
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, size=n)
        x = np.clip(protos[y] * 0.35 + rng.normal(0, 60, size=(n, 28, 28)) + 60, 0, 255)
        write_idx(root / folder / "raw" / f"{split}-images-idx3-ubyte.gz", x)
        write_idx(root / folder / "raw" / f"{split}-labels-idx1-ubyte.gz", y)
    return root


@contextlib.contextmanager
def torch_threads(n: int):
    """torch computes with n threads inside the block, with as many as before after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def several_threads():
    """torch's usual threads (this machine's cores, at least 2) for one test."""
    with torch_threads(max(2, os.cpu_count() or 1)):
        yield


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return make_idx_dataset(tmp_path_factory.mktemp("data"))


@functools.lru_cache(maxsize=None)
def _composed(overrides: tuple[str, ...]) -> DictConfig:
    return compose(list(overrides))


def compose_cfg(overrides: list[str]) -> DictConfig:
    """The real composition of conf/ (schema, groups, overrides), as the CLI would do it; each
    distinct list is composed once per session and handed out as a fresh copy."""
    cfg = copy.deepcopy(_composed(tuple(overrides)))
    OmegaConf.set_readonly(cfg, False)
    return cfg


@contextlib.contextmanager
def sleeps_of(module, really: bool = False):
    """The seconds `module` asks time.sleep for inside the block (slept as well where `really`). Only that
    module's own `time` is replaced: the time module is shared, and a global patch also counted the polls of
    subprocess's wait (0.001 s, doubling) under a slow scontrol, and any other thread's sleeps."""
    import time as real
    import types

    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        if really:
            real.sleep(s)

    proxy = types.SimpleNamespace(**{k: getattr(real, k) for k in dir(real) if not k.startswith("__")})
    proxy.sleep = sleep
    before = module.time
    module.time = proxy
    try:
        yield slept
    finally:
        module.time = before


@pytest.fixture
def ctrl_c_reaches_children():
    """The CLI processes a test starts see Ctrl-C as a terminal's foreground job does. A harness
    started as a background job (`make test &`) has SIGINT ignored, and children inherit an ignored
    signal; a signal this process catches is reset to its default in a child."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture
def small_cfg(tiny_root, tmp_path):
    """A factory: compose a shrunk config on tiny data with a store in tmp_path."""

    def make(*overrides: str) -> DictConfig:
        # Composed without the two paths, which differ from test to test, so that tests asking for the
        # same overrides share one composition (Hydra's compose is most of the unit tests' time); the
        # paths are then set as the overrides would have set them, unless the overrides set them too.
        cfg = compose_cfg([*SMALL, *overrides])
        for key, value in (("data.root", str(tiny_root)), ("tracking.uri", f"sqlite:///{tmp_path / 'mlflow.db'}")):
            if not any(o.lstrip("+").startswith(f"{key}=") for o in overrides):
                OmegaConf.update(cfg, key, value)
        return cfg

    return make


def assert_interrupted(returncode: int, err: str, name: str, code: int, uri: str, n: int = 2) -> set[str]:
    """An interrupted sweep: exit `code`, one `vgsweep:` line last on stderr and no traceback, its
    n runs KILLED with `interrupted by <name>`. Returns their ids."""
    from mlflow.tracking import MlflowClient

    assert returncode == code, err[-3000:]
    lines = [x for x in err.splitlines() if x.startswith("vgsweep: ")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]) and "Traceback" not in err, err[-3000:]
    assert lines[0].startswith(f"vgsweep: interrupted by {name}: {n} runs it was training marked KILLED")
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("agarap2019").experiment_id])
    assert [(r.info.status, r.data.tags["vgsweep.failure"]) for r in runs] == [("KILLED", f"interrupted by {name}")] * n
    return {r.info.run_id for r in runs}


def assert_finishes_each_epoch_once(args: list[str], cwd: Path, uri: str, ids: set[str], epochs: int) -> None:
    """The same command again finishes the runs `ids` (no new ones), every epoch logged once."""
    from mlflow.tracking import MlflowClient

    again = run_cli(args, cwd=cwd)
    assert again.returncode == 0, again.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("agarap2019").experiment_id])
    assert {r.info.status for r in runs} == {"FINISHED"} and {r.info.run_id for r in runs} == ids
    for r in runs:
        steps = [h.step for h in client.get_metric_history(r.info.run_id, "test_acc")]
        assert sorted(steps) == list(range(epochs)), steps
        # a finished run carries no failure; why it was stopped last is kept apart
        assert "vgsweep.failure" not in r.data.tags and r.data.tags["vgsweep.resumed_after"], r.data.tags
        # when it was resumed (vgsweep status counts a stall from it): after it started, before it ended
        assert r.info.start_time / 1000 - 1 <= float(r.data.tags["vgsweep.resumed_at"]) <= r.info.end_time / 1000 + 1


def run_cli(args: list[str], cwd: Path, timeout: int = 600, module: str = "vgsweep") -> subprocess.CompletedProcess:
    """The real CLI in a subprocess: `python -m vgsweep *args`, forked from a warm interpreter that has
    imported torch, MLflow and Hydra (tests/warm.py), with subprocess.run's result."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return ZYGOTE.run(module, args, cwd, env, timeout)


def git(cwd: Path, *args: str) -> str:
    """git in a test's own repository (a copy of vgsweep, a researcher's project), with an author of its own."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def start_cli(args: list[str], cwd: Path, **popen) -> subprocess.Popen:
    """subprocess.Popen([sys.executable, "-m", "vgsweep", *args], cwd=cwd, **popen), forked as run_cli's."""
    return WarmPopen("vgsweep", args, cwd=cwd, **popen)


PDFLATEX, PDFTOTEXT = shutil.which("pdflatex"), shutil.which("pdftotext")


def _needs(tool: str | None, name: str, package: str) -> None:
    """Skip where a Debian tool a test runs is missing, except under CI=true, where .ci/run installs it."""
    if tool is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"CI=true but {name} is missing (.ci/run installs Debian's {package})")
        pytest.skip(f"{name} not installed (apt-get install {package})")


def pdf_text(path: Path) -> str:
    """The text of a PDF as poppler's pdftotext reads it; skips without it, except under CI=true."""
    _needs(PDFTOTEXT, "pdftotext", "poppler-utils")
    return subprocess.run([PDFTOTEXT, str(path), "-"], capture_output=True, text=True, check=True, timeout=60).stdout


def pdflatex(folder: Path, body: str | None = None, name: str = "doc") -> str:
    """Compile folder/<name>.tex with the real pdflatex, twice (labels); with a body, first write it as an
    article's document (booktabs and graphicx, as table.tex and figures.tex ask). Asserts it made the
    PDF; returns the log. Skips without pdflatex, except under CI=true, where .ci/run installs it."""
    _needs(PDFLATEX, "pdflatex", "texlive-latex-base texlive-latex-recommended")
    if body is not None:
        (folder / f"{name}.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs, graphicx}\n"
                                           "\\begin{document}\n" + body + "\n\\end{document}\n")
    for _ in range(2):
        proc = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"], cwd=folder,
                              capture_output=True, text=True, timeout=120)
    log = (folder / f"{name}.log").read_text(errors="replace")
    assert proc.returncode == 0 and (folder / f"{name}.pdf").is_file(), log[-3000:]
    return log


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 over a SQLite file in `folder`; can be stopped (killed) and
    started again on the same port over the same store."""

    def __init__(self, folder: Path, port: int | None = None):
        self.folder, self.port = folder, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> "MlflowServer":
        import time
        import urllib.request

        mlflow = Path(sys.executable).parent / "mlflow"
        log = (self.folder / "server.log").open("a")
        self.proc = subprocess.Popen([str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
                                      "--artifacts-destination", str(self.folder / "server-artifacts"),
                                      "--workers", "1"], stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True,
                                     # MLflow's job runner (huey consumers for its GenAI jobs) is not what these
                                     # tests are about: without it a start is ~2 s shorter on two cores
                                     env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(self.url + "/health", timeout=2).read()
                return self
            except OSError:
                assert self.proc.poll() is None, (self.folder / "server.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.3)

    def stop(self, kill: bool = False) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)  # the server and its workers
            self.proc.wait(timeout=30)
