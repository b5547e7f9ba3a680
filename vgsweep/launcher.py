"""The packed launcher's work, keeping Hydra's launcher contract: the task function Hydra gives it is
called once per job, in order, through Hydra's `run_job`, so each job gets its output directory,
`.hydra/` files and log, and callbacks see `on_job_start` and `on_job_end` around its real work
with its real JobReturn.

Packing happens behind the task function. With vgsweep's own task function (marked
`vgsweep_packs`) the launcher first composes and checks every job (nothing is created if one is
bad), plans the sweep and groups the jobs into packs; then, job by job, the task call of the first
job of a pack trains the whole pack and records each of its jobs as an MLflow run, and the task
calls of the others collect their results. Any other task function runs one job at a time, exactly
as under Hydra's basic launcher.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write

from vgsweep.config import OBJECTIVES, VAL_OBJECTIVES, ConfigError, Shown, config_hash, higher_is_better, one_of, resolve
from vgsweep.jobs import Job, Outcome, label

log = logging.getLogger(__name__)

PROGRESS = ("auto", "bar", "log")


class PackedSweep:
    """What the launcher hands its task calls: the sweep, and which job number is which job."""

    def __init__(self, sweep, jobs: list[Job], nums: list[int], cwd: str):
        self.sweep, self.jobs, self.cwd = sweep, jobs, cwd
        self.index = {n: i for i, n in enumerate(nums)}

    def job_for(self, num: int, cfg: DictConfig) -> Optional[int]:
        """The planned job of this task call, or None if the call is not one (another config)."""
        i = self.index.get(num)
        return i if i is not None and self.jobs[i].key() == config_hash(cfg) else None

    def outcome(self, i: int) -> Outcome:
        with in_dir(self.cwd):  # jobs may chdir into their output dirs; relative paths mean the launch dir
            return self.sweep.outcome(i)


_ACTIVE: Optional[PackedSweep] = None


def active() -> Optional[PackedSweep]:
    return _ACTIVE


@contextlib.contextmanager
def in_dir(path: str):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def tidy_sweep_dir(sweep_dir: Path) -> None:
    """Undo what Hydra's sweeper wrote before the launcher could refuse the sweep (or a dry run
    stopped): the sweep folder and its multirun.yaml, if this process made them and nothing else is
    there, and the folders above it, inside the working folder, made with it and left empty
    (multirun/<date>/); into a folder of an earlier sweep, that sweep's multirun.yaml as it was."""
    from vgsweep.app import KEPT_MULTIRUN, STARTED_AT

    f = sweep_dir / "multirun.yaml"
    try:
        if (kept := KEPT_MULTIRUN.pop(f.absolute(), None)) is not None:
            f.write_bytes(kept[0])
            os.utime(f, (kept[1], kept[1]))
            return
        if f.is_file() and f.stat().st_mtime >= STARTED_AT - 1 and [p.name for p in sweep_dir.iterdir()] == [f.name]:
            f.unlink()
            sweep_dir.rmdir()
            cwd = Path.cwd().absolute()
            for d in sweep_dir.absolute().parents:
                if cwd not in d.parents or d.stat().st_mtime < STARTED_AT - 1 or any(d.iterdir()):
                    break
                d.rmdir()
    except OSError:
        pass


def check_options(launcher) -> None:
    """The launcher's own options, refused like any other bad input: its numbers by the rules of
    their fields (PackedLauncherConf), as the training config's are."""
    from hydra_plugins.vgsweep_launcher.packed_launcher import PackedLauncherConf
    from vgsweep.config import check_schema
    from vgsweep.executors import EXECUTORS

    check_schema(launcher.config.hydra.launcher, PackedLauncherConf, "hydra.launcher.")
    if launcher.progress not in PROGRESS:
        switch = launcher.progress in ("True", "False")  # `progress=false`: a YAML bool, made a string by the schema
        raise ConfigError("hydra.launcher.progress", Shown(launcher.progress.lower()) if switch else launcher.progress,
                          "one of " + ", ".join(PROGRESS),
                          "log writes a line every few seconds instead of the live one" if switch else "")
    if launcher.executor.executor not in EXECUTORS:
        raise ConfigError("hydra.launcher.executor", launcher.executor.executor, "one of " + ", ".join(EXECUTORS))
    for key in ("submitit_folder", "name", "partition", "qos", "account", "constraint", "exclude"):
        value = getattr(launcher.executor, key)  # blank, as `partition=$PART` gives where PART is not set
        if value is not None and not str(value).strip():  # sbatch took a blank qos or account as its default
            raise ConfigError(f"hydra.launcher.{key}", value, "a folder" if key == "submitit_folder" else
                              "a name" + ("" if key == "name" else ", or null for SLURM's default"))


