"""`python -m vgsweep ...` started from a warm interpreter: the tests' CLI runs without each paying the
~3.5 s (CPU) of importing torch, MLflow's SQL store and Hydra again.

A test worker keeps one *zygote*: a Python process that has imported those third-party packages (not
vgsweep) and nothing else. Each CLI run is a fork of it that takes the folder, environment,
stdin/stdout/stderr, new session (start_new_session) and ignored signals an exec'd child of the test
would have, puts the folder first on sys.path as `python -m` does, then runs the module as `python -m`
does (runpy._run_module_as_main): vgsweep and everything it imports beyond the preloaded packages are
imported fresh in the fork, and the fork ends as any interpreter does (SystemExit or an uncaught
exception, then the steps of Python's own shutdown: threads joined, atexit handlers, streams flushed),
except that it then exits at once (os._exit) instead of tearing down every module: in a fork that would
touch, and so copy, the pages of all the preloaded packages (about 0.3 s of CPU a vgsweep run, which
freezes its objects before it exits, and 1.3 s for a module that does not; what that teardown could
print, a fresh interpreter's tests see). The zygote freezes what it preloaded (gc.freeze) before it forks:
a fork's collector then never walks those objects, a walk that copied their pages. WarmPopen is
subprocess.Popen with only the start replaced: its pipes, communicate, send_signal and kill are
Popen's own; its exit status (poll, wait) comes from the zygote, the fork's parent.

What a fresh interpreter is the subject of (the imports a command makes, the console script, a
terminal closing) is tested with `subprocess` directly, not through here. The zygote is not used
(every run is a fresh `python -m`) where preloading printed anything (the oldest MLflow logs
Alembic's plugins as it imports: lines the forks would then not print) or VGSWEEP_TESTS_COLD=1.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

PRELOAD = ("torch", "mlflow", "mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store", "sqlalchemy", "alembic",
           "sqlalchemy.dialects.sqlite", "filelock", "hydra", "hydra.core.hydra_config",
           "hydra.core.override_parser.overrides_parser", "hydra._internal.logging_config", "omegaconf")

# The zygote: preload, say "ready", then fork one child per request. Single-threaded, so that a fork
# never copies a lock another thread holds. Its children are reaped here and their statuses sent back.
_ZYGOTE = r"""
import json, os, select, socket, sys
chan = socket.socket(fileno=int(sys.argv[1]))
for name in sys.argv[2].split(","):
    __import__(name)
import gc
gc.freeze()  # the preloaded objects out of the collector's reach: a fork's full collection walked, and so
             # copied, them all (0.3 s of CPU a vgsweep run); Python's gc.freeze documentation advises it
chan.sendall(b"ready\n")
waiting = {}  # pid -> the request's reply socket
while True:
    r, _, _ = select.select([chan], [], [], 0.05)
    while waiting:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            break
        reply = waiting.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        try:
            reply.sendall(json.dumps({"exit": code}).encode() + b"\n")
        except OSError:
            pass
        reply.close()
    if not r:
        continue
    msg, fds, _, _ = socket.recv_fds(chan, 1 << 20, 4)
    if not msg:
        break  # the worker is gone: its runs' replies go nowhere
    req = json.loads(msg)
    stdin, stdout, stderr, reply_fd = fds
    pid = os.fork()
    if pid == 0:
        chan.close()
        for other in waiting.values():
            other.close()
        os.close(reply_fd)
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
        for fd in {stdin, stdout, stderr}:
            if fd > 2:
                os.close(fd)
        if req["new_session"]:
            os.setsid()
        import signal
        for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM"):
            sig = getattr(signal, name)  # ignored where the asking process ignores it, as exec leaves it
            signal.signal(sig, signal.SIG_IGN if sig in req["ignored"] else
                          signal.default_int_handler if name == "SIGINT" else signal.SIG_DFL)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        sys.path[0] = os.getcwd()  # as `python -m` puts it
        sys.path_importer_cache.pop("", None)
        sys.argv = ["-m", *req["args"]]
        import io
        made = (sys.stdout, sys.stderr)  # the zygote's, unbuffered (its PYTHONUNBUFFERED), not the run's
        unbuffered = bool(req["env"].get("PYTHONUNBUFFERED"))
        for fd, name, was in ((1, "stdout", made[0]), (2, "stderr", made[1])):  # as Python makes them
            raw = io.FileIO(fd, "wb", closefd=False)
            f = io.TextIOWrapper(raw if unbuffered else io.BufferedWriter(raw), encoding=was.encoding,
                                 errors=was.errors, newline="\n", write_through=unbuffered,
                                 line_buffering=not unbuffered and (fd == 2 or raw.isatty()))
            setattr(sys, name, f)
            setattr(sys, f"__{name}__", f)
        import runpy
        code = 0
        try:
            runpy._run_module_as_main(req["module"])  # what `python -m` calls
        except SystemExit as e:  # as Python takes it: None is 0, an int itself, anything else said and 1
            code = e.code
            if code is None:
                code = 0
            elif not isinstance(code, int):
                print(code, file=sys.stderr)
                code = 1
        except BaseException as e:  # said as Python says it; an uncaught Ctrl-C ends the process by SIGINT
            e.__traceback__ = e.__traceback__.tb_next  # from runpy's frame on, as `python -m` shows it
            sys.excepthook(type(e), e, e.__traceback__)
            code = -signal.SIGINT if isinstance(e, KeyboardInterrupt) else 1
        # Python's own shutdown, up to where it would tear down every module: in a fork that touches (and
        # so copies) each page of the preloaded packages, 0.3 s of CPU a run or more, for nothing a test sees
        import atexit, threading, traceback
        try:
            threading._shutdown()  # the threads that are not daemons, joined
        except BaseException:
            traceback.print_exc()
        atexit._run_exitfuncs()
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:
                code = code if code == -signal.SIGINT else 120  # as Python's exit when it cannot flush
        if code == -signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        os._exit(code & 0xFF)
    for fd in (stdin, stdout, stderr):
        os.close(fd)
    reply = socket.socket(fileno=reply_fd)
    reply.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    waiting[pid] = reply
