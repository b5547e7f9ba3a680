"""`vgsweep [-m] key=value ...` (or `python -m vgsweep`): the Hydra entry point. Thin: the work is in
sweep.py. Also `vgsweep table | figures | report | status | ui | profile ...` for the results commands.

Exit status: 0 done; 1 a job failed (its run is FAILED in the store, with the reason); 2 bad input,
refused before anything was trained or written; 3 the tracking store stopped answering (checkpoints
kept: run the same command again when it is back); 130 / 143 / 129 interrupted by SIGINT (Ctrl-C) /
SIGTERM / SIGHUP (its terminal closed) (the runs it was training are KILLED in the store, their
checkpoints kept: the same command resumes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import vgsweep.hydra_compat  # noqa: F401  (numeric group options: depth=2,5)
from vgsweep.config import CONF_DIR as _CONF, ConfigError, register_configs, resolve, settle

log = logging.getLogger(__name__)
register_configs()
CONF_DIR = str(_CONF)  # conf/ beside the package, as an absolute path: the command works from any directory
_ENTERED = False  # set once vgsweep's own code runs: a Hydra error before that is bad input (exit 2)
_SWEEP_DIR: Path | None = None  # the sweep folder Hydra's sweeper makes before it composes the jobs
KEPT_MULTIRUN: dict[Path, tuple[bytes, float]] = {}  # an earlier sweep's multirun.yaml there: content, mtime
STARTED_AT = __import__("time").time()  # what this process wrote is newer than this


def entered() -> None:
    global _ENTERED
    _ENTERED = True


@contextlib.contextmanager
def _checking():
    """vgsweep's code inside one of Hydra's steps (a callback): an error of its own is not Hydra's bad
    input; once it returns, Hydra's next step (its sweeper composing every job of the sweep, where an
    unknown option in a list, `activation=relu,sigmoidd`, is found) is Hydra's again."""
    global _ENTERED
    before, _ENTERED = _ENTERED, True
    yield
    _ENTERED = before


class JobFailed(CompactHydraException):
    """A job whose run ended FAILED; Hydra prints this one line (no traceback) and exits 1."""


def _die(message: str, code: int) -> None:
    logging.shutdown()
    try:
        sys.stderr.write("vgsweep: " + " ".join(str(message).split("\n")) + "\n")
        sys.stderr.flush()
    except OSError:  # a terminal that has closed (SIGHUP): the exit status still says it
        pass
    raise SystemExit(code)


@contextlib.contextmanager
def exit_on_bad_input(undo=None):
    """Bad input ends the command with one line on stderr and exit status 2, not a traceback;
    `undo` first removes what was made for the refused command."""
    try:
        yield
    except ConfigError as e:
        if undo is not None:
            undo()
        _die(str(e), 2)


@contextlib.contextmanager
def exit_on_sweep_stopped():
    from vgsweep.jobs import SweepStopped

    try:
        yield
    except SweepStopped as e:
        _die(str(e), e.exit_code)


def _job(cfg: DictConfig):
    from vgsweep.jobs import Job

    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    return Job(cfg, out, list(hc.overrides.task), log_file=out / f"{hc.job.name}.log")