def check_remote(launcher, jobs: list[Job]) -> None:
    """SLURM must be at hand, and a pack that trains on another node must reach the store from there."""
    import shutil

    from vgsweep import tracking

    if launcher.executor.executor != "slurm":
        return
    missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
    if missing:
        raise ConfigError("hydra.launcher.executor", "slurm", "local or submitit_local on this machine",
                          f"{' and '.join(missing)} not found on PATH: submit from the cluster's login node, where "
                          "SLURM's commands are")
    if launcher.executor.sqlite_is_shared:
        return
    for j in jobs:
        uri = tracking.resolve_uri(j.cfg)
        if tracking.sqlite_path(uri) is not None:
            raise ConfigError(tracking.uri_key(j.cfg), uri, "an mlflow server (http://host:port) with "
                              "hydra.launcher.executor=slurm",
                              "the pack jobs run on other nodes, which see this SQLite file only if it lives on a "
                              "filesystem they share: start a server (mlflow server --host 0.0.0.0 --port 5000 "
                              "--backend-store-uri sqlite:///$PWD/mlflow.db) and set tracking.uri to it, or set "
                              "hydra.launcher.sqlite_is_shared=true", j.where)


def check_one_study(configs: list[DictConfig]) -> None:
    """One study per command: an experiment file sets its own sweep (hydra.sweeper.params), which Hydra
    reads from the command's config only, so `-m experiment=a,b` would train one default job of each
    instead of both studies."""
    studies = sorted({str(OmegaConf.select(c, "hydra.runtime.choices.experiment")) for c in configs} - {"None"})
    if len(studies) > 1:
        raise ConfigError("experiment", ",".join(studies), "one study per command",
                          "each experiment file sets its own sweep, which a sweep over experiments would not run: "
                          "run them one after another (" + "; ".join(f"vgsweep experiment={s}" for s in studies) + ")")


def check_sweeper(config: DictConfig) -> None:
    """A sweeper that optimises (Optuna) is told which way: an accuracy maximised, a loss minimised.
    Optuna's default is minimize, so a search over `objective=test_acc` left at it would look for the
    worst accuracy. Its trials and batch (n_trials, n_jobs) are at least one. Its noise is turned down: its
    own INFO lines repeat Hydra's, and the database library it imports announces its plugins."""
    direction = OmegaConf.select(config, "hydra.sweeper.direction")
    if direction is None:
        return  # not an optimising sweeper
    one_of("objective", config.objective, OBJECTIVES + VAL_OBJECTIVES)
    want = "maximize" if higher_is_better(str(config.objective)) else "minimize"
    if isinstance(direction, (list, ListConfig)):  # Optuna's several objectives: one value per direction
        names = [str(getattr(d, "name", d)) for d in direction]
        if len(names) != 1:  # each job returns one number: Optuna failed every trial, after training it, exit 0
            raise ConfigError("hydra.sweeper.direction", Shown(f"[{','.join(names)}]"),
                              f"one direction ({want} for objective={config.objective})",
                              "each job returns one number, its objective: a search of several objectives is not "
                              "supported")
        direction = names[0]
    direction = str(getattr(direction, "name", direction))
    if direction != want:
        raise ConfigError("hydra.sweeper.direction", Shown(direction), f"{want} for objective={config.objective}",
                          f"the search would look for the {'worst accuracy' if want == 'maximize' else 'highest loss'}")
    for key, what in (("n_trials", "the trials the search runs"), ("n_jobs", "the trials it proposes at a time")):
        n = OmegaConf.select(config, f"hydra.sweeper.{key}")  # 0 or less: Optuna's traceback at the end, or mid-way
        if isinstance(n, int) and not isinstance(n, bool) and n < 1:
            raise ConfigError(f"hydra.sweeper.{key}", n, f"an int >= 1 ({what})")
    check_grid(config)
    if str(config.objective).startswith("test_"):  # not refused: a search may mean to, but it should know
        log.warning("the search chooses by objective=%s, the test set's: its best trial's test %s then overstates "
                    "what its settings give on data it has not seen. Tune on a validation split instead: "
                    "data.val_size=5000 objective=best_val_acc (as experiment=lr_search does)", config.objective,
                    "accuracy" if higher_is_better(str(config.objective)) else "loss")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if "optuna" in str(OmegaConf.select(config, "hydra.sweeper._target_")):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)


