"""Emulate a GPU pack's metric traffic: how long closing its runs waits for their metrics.

    python bench/flush.py --flush-s 5 0.5 --epoch-ms 40 10

The training thread waits `--epoch-ms` an epoch with the GIL released (as a GPU pack waits for the
device in its epoch's one host copy) while K runs log 5 metrics an epoch and 50 per-layer ones every
5 epochs (the paper grid's 5-layer runs) through vgsweep's RunLogger into a fresh SQLite store; then
every run is flushed, as finishing a pack does. Prints the epochs' time, the wait at the end, and the
total, per setting of `tracking.flush_s`.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from vgsweep import runs, tracking


def one(flush_s: float, epoch_s: float, k: int, epochs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="vgsweep-flush-") as tmp:  # each setting's own store, removed after
        return _timed(f"sqlite:///{tmp}/mlflow.db", flush_s, epoch_s, k, epochs)


def _timed(uri: str, flush_s: float, epoch_s: float, k: int, epochs: int) -> tuple[float, float]:
    tracking.ensure_sqlite_store(uri)
    client = tracking.client_for(uri)
    exp = tracking.experiment_id(client, uri, "flush", None)
    lgs = [runs.RunLogger.create(client, exp, f"r{i}", {f"p{j}": j for j in range(60)}, {}, flush_s) for i in range(k)]
    for lg in lgs:
        lg.flush(wait=True)
    t0 = time.perf_counter()
    for e in range(epochs):
        time.sleep(epoch_s)
        for lg in lgs:
            m = {f"m{i}": 0.5 for i in range(5)}
            if (e + 1) % 5 == 0 or e in (0, epochs - 1):
                m.update({f"diag/layer{i}": 0.1 for i in range(50)})
            lg.log_metrics(m, step=e)
    t1 = time.perf_counter()
    for lg in lgs:
        lg.flush(wait=True)
    return t1 - t0, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flush-s", type=float, nargs="+", default=[5.0, 0.5])
    ap.add_argument("--epoch-ms", type=float, nargs="+", default=[40.0, 10.0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=100)
    a = ap.parse_args()
    print("| epoch length | flush_s | epochs (s) | waiting at the end (s) | total (s) |\n|---|---|---|---|---|")
    for ms in a.epoch_ms:
        for f in a.flush_s:
            train, wait = one(f, ms / 1000, a.runs, a.epochs)
            print(f"| {ms:g} ms | {f:g} | {train:.2f} | {wait:.2f} | {train + wait:.2f} |", flush=True)


if __name__ == "__main__":
    main()
