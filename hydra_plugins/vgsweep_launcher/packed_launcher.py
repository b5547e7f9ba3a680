"""vgsweep's Hydra launcher: `hydra/launcher=packed` (the default of vgsweep's multiruns).

It composes every job of the sweep, validates them all, gives each its own output directory with
`.hydra/` and log, then trains the jobs that can share a pack together (vgsweep/launcher.py).
Heavy imports wait until `launch`, as in Hydra's own plugins.
"""


from dataclasses import dataclass
from typing import Any, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class PackedLauncherConf:
    _target_: str = "hydra_plugins.vgsweep_launcher.packed_launcher.PackedLauncher"
    max_pack: int = 0  # most runs in one pack; 0 = as many as memory_budget_gb allows
    memory_budget_gb: Optional[float] = None  # device memory a pack may use; None = 80% of free memory
    progress: str = "auto"  # auto (a live line on a terminal, log lines otherwise) | bar | log


ConfigStore.instance().store(group="hydra/launcher", name="packed", node=PackedLauncherConf, provider="vgsweep")


class PackedLauncher(Launcher):
    def __init__(self, max_pack: int = 0, memory_budget_gb: Optional[float] = None, progress: str = "auto") -> None:
        self.max_pack, self.memory_budget_gb, self.progress = max_pack, memory_budget_gb, progress
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from vgsweep.launcher import launch

        return launch(self, job_overrides, initial_job_idx)


__all__: Any = ["PackedLauncher", "PackedLauncherConf"]
