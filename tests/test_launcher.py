"""The packed launcher: same numbers as one job at a time, every job recorded, packs split to fit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import SMALL, compose_cfg, run_cli
from vgsweep.packing import bytes_per_run, group_packs

GRID = ["activation=relu,tanh", "regime=baseline,gna,gna_bn,gna_wn", "seed=3"]  # packs: 6 (mlp), 2 (weight norm)


def _metrics(uri):
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("agarap2019")
    out = {}
    for r in c.search_runs([exp.experiment_id], max_results=1000):
        assert r.info.status == "FINISHED"
        key = (r.data.params["activation.name"], r.data.params["regime.name"])
        out[key] = {m: [h.value for h in sorted(c.get_metric_history(r.info.run_id, m), key=lambda h: h.step)]
                    for m in ("train_loss", "test_acc", "test_loss")}
        out[key]["pack_size"] = int(r.data.tags["vgsweep.pack_size"])
        out[key]["run_id"] = r.info.run_id
    return out


@pytest.mark.e2e
def test_packed_and_basic_launchers_give_the_same_runs(tiny_root, tmp_path):
    common = [*SMALL, f"data.root={tiny_root}", "regime.grad_noise.eta=0.01"]
    res = {}
    for launcher in ("packed", "basic"):
        uri = f"sqlite:///{tmp_path / launcher}.db"
        proc = run_cli(["-m", *GRID, *common, f"tracking.uri={uri}", f"hydra/launcher={launcher}",
                        f"hydra.sweep.dir={tmp_path / launcher}"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        res[launcher] = _metrics(uri)
    assert set(res["packed"]) == set(res["basic"]) and len(res["basic"]) == 8
    for key, m in res["basic"].items():
        p = res["packed"][key]
        assert m["pack_size"] == 1 and p["pack_size"] == (2 if "wn" in key[1] else 6)
        for name in ("train_loss", "test_acc", "test_loss"):
            assert p[name] == pytest.approx(m[name], rel=1e-5, abs=1e-6), (key, name)
    # every packed job has its own Hydra dir with .hydra/ and a log of its epochs
    logs = sorted((tmp_path / "packed").glob("*/app.log"))
    assert len(logs) == 8
    assert all(sum(line.startswith("epoch ") for line in log.read_text().splitlines()) == 2 for log in logs)
    for log in logs:  # and names its own MLflow run
        [line] = [x for x in log.read_text().splitlines() if x.startswith("run ")]
        job = dict(o.split("=") for o in yaml.safe_load((log.parent / ".hydra" / "overrides.yaml").read_text()))
        key = (job["activation"], job["regime"])
        assert line.startswith(f"run {res['packed'][key]['run_id']}: mnist-d2-{key[0]}-{key[1]}-s3, trained in a pack"), line
    assert all((log.parent / ".hydra" / "overrides.yaml").is_file() for log in logs)


@pytest.mark.e2e
def test_a_bad_job_stops_the_sweep_before_any_training(tiny_root, tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    proc = run_cli(["-m", "optimizer.lr=0.01,-1", *[a for a in SMALL if "lr" not in a], f"data.root={tiny_root}",
                    f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / 'mr'}"], cwd=tmp_path)
    assert proc.returncode != 0
    assert "optimizer.lr=-1" in proc.stderr and "positive float" in proc.stderr and "in job [" in proc.stderr
    assert not (tmp_path / "m.db").exists()  # nothing trained, nothing recorded


def _sweep_config(tmp_path, num: int, *overrides: str):
    """A job's config as Hydra's sweeper hands it to the launcher: with its hydra node and number."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from vgsweep.app import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        sweep = compose(config_name="config", overrides=[*overrides, f"hydra.sweep.dir={tmp_path}"],
                        return_hydra_config=True)
    with open_dict(sweep):
        sweep.hydra.job.num, sweep.hydra.job.id = num, str(num)
        sweep.hydra.job.override_dirname = ",".join(o for o in overrides if not o.startswith("hydra."))  # as Hydra sets it
    return sweep


