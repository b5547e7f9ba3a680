"""Progress of a sweep: packs, epochs, runs trained, ETA.

On a terminal one line rewrites itself; elsewhere (CI, files, `nohup`) it degrades to a log line
per epoch at most every few seconds.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable

log = logging.getLogger("vgsweep.progress")
LOG_EVERY_S = 5.0
ETA_EVERY_S = 60.0  # how often on_eta hears the estimate (a sweep writes it to the store for vgsweep status)


def duration(s: float) -> str:
    """Seconds as a person reads them: 42 s, 12 min 05 s, 3 h 20 min, 2 d 04 h; ? while unknown."""
    if s != s or s in (float("inf"), float("-inf")):
        return "?"
    s = round(s)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600:02d} h"


class Progress:
    def __init__(self, packs: list[tuple[int, int]], mode: str = "auto"):
        """packs: (runs, epochs) per pack. Work is counted in run-epochs."""
        self.packs, self.total = list(packs), sum(k * e for k, e in packs)
        self.done_work, self.runs_done, self.pack = 0, 0, 0
        self.taken: set = set()  # the runs another sweep took: they leave the count
        self.t0 = time.monotonic()
        self.live = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self._last_log = 0.0
        # called with (seconds left, pack number from 1, packs) after an epoch, at most every ETA_EVERY_S
        self.on_eta: Callable[[float, int, int], None] | None = None
        self._last_eta = float("-inf")

    def eta_s(self) -> float:
        """Seconds the sweep has left at the pace of its run-epochs so far (NaN before the first)."""
        el = time.monotonic() - self.t0
        return el / self.done_work * (self.total - self.done_work) if self.done_work else float("nan")

    def line(self, epoch: int) -> str:
        k, e = self.packs[self.pack]
        el, eta = time.monotonic() - self.t0, self.eta_s()
        n_runs = sum(k for k, _ in self.packs)
        taken = f" | {len(self.taken)} taken by another sweep" if self.taken else ""
        trained = self.runs_done + (k if epoch + 1 == e else 0)  # the pack's last epoch: its runs are trained
        return (f"pack {self.pack + 1}/{len(self.packs)} ({k} run{'s' if k != 1 else ''}) | epoch {epoch + 1}/{e} | "
                f"runs trained {trained}/{n_runs}{taken} | elapsed {duration(el)} | ETA {duration(eta)}")

    def taken_elsewhere(self, keys: set) -> None:
        """Runs of the current pack (their config keys) that will not train here: another sweep
        finished or started them since this one planned (sweep._claim; a retried half of the pack may
        report some again). They leave the pack's size, the run count and the work left."""
        new = set(keys) - self.taken
        k, e = self.packs[self.pack]
        n = min(len(new), k)
        self.packs[self.pack] = (k - n, e)
        self.total -= n * e
        self.taken |= new

    def epoch_done(self, epoch: int, live_runs: int) -> None:
        self.done_work += live_runs
        text = self.line(epoch)
        if self.live:
            sys.stderr.write("\r" + text.ljust(100))
            sys.stderr.flush()
        elif time.monotonic() - self._last_log > LOG_EVERY_S or epoch + 1 == self.packs[self.pack][1]:
            log.info(text)
            self._last_log = time.monotonic()
        if self.on_eta is not None and time.monotonic() - self._last_eta >= ETA_EVERY_S:
            self._last_eta = time.monotonic()
            self.on_eta(self.eta_s(), self.pack + 1, len(self.packs))

    def pack_done(self) -> None:
        k, e = self.packs[self.pack]
        self.runs_done += k
        self.done_work = sum(kk * ee for kk, ee in self.packs[:self.pack + 1])  # diverged runs stop early
        self.pack += 1
        self._last_eta = float("-inf")  # the next pack's first epoch says it
        if self.live:  # end the pack's line: the next line (log or progress) starts on its own
            sys.stderr.write("\n")
            sys.stderr.flush()