def task(cfg: DictConfig) -> float:
    """One Hydra job. In a packed sweep, the first job of a pack trains the pack and the others
    collect their results; otherwise the job is a pack of one."""
    from hydra.utils import get_original_cwd

    from vgsweep import launcher

    entered()
    hc = HydraConfig.get()
    packed = launcher.active()
    if packed is None and hc.mode.name == "MULTIRUN":  # Hydra's basic launcher: no job of it was checked ahead
        with exit_on_bad_input():
            resolve(cfg, " in job [" + " ".join(hc.overrides.task) + "]")
    settle(cfg)  # as its Job's (jobs.Job): what this call records goes to the same store, under one hash
    i = packed.job_for(hc.job.num, cfg) if packed is not None and hc.mode.name == "MULTIRUN" else None
    job = packed.jobs[i] if i is not None else _job(cfg)
    with exit_on_sweep_stopped():
        if i is not None:
            outcome = packed.outcome(i)
            if outcome.status != "SKIPPED" and outcome.run_id and hc.output_subdir is not None:
                _attach_hydra_files(cfg, outcome, Path(hc.runtime.output_dir) / hc.output_subdir)
        else:
            from vgsweep.sweep import run_jobs

            with exit_on_bad_input(), launcher.in_dir(get_original_cwd()):
                [outcome] = run_jobs([job])
    if outcome.status == "FAILED":
        who = outcome.label(job.name)
        if i is None:  # a single run, or Hydra's basic launcher: the command's last line names it (_failed_jobs)
            launcher.FAILED.append(f"{who}: {outcome.reason}")
        raise JobFailed(f"{who} FAILED: {outcome.reason}")
    value = outcome.final.get(cfg.objective, float("nan"))  # NaN: a run another process is training
    log.info("%s run %s: %s=%.4f", outcome.status.lower(), outcome.run_id, cfg.objective, value)
    if i is None and hc.mode.name != "MULTIRUN":  # a single run on a server: where its UI shows it
        from vgsweep import tracking

        url = tracking.web_address(tracking.resolve_uri(cfg), str(cfg.tracking.experiment), outcome.run_id)
        if url is not None:
            log.info("run %s in MLflow's UI: %s", outcome.run_id, url)
    return value



def _attach_hydra_files(cfg: DictConfig, outcome, hydra_dir: Path) -> None:
    """The job's .hydra/ files, written by Hydra just before this call, go to its run; if they cannot,
    the run is FAILED (its record is incomplete), never silently kept."""
    from vgsweep import tracking
    from vgsweep.runs import RunLogger

    lg = None
    try:
        lg = RunLogger(tracking.client_for(tracking.resolve_uri(cfg)), outcome.run_id)
        lg.log_hydra_dir(hydra_dir)
    except tracking.TrackingUnavailable:
        raise
    except Exception as e:  # noqa: BLE001
        reason = f"recording its .hydra files failed after training: {type(e).__name__}: {e}"
        if outcome.status == "FAILED":  # it failed already: keep that reason
            log.warning("run %s: %s", outcome.run_id, reason)
            return
        outcome.status, outcome.reason = "FAILED", reason
        if lg is not None:
            with contextlib.suppress(Exception):
                lg.fail(reason)