def check_grid(config: DictConfig) -> None:
    """Optuna's grid sampler enumerates listed values (a,b,c; choice(...); range(...)) and an interval
    of ints; an interval of floats, or on a log scale, it refuses with a traceback mid-sweep."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    if not str(OmegaConf.select(config, "hydra.sweeper.sampler._target_") or "").endswith("GridSampler"):
        return
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    items = [*(f"{k}={v}" for k, v in params.items()), *config.hydra.overrides.task]
    for p in OverridesParser.create().parse_overrides(items):
        v = p.value()
        if isinstance(v, IntervalSweep) and ("log" in v.tags or not (isinstance(v.start, int) and isinstance(v.end, int))):
            raise ConfigError(p.key_or_group, Shown(p.get_value_string()),
                              "a list of values (a,b,c) or an interval of ints with hydra/sweeper/sampler=grid",
                              "a grid enumerates values: sample the interval with hydra/sweeper/sampler=tpe or "
                              "random, or list the values to try")


def check_not_empty(launcher) -> None:
    """A sweep of no jobs (`seed=range(5,0)`, `activation=glob(zzz*)`): Hydra's basic sweeper launches an
    empty batch, which failed with a traceback. The key whose sweep gives no value is named."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    from vgsweep.config import CONF_DIR, group_options

    config = launcher.config
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    items = [*(f"{k}={v}" for k, v in params.items()), *config.hydra.overrides.task]
    parser = OverridesParser.create(config_loader=launcher.hydra_context.config_loader)
    last = {p.key_or_group: p for p in parser.parse_overrides(items)}  # the sweeper uses a key's last one
    for key, p in last.items():
        if p.is_discrete_sweep() and not list(p.sweep_string_iterator()):
            if p.value_type == ValueType.RANGE_SWEEP:
                hint = ("range(start, stop, step) counts from start up to stop, not to it, by step (1 unless given): "
                        "this one holds no number; range(5,0,-1) counts down")
            else:
                options = group_options(key) if (CONF_DIR / key).is_dir() else []
                hint = "It matches no option" + (f" of {key}: " + ", ".join(options) if options else "")
            raise ConfigError(key, Shown(p.get_value_string()), "a sweep of at least one value", hint)
    raise ConfigError("overrides", Shown(" ".join(items)), "a sweep of at least one job")