def test_a_jobs_config_is_the_copy_hydras_run_job_makes(tmp_path):
    """job_of copies the sweep config without its hydra node (that node is not copied only to be deleted):
    the same config, type and flags as run_job's deep copy with the node deleted (and resolved); the sweep
    config is left whole, and the job's folder is the sweep's subdir."""
    import copy

    from omegaconf import OmegaConf, open_dict, read_write

    from vgsweep.config import settle
    from vgsweep.launcher import job_of

    sweep = _sweep_config(tmp_path, 3, "activation=tanh", "regime=gna")
    before = OmegaConf.to_yaml(sweep)
    plain = copy.deepcopy(sweep)
    with read_write(plain), open_dict(plain):
        del plain["hydra"]
    OmegaConf.resolve(plain)  # `tracking.experiment: ${study}`: the job's config is resolved, as its task sees it
    settle(plain)  # as a Job does
    job = job_of(sweep)
    assert OmegaConf.to_yaml(job.cfg) == OmegaConf.to_yaml(plain) and "hydra" not in job.cfg
    assert OmegaConf.get_type(job.cfg) is OmegaConf.get_type(plain)
    for flag in ("struct", "readonly"):
        assert job.cfg._get_flag(flag) == plain._get_flag(flag) and job.cfg.regime._get_flag(flag) == plain.regime._get_flag(flag)
    assert job.cfg.regime._get_parent() is job.cfg
    assert OmegaConf.to_yaml(sweep) == before and sweep.hydra._get_parent() is sweep
    assert job.output_dir == tmp_path / "3"


@pytest.mark.parametrize("subdir,names", [("${hydra:job.override_dirname}", ["activation=tanh", "activation=relu"]),
                                          ("run${hydra:job.num}", ["run0", "run1"]),
                                          ("${hydra.job.override_dirname}", ["activation=tanh", "activation=relu"])])
def test_a_jobs_folder_is_its_own_where_the_subdir_reads_hydras_config(tmp_path, subdir, names):
    """hydra.sweep.subdir through Hydra's `hydra:` resolver reads the singleton run_job sets per job: each
    job gets its own folder, not the one of the job checked before it."""
    from vgsweep.launcher import job_of

    a, b = (_sweep_config(tmp_path, n, f"activation={act}", f"hydra.sweep.subdir={subdir}")
            for n, act in ((0, "tanh"), (1, "relu")))
    assert [job_of(a).output_dir, job_of(b).output_dir, job_of(a).output_dir] == [tmp_path / n for n in (*names, names[0])]


def test_packs_split_by_shape_and_by_budget():
    cfgs = [compose_cfg(["device=cpu", f"seed={s}", f"depth={d}"]) for d in (2, 5) for s in range(5)]
    assert group_packs(cfgs) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert group_packs(cfgs, max_pack=2) == [[0, 1], [2, 3], [4], [5, 6], [7, 8], [9]]
    per_run = bytes_per_run(cfgs[0])
    assert 150e6 < per_run < 400e6  # dominated by its noisy copy of MNIST: 60000 x 784 x 4 bytes
    budget = 3.5 * max(per_run, bytes_per_run(cfgs[5])) / 2**30
    packs = group_packs(cfgs, memory_budget_gb=budget)
    assert [len(p) for p in packs] == [3, 2, 3, 2]


