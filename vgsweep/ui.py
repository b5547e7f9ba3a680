"""`vgsweep ui [--port 5000] [--tracking-uri URI] [--workers 1]` (make ui): MLflow's UI over the store,
and the address that opens each experiment on its training runs.

One server process by default, not MLflow's four: each imports MLflow anew (about 4 s of CPU and 250 MB),
and one person's browser over a local store needs one (its requests run on that process's threads).
Measured on two cores: the UI answered 7.3 s after the start, against 12 s with four.

MLflow 3's UI has two modes, "GenAI" (its default, remembered by the browser) and "Model training";
an experiment tagged `mlflow.experimentKind=custom_model_development` (vgsweep tags each one) is a
training one, but the 3.17 UI follows its mode switch over the tag. The printed addresses carry
`?workflowType=machine_learning`, which opens the runs table in any case.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from vgsweep import tracking
from vgsweep.config import command_line, nonempty

WORKFLOW = "workflowType=machine_learning"


def experiment_urls(uri: str, base: str) -> list[tuple[str, str]]:
    """(experiment name, address of its training runs) for every experiment that holds training runs."""
    client = tracking.client_for(uri)
    out = []
    for e in sorted(tracking.retry(client.search_experiments), key=lambda e: e.creation_time or 0):
        if tracking.has_training_runs(client, e.experiment_id):
            out.append((e.name, experiment_url(base, e.experiment_id)))
    return out


def moved_lines(uri: str) -> list[str]:
    """A line for each experiment of a SQLite store moved with its artifact folder (tracking.moved_artifacts)
    whose recorded folder is gone: MLflow's UI reads a run's files at the recorded path only, and so lists
    none (the figures and the report read them beside the store)."""
    out = []
    for e in tracking.retry(tracking.client_for(uri).search_experiments):
        moved = tracking.moved_artifacts(uri, e.artifact_location)
        if moved is not None and not Path(moved[0]).exists():
            out.append(f"{e.name}: its runs' files are in {moved[1]}, recorded as {moved[0]}, which is gone (the store "
                       f"was moved): the UI shows none of them (curves, diagnostics, figures) until that path is the "
                       f"moved folder: {tracking.link_hint(moved)}")
    return out


def experiment_url(base: str, experiment_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}?{WORKFLOW}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{WORKFLOW}"


def check_port(host: str, port: int) -> None:
    """A port the UI can listen on, else an ArgumentError (one line) before MLflow's server starts and
    fails in many lines: `make ui` while another UI holds 5000 is the usual case."""
    import errno
    import socket

    from vgsweep.config import ArgumentError

    if not 1 <= port <= 65535:
        raise ArgumentError("--port", port, "a port number from 1 to 65535")
    mine = "an address or name of this machine (127.0.0.1, ::1, 0.0.0.0 for all of them)"
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except socket.gaierror as e:  # `--host 256.1.1.1`, a misspelt name: it was said of the port
        raise ArgumentError("--host", host, mine, f"{e.strerror}") from None
    try:
        with socket.create_server((host, port), family=family):  # ::1 too (an IPv6 address)
            pass
    except OSError as e:
        if e.errno == errno.EADDRNOTAVAIL:  # an address of another machine
            why = str(e.strerror).split(" (while")[0]  # create_server adds the address it tried
            raise ArgumentError("--host", host, mine, f"It is not one of this machine's ({why})") from None
        raise ArgumentError("--port", port, "a free port", f"{host}:{port} cannot be listened on ({e.strerror or e}: "
                            "another MLflow UI?); pass --port N (make ui PORT=N)") from None


def main(argv: list[str] | None = None) -> int:
    ap = command_line("vgsweep ui", " ".join(__doc__.split("\n\n")[0].split()))  # its first paragraph, whole
    ap.add_argument("--tracking-uri", default=None, type=nonempty,
                    help="the store (default: MLFLOW_TRACKING_URI where it is set, else the project's mlflow.db)")
    ap.add_argument("--host", default="127.0.0.1", type=nonempty,
                    help="the address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to "
                         "the network, to anyone who reaches it)")
    ap.add_argument("--port", type=int, default=5000, help="default 5000 (make ui PORT=N)")
    ap.add_argument("--workers", type=int, default=1,
                    help="the server's worker processes (default 1; mlflow ui's own default is 4)")
    a = ap.parse_args(argv)
    if a.workers < 1:
        from vgsweep.config import ArgumentError

        raise ArgumentError("--workers", a.workers, "an int >= 1")
    from vgsweep.results.reader import store_uri

    uri = store_uri(a.tracking_uri, must_exist=False)  # an empty store is a UI with no runs yet
    if uri.startswith(("http://", "https://")):  # a server has its own UI
        for name, url in experiment_urls(uri, tracking.browser_address(uri)):
            print(f"{name}: {url}", flush=True)
        return 0
    check_port(a.host, a.port)
    base = f"http://[{a.host}]:{a.port}" if ":" in a.host else f"http://{a.host}:{a.port}"  # IPv6 in brackets
    urls = experiment_urls(uri, base)
    print(f"MLflow UI over {tracking.hide_passwords(uri)} on {base}", flush=True)
    for name, url in urls or [("(no training runs yet)", base)]:
        print(f"{name}: {url}", flush=True)
    for line in moved_lines(uri):
        print(line, flush=True)
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # no GenAI job runners: a faster start
    os.execv(mlflow, [mlflow, "ui", "--backend-store-uri", uri, "--host", a.host, "--port", str(a.port),
                      "--workers", str(a.workers)])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
