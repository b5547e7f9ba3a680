"""The command that confirms a search's best trial over seeds.

An Optuna search trains each trial with one seed; its best trial's accuracy is partly that seed's luck.
When the search ends, vgsweep prints the plain sweep that trains the best trial's settings over more
seeds (`vgsweep -m study=lr_search depth=5 ... optimizer.lr=0.0123 seed=42,0,1,2,3`): its own seed,
already in the store and so skipped, and four more, into the same study, where the table then gives
that trial's row its mean ± std. A study file that sets up the search (`experiment=lr_search`) cannot
be that command (its file is Optuna's), so the command spells out what the best trial's config holds:
the config groups it chose other than the defaults, then each key it sets otherwise. The command is
checked before it is printed: composed with the trial's seed, it is the trial's config (the same hash),
else only the best trial's settings are named. The store keeps it as the best trial's run's tag, which
`vgsweep report` shows below the search's table while that trial has one seed.
"""

from __future__ import annotations

import copy
import logging
import math
import shlex
import time
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

SEEDS = 5  # the confirmation's seeds, the trial's own among them

_SINCE: list[float] = []  # when this command's sweep started: its optimization_results.yaml is newer


def started() -> None:
    """Called when a sweep starts (app.Preflight.on_multirun_start)."""
    _SINCE[:] = [time.time()]


