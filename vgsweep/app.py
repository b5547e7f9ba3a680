"""`python -m vgsweep [-m] key=value ...`: the Hydra entry point. Thin: the work is in jobs.py."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import vgsweep.hydra_compat  # noqa: F401  (numeric group options: depth=2,5)
from vgsweep.config import register_configs

log = logging.getLogger(__name__)
register_configs()


@contextlib.contextmanager
def exit_on_config_error():
    """Bad input ends the command with one line on stderr and exit status 2, not a traceback."""
    from vgsweep.config import ConfigError

    try:
        yield
    except ConfigError as e:
        logging.shutdown()
        print(f"vgsweep: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def task(cfg: DictConfig) -> float:
    """One Hydra job: train it (a pack of one) and return its final test accuracy."""
    from vgsweep.jobs import Job, run_jobs

    hc = HydraConfig.get()
    job = Job(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task))
    with exit_on_config_error():
        [outcome] = run_jobs([job])
    if outcome.status == "FAILED":
        raise RuntimeError(f"run {outcome.run_id} FAILED: {outcome.reason}")
    acc = outcome.final.get("test_acc", float("nan"))
    log.info("%s run %s: test_acc=%.4f", outcome.status.lower(), outcome.run_id, acc)
    return acc


# conf/ beside the package, as an absolute path, so the command works from any directory.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    return task(cfg)