def swept_keys(config: DictConfig) -> list[str]:
    """The keys the sweep varies: its sweep overrides (`init=xavier,he`, an Optuna `interval(...)`),
    on the command line or in hydra.sweeper.params (a study file's). A key the study sweeps that the
    command line sets to one value (`experiment=residual_study model.residual=true`) is not swept: the
    sweepers (basic and Optuna) let the command line's override replace the study's."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    items = [*(f"{k}={v}" for k, v in params.items()), *config.hydra.overrides.task]
    try:
        parsed = OverridesParser.create().parse_overrides(items)
    except Exception:  # noqa: BLE001 - the sweeper parsed them already; a name is not worth failing for
        return []
    swept: dict[str, bool] = {}
    for p in parsed:  # the last one of a key is what the sweeper uses
        swept[p.key_or_group] = p.is_sweep_override()
    return [k for k, is_swept in swept.items() if is_swept]


# Jobs of this process that failed, across the launcher's calls: a sweeper that tolerates failures
# (Optuna's max_failure_rate) goes on past them, and the command still ends with exit status 1.
FAILED: list[str] = []


class PackedJobReturn(JobReturn):
    """A packed job's JobReturn: the same fields, and a failed job's error raised to the sweeper that
    asks for its value, as Hydra's is, but without the line Hydra's writes to stderr first ("Error
    executing job with overrides: [...]", one per failed trial under Optuna): the sweep's summary
    names every failed job, and the command ends with one line naming their runs (app._failed_jobs)."""

    @property
    def return_value(self):
        if self.status == JobStatus.COMPLETED:
            return self._return_value
        raise self._return_value

    @return_value.setter
    def return_value(self, value) -> None:
        self._return_value = value

    @classmethod
    def of(cls, ret: JobReturn) -> "PackedJobReturn":
        return cls(**{f.name: getattr(ret, f.name) for f in dataclasses.fields(ret)})


def compose_once(loader) -> None:
    """Hydra's sweeper composes every job of a batch to check it (`validate_batch_is_legal`), throws
    the configs away, and the launcher composes them again: 85 ms a job on a 2-core machine, 2.6 s of
    the 30-job paper grid. What the sweeper's check composed (and nobody else holds) is kept and
    handed to the next request for the same master config and overrides, once; any other request
    composes afresh. The check's first request has its whole batch composed by forked processes
    (`compose_batch`; composing is pure Python, one core each) while this one imports what the
    launcher needs next."""
    if getattr(loader, "_vgsweep_compose_once", False):
        return
    compose = loader.load_sweep_config
    kept: dict[tuple, DictConfig] = {}

    def load_sweep_config(master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        key = (id(master_config), tuple(sweep_overrides))
        caller = sys._getframe(1)
        check = caller.f_code.co_name == "validate_batch_is_legal"  # the check discards its copy
        if check and key in kept:
            return kept[key]
        if key in kept:
            return kept.pop(key)
        if check and not kept:
            batch = [tuple(o) for o in caller.f_locals.get("batch") or ()]
            if key[1] in batch:
                for o, c in compose_batch(compose, master_config, batch, import_ahead).items():
                    kept[(key[0], o)] = c
            if key in kept:
                return kept[key]
        cfg = compose(master_config, sweep_overrides)
        if check:
            kept[key] = cfg
        return cfg

    loader.load_sweep_config = load_sweep_config
    loader._vgsweep_compose_once = True


PARALLEL_MIN_JOBS = 8  # fewer jobs are composed in this process: forking costs more than it saves
_FORKED: tuple | None = None  # (compose, master config) for the forked composers, which inherit it
COMPOSED: dict = {}  # the last compose_batch: jobs, seconds, processes (the "Launching" line says them)


def compose_workers(jobs: int) -> int:
    """Processes to fork beside this one to compose `jobs` jobs: about 4 jobs each, on the cores this
    process may use, 15 at most; 0 where forking is not safe or not worth it."""
    import multiprocessing
    import threading

    if (jobs < PARALLEL_MIN_JOBS or sys.platform != "linux" or threading.active_count() > 1
            or "fork" not in multiprocessing.get_all_start_methods()):
        return 0  # fork only a process with one thread (no lock can be held by another), on Linux
    from vgsweep.host import cores

    return max(0, min(cores() - 1, -(-jobs // 4) - 1, 15))


def compose_batch(compose, master: DictConfig, batch: list[tuple], meanwhile=None) -> dict[tuple, DictConfig]:
    """The configs of a batch of jobs, by overrides: the first composed here (composing's side effects
    happen in this process), the others by forked processes, which inherit the loader, the config
    store and the master config, in chunks of 4, while this process runs `meanwhile` (the launcher's
    imports) and then composes the chunks no worker has taken yet. A job that fails to compose is left
    out: the caller composes it again and raises Hydra's own error where one process would."""
    global _FORKED
    t0 = time.perf_counter()
    str(master.hydra.sweep.dir)  # its `now` resolved before the fork: each worker's configs copy the same one
    n = compose_workers(len(batch))
    pool, chunks, futures = None, [batch[i:i + 4] for i in range(1, len(batch), 4)], []
    try:
        if n:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            _FORKED = (compose, master)
            try:  # with fork, the first submit forks every worker, before the pool starts its own thread
                with _signals_held():
                    pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork"),
                                               initializer=_worker_signals)
                    futures = [pool.submit(_compose_share, chunk) for chunk in chunks]
            except Exception as e:  # noqa: BLE001 - cannot fork (memory, process limits): all of it here
                log.debug("could not fork composers (%s)", e)
                if pool is not None:
                    pool.shutdown(wait=False, cancel_futures=True)
                pool, futures = None, []
            finally:
                _FORKED = None  # the workers have their copy
        out = dict(_compose_share(batch if not futures else batch[:1], compose, master))
        if futures:
            if meanwhile is not None:
                meanwhile()
            for chunk, f in reversed(list(zip(chunks, futures))):  # from the end: the workers take from the start
                if f.cancel():
                    out.update(_compose_share(chunk, compose, master))
            try:
                for f in futures:
                    if not f.cancelled():
                        out.update(f.result())
            except Exception as e:  # noqa: BLE001 - a worker died: the caller composes what is missing
                log.debug("parallel composition failed (%s): composing the rest in this process", e)
    except BaseException:  # Ctrl-C (a held one too, as the fork ends), SIGTERM: the composers, which ignore
        # Ctrl-C and only compose, stop now; Python's exit waited for every chunk queued (40 s of a 75-job
        # study on two cores after Ctrl-C)
        if pool is not None:
            for p in list((getattr(pool, "_processes", None) or {}).values()):
                p.terminate()
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    COMPOSED.update(jobs=len(batch), seconds=time.perf_counter() - t0, processes=1 + (n if futures else 0))
    return {o: c for o, c in out.items() if c is not None}