def compose(overrides: list[str]) -> DictConfig:
    """The config the command line would give for these overrides (Hydra's compose API, the same
    conf/, schema and numeric-group shim); for tools and tests."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def _refusals_as_one_line() -> None:
    """Hydra reports what it refuses while composing (an unknown option or key, a wrong type, an
    override it cannot parse) in many lines, then exits 1; before vgsweep's own code runs, vgsweep
    says it in one line instead (hydra_compat.bad_input_message) and exits 2, as for its own checks.
    Hydra's own report stays where HYDRA_FULL_ERROR=1 asks for the traceback, and for any other error."""
    from hydra._internal import utils as hydra_utils

    report = hydra_utils.run_and_report
    if getattr(report, "_vgsweep", False):
        return

    def run_and_report(func):
        def refused_in_one_line():
            try:
                return func()
            except Exception as e:
                if isinstance(e, JobFailed) and os.environ.get("HYDRA_FULL_ERROR") != "1":
                    _failed_jobs()  # the packed launcher's: one line naming every failed run, exit 1
                if _ENTERED and not isinstance(e, JobFailed):
                    _failed_jobs(f" (then the sweeper stopped: {type(e).__name__}: {e})")
                message = None if _ENTERED or os.environ.get("HYDRA_FULL_ERROR") == "1" else \
                    vgsweep.hydra_compat.bad_input_message(e)
                if message is None:
                    raise
            if _SWEEP_DIR is not None:
                from vgsweep.launcher import tidy_sweep_dir

                tidy_sweep_dir(_SWEEP_DIR)  # the sweeper made it, then refused a job: nothing is left behind
            _die(message, 2)

        return report(refused_in_one_line)

    run_and_report._vgsweep = True  # type: ignore[attr-defined]
    hydra_utils.run_and_report = run_and_report

    from hydra._internal.hydra import Hydra

    show_info = Hydra.show_info

    def show_info_reported(self, *args, **kwargs):  # Hydra calls `--info` outside run_and_report: what it
        return run_and_report(lambda: show_info(self, *args, **kwargs))  # refused was a traceback, exit 1

    Hydra.show_info = show_info_reported  # type: ignore[method-assign]
    show_cfg = Hydra.show_cfg

    def show_cfg_checked(self, config_name, overrides, cfg_type, package, **kwargs):
        """`--cfg job` (or all) prints the config, then refuses one the run would (one line, exit 2): it
        was printed, exit 0, and the run said no; an interpolation that does not resolve is refused first
        (`--resolve` was Hydra's traceback), with hydra.job.env_set in the environment as the run has it.
        Not the checks of this machine (its devices, the data's files, the store): a config may be printed
        for another."""
        import copy

        from hydra.types import RunMode

        from vgsweep.hydra_compat import job_env

        config = self.compose_config(config_name, overrides, run_mode=RunMode.RUN, with_log_configuration=False)
        cfg = None
        with job_env(config):
            if cfg_type in ("job", "all"):
                HydraConfig.instance().set_config(config)  # what ${hydra:...} reads
                cfg = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
                with exit_on_bad_input():
                    resolve(cfg)
            if package not in (None, "_global_"):  # Hydra's refusal of a package not there was its own line
                shown = self.get_sanitized_cfg(copy.deepcopy(config), cfg_type)
                if OmegaConf.select(shown, package, throw_on_resolution_failure=False) is None:
                    _die(f"--package={package!r} is not accepted; expected a key of the {cfg_type} config (one of "
                         f"{', '.join(map(str, shown.keys()))}, or a dotted path below one)", 2)
            try:
                show_cfg(self, config_name=config_name, overrides=overrides, cfg_type=cfg_type, package=package,
                         **kwargs)
            except OmegaConfBaseException as e:  # --resolve, where Hydra's config sets a job's values otherwise
                from vgsweep.config import Shown, flatten

                key = str(getattr(e, "full_key", "") or "interpolation")
                raw = flatten(OmegaConf.to_container(config, resolve=False)).get(key, "?")
                with exit_on_bad_input():
                    raise ConfigError(key, Shown(str(raw)), "an interpolation that resolves",
                                      str(e).strip().splitlines()[0]) from None
        if cfg is not None:
            from vgsweep.config import validate

            sys.stdout.flush()  # the config, then the line
            with exit_on_bad_input():
                validate(cfg, devices_here=False)

    Hydra.show_cfg = show_cfg_checked  # type: ignore[method-assign]


def _hydra_parser_in_any_order() -> None:
    """Hydra's command line, read as a researcher types it: its options anywhere among the overrides
    (`vgsweep activation=relu,tanh -m seed=0,1`; plain argparse stops at the first option and calls
    what follows 'unrecognized arguments'), `--info` without a value before an override, and what it
    still refuses (an unknown option, `--cfg` without job, hydra or all) said in one line, exit 2."""
    import argparse
    import importlib

    hydra_main = importlib.import_module("hydra.main")  # the module (`hydra.main` the attribute is its function)
    made = hydra_main.get_args_parser
    if getattr(made, "_vgsweep", False):
        return

    def parser() -> argparse.ArgumentParser:
        p = made()
        info = p._option_string_actions["--info"]
        argv = sys.argv[1:]
        for i, a in enumerate(argv):
            if a in info.option_strings and (i + 1 == len(argv) or argv[i + 1] not in info.choices):
                argv = [*argv[:i], *argv[i + 1:], a]  # last: then it takes no value (argparse's nargs="?")
                break
        sys.argv[1:] = argv

        def error(message: str) -> None:
            _die(f"{message} (vgsweep --help lists the options; vgsweep --hydra-help Hydra's)", 2)

        def parse(args=None, namespace=None) -> argparse.Namespace:
            ns = argparse.ArgumentParser.parse_intermixed_args(p, args, namespace)
            given = [name for name, on in [("--run", ns.run), ("--multirun (-m)", ns.multirun), ("--cfg", ns.cfg),
                                           ("--info", ns.info is not None), ("--shell-completion", ns.shell_completion)]
                     if on]
            if len(given) > 1:  # Hydra's own refusal was a traceback (a ValueError), exit 1
                _die(f"{' and '.join(given)} cannot be given together: Hydra takes one of --run, --multirun (-m), "
                     "--cfg, --info and --shell-completion (what a sweep would train: -m ... "
                     "hydra.launcher.dry_run=true; one job's config: --cfg job, one value per key)", 2)
            rerun = getattr(ns, "experimental_rerun", None)
            if rerun is not None and not os.path.isfile(rerun):  # Hydra's refusal was a traceback, exit 1
                _die(f"--experimental-rerun={rerun!r} is not accepted; expected a job's config.pickle (written "
                     "where Hydra's PickleJobInfoCallback is on); no such file", 2)
            return ns

        p.parse_args = parse
        p.error = error  # type: ignore[method-assign]
        return p

    parser._vgsweep = True  # type: ignore[attr-defined]
    hydra_main.get_args_parser = parser