"""


_ENV = dict(os.environ)  # as the worker started (conftest imports this first): not a test's monkeypatched one


class Zygote:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.chan: socket.socket | None = None
        self.usable = os.environ.get("VGSWEEP_TESTS_COLD") != "1"

    def _start(self) -> None:
        import tempfile

        here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # one request per message
        folder = Path(tempfile.mkdtemp(prefix="vgsweep-zygote-"))
        log = folder / "zygote.log"
        with log.open("wb") as f:
            self.proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE, str(there.fileno()), ",".join(PRELOAD)],
                                         cwd=folder, pass_fds=[there.fileno()], stdin=subprocess.DEVNULL,
                                         stdout=f, stderr=f, env={**_ENV, "PYTHONUNBUFFERED": "1"})
        there.close()
        atexit.register(self._stop, folder)
        here.settimeout(300)
        ready = here.recv(64)
        here.settimeout(None)
        said = log.read_bytes()
        if ready != b"ready\n" or said:  # a warning printed while preloading would be missing from every run
            self.usable = False
            here.close()
            self.proc.kill()
            self.proc.wait()
            sys.stderr.write(f"tests/warm.py: every CLI run starts cold (the zygote said {said[-500:]!r})\n")
            return
        self.chan = here

    def _stop(self, folder: Path) -> None:
        if self.chan is not None:
            self.chan.close()  # the zygote ends at this end of its channel
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(folder, ignore_errors=True)

    def fork(self, module: str, args: list[str], cwd, env, fds: list[int], new_session: bool) -> socket.socket | None:
        """A fork running `python -m module *args` with fds as its 0, 1, 2: the socket its pid and then
        its exit status come back on; None where the zygote cannot be used."""
        with self.lock:
            if self.usable and self.chan is None:
                self._start()
            if not self.usable:
                return None
            mine, theirs = socket.socketpair()
            ignored = [int(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                                        signal.SIGUSR2, signal.SIGALRM) if signal.getsignal(s) == signal.SIG_IGN]
            request = {"module": module, "args": args, "cwd": os.fspath(cwd if cwd is not None else os.getcwd()),
                       "env": dict(env if env is not None else os.environ), "new_session": new_session,
                       "ignored": ignored}
            try:
                socket.send_fds(self.chan, [json.dumps(request).encode()], [*fds, theirs.fileno()])
            except OSError:  # the zygote is gone (a test that ended every process of the machine?)
                self.usable = False
                mine.close()
                return None
            finally:
                theirs.close()
            return mine

    def run(self, module: str, args: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
        """subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, ...)."""
        with WarmPopen(module, args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True) as p:
            try:
                out, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()  # communicate put what it had read into the exception, as subprocess.run's does
                raise
            except BaseException:
                p.kill()
                raise
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)


class WarmPopen(subprocess.Popen):
    """subprocess.Popen([sys.executable, "-m", module, *args], ...) whose process is forked from the
    zygote (a fresh `python -m` where it cannot be): the same pipes, signals, poll, wait and communicate.
    Its exit status comes from the zygote, its parent."""

    def __init__(self, module: str, args: list[str], **kw) -> None:
        self._module, self._argv, self._reply, self._got = module, list(args), None, b""
        super().__init__([sys.executable, "-m", module, *args], **kw)

    def _execute_child(self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo, creationflags,
                       shell, p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite, restore_signals, gid, gids,
                       uid, umask, start_new_session, *more):
        reply = None
        if not (preexec_fn or pass_fds or shell or gid is not None or gids or uid is not None or umask >= 0
                or any(m not in (None, -1) for m in more)):  # (3.11's process_group=-1)
            fds = [p2cread if p2cread != -1 else 0, c2pwrite if c2pwrite != -1 else 1,
                   errwrite if errwrite != -1 else 2]
            reply = ZYGOTE.fork(self._module, self._argv, cwd, env, fds, start_new_session)
        if reply is None:
            return super()._execute_child(args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo,
                                          creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite, errread,
                                          errwrite, restore_signals, gid, gids, uid, umask, start_new_session, *more)
        self._reply = reply
        self.pid = json.loads(self._line(None))["pid"]
        self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)

    def _line(self, timeout: float | None) -> str | None:
        """The zygote's next line about this process; None if none within timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._got:
            left = None if deadline is None else max(deadline - time.monotonic(), 0)
            if not select.select([self._reply], [], [], left)[0]:
                return None
            data = self._reply.recv(4096)
            if not data:
                raise RuntimeError(f"the zygote ended before process {self.pid} did")
            self._got += data
        line, self._got = self._got.split(b"\n", 1)
        return line.decode()

    def _status(self, timeout: float | None) -> int | None:
        if self.returncode is None:
            line = self._line(timeout)
            if line is not None:
                self.returncode = json.loads(line)["exit"]
                self._reply.close()
        return self.returncode

    def _internal_poll(self, _deadstate=None, **_):
        if self._reply is None:
            return super()._internal_poll(_deadstate)
        try:
            return self._status(0)
        except (OSError, RuntimeError):
            if _deadstate is not None:
                self.returncode = _deadstate
            return self.returncode

    def _wait(self, timeout):
        if self._reply is None:
            return super()._wait(timeout)
        if self._status(timeout) is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode


ZYGOTE = Zygote()
