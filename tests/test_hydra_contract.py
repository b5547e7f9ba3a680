"""The packed launcher keeps Hydra's launcher contract: Hydra's own launcher test suites, as Hydra's
plugins run them, and callbacks that see each job's real result."""

from __future__ import annotations

import json
import re

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)

from hydra_plugins.vgsweep_launcher.packed_launcher import PackedLauncher
from tests.conftest import SMALL, run_cli

# The suites' apps leave version_base unset, so Hydra warns that jobs chdir: its own compatibility note.
pytestmark = pytest.mark.filterwarnings("ignore:Future Hydra versions will no longer change working directory")


@pytest.fixture(autouse=True)
def hydra_compat_version_base():
    """The suites' test apps give no version_base: Hydra then assumes 1.1 (jobs chdir into their
    output dirs). Importing vgsweep's app set the process-wide base to 1.3; undo that here."""
    from hydra.version import VersionBase, __compat_version__

    vb = VersionBase.instance()
    old = vb.version_base
    vb.setbase(__compat_version__)
    yield
    vb.version_base = old


def test_discovery() -> None:
    assert PackedLauncher.__name__ in [x.__name__ for x in Plugins.instance().discover(Launcher)]


@pytest.mark.parametrize("launcher_name, overrides", [("packed", [])])
class TestPackedLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize("launcher_name, overrides",
                         [("packed", ["hydra/sweeper=basic", "hydra.sweeper.max_batch_size=2"])])
class TestPackedLauncherBatched(BatchedSweeperTestSuite):
    pass


@pytest.mark.e2e
@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [({}, ["-m", "hydra/launcher=packed"])])
class TestPackedLauncherIntegration(IntegrationTestSuite):
    pass


RECORDER = '''
import json
import re
import time

from hydra.experimental.callback import Callback


class Recorder(Callback):
    """Writes every job start and end, as Hydra reports them, one JSON line each."""

    def __init__(self, path):
        self.path = path

    def _write(self, **event):
        with open(self.path, "a") as f:
            f.write(json.dumps(event) + "\\n")

    def on_job_start(self, config, **kwargs):
        self._write(event="start", num=config.hydra.job.num, t=time.time())

    def on_job_end(self, config, job_return, **kwargs):
        value = job_return._return_value
        self._write(event="end", num=config.hydra.job.num, status=job_return.status.name, t=time.time(),
                    value=value if isinstance(value, float) else repr(value))
'''


@pytest.mark.e2e
def test_callbacks_see_each_packed_jobs_real_result(tiny_root, tmp_path):
    """One pack of four jobs, one of which diverges: Hydra's callbacks see each job start and end in
    order, after its run was trained, with its real status and its test accuracy or failure."""
    from mlflow.tracking import MlflowClient

    (tmp_path / "recorder.py").write_text(RECORDER)  # the CLI runs in tmp_path: importable from there
    events_file, uri = tmp_path / "events.jsonl", f"sqlite:///{tmp_path / 'm.db'}"
    proc = run_cli(["-m", "activation=relu,tanh", "optimizer.lr=0.01,1e20", *[a for a in SMALL if "lr" not in a],
                    f"data.root={tiny_root}", f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / 'mr'}",
                    "+hydra.callbacks.rec._target_=recorder.Recorder", f"+hydra.callbacks.rec.path={events_file}"],
                   cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]  # a job failed
    # one line of vgsweep's, not Hydra's "Error executing job with overrides: [...]" and its HYDRA_FULL_ERROR hint
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("vgsweep: ")]
    assert proc.stderr.rstrip().endswith(line) and "Error executing job" not in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert [(e["event"], e["num"]) for e in events] == [(ev, n) for n in range(4) for ev in ("start", "end")]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("agarap2019")
    runs = {(r.data.params["activation.name"], r.data.params["optimizer.lr"]): r
            for r in client.search_runs([exp.experiment_id])}
    assert len(runs) == 4 and {int(r.data.tags["vgsweep.pack_size"]) for r in runs.values()} == {4}
    failed = [r.info.run_id for r in runs.values() if r.info.status == "FAILED"]
    assert failed and line.startswith(f"vgsweep: {len(failed)} job{'s' * (len(failed) > 1)} failed: run ")
    assert all(re.search(rf"run {i} \(mnist-\S+ optimizer.lr=1e\+20\): training loss became NaN or inf", line)
               for i in failed), line
    for e in (e for e in events if e["event"] == "end"):
        overrides = (tmp_path / "mr" / str(e["num"]) / ".hydra" / "overrides.yaml").read_text()
        act = "relu" if "activation=relu" in overrides else "tanh"
        run = runs[(act, "0.01" if "optimizer.lr=0.01" in overrides else "1e+20")]
        assert e["t"] * 1000 >= run.info.end_time  # the job ended after its run was trained and closed
        if run.info.status == "FINISHED":
            assert e["status"] == "COMPLETED" and e["value"] == pytest.approx(run.data.metrics["test_acc"])
        else:
            assert run.info.status == "FAILED" and e["status"] == "FAILED" and "NaN or inf" in e["value"]
    assert runs[("relu", "1e+20")].info.status == "FAILED"  # (tanh saturates: its loss stays finite)


