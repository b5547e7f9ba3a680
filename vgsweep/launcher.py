"""The packed launcher's work (Hydra's contract: one JobReturn per job, in order).

1. Compose every job's config (`load_sweep_config`), set `hydra.job.id/num`, and let Hydra's
   `run_job` create the job's output directory, `.hydra/` files and log with a task function
   that only records the job. Nothing trains yet.
2. Validate all jobs, group them into packs (same shapes, BN math, batch, epochs, data, device),
   split packs to fit the memory budget, and train pack by pack (vgsweep/jobs.py).
3. Fill each JobReturn with the job's final test accuracy, or its failure.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


def _record(cfg: DictConfig) -> dict:
    """The task function of phase 1: remember the job, train nothing."""
    hc = HydraConfig.get()
    return {"cfg": copy.deepcopy(cfg), "output_dir": hc.runtime.output_dir,
            "overrides": list(hc.overrides.task), "log_file": f"{hc.job.name}.log"}


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    from vgsweep.config import register_configs
    from vgsweep.jobs import Job, run_jobs

    register_configs()
    setup_globals()
    config, ctx = launcher.config, launcher.hydra_context
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    log.info("Composing %d jobs for packed training", len(job_overrides))

    returns: list[JobReturn] = []
    jobs: list[Job] = []
    for i, overrides in enumerate(job_overrides):
        idx = initial_job_idx + i
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        sweep_config = ctx.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx
        ret = run_job(hydra_context=ctx, task_function=_record, config=sweep_config,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        rec = ret.return_value  # re-raises a composition error of this job
        out = Path(rec["output_dir"])
        jobs.append(Job(rec["cfg"], out, rec["overrides"], log_file=out / rec["log_file"]))
        returns.append(ret)
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)  # detach this job's log file

    from vgsweep.app import exit_on_config_error

    with exit_on_config_error():
        outcomes = run_jobs(jobs, max_pack=launcher.max_pack or None, memory_budget_gb=launcher.memory_budget_gb,
                            progress=launcher.progress)
    failed = []
    for ret, job, o in zip(returns, jobs, outcomes):
        if o.status in ("FINISHED", "SKIPPED"):
            ret.status, ret.return_value = JobStatus.COMPLETED, o.final.get("test_acc", float("nan"))
        else:
            ret.status = JobStatus.FAILED
            ret.return_value = RuntimeError(f"run {o.run_id} {o.status}: {o.reason}")
            failed.append((job, o))
    counts = {s: sum(o.status == s for o in outcomes) for s in ("FINISHED", "SKIPPED", "FAILED")}
    log.info("sweep done: %d finished, %d skipped (in the store or taken by another process), %d failed",
             counts["FINISHED"], counts["SKIPPED"], counts["FAILED"])
    if failed:
        log.error("%d of %d jobs failed:", len(failed), len(jobs))
        for job, o in failed:
            log.error("\t[%s] run %s: %s", " ".join(job.overrides), o.run_id, o.reason)
    return returns