def test_a_cpu_pack_keeps_every_tensor_of_its_training_step_within_32_mib(caplog):
    """Without hydra.launcher.max_pack, a pack on the CPU holds as many runs as keep each tensor of a
    step within 32 MiB: the VGG study's activations (batch 100, 32 filters at 32x32) are 13 MB a run,
    so packs of 2 (a pack of six was 1.6 times slower, BENCHMARKS.md). A max_pack given is kept, a GPU
    is not limited, nor are packs planned for a scheduler's nodes (each node applies it to itself)."""
    from vgsweep.packing import cpu_pack_limit

    vggs = [compose_cfg(["experiment=vgg_cifar100", "vgg_row=vgg38_bn_rc", "device=cpu", f"seed={s}"])
            for s in range(6)]
    assert cpu_pack_limit(vggs[0]) == 2
    with caplog.at_level("INFO", logger="vgsweep.packing"):
        assert group_packs(vggs, memory_budget_gb=100) == [[0, 1], [2, 3], [4, 5]]
    assert ("on the CPU, packs of at most 2 runs here: every tensor of a training step within 32 MiB (larger ones "
            "slow each step down, BENCHMARKS.md); hydra.launcher.max_pack sets another size") in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="vgsweep.packing"):
        assert group_packs(vggs, max_pack=6, memory_budget_gb=100) == [list(range(6))]
        assert group_packs(vggs, memory_budget_gb=100, here=False) == [list(range(6))]
        for c in vggs:
            c.device = "cuda"
        assert group_packs(vggs, memory_budget_gb=100) == [list(range(6))]
    assert "at most" not in caplog.text
    # the MLPs: the paper's depth 2 gathers a (1024, 784) batch a run, 3.2 MB: packs of 10; depth 5 (512) 20
    assert [cpu_pack_limit(compose_cfg(["device=cpu", f"depth={d}"])) for d in (2, 5)] == [10, 20]
    assert cpu_pack_limit(compose_cfg([*SMALL])) == 334  # 32 images a step: no limit in practice


def test_the_plan_line_gives_each_packs_size(small_cfg, caplog):
    """A dry run plans without training; its line says how many runs each pack holds."""
    from vgsweep.jobs import Job
    from vgsweep.sweep import Sweep

    jobs = [Job(small_cfg(f"seed={s}")) for s in range(5)]
    with caplog.at_level("INFO", logger="vgsweep.sweep"):
        Sweep(jobs, max_pack=2, dry_run=True)
        Sweep(jobs, max_pack=5, dry_run=True)
        Sweep(jobs[:2], max_pack=1, dry_run=True)
        Sweep(jobs[:1], dry_run=True)
    assert "5 jobs to train in 3 packs of 2, 2 and 1 runs" in caplog.text
    assert "5 jobs to train in 1 pack of 5 runs" in caplog.text
    assert "2 jobs to train in 2 packs of 1 run\n" in caplog.text  # in the singular where it is one
    assert "1 job to train in 1 pack of 1 run\n" in caplog.text


def test_settings_read_after_training_do_not_split_packs():
    """Verdict thresholds and how often per-layer metrics are logged are read after training: runs that
    differ only there share a pack; what the probe measures during training does split."""
    from vgsweep.packing import pack_key

    base = compose_cfg(["device=cpu"])
    after = compose_cfg(["device=cpu", "diagnostics.verdict.vanish_ratio=0.5", "diagnostics.metrics_every=1"])
    assert pack_key(base) == pack_key(after)
    assert pack_key(base) != pack_key(compose_cfg(["device=cpu", "diagnostics.grad_samples=2"]))
    assert pack_key(base) == pack_key(compose_cfg(["device=cpu", "optimizer.lr=0.1", "seed=3", "activation=relu",
                                                   "optimizer.schedule.name=cosine", "optimizer.weight_decay=0.01"]))


def test_settings_that_change_nothing_in_a_run_do_not_make_another_config(small_cfg, tmp_path, caplog):
    """`init.std` acts only with init=normal, the noise's eta only with noise, the slope only for
    leaky_relu: a grid that crosses them with other options (`-m init=xavier,normal init.std=0.1,0.5`)
    trains each run that computes something different once; the jobs that repeat one say which setting
    has no effect there, and a later sweep finds it in the store. They made a second config (trained
    twice, and counted twice in the table's cell: seeds `0 0 1 1`)."""
    from vgsweep.jobs import Job
    from vgsweep.sweep import run_jobs

    grid = ["", "init.std=0.5", "init=normal init.std=0.5", "init=normal init.std=0.1", "regime.grad_noise.eta=0.3"]
    with caplog.at_level("INFO", logger="vgsweep.sweep"):
        out = run_jobs([Job(small_cfg("seed=1", *g.split())) for g in grid])
    assert [o.status for o in out] == ["FINISHED", "SKIPPED", "FINISHED", "FINISHED", "SKIPPED"]
    assert out[1].run_id == out[4].run_id == out[0].run_id and out[1].reason == "the same config as job 0 of this sweep"
    assert out[2].final["test_acc"] != out[3].final["test_acc"]  # where init.std acts, it is a config of its own
    said = next(r.getMessage() for r in caplog.records if "repeat a config" in r.getMessage())
    assert "(jobs #1 = #0 (init.std: no effect there), #4 = #0 (regime.grad_noise.eta: no effect there))" in said
    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(c.search_runs([c.get_experiment_by_name("agarap2019").experiment_id])) == 3
    [later] = run_jobs([Job(small_cfg("seed=1", "activation.negative_slope=0.5"))])  # logistic: no slope
    assert later.status == "SKIPPED" and later.run_id == out[0].run_id