def test_each_job_is_composed_once_not_again_after_the_sweepers_check():
    """Hydra's sweeper composes a batch's jobs to check them and drops the configs; the launcher takes
    those instead of composing each job a second time, once each, and only those: a request from
    anywhere else composes afresh and is not kept."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.plugins.sweeper import Sweeper
    from hydra.types import RunMode

    from vgsweep.app import CONF_DIR
    from vgsweep.launcher import compose_once

    batch = [["activation=relu", "depth=5"], ["activation=tanh", "depth=2"]]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", [], RunMode.MULTIRUN)
        str(master.hydra.sweep.dir)  # as the sweeper does first: each job's config then takes its `now` (cache)
        fresh = [loader.load_sweep_config(master, o) for o in batch]
        calls = []
        original = loader.load_sweep_config
        loader.load_sweep_config = lambda m, o: calls.append(o) or original(m, o)
        compose_once(loader)

        class Check(Sweeper):  # Hydra's own check, run as the basic sweeper runs it
            def __init__(self):
                self.hydra_context, self.config, self.config_loader = None, master, loader

            def setup(self, **kwargs): ...

            def sweep(self, arguments): ...

        Check().validate_batch_is_legal(batch)
        assert len(calls) == 2
        got = [loader.load_sweep_config(master, o) for o in batch]  # the launcher's requests: no composing
        assert len(calls) == 2 and got == fresh
        again = loader.load_sweep_config(master, batch[0])  # a second request composes afresh
        assert len(calls) == 3 and again == fresh[0] and again is not got[0]
        loader.load_sweep_config(master, batch[0])
        assert len(calls) == 4  # nothing kept from a request that was not the sweeper's check


PARALLEL_CHECK = r"""
import json, sys
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.plugins.sweeper import Sweeper
from hydra.types import RunMode
from omegaconf import OmegaConf
from vgsweep.app import CONF_DIR
from vgsweep.launcher import compose_once, compose_workers

bad = sys.argv[1] if len(sys.argv) > 1 else None
batch = [[f"activation={a}", f"regime={r}", f"depth={d}", "seed=3"] for a in ("relu", "tanh", "swish")
         for r in ("baseline", "gna_bn") for d in (2, 5)]
if bad:
    batch.insert(7, ["activation=" + bad, "depth=2"])
out = {"workers": compose_workers(len(batch))}
with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
    loader = GlobalHydra.instance().config_loader()
    master = loader.load_configuration("config", [], RunMode.MULTIRUN)
    str(master.hydra.sweep.dir)  # as the sweeper does first: each job's config then takes its `now` (cache)
    calls = []
    original = loader.load_sweep_config
    loader.load_sweep_config = lambda m, o: calls.append(o) or original(m, o)
    compose_once(loader)

    class Check(Sweeper):
        def __init__(self):
            self.hydra_context, self.config, self.config_loader = None, master, loader
        def setup(self, **kwargs): ...
        def sweep(self, arguments): ...

    try:
        Check().validate_batch_is_legal(batch)
    except Exception as e:
        out["error"] = [type(e).__name__, str(e)]
    out["composed_here_by_the_check"] = len(calls)
    out["first_here"] = calls[0] if calls else None
    if not bad:
        got = [loader.load_sweep_config(master, o) for o in batch]
        out["composed_here_in_all"] = len(calls)
        fresh = [original(master, o) for o in batch]
        out["same"] = [OmegaConf.to_yaml(g) == OmegaConf.to_yaml(f) and g == f for g, f in zip(got, fresh)]
        out["flags"] = [[OmegaConf.is_struct(c), OmegaConf.is_readonly(c), OmegaConf.is_struct(c.hydra),
                         OmegaConf.is_readonly(c.hydra)] for c in (got[5], fresh[5])]
        # the batch split between workers and this process, which composes what no worker has taken
        from vgsweep.launcher import compose_batch
        split = compose_batch(original, master, [tuple(o) for o in batch])
        out["split_same"] = sorted(split) == sorted(tuple(o) for o in batch) and all(
            OmegaConf.to_yaml(split[tuple(o)]) == OmegaConf.to_yaml(f) for o, f in zip(batch, fresh))
    else:
        try:
            original(master, batch[7])
        except Exception as e:
            out["serial_error"] = [type(e).__name__, str(e)]
print(json.dumps(out))
"""


def test_a_large_batch_is_composed_in_forked_processes_as_this_process_would():
    """12 jobs: the sweeper's check composes the first here and the others in forked workers; the
    launcher then gets configs equal (content and flags) to ones this process composes, and a job
    that cannot be composed fails the check with Hydra's own error, as it would in one process.
    A fresh interpreter: only a process with a single thread forks."""
    import subprocess
    import sys

    def run(*args):
        proc = subprocess.run([sys.executable, "-c", PARALLEL_CHECK, *args], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    out = run()
    n = out["workers"]
    assert n >= 1, "this machine cannot show the parallel path"
    assert "error" not in out
    # the first job is composed in the sweep's process, so composing's side effects happen there
    assert out["first_here"] == ["activation=relu", "regime=baseline", "depth=2", "seed=3"]
    here = out["composed_here_by_the_check"]  # the first job, and any chunk no worker had taken yet
    assert here < 12, "every job was composed in this process: the forked workers did nothing"
    assert out["composed_here_in_all"] == here  # the launcher's requests composed nothing again
    assert out["same"] == [True] * 12
    assert out["flags"][0] == out["flags"][1]
    assert out["split_same"]
    bad = run("no_such_activation")
    assert bad["error"] == bad["serial_error"] and "no_such_activation" in bad["error"][1]
    assert bad["composed_here_by_the_check"] < 13
