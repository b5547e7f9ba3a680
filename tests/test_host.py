"""The host side of a sweep that is not training: the garbage collector's thresholds over a sweep's
life."""

from __future__ import annotations

import gc

from vgsweep import gctune


def test_gc_thresholds_for_start_up_then_back_for_training(monkeypatch):
    before = gc.get_threshold()
    monkeypatch.setattr(gctune, "_saved", None)
    try:
        gctune.startup()
        assert gc.get_threshold() == gctune.STARTUP_THRESHOLDS != before
        gctune.startup()  # a second call does not save the start-up thresholds as the ones to restore
        gctune.training()
        assert gc.get_threshold() == before
        gctune.training()  # and a second pack leaves them alone
        assert gc.get_threshold() == before
    finally:
        gc.set_threshold(*before)