def import_ahead() -> None:
    """What the launcher imports next (torch, the trainer, MLflow's client and SQL store: about 2.5 s
    here), imported while forked processes compose the jobs."""
    try:
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        from mlflow.tracking import MlflowClient  # noqa: F401

        import vgsweep.preflight  # noqa: F401
        import vgsweep.sweep  # noqa: F401
    except ImportError:  # the launcher meets it again, and says so
        pass


_HELD = ("SIGINT", "SIGTERM", "SIGHUP")


@contextlib.contextmanager
def _signals_held():
    """Ctrl-C, SIGTERM and SIGHUP wait while the composers are forked, then act (in this process, once the
    block ends). One that came during os.fork ran its handler inside logging's at-fork hook, where Python
    reports the KeyboardInterrupt ("Exception ignored in: <function _releaseLock>") and drops it: the sweep
    went on as if no Ctrl-C had come. The forked composers start with them held too (_worker_signals)."""
    import signal

    held = {getattr(signal, name) for name in _HELD}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _worker_signals() -> None:
    """A forked composer: Ctrl-C is the sweep's (it stops the pool), and SIGTERM ends the worker
    quietly (it inherited the sweep's handler, which raises to mark runs KILLED); then the signals held
    while it was forked (_signals_held) are let through: a Ctrl-C that came meanwhile is ignored here."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # ignored under nohup: so here too
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {getattr(signal, name) for name in _HELD})


def _compose_share(share: list[tuple], compose=None, master=None) -> list[tuple[tuple, Optional[DictConfig]]]:
    if compose is None:
        compose, master = _FORKED
    out = []
    for overrides in share:
        try:
            out.append((overrides, compose(master, list(overrides))))
        except Exception:  # noqa: BLE001 - the caller composes it again and reports it
            out.append((overrides, None))
    return out


def job_of(sweep_config: DictConfig) -> Job:
    """The job run_job will run for this config: its task config, output dir, overrides and log file.
    The task config's interpolations are resolved here, where Hydra's singleton holds this job's config
    with its output dir, as run_job sets it before the task runs: `seed=${hydra:job.num}` or
    `${hydra:runtime.output_dir}` give each job its own value (a pack trains its jobs together; resolved
    later, they read whichever job's config was set last, or none)."""
    HydraConfig.instance().set_config(sweep_config)  # the subdir may interpolate ${hydra:...}
    out = Path(str(OmegaConf.select(sweep_config, "hydra.sweep.dir"))) / str(
        OmegaConf.select(sweep_config, "hydra.sweep.subdir"))
    runtime = HydraConfig.get().runtime
    with read_write(runtime), open_dict(runtime):
        runtime.output_dir = str(out.absolute())
    # a copy without the hydra node, as Hydra's run_job makes: that node (most of the config) is not copied
    # only to be deleted (deepcopy's memo hands out a stand-in for it): 5 ms a job instead of 13
    cfg = copy.deepcopy(sweep_config, {id(sweep_config._get_node("hydra")): DictConfig({})})
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    hc = sweep_config.hydra
    resolve(cfg, " in job [" + " ".join(hc.overrides.task) + "]")
    return Job(cfg, out.absolute(), list(hc.overrides.task), log_file=out.absolute() / f"{hc.job.name}.log",
               hydra_later=True)


def _basic(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Hydra's basic launcher, line for line: for a task function that is not vgsweep's."""
    config, ctx = launcher.config, launcher.hydra_context
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    log.info(f"Launching {len(job_overrides)} jobs locally")
    runs = []
    for idx, overrides in enumerate(job_overrides):
        idx = initial_job_idx + idx
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        sweep_config = ctx.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx
        runs.append(run_job(hydra_context=ctx, task_function=launcher.task_function, config=sweep_config,
                            job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    return runs


def _compose_and_check(launcher, job_overrides: Sequence[Sequence[str]],
                       initial_job_idx: int) -> tuple[list[DictConfig], list[Job], list[str] | None]:
    """Every job composed and checked before anything is made: (their configs, their Jobs, a dry run's
    notes or None). Bad input is one line and exit 2 (app.exit_on_bad_input), the sweep folder the
    sweeper made tidied away."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from vgsweep import app
    from vgsweep.config import register_configs
    from vgsweep.preflight import check_dir, check_jobs

    config, ctx = launcher.config, launcher.hydra_context
    register_configs()
    str(config.hydra.sweep.dir)  # its `now` resolved once, here: every job's config copies it (Hydra's cache)
    configs, jobs = [], []
    with app.exit_on_bad_input(lambda: tidy_sweep_dir(Path(str(config.hydra.sweep.dir)))):
        check_options(launcher)
        if not job_overrides:
            check_not_empty(launcher)
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            try:
                sweep_config = ctx.config_loader.load_sweep_config(config, list(overrides))
            except (HydraException, OmegaConfBaseException) as e:
                raise ConfigError("overrides", " ".join(overrides), "a job Hydra can compose",
                                  str(e).strip().replace("\n", " "), " in job [" + " ".join(overrides) + "]") from None
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            configs.append(sweep_config)
            jobs.append(job_of(sweep_config))
        check_one_study(configs)
        swept = swept_keys(config)
        for j in jobs:
            j.label = label(j.overrides, swept, j.cfg.model.family)
        check_dir("hydra.sweep.dir", str(config.hydra.sweep.dir))
        data_notes: list[str] | None = [] if launcher.dry_run else None
        check_jobs(jobs, data_notes, devices_here=launcher.executor.executor != "slurm")  # a node checks its own
        check_remote(launcher, jobs)
    return configs, jobs, data_notes


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """The sweep's jobs, with its `hydra.job.env_set` in the environment throughout: Hydra's run_job sets it
    around each job's task, but a pack trains before its jobs' tasks are called, and their configs are
    resolved before that (`${oc.env:NAME}`), so the whole launch has it, as the pack jobs submitit_local
    starts from here inherit it (and SLURM's, where sbatch exports the environment, its default). One value
    for all the jobs: Hydra refuses a sweep over its own config."""
    from vgsweep.hydra_compat import job_env

    with job_env(launcher.config):
        return _launch(launcher, job_overrides, initial_job_idx)


def _launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    global _ACTIVE
    from vgsweep import app

    setup_globals()
    config, ctx = launcher.config, launcher.hydra_context
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    if not getattr(launcher.task_function, "vgsweep_packs", False):
        return _basic(launcher, job_overrides, initial_job_idx)

    app.entered()
    t_checks = time.perf_counter()
    configs, jobs, data_notes = _compose_and_check(launcher, job_overrides, initial_job_idx)
    HydraConfig.instance().set_config(config)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    n = len(job_overrides)
    composed = (f"{n} config{'s' if n != 1 else ''} composed in {COMPOSED['seconds']:.1f} s by {COMPOSED['processes']} "
                f"process{'es' if COMPOSED['processes'] > 1 else ''}, " if COMPOSED.get("jobs") == n else "")
    log.info("Launching %d job%s, trained in packs (%schecked in %.1f s)", n, "s" if n != 1 else "", composed,
             time.perf_counter() - t_checks)
    COMPOSED.clear()  # a later batch (a search's) says its own

    from vgsweep.sweep import Sweep

    remote = None
    if launcher.executor.executor != "local" and not launcher.dry_run:
        from vgsweep.executors import SubmititPacks

        remote = SubmititPacks(launcher.executor, launcher.max_pack or None, launcher.memory_budget_gb)
    with app.exit_on_sweep_stopped(), app.exit_on_bad_input(lambda: tidy_sweep_dir(Path(str(config.hydra.sweep.dir)))):
        sweep = Sweep(jobs, max_pack=launcher.max_pack or None, memory_budget_gb=launcher.memory_budget_gb,
                      progress=launcher.progress if remote is None else None, remote=remote,
                      dry_run=launcher.dry_run, notes=data_notes,
                      waits=(float(launcher.executor.poll_s), float(launcher.executor.result_grace_s)))
    if launcher.dry_run:  # no task is called: as Hydra's --cfg, the command says what it would do and stops
        print(sweep.describe([c.hydra.job.num for c in configs]), flush=True)
        tidy_sweep_dir(Path(str(config.hydra.sweep.dir)))
        if OmegaConf.select(config, "hydra.sweeper.direction") is not None:  # Optuna: later trials need results
            print("(the sweeper chooses its next trials from these results: a dry run shows its first batch)")
            raise SystemExit(0)
        return []
    _ACTIVE = PackedSweep(sweep, jobs, [c.hydra.job.num for c in configs], os.getcwd())
    returns: list[JobReturn] = []
    try:
        for sweep_config in configs:
            log.info("\t#%d : %s", sweep_config.hydra.job.num,
                     " ".join(filter_overrides(list(sweep_config.hydra.overrides.task))))
            returns.append(PackedJobReturn.of(run_job(hydra_context=ctx, task_function=launcher.task_function,
                                                      config=sweep_config, job_dir_key="hydra.sweep.dir",
                                                      job_subdir_key="hydra.sweep.subdir")))
            configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    finally:
        _ACTIVE = None
    _said_at_the_end(sweep, jobs)
    return returns


def _said_at_the_end(sweep, jobs: list[Job]) -> None:
    """The sweep's closing count (its skips split by why where they differ), where to see its runs, and
    each failed job (also kept in FAILED, for the command's one line and exit status 1)."""
    from vgsweep import tracking
    from vgsweep.sweep import on_other_data, other_code

    counts = sweep.counts()
    skipped = [(i, j) for i, (j, o) in enumerate(zip(jobs, sweep.outcomes)) if o is not None and o.status == "SKIPPED"]
    earlier = sum(bool(j.queued_in) for i, j in skipped if i not in sweep.twin)
    repeats = sum(i in sweep.twin for i, _ in skipped)
    why = [(counts["SKIPPED"] - earlier - repeats, "already in the store"),
           (earlier, "trained by pack jobs of an earlier sweep"), (repeats, "repeating a config of this sweep")]
    log.info("sweep done: %d finished, %d skipped (%s), %d failed", counts["FINISHED"], counts["SKIPPED"],
             ", ".join(f"{n} {what}" for k, (n, what) in enumerate(why) if n or k == 0) if earlier or repeats
             else "already in the store", counts["FAILED"])
    if older := other_code(sweep.outcomes):
        log.info(older)
    if elsewhere := on_other_data(sweep.outcomes):
        log.warning(elsewhere)
    for uri, experiment in dict.fromkeys((tracking.resolve_uri(j.cfg), str(j.cfg.tracking.experiment)) for j in jobs):
        if (url := tracking.web_address(uri, experiment)) is not None:
            log.info("the runs of experiment %s: %s", experiment, url)
    failed = [(j, o) for j, o in zip(jobs, sweep.outcomes) if o is not None and o.status == "FAILED"]
    if failed:
        log.error("%d of %d jobs failed:", len(failed), len(jobs))
        for j, o in failed:
            log.error("\t[%s] %s: %s", " ".join(j.overrides), o.label(j.name), o.reason)
            FAILED.append(f"{o.label(j.name)}: {o.reason}")
