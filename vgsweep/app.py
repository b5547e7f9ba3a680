"""`python -m vgsweep [-m] key=value ...`: the Hydra entry point. Thin: the work is in jobs.py."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import vgsweep.hydra_compat  # noqa: F401  (numeric group options: depth=2,5)
from vgsweep.config import register_configs

log = logging.getLogger(__name__)
register_configs()


def task(cfg: DictConfig) -> float:
    """One Hydra job: train it (a pack of one) and return its final test accuracy."""
    from vgsweep.jobs import Job, run_jobs

    hc = HydraConfig.get()
    job = Job(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task))
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