def _main(cfg: DictConfig) -> float:
    return task(cfg)


_main.vgsweep_packs = True  # type: ignore[attr-defined]  (the packed launcher packs this task's jobs)
main = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")(_main)


class Preflight(Callback):
    """A single run is checked before Hydra makes its output folder; a sweep's folder before Hydra's
    sweeper makes it (its jobs are checked by the launcher, before any job folder is made)."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from vgsweep.launcher import check_sweeper
        from vgsweep.preflight import check_dir

        global _SWEEP_DIR
        with _checking(), exit_on_bad_input():
            check_dir("hydra.sweep.dir", str(config.hydra.sweep.dir))
            check_sweeper(config)
        _SWEEP_DIR = Path(str(config.hydra.sweep.dir))
        from vgsweep import confirm

        confirm.started()
        earlier = _SWEEP_DIR / "multirun.yaml"  # Hydra's sweeper writes over it next: a dry run or a refused sweep
        if earlier.is_file():  # gives it back (launcher.tidy_sweep_dir)
            KEPT_MULTIRUN[earlier.absolute()] = (earlier.read_bytes(), earlier.stat().st_mtime)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        """After a search, Optuna's best trial and the command that trains it over more seeds."""
        from vgsweep import confirm

        if (said := confirm.line(config)) is not None:
            logging.getLogger("vgsweep.confirm").info(said)

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from vgsweep.hydra_compat import job_env
        from vgsweep.jobs import Job
        from vgsweep.preflight import check_dir, check_jobs

        entered()
        cfg = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
        with exit_on_bad_input():
            if OmegaConf.select(config, "hydra.launcher.dry_run", default=False):
                raise ConfigError("hydra.launcher.dry_run", True, "false for a single run (the launcher plans sweeps)",
                                  "add -m: a single run is a sweep of one")
            check_dir("hydra.run.dir", str(config.hydra.run.dir))
            # as run_job will run the task: with hydra.job.env_set in the environment (`${oc.env:NAME}`)
            with job_env(config):
                resolve(cfg)  # an interpolation that does not: one line here, not a traceback in the task
                check_jobs([Job(cfg, overrides=list(config.hydra.overrides.task))])

    def on_run_end(self, config: DictConfig, job_return=None, **kwargs) -> None:
        """A single run whose run FAILED ends as a sweep's failed jobs do: vgsweep's one line last
        (_failed_jobs), without the line Hydra writes to stderr when it reads the job's value ("Error
        executing job with overrides: [...]"). The JobReturn becomes the packed launcher's, same fields,
        after every callback saw it; any other error, or HYDRA_FULL_ERROR=1, keeps Hydra's report."""
        _quiet_if_failed(job_return)

    def on_job_end(self, config: DictConfig, job_return=None, **kwargs) -> None:
        """The same for each job of `hydra/launcher=basic` (the packed launcher's are so already)."""
        _quiet_if_failed(job_return)


def _quiet_if_failed(job_return) -> None:
    from vgsweep.launcher import PackedJobReturn

    if (job_return is not None and isinstance(getattr(job_return, "_return_value", None), JobFailed)
            and os.environ.get("HYDRA_FULL_ERROR") != "1"):
        job_return.__class__ = PackedJobReturn