def value(v: Any) -> str:
    """A value as a Hydra override writes it, so that Hydra reads back the same value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")) if not math.isfinite(v) else repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{value(x)}" for k, x in v.items()) + "}"
    s = str(v)
    if _reads_back(s, s):
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _reads_back(written: str, meant: Any) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        got = OverridesParser.create().parse_override(f"k={written}").value()
    except HydraException:
        return False
    return type(got) is type(meant) and got == meant


def _groups(cfg: DictConfig) -> dict[str, Optional[str]]:
    """The config groups a config chose (Hydra's own, and `experiment`, left out)."""
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    return {g: c for g, c in choices.items() if not g.startswith("hydra/") and g != "experiment"}


def _kept_hydra(config: DictConfig) -> list[str]:
    """The search's overrides of Hydra's config that the confirmation keeps (a launcher, a searchpath, the
    cluster): not the sweeper's (Optuna's), nor its folder (the confirmation makes its own)."""
    drop = ("hydra.sweeper", "hydra/sweeper", "hydra.sweep.", "hydra.mode", "hydra.job.id", "hydra.job.num")
    return [o for o in config.hydra.overrides.hydra if not str(o).lstrip("+~").startswith(drop)]


def _config_args(config: DictConfig) -> list[str]:
    """`--config-dir` / `--config-name` where the search was given them."""
    args = []
    for source in config.hydra.runtime.get("config_sources") or []:
        if source.get("provider") == "command-line" and source.get("schema") == "file":
            args += ["--config-dir", str(source.path)]
    if str(config.hydra.job.config_name) != "config":
        args += ["--config-name", str(config.hydra.job.config_name)]
    return args


def _load(loader, config: DictConfig, overrides: list[str]) -> DictConfig:
    """The config these overrides compose, with the search's own Hydra overrides but the sweeper's."""
    from hydra.types import RunMode

    return loader.load_configuration(config_name=str(config.hydra.job.config_name),
                                     overrides=_kept_hydra(config) + overrides, run_mode=RunMode.MULTIRUN)


def overrides_for(loader, config: DictConfig, trial: list[str]) -> Optional[list[str]]:
    """The overrides, without a study file, that compose the config of a trial's overrides (its seed
    included), or None where the difference cannot be written as overrides."""
    from vgsweep.config import flatten

    best, plain = _load(loader, config, trial), _load(loader, config, [])
    chose, had = _groups(best), _groups(plain)
    if set(had) - set(chose):
        return None
    groups = [f"{'+' if g not in had else ''}{g}={c}" for g, c in chose.items() if g not in had or had[g] != c]
    base = _load(loader, config, groups)
    want, have = ({k: v for k, v in flatten(OmegaConf.to_container(c, resolve=False)).items()
                   if not k.startswith("hydra.")} for c in (best, base))
    if set(have) - set(want):
        return None
    return groups + [f"{'' if k in have else '+'}{k}={value(v)}" for k, v in want.items()
                     if k not in have or have[k] != v or type(have[k]) is not type(v)]


def _job(loader, config: DictConfig, overrides: list[str]):
    """The job these overrides make (vgsweep.jobs.Job: its config and hash), resolved as the launcher resolves a
    job's."""
    from hydra.core.hydra_config import HydraConfig

    from vgsweep.config import resolve
    from vgsweep.jobs import Job

    cfg = _load(loader, config, overrides)
    HydraConfig.instance().set_config(cfg)
    try:
        job = copy.deepcopy(cfg)
        with read_write(job), open_dict(job):
            del job["hydra"]
        resolve(job)
        return Job(job)
    finally:
        HydraConfig.instance().set_config(config)


def seeds_for(seed: Any) -> list[Any]:
    """The trial's seed first (in the store: skipped), then the lowest others."""
    return [seed] + [s for s in range(SEEDS + 1) if s != seed][:SEEDS - 1]


def _trial(sweep_dir: Path, wanted: set[str]) -> Optional[list[str]]:
    """The overrides of a job of the search (its folder's .hydra/overrides.yaml, as Hydra's run_job wrote
    them, whichever launcher ran it) that set the best trial's parameters."""
    for path in sorted(sweep_dir.glob("**/.hydra/overrides.yaml")):
        overrides = [str(o) for o in OmegaConf.load(path)]
        if wanted <= set(overrides):
            return overrides
    return None


def line(config: DictConfig) -> Optional[str]:
    """The end of a search: its best trial (Optuna's optimization_results.yaml in the sweep folder,
    written by this command) and the command that confirms it over seeds."""
    from hydra.core.global_hydra import GlobalHydra

    sweep_dir = Path(str(config.hydra.sweep.dir))
    results = sweep_dir / "optimization_results.yaml"
    if not _SINCE or not results.is_file() or results.stat().st_mtime < _SINCE[0]:
        return None
    best = OmegaConf.load(results).get("best_params")
    if not best:
        return None
    wanted = {f"{k}={v}" for k, v in best.items()}  # as Optuna's sweeper wrote the trial's overrides
    if (trial := _trial(sweep_dir, wanted)) is None:
        return None
    from vgsweep.config import settle_override

    shown = " ".join(sorted(settle_override(w) for w in wanted))
    loader = GlobalHydra.instance().config_loader()
    settings = None
    seed: Any = None
    job = None
    try:
        job = _job(loader, config, trial)
        seed = job.cfg.get("seed")
        settings = overrides_for(loader, config, trial)
        if settings is not None and _job(loader, config, settings).key() != job.key():
            settings = None
    except Exception as e:  # noqa: BLE001 - a command it cannot write is said so, the search's results stand
        log.debug("no confirmation command: %s", e)
        settings = None
    if settings is None or seed is None:
        return (f"the best trial, {shown}: to confirm it over seeds, run its settings as a plain sweep with "
                f"seed=... into the same study (README, 'Searching')")
    seeds = ",".join(str(s) for s in seeds_for(seed))
    args = _config_args(config) + [o for o in settings if not o.startswith(("seed=", "+seed="))]
    args += [str(o) for o in _kept_hydra(config)] + [f"seed={seeds}"]
    command = "vgsweep -m " + " ".join(shlex.quote(a) for a in args)
    record(job, command)
    return (f"the best trial, {shown}, trained with seed {seed}; to confirm it over {SEEDS} seeds (the table then "
            f"gives its row mean ± std): {command}")


def record(job, command: str) -> None:
    """The command as the best trial's run's tag (tracking.TAG_CONFIRM, on its newest FINISHED run), which the
    report shows below the table while that trial has one seed: the store is the record, the terminal is not."""
    from mlflow.tracking import MlflowClient

    from vgsweep import tracking

    try:
        client = MlflowClient(tracking.resolve_uri(job.cfg))
        runs = tracking.runs_by_hash(client, str(job.cfg.tracking.experiment), {job.key()}).get(job.key(), [])
        run = next((r for r in runs if r.info.status == "FINISHED"), None)
        if run is not None:  # a database's password (tracking.uri=postgresql://user:pw@...) as ***, as in every tag
            tracking.retry(client.set_tag, run.info.run_id, tracking.TAG_CONFIRM, tracking.hide_passwords(command))
    except Exception as e:  # noqa: BLE001 - the line is said all the same; the report then has no command
        why = (str(e).splitlines() or [type(e).__name__])[0][:200]
        log.warning("the confirmation command could not be recorded in the store: %s", why)

