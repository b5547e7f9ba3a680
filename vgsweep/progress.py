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
    """The sweep's progress line and its estimate of the time left.

    The estimate does not spread start-up over the epochs: a pack's first epoch also pays for setting it
    up (its data, its model; on a GPU the first kernels, a CUDA graph's capture, `compile=true`'s
    compilation), which may be a hundred of its epochs on a GPU. So epochs are timed from one to the next
    within a pack, a pack's first epoch and its close (the time from its last epoch to the next pack) are
    counted as the pack's overhead, and the time left is: the current pack's epochs left at its own pace,
    plus, per pack still to come, its run-epochs at the pace of packs of its own kind where one has been
    timed (a 5-layer pack's run-epoch is not a 2-layer one's), else at the pace of all epochs so far per
    unit of work (a pack's work per run-epoch, packing.work_per_run_epoch: a 30-layer net's run-epoch is
    about three 2-layer ones), and the mean overhead of a pack. Until a pack has timed one epoch after its
    first (with more to come) the estimate is not known: `ETA ?`."""

    def __init__(self, packs: list[tuple], mode: str = "auto"):
        """packs: (runs, epochs[, the first epoch it trains, from 0: a resumed pack's[, its kind: packs of one
        kind train at one pace per run-epoch[, its work per run-epoch (any unit, the same for every pack;
        1 if not given)]]]) per pack."""
        self.packs = [(int(p[0]), int(p[1])) for p in packs]
        self.start = [int(p[2]) if len(p) > 2 else 0 for p in packs]
        self.kind = [p[3] if len(p) > 3 else None for p in packs]
        self.work = [float(p[4]) if len(p) > 4 and p[4] else 1.0 for p in packs]
        self._kind_steady: dict = {}  # kind -> [seconds, run-epochs] of its packs' epochs after their first
        self.runs_done, self.pack = 0, 0
        self.taken: set = set()  # the runs another sweep took: they leave the count
        self.t0 = time.monotonic()
        self.live = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self._last_log = 0.0
        # called with (seconds left or NaN, pack number from 1, packs) after an epoch: at most every
        # ETA_EVERY_S, and as soon as the estimate is first known after one that was not
        self.on_eta: Callable[[float, int, int], None] | None = None
        self._last_eta = float("-inf")
        self._told_known = False
        # timing (monotonic seconds): this pack's start (the last pack's end), its last epoch, its last epoch's index
        self._pack_t0, self._epoch_t, self._epoch = self.t0, None, -1
        self._live = 0  # the runs of this pack still training at its last epoch
        self._steady_s, self._steady_work = 0.0, 0.0  # epochs after a pack's first: seconds, run-epochs x work
        self._pack_steady_s, self._pack_steady_n = 0.0, 0  # the same, this pack's: seconds, epochs
        self._firsts: list[tuple[float, int, int]] = []  # per pack started: (its first epoch's seconds from its
        # start, its runs, the pack's index)
        self._closes: list[float] = []  # per pack ended: seconds from its last epoch to its end
        self._after: list[str] = []  # lines for the log once this pack's live line has ended (after_pack)

    def eta_s(self) -> float:
        """Seconds the sweep has left (NaN while not known: see the class)."""
        if not self._firsts:
            return float("nan")
        e = self.packs[self.pack][1]
        started = self._epoch_t is not None
        epochs_left = e - self._epoch - 1 if started else 0
        if self._steady_work:
            rate = self._steady_s / self._steady_work  # seconds per unit of work
        elif epochs_left > 0:
            return float("nan")  # a pack's first epoch only, more to come: its start-up would pass for its pace
        else:  # packs of one epoch so far: their start-up is their pace
            rate = sum(s for s, _, _ in self._firsts) / (sum(n * self.work[p] for _, n, p in self._firsts) or 1.0)
        # a pack's start-up: its first epoch less one epoch of its runs at its kind's pace (else all packs')
        setup = sum(max(0.0, s - n * self._rate_of(p, rate)) for s, n, p in self._firsts) / len(self._firsts)
        close = sum(self._closes) / len(self._closes) if self._closes else 0.0
        left = 0.0
        if started:  # this pack: its own pace per epoch where it has one (a pack of K runs is not K times one)
            per_epoch = self._pack_steady_s / self._pack_steady_n if self._pack_steady_n \
                else self._live * self._rate_of(self.pack, rate)
            left += epochs_left * per_epoch + close
        for p in range(self.pack + (1 if started else 0), len(self.packs)):
            kk, ee = self.packs[p]
            left += kk * (ee - self.start[p]) * self._rate_of(p, rate) + setup + close
        return left

    def _rate_of(self, pack: int, rate: float) -> float:
        """Seconds per run-epoch of this pack: its kind's where a pack of it was timed, else `rate` (seconds
        per unit of work) times its work per run-epoch."""
        kind = self.kind[pack]
        s, runs = self._kind_steady.get(kind, (0.0, 0)) if kind is not None else (0.0, 0)
        return s / runs if runs else rate * self.work[pack]

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
        self.taken |= new

    def epoch_done(self, epoch: int, live_runs: int) -> None:
        now = time.monotonic()
        if self._epoch_t is None:  # the pack's first epoch: with its start-up
            self._firsts.append((now - self._pack_t0, live_runs, self.pack))
        else:
            self._steady_s += now - self._epoch_t
            self._steady_work += live_runs * self.work[self.pack]
            self._pack_steady_s += now - self._epoch_t
            self._pack_steady_n += 1
            if self.kind[self.pack] is not None:
                kind = self._kind_steady.setdefault(self.kind[self.pack], [0.0, 0])
                kind[0] += now - self._epoch_t
                kind[1] += live_runs
        self._epoch_t, self._epoch, self._live = now, epoch, live_runs
        text = self.line(epoch)
        if self.live:
            sys.stderr.write("\r" + text.ljust(100))
            sys.stderr.flush()
        elif now - self._last_log > LOG_EVERY_S or epoch + 1 == self.packs[self.pack][1]:
            log.info(text)
            self._last_log = now
        if self.on_eta is not None:
            eta = self.eta_s()
            known = eta == eta
            if now - self._last_eta >= ETA_EVERY_S or known and not self._told_known:
                self._last_eta, self._told_known = now, known
                self.on_eta(eta, self.pack + 1, len(self.packs))

    def pack_done(self) -> None:
        now = time.monotonic()
        k = self.packs[self.pack][0]
        self.runs_done += k
        if self._epoch_t is not None:
            self._closes.append(now - self._epoch_t)
        self.pack += 1
        self._pack_t0, self._epoch_t, self._epoch = now, None, -1
        self._pack_steady_s, self._pack_steady_n = 0.0, 0
        self._last_eta = float("-inf")  # the next pack's first epoch says it
        if self.live:  # end the pack's line: the next line (log or progress) starts on its own
            sys.stderr.write("\n")
            sys.stderr.flush()
        for text in self._after:
            log.info(text)
        self._after = []

    def after_pack(self, text: str) -> None:
        """A line for the log once the pack ends (pack_done), not while its live line is on the terminal."""
        self._after.append(text)