def test_a_run_recorded_under_the_hash_of_the_version_before_still_counts(small_cfg, tmp_path, monkeypatch):
    """A store made before inert settings hashed at their defaults holds `init=xavier init.std=0.01`
    under the hash of its settings as given: the same command run again finds that run FINISHED and
    skips it, where the config's new hash alone would have trained it again."""
    from vgsweep import config
    from vgsweep.jobs import Job
    from vgsweep.sweep import run_jobs

    cfg = lambda: small_cfg("seed=1", "init.std=0.01")  # noqa: E731 - xavier: init.std does nothing
    with monkeypatch.context() as m:
        m.setattr(config, "effective", lambda flat: flat)  # what config_hash was
        [old] = run_jobs([Job(cfg())])
    tag = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(old.run_id).data.tags["vgsweep.config_hash"]
    assert old.status == "FINISHED" and tag == config.config_hashes(cfg())[1] != Job(cfg()).key()
    [again] = run_jobs([Job(cfg())])
    assert again.status == "SKIPPED" and again.run_id == old.run_id and again.final["test_acc"] == old.final["test_acc"]


def test_a_config_listed_twice_in_a_sweep_is_trained_once(small_cfg, tmp_path):
    """`seed=1,2,1`: the third job is the first's config; it trains once, and the third job reports the
    first's run (SKIPPED, saying so), as a second sweep would. With rerun=true both train."""
    from vgsweep.jobs import Job
    from vgsweep.sweep import run_jobs

    out = run_jobs([Job(small_cfg(f"seed={s}")) for s in (1, 2, 1)])
    assert [o.status for o in out] == ["FINISHED", "FINISHED", "SKIPPED"]
    assert out[2].run_id == out[0].run_id and out[2].final == out[0].final
    assert out[2].reason == "the same config as job 0 of this sweep"
    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = c.get_experiment_by_name("agarap2019")
    assert len(c.search_runs([exp.experiment_id])) == 2
    again = run_jobs([Job(small_cfg("seed=3", "rerun=true")) for _ in range(2)])
    assert [o.status for o in again] == ["FINISHED", "FINISHED"] and again[0].run_id != again[1].run_id


def test_a_run_that_fails_while_training_is_named_by_its_run_a_job_without_one_by_its_name(small_cfg, tmp_path,
                                                                                           monkeypatch):
    """A pack of two that fails in its second epoch, every time: split and retried, each job ends
    FAILED with the run made for it in its last attempt (the failure line names that run, not `run
    None`). A job refused before any run exists is named by its job name and says so."""
    from vgsweep import sweep
    from vgsweep.jobs import Job, Outcome

    on_epoch = sweep._PackRecorder.on_epoch

    def fail_in_the_second(self, r):
        if r.epoch == 1:
            raise RuntimeError("stopped in epoch 2")
        on_epoch(self, r)

    monkeypatch.setattr(sweep._PackRecorder, "on_epoch", fail_in_the_second)
    jobs = [Job(small_cfg(f"seed={s}", "train.epochs=2", "checkpoint.every=1")) for s in (1, 2)]
    out = sweep.run_jobs(jobs)
    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = c.search_runs([c.get_experiment_by_name("agarap2019").experiment_id])
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FAILED"}  # the pack's two, then one each
    last = {r.info.run_name: r.info.run_id for r in sorted(runs, key=lambda r: r.info.start_time)}
    for j, o in zip(jobs, out):
        assert o.status == "FAILED" and o.reason == "RuntimeError: stopped in epoch 2"
        assert o.run_id == last[j.name] and o.label(j.name) == f"run {o.run_id} ({j.name})"
    assert Outcome("FAILED", None, {}, "why").label("mnist-d2-relu") == "mnist-d2-relu (no run was made)"


