"""tests/warm.py, through which the tests run the CLI: a run forked from the warm interpreter is the
run a fresh `python -m vgsweep` makes (numbers, exit status, lines, signals), and it ends at its timeout."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SMALL, run_cli
from tests.warm import ZYGOTE, WarmPopen


def _cold(args: list[str], cwd: Path, module: str = "vgsweep") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=env)


def _history(uri: str) -> dict:
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    runs = c.search_runs([c.get_experiment_by_name("agarap2019").experiment_id])
    return {(r.data.params["optimizer.lr"], r.info.status): [m.value for m in c.get_metric_history(r.info.run_id, "test_acc")]
            for r in runs}


def _said(text: str) -> list[str]:
    """The lines, less what differs between any two runs (times, run ids, folders)."""
    text = re.sub(r"\[\d{4}-\d\d-\d\d [\d:,]+\]|\d{4}/\d\d/\d\d \d\d:\d\d:\d\d", "[T]", text)
    text = re.sub(r"\b[0-9a-f]{32}\b", "RUN", text)
    text = re.sub(r"\d+(\.\d+)? ?(s|ms|min)\b", "N s", text)
    return text.replace("/cold/", "/X/").replace("/warm/", "/X/").splitlines()


@pytest.mark.e2e
def test_a_warm_run_is_a_cold_runs_numbers_exit_status_and_lines(tiny_root, tmp_path):
    """The same commands as a fresh `python -m vgsweep` and through run_cli: a sweep of a run that
    learns and one that diverges (exit 1), bad input (exit 2), `--cfg job`, a module that is not there
    (Python's own exit 1): the same exit status, the same numbers in the store, the same lines."""
    common = ["-m", "activation=relu", "optimizer.lr=0.01,1e20", *[a for a in SMALL if "lr" not in a],
              f"data.root={tiny_root}"]
    results = {}
    for how, run in (("cold", _cold), ("warm", run_cli)):
        (tmp_path / how).mkdir()
        uri = f"sqlite:///{tmp_path / how / 'm.db'}"
        sweep = run([*common, f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / how / 'mr'}"], cwd=tmp_path / how)
        bad = run(["train.epochs=abc", f"tracking.uri={uri}"], cwd=tmp_path / how)
        cfg = run(["--cfg", "job", "activation=tanh", "seed=7"], cwd=tmp_path / how)
        absent = run(["--help"], cwd=tmp_path / how, module="vgsweep_no_such_module")
        results[how] = (sweep, bad, cfg, absent, _history(uri))
    (sweep, bad, cfg, absent, history), warm = results["cold"], results["warm"]
    assert sweep.returncode == 1 and "1 finished, 0 skipped (already in the store), 1 failed" in sweep.stdout + sweep.stderr
    assert len(history) == 2 and ("0.01", "FINISHED") in history and ("1e+20", "FAILED") in history, history
    assert bad.returncode == 2 and cfg.returncode == 0 and absent.returncode == 1, (bad, cfg, absent)
    assert [p.returncode for p in warm[:4]] == [p.returncode for p in (sweep, bad, cfg, absent)]
    assert warm[4] == history  # the same numbers, epoch by epoch
    assert _said(warm[0].stdout + warm[0].stderr) == _said(sweep.stdout + sweep.stderr)
    assert warm[1].stderr == bad.stderr and warm[1].stdout == bad.stdout
    assert warm[2].stdout == cfg.stdout and "activation:" in cfg.stdout
    assert warm[3].stderr == absent.stderr and "No module named vgsweep_no_such_module" in absent.stderr


def test_a_warm_run_past_its_timeout_is_killed_and_runs_where_and_as_it_was_asked(tmp_path):
    """As subprocess.run: TimeoutExpired holding what it wrote, and the process gone. It ran in its
    folder, with its arguments and environment, and found the module there (python -m puts the folder
    first on sys.path)."""
    (tmp_path / "sleeper").mkdir()
    (tmp_path / "sleeper" / "__main__.py").write_text(
        "import os, sys, time\nprint(os.getpid(), os.getcwd(), sys.path[0], sys.argv[1:], os.environ['ASKED'], flush=True)\n"
        "time.sleep(600)\n")
    with pytest.raises(subprocess.TimeoutExpired) as e:
        ZYGOTE.run("sleeper", ["a", "b=1"], tmp_path, {**os.environ, "ASKED": "yes"}, timeout=3)
    pid, rest = e.value.stdout.decode().split(" ", 1)
    assert rest == f"{tmp_path} {tmp_path} ['a', 'b=1'] yes\n"
    deadline = time.monotonic() + 60
    while True:  # killed at once; gone once the zygote has reaped it
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, f"{pid} still there"
        time.sleep(0.05)


@pytest.mark.parametrize("sigint", ["caught", "ignored"])
def test_a_warm_process_takes_signals_as_a_cold_one(tmp_path, sigint):
    """Ctrl-C to its process group (start_new_session) ends a forked process as it ends a fresh one
    (KeyboardInterrupt, then death by SIGINT); where the test ignores SIGINT, both inherit that and end
    at SIGTERM instead. Its stdout is a pipe read line by line while it runs."""
    (tmp_path / "sleeper").mkdir()
    (tmp_path / "sleeper" / "__main__.py").write_text(
        "import os, time\nprint(os.getpid(), os.getppid(), flush=True)\ntime.sleep(600)\n")
    before = signal.signal(signal.SIGINT, signal.SIG_IGN if sigint == "ignored" else signal.default_int_handler)
    ended = {}
    try:
        for how, start in (("warm", WarmPopen), ("cold", subprocess.Popen)):
            args = [sys.executable, "-m", "sleeper"] if how == "cold" else ["sleeper", []]
            proc = start(*([args] if how == "cold" else args), cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
            pid, parent = map(int, proc.stdout.readline().split())
            assert pid == proc.pid and proc.poll() is None
            if ZYGOTE.usable:  # (not where preloading printed something: every run is then a fresh one)
                assert (parent == ZYGOTE.proc.pid) == (how == "warm")
            os.killpg(proc.pid, signal.SIGINT)
            if sigint == "ignored":
                with pytest.raises(subprocess.TimeoutExpired):
                    proc.wait(timeout=1)  # SIGINT ignored: still there
                proc.terminate()
            out, err = proc.communicate(timeout=60)
            ended[how] = (proc.returncode, err.strip().splitlines()[-1:] if err.strip() else [])
    finally:
        signal.signal(signal.SIGINT, before)
    assert ended["warm"] == ended["cold"]
    assert ended["cold"] == ((-signal.SIGINT, ["KeyboardInterrupt"]) if sigint == "caught" else (-signal.SIGTERM, []))


ENDING = """import atexit, sys, threading, time
how = sys.argv[1]
print("main, not flushed")
atexit.register(lambda: print("atexit, after the thread"))  # none of it flushed
threading.Thread(target=lambda: (time.sleep(0.3), print("thread, joined before exit"))).start()
if how == "code":
    sys.exit(3)
if how == "message":
    sys.exit("a message: exit status 1")
if how == "raise":
    raise ValueError("uncaught")
if how == "ctrl-c":
    raise KeyboardInterrupt
"""


@pytest.mark.parametrize("how", ["return", "code", "message", "raise", "ctrl-c"])
def test_a_warm_process_ends_as_a_cold_one(tmp_path, how):
    """However the module ends (it returns, sys.exit with a number or a message, an uncaught exception
    or Ctrl-C), a forked process ends as a fresh one: the same exit status, the same output in the same
    order (a thread that is not a daemon joined, then the atexit handlers, then the buffers flushed)."""
    (tmp_path / "ender").mkdir()
    (tmp_path / "ender" / "__main__.py").write_text(ENDING)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout a buffered pipe
    ended = {}
    for how_started, start in (("warm", WarmPopen), ("cold", subprocess.Popen)):
        args = ([sys.executable, "-m", "ender", how],) if how_started == "cold" else ("ender", [how])
        proc = start(*args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=60)
        ended[how_started] = (proc.returncode, out, re.sub(r'File "[^"]*", ', "", err))
    assert ended["warm"] == ended["cold"]
    code, out, err = ended["cold"]
    assert out == "main, not flushed\nthread, joined before exit\natexit, after the thread\n"
    assert code == {"return": 0, "code": 3, "message": 1, "raise": 1, "ctrl-c": -signal.SIGINT}[how], (code, err)
