"""vgsweep's Hydra launcher: `hydra/launcher=packed` (the default of vgsweep's multiruns).

It composes every job of the sweep, validates them all, gives each its own output directory with
`.hydra/` and log, then trains the jobs that can share a pack together (vgsweep/launcher.py).
Heavy imports wait until `launch`, as in Hydra's own plugins.
"""


from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from vgsweep.config import rule  # the accepted values of its numbers, checked as the training config's


@dataclass
class PackedLauncherConf:
    _target_: str = "hydra_plugins.vgsweep_launcher.packed_launcher.PackedLauncher"
    max_pack: int = rule(0, "non_negative")  # most runs in one pack; 0 = as many as memory_budget_gb allows
    memory_budget_gb: Optional[float] = rule(None, "positive")  # device memory a pack may use; None = 80% of free memory
    progress: str = "auto"  # auto (a live line on a terminal, log lines otherwise) | bar | log
    dry_run: bool = False  # say what the sweep would do (skip, resume, train in which pack) and train nothing
    # Where packs train: local (this process) | slurm (one SLURM job per pack, through submitit) |
    # submitit_local (each pack a subprocess through submitit's LocalExecutor). The rest is for the
    # last two, named as in Hydra's submitit launcher plugin.
    executor: str = "local"
    submitit_folder: str = "${hydra.sweep.dir}/.submitit/%j"  # job scripts, pickles and logs
    name: str = "vgsweep"  # the SLURM job name
    timeout_min: int = rule(60, "positive")  # time limit of one pack job; at its end the pack is requeued from its checkpoints
    max_num_timeout: int = rule(3, "non_negative")  # requeues after preemption or the time limit, at most
    signal_delay_s: int = rule(120, "non_negative")  # SLURM signals the job this long before killing it
    gpus_per_node: Optional[int] = rule(1, "non_negative")  # GPUs of one pack job (slurm; submitit_local: of this machine's, in turn); null or 0 on a CPU partition
    cpus_per_task: Optional[int] = rule(None, "non_negative")
    mem_gb: Optional[int] = rule(None, "non_negative")
    partition: Optional[str] = None
    qos: Optional[str] = None
    account: Optional[str] = None
    constraint: Optional[str] = None
    exclude: Optional[str] = None
    comment: Optional[str] = None
    array_parallelism: int = rule(256, "positive")  # pack jobs of the array running at once
    additional_parameters: dict[str, Any] = field(default_factory=dict)  # more sbatch flags, e.g. {mail-type: END}
    setup: Optional[list[str]] = None  # shell lines before the job starts (module load ..., source venv/bin/activate)
    sqlite_is_shared: bool = False  # with slurm: the SQLite store lives on a filesystem every node sees
    poll_s: float = rule(5.0, "positive")  # how often the launcher looks at the jobs' states
    # slurm: how long a pack job SLURM says has ended may take to show its result (a shared filesystem's
    # lag) before its jobs are failed as ended without one
    result_grace_s: float = rule(15.0, "non_negative")
    cancel_unrunnable: bool = True  # slurm: cancel a pack job SLURM keeps pending for a request its partition cannot meet


ConfigStore.instance().store(group="hydra/launcher", name="packed", node=PackedLauncherConf, provider="vgsweep")


class PackedLauncher(Launcher):
    def __init__(self, max_pack: int = 0, memory_budget_gb: Optional[float] = None, progress: str = "auto",
                 dry_run: bool = False, **executor: Any) -> None:
        self.max_pack, self.memory_budget_gb, self.progress, self.dry_run = max_pack, memory_budget_gb, progress, dry_run
        from types import SimpleNamespace

        defaults = {k: v for k, v in PackedLauncherConf().__dict__.items()
                    if k not in ("_target_", "max_pack", "memory_budget_gb", "progress", "dry_run")}
        self.executor = SimpleNamespace(**{**defaults, **executor})  # executor.executor: local | slurm | ...
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from vgsweep.launcher import compose_once

        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        compose_once(hydra_context.config_loader)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from vgsweep.launcher import launch

        return launch(self, job_overrides, initial_job_idx)


__all__: Any = ["PackedLauncher", "PackedLauncherConf"]