def test_a_checkpoint_that_cannot_be_written_does_not_stop_training(small_cfg, tmp_path, monkeypatch, caplog):
    """The disk is full at the first checkpoint of a pack of two: one warning names both runs, each run
    carries the failure in its tag and its job log, training goes on, the next checkpoint is written,
    and both runs end FINISHED. Before, the pack failed, was split and retried, and every run ended
    FAILED on the same full disk."""
    import logging

    from vgsweep import sweep
    from vgsweep.jobs import Job

    real, calls = sweep.save_checkpoint, []

    def full_at_first(path, state):
        calls.append(state["epochs_done"])
        if state["epochs_done"] == 1:
            raise OSError(28, "No space left on device")
        real(path, state)

    monkeypatch.setattr(sweep, "save_checkpoint", full_at_first)
    jobs = [Job(small_cfg(f"seed={s}", "train.epochs=3", "checkpoint.every=1"), log_file=tmp_path / f"{s}.log")
            for s in (1, 2)]
    with caplog.at_level(logging.WARNING, "vgsweep.sweep"):
        out = sweep.run_jobs(jobs)
    assert [o.status for o in out] == ["FINISHED", "FINISHED"]
    assert calls[:4] == [1, 1, 2, 2]  # tried again at the next checkpoint
    [warning] = [r.getMessage() for r in caplog.records if "not written" in r.getMessage()]
    path = sweep.checkpoint_path(jobs[0].cfg, jobs[0].key())
    assert warning.startswith(f"checkpoint after epoch 1 not written to {path} (No space left on device) "
                              "(and 1 more of this pack's runs): training goes on; an interruption now resumes")
    assert all(o.run_id in warning for o in out)
    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for j, o in zip(jobs, out):
        why = c.get_run(o.run_id).data.tags["vgsweep.checkpoint_failed"]
        assert why == f"checkpoint after epoch 1 not written to {sweep.checkpoint_path(j.cfg, j.key())} (No space left on device)"
        assert f"{why}: training goes on" in j.log_file.read_text()
        assert [m.step for m in c.get_metric_history(o.run_id, "test_acc")] == [0, 1, 2]


def test_a_checkpoint_write_that_fails_leaves_the_last_good_one_and_no_partial_file(tmp_path):
    """The disk fills while a checkpoint is written (a real write refused by the kernel: the file size
    limit, RLIMIT_FSIZE, stands in for a full disk): an OSError that says why goes up (the pack warns
    and trains on), not torch's zip writer's RuntimeError; the previous checkpoint is as it was and no
    half-written file is left beside it."""
    import resource
    import signal

    import torch

    from vgsweep import sweep
    from vgsweep.trainer import CHECKPOINT_FORMAT

    path = tmp_path / "ck" / "abc.pt"
    sweep.save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "epochs_done": 1})
    limits, handler = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))
    try:
        with pytest.raises(OSError, match="File too large"):
            sweep.save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "epochs_done": 2, "theta": torch.zeros(10_000)})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert [p.name for p in path.parent.iterdir()] == ["abc.pt"]
    assert sweep.load_checkpoint(path)["epochs_done"] == 1


def test_a_checkpoint_is_on_the_disk_before_it_takes_the_last_ones_name(tmp_path, monkeypatch):
    """A power cut or a node's crash just after the rename must not leave the name over no data (the
    last good checkpoint gone with it): the new file's bytes are synced before os.replace, and the
    folder (the rename) after it."""
    import torch

    from vgsweep import sweep
    from vgsweep.trainer import CHECKPOINT_FORMAT

    path = tmp_path / "ck" / "abc.pt"
    sweep.save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "epochs_done": 1})
    events, fsync, replace = [], os.fsync, os.replace

    def synced(fd):
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        events.append(("fsync", target, target.stat().st_size if target.is_file() else None))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", synced)
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", Path(a), None)), replace(a, b))[1])
    sweep.save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "epochs_done": 2, "theta": torch.zeros(10_000)})
    [(_, tmp, _)] = [e for e in events if e[0] == "replace"]
    assert [e[:2] for e in events] == [("fsync", tmp), ("replace", tmp), ("fsync", path.parent)], events
    assert events[0][2] == path.stat().st_size > 40_000  # every byte written when it was synced
    assert sweep.load_checkpoint(path)["epochs_done"] == 2