# --- --help ------------------------------------------------------------------------------------
def groups_help() -> str:
    """Every config group with its options (numbers in numeric order) and its default."""
    from vgsweep.config import group_options

    defaults = {}
    for line in (_CONF / "config.yaml").read_text().splitlines():
        m = re.match(r"\s*-\s*(\w+):\s*\"?([\w.]+)\"?", line)
        if m:
            defaults[m.group(1)] = m.group(2)
    lines = []
    groups = sorted(p.name for p in _CONF.iterdir() if p.is_dir())
    width = max(map(len, groups))
    for group in groups:
        opts = group_options(group)
        d = defaults.get(group)
        lines.append(f"  {group:<{width}} " + ", ".join(f"{o} (default)" if o == d else o for o in opts))
    return "\n".join(lines)


OmegaConf.register_new_resolver("vgsweep_groups", groups_help, replace=True)


# --- the console script --------------------------------------------------------------------------
SUBCOMMANDS = {"table": "vgsweep.results.table", "figures": "vgsweep.results.figures",
               "report": "vgsweep.results.report", "status": "vgsweep.results.status", "profile": "vgsweep.profile",
               "ui": "vgsweep.ui"}


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread as Ctrl-C raises KeyboardInterrupt (neither is an
    Exception: no `except Exception` on the way mistakes it for a failed run)."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signum)
        self.signum = signum
        # SIGHUP: the terminal closed (an ssh connection dropped) under a sweep started without nohup
        self.name = "SIGHUP (its terminal closed)" if signum == signal.SIGHUP else signal.Signals(signum).name


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


def _interrupted(name: str, code: int) -> None:
    """The sweep was interrupted: the runs it held RUNNING end KILLED with the reason, one line, exit.
    What holds runs or pack jobs is asked only where imported: an interruption can come while torch is
    imported (the sweep's jobs composed beside it), and importing it again failed (`partially initialized
    module 'torch'`: a traceback and exit 1); where nothing was imported, nothing was started."""
    runs, executors = sys.modules.get("vgsweep.runs"), sys.modules.get("vgsweep.executors")
    # what it cannot end, it says (a warning)
    ended = runs.end_open_runs("KILLED", f"interrupted by {name}") if runs is not None else []
    local, slurm, waiting = ((executors.PENDING_LOCAL, executors.PENDING_SLURM, executors.WAITING)
                             if executors is not None else ({}, {}, {}))
    if local:  # submitit_local: its pack jobs are this machine's processes, stopped with the sweep
        ended += executors.stop_local_jobs(f"interrupted by {name}")
    if not _ENTERED and _SWEEP_DIR is not None and "vgsweep.launcher" in sys.modules:
        sys.modules["vgsweep.launcher"].tidy_sweep_dir(_SWEEP_DIR)  # no job began: nothing is left, as of a refusal
    logging.getLogger().handlers.clear()  # the line below is the last thing said, not a log record after it
    _stop_drawing()
    if ended:
        what = (f"{len(ended)} run{'s' if len(ended) > 1 else ''} it was training marked KILLED in the store; "
                "run the same command to go on: finished runs are skipped, the interrupted ones continue from "
                "their last checkpoint (checkpoint.every) or start again")
    elif slurm or waiting:
        ids = " ".join({**slurm, **waiting})
        whose = ("the pack jobs it submitted" if not waiting else "the pack jobs of an earlier sweep it waited for"
                 if not slurm else "the pack jobs it submitted and those of an earlier sweep it waited for")
        what = (f"{whose} go on in SLURM (scancel {ids} stops them; `vgsweep status` follows "
                "them; the same command run again waits for them instead of submitting their configs again)")
    else:
        what = "no run was in progress"
    _die(f"interrupted by {name}: {what}", code)


def _stop_drawing() -> None:
    """An interrupted command does not wait for the drawings it queued (learning curves, the results figures'
    files): Python's exit drained the drawing workers' whole queue first (vgsweep figures went on writing
    figures for 14 to 18 s after Ctrl-C). Those not started are cancelled; those being written are finished,
    so no file is left cut short."""
    plots = sys.modules.get("vgsweep.plots")  # imported by what draws: nothing to stop otherwise
    if plots is not None:
        plots.stop_curve_pool(interrupted=True)


def _stopped(command: str, name: str, code: int) -> None:
    """A results command (or profile) interrupted: one line and the signal's exit status, not a traceback."""
    _stop_drawing()
    logging.getLogger().handlers.clear()
    _die(f"interrupted by {name}: vgsweep {command} stopped before it finished; run it again for all of its "
         "output", code)