@pytest.mark.e2e
def test_a_task_config_reading_hydras_config_gets_each_jobs_own_values(tiny_root, tmp_path):
    """`seed=${hydra:job.num}` and `${hydra:runtime.output_dir}` in a job's config read the job's own
    Hydra config, as under Hydra's run_job, although its pack trains the jobs together: two seeds, two
    checkpoint folders, each in its job's folder (it was a traceback: the seeds resolved after the jobs'
    configs were set, against none)."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    proc = run_cli(["-m", "activation=relu,tanh", *SMALL, f"data.root={tiny_root}", f"tracking.uri={uri}",
                    "seed=${hydra:job.num}", "checkpoint.dir=${hydra:runtime.output_dir}/ck",
                    f"hydra.sweep.dir={tmp_path / 'mr'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    c = MlflowClient(uri)
    runs = c.search_runs([c.get_experiment_by_name("agarap2019").experiment_id])
    got = sorted((r.data.params["activation.name"], r.data.params["seed"], r.data.params["checkpoint.dir"]) for r in runs)
    assert got == [("relu", "0", str(tmp_path / "mr" / "0" / "ck")), ("tanh", "1", str(tmp_path / "mr" / "1" / "ck"))]


@pytest.mark.e2e
def test_hydras_basic_launcher_refuses_an_interpolation_that_does_not_resolve_in_one_line(tiny_root, tmp_path):
    """hydra/launcher=basic checks no job ahead: the task itself says it, in the line the packed launcher
    would, before its job trains (it was a traceback)."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    proc = run_cli(["-m", "hydra/launcher=basic", "activation=relu,tanh", *SMALL, f"data.root={tiny_root}",
                    f"tracking.uri={uri}", "optimizer.lr=${nope}"], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("vgsweep: ")]
    assert line.startswith("vgsweep: invalid config in job [activation=relu ") and line.endswith(
        "optimizer.lr=${nope} is not accepted; expected an interpolation that resolves. Interpolation key 'nope' not found")
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("agarap2019")
    assert exp is None or not c.search_runs([exp.experiment_id])


@pytest.mark.e2e
def test_a_study_file_with_hydra_mode_run_trains_one_job_as_asked(tiny_root, tmp_path):
    """`experiment=NAME` alone is a sweep (vgsweep adds -m); with `hydra.mode=RUN` it is the one job asked
    for (vgsweep's -m overrode it, Hydra warning in three lines that it did, and trained the whole study)."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    proc = run_cli(["experiment=bn_mode", "hydra.mode=RUN", *SMALL, f"data.root={tiny_root}", f"tracking.uri={uri}",
                    f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'mr'}"], cwd=tmp_path)
    assert proc.returncode == 0 and "UserWarning" not in proc.stderr, proc.stderr[-3000:]
    c = MlflowClient(uri)
    runs = c.search_runs([e.experiment_id for e in c.search_experiments()])
    assert len(runs) == 1 and (tmp_path / "run" / ".hydra").is_dir() and not (tmp_path / "mr").exists()


@pytest.mark.e2e
def test_a_dry_run_through_the_cli_prints_the_plan_and_makes_nothing(tiny_root, tmp_path):
    """-m ... hydra.launcher.dry_run=true: the plan on stdout, exit 0, no sweep folder (nor the folders
    above it it would have made: multirun/<date>/), no store, no job called; without -m it is refused (a
    single run has no plan to show)."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    proc = run_cli(["-m", "activation=relu,tanh", "seed=1,2", *SMALL, f"data.root={tiny_root}", f"tracking.uri={uri}",
                    f"hydra.sweep.dir={tmp_path / 'mr' / 'day' / 'time'}", "hydra.launcher.dry_run=true"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dry run: 4 jobs: 4 to train, 0 to resume from their checkpoints, in 1 pack; 0 skipped" in proc.stdout
    assert "  #3 activation=tanh seed=2: train, pack 1" in proc.stdout and "epoch 1" not in proc.stdout + proc.stderr
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "mr").exists()
    deep = run_cli(["-m", "model.depth=3,40", "model.width=4", *SMALL, f"data.root={tiny_root}", f"tracking.uri={uri}",
                    f"hydra.sweep.dir={tmp_path / 'mr'}", "hydra.launcher.dry_run=true"], cwd=tmp_path)
    assert deep.returncode == 0, deep.stderr[-3000:]  # any depth: every layer model.width wide
    assert "pack 1: 1 run, mlp 4x3 on mnist" in deep.stdout and "pack 2: 1 run, mlp 4x40 on mnist" in deep.stdout
    empty = tmp_path / "no-data"
    empty.mkdir()
    fresh = run_cli(["-m", "seed=1,2", *SMALL, f"data.root={empty}", "data.download=true", f"tracking.uri={uri}",
                     f"hydra.sweep.dir={tmp_path / 'mr'}", "hydra.launcher.dry_run=true"], cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr[-3000:]  # the data it would download, said, not downloaded
    assert f"note: mnist is not in {empty / 'MNIST' / 'raw'}: the sweep would download it there" in fresh.stdout
    assert not any(empty.iterdir()) and "downloading" not in fresh.stderr
    single = run_cli(["seed=1", *SMALL, f"data.root={tiny_root}", f"tracking.uri={uri}", "hydra.launcher.dry_run=true",
                      f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert single.returncode == 2 and "hydra.launcher.dry_run=True is not accepted" in single.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "m.db").exists()
    # the folder of an earlier sweep: a dry run, and a sweep refused once Hydra's sweeper has written its
    # multirun.yaml, leave that sweep's multirun.yaml as it was (they wrote their own config over it)
    earlier = tmp_path / "earlier"
    (earlier / "0").mkdir(parents=True)
    (earlier / "multirun.yaml").write_text("the earlier sweep's config\n")
    os.utime(earlier / "multirun.yaml", (1e9, 1e9))
    for last in ("hydra.launcher.dry_run=true", "train.epochs=0"):
        again = run_cli(["-m", "seed=1,2", *SMALL, f"data.root={tiny_root}", f"tracking.uri={uri}",
                         f"hydra.sweep.dir={earlier}", last], cwd=tmp_path)
        assert again.returncode == (0 if "dry" in last else 2), again.stderr[-3000:]
        assert (earlier / "multirun.yaml").read_text() == "the earlier sweep's config\n", last
        assert (earlier / "multirun.yaml").stat().st_mtime == 1e9 and sorted(p.name for p in earlier.iterdir()) == \
            ["0", "multirun.yaml"]


def test_two_commands_started_in_the_same_second_get_folders_of_their_own():
    """Hydra's default folder names stop at the second: two sweeps started together shared one, the
    second overwriting the first's job folders, and a run's record took the other sweep's .hydra files
    (seen: a tanh run recording `activation=relu`). vgsweep's name the microsecond."""
    from hydra import compose, initialize_config_dir
    from hydra.core.utils import setup_globals

    from vgsweep.app import CONF_DIR

    setup_globals()  # Hydra's `now` resolver
    dirs = []
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for _ in range(2):  # two commands' configs, composed a moment apart
            cfg = compose(config_name="config", return_hydra_config=True)
            dirs.append((str(cfg.hydra.sweep.dir), str(cfg.hydra.run.dir)))
    (sweep0, run0), (sweep1, run1) = dirs
    assert sweep0.startswith("multirun/") and run0.startswith("outputs/")
    assert sweep0 != sweep1 and run0 != run1, dirs
    assert str(cfg.hydra.sweep.dir) == sweep1 and str(cfg.hydra.run.dir) == run1  # read again: resolved once