def _terminations_raise() -> None:
    """SIGTERM and SIGHUP raise Terminated in the main thread, as Ctrl-C raises KeyboardInterrupt, where their
    action is the default (not where ignored: nohup)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _raise_terminated)


def cli() -> None:
    """`vgsweep ...`: a results subcommand, or Hydra's command line. A Hydra error before any of
    vgsweep's own code ran (a misspelt key or option) is bad input: exit 2, as vgsweep's own checks.
    SIGINT (Ctrl-C), SIGTERM and SIGHUP end the runs in progress KILLED (exit 130, 143 and 129)."""
    from vgsweep import host

    host.startup()
    try:
        _cli()
    finally:
        host.at_exit()


def version_line() -> str:
    """`vgsweep --version`: vgsweep's release and commit (tracking.git_commit), and the releases its results
    depend on (read from the installed packages' metadata, none of them imported), for a bug report or a
    methods section."""
    import platform
    from importlib import metadata

    from vgsweep import __version__

    def of(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    from vgsweep.tracking import git_commit, short_commit

    names = {"hydra-core": "Hydra", "torch": "PyTorch", "mlflow": "MLflow", "submitit": "submitit",
             "hydra-optuna-sweeper": "Hydra's Optuna sweeper"}
    commit = git_commit()  # as each run's vgsweep.git_commit tag has it; its first 12 digits name it
    at = "" if commit == "unknown" else f" at commit {short_commit(commit)}"
    return (f"vgsweep {__version__}{at} (" + ", ".join(f"{label} {of(n)}" for n, label in names.items())
            + f", Python {platform.python_version()})")


def _failed_jobs(then: str = "") -> None:
    """Exit 1 if a job of this command failed and the sweeper went on past it (Optuna's
    max_failure_rate), or stopped for a reason of its own after it (no trial left to rank)."""
    from vgsweep.launcher import FAILED

    if FAILED:
        more = f"; and {len(FAILED) - 3} more (the log lists each)" if len(FAILED) > 3 else ""
        _die(f"{len(FAILED)} job{'s' if len(FAILED) > 1 else ''} failed{then}: " + "; ".join(FAILED[:3]) + more, 1)


def _cli() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        import importlib

        _terminations_raise()  # the figures run a results command is logging ends KILLED, not RUNNING
        try:
            mod = importlib.import_module(SUBCOMMANDS[sys.argv[1]])
            with exit_on_bad_input():  # a bad argument (an ArgumentError): one line, exit 2
                raise SystemExit(mod.main(sys.argv[2:]))
        except KeyboardInterrupt:  # Ctrl-C: it was a traceback (and vgsweep figures drew on for 14 s)
            _stopped(sys.argv[1], "SIGINT (Ctrl-C)", 130)
        except Terminated as e:
            _stopped(sys.argv[1], e.name, 128 + e.signum)
    if "--version" in sys.argv[1:]:  # Hydra's says "Hydra 1.3.8" alone
        print(version_line())
        raise SystemExit(0)
    modes = {"-m", "--multirun", "-r", "--run", "-c", "--cfg", "-i", "--info", "-h", "--help", "--hydra-help",
             "-sc", "--shell-completion"}
    if any(a.startswith("experiment=") for a in sys.argv[1:]) and not modes & set(sys.argv[1:]) and \
            not any(a.startswith("hydra.mode=") for a in sys.argv[1:]):  # `hydra.mode=RUN`: one job, as asked
        sys.argv.insert(1, "-m")  # a study file is a sweep (hydra.mode: MULTIRUN): `seed=0,1,2` may add axes to it
    _terminations_raise()
    _refusals_as_one_line()
    _hydra_parser_in_any_order()
    try:
        main()
        _failed_jobs()
    except SystemExit as e:
        if e.code == 1 and not _ENTERED:
            if _SWEEP_DIR is not None:
                from vgsweep.launcher import tidy_sweep_dir

                tidy_sweep_dir(_SWEEP_DIR)  # the sweeper made it, then refused a job: nothing is left behind
            raise SystemExit(2) from None
        raise
    except KeyboardInterrupt:
        _interrupted("SIGINT (Ctrl-C)", 130)
    except Terminated as e:
        _interrupted(e.name, 128 + e.signum)
