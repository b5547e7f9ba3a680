"""Packs as scheduler jobs through submitit: its LocalExecutor (real subprocesses, real pickles), a
real one-node SLURM cluster (tools/slurm-local.sh up) with a requeued pack, and checkpoints that a
shared folder cannot turn into code."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import (SMALL, assert_finishes_each_epoch_once, assert_interrupted, compose_cfg,
                            make_idx_dataset, run_cli, sleeps_of, start_cli)
from vgsweep import executors
from vgsweep.executors import slurm_job
from vgsweep.results.status import summary

GRID = ["activation=relu,tanh", "regime=gna_bn,gna_wn", "seed=3", "regime.grad_noise.eta=0.01"]  # 2 packs: weight norm splits


def _runs(uri: str):
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("agarap2019")
    return c, c.search_runs([exp.experiment_id], max_results=1000)


def _metrics(uri: str) -> dict:
    c, runs = _runs(uri)
    return {(r.data.params["activation.name"], r.data.params["regime.name"]):
            [h.value for h in sorted(c.get_metric_history(r.info.run_id, "test_loss"), key=lambda h: h.step)]
            for r in runs}


@pytest.mark.e2e
def test_submitit_local_runs_each_pack_as_a_subprocess_with_the_same_numbers(tiny_root, tmp_path, monkeypatch):
    """executor=submitit_local: each pack pickled, run as a subprocess by submitit, its outcomes
    pickled back; the runs are the ones the in-process launcher trains, number for number. The pack
    jobs see the sweep's GPUs (submitit's local executor would set CUDA_VISIBLE_DEVICES to none), one
    each in turn (hydra.launcher.gpus_per_node=1), so that they train at once on different GPUs."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    common = [*SMALL, f"data.root={tiny_root}", f"hydra.sweep.dir={tmp_path / 'mr'}"]
    remote = f"sqlite:///{tmp_path / 'remote.db'}"
    proc = run_cli(["-m", *GRID, *common, f"tracking.uri={remote}", "hydra.launcher.executor=submitit_local",
                    "hydra.launcher.poll_s=0.5"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "submitted 2 pack jobs (local)" in out and "4 finished, 0 skipped" in out
    assert len(list((tmp_path / "mr" / ".submitit").glob("*/*_submitted.pkl"))) == 2
    assert all((tmp_path / "mr" / str(i) / ".hydra" / "overrides.yaml").is_file() for i in range(4))
    from vgsweep.trainer import train_pack

    got = _metrics(remote)
    for (act, regime), losses in got.items():  # each run as this process trains it alone
        cfg = compose_cfg([f"activation={act}", f"regime={regime}", "seed=3", "regime.grad_noise.eta=0.01", *SMALL,
                           f"data.root={tiny_root}"])
        assert losses == pytest.approx([e["test_loss"] for e in train_pack([cfg]).history[0]], rel=1e-5, abs=1e-6)
    _, runs = _runs(remote)
    assert {r.info.status for r in runs} == {"FINISHED"} and all(r.data.tags.get("vgsweep.job") for r in runs)
    gpus = {r.data.tags["vgsweep.job"]: set() for r in runs}
    for r in runs:
        gpus[r.data.tags["vgsweep.job"]].add(r.data.tags.get("vgsweep.cuda_visible_devices"))
    assert sorted(map(sorted, gpus.values())) == [["0"], ["1"]]  # each pack job its own GPU
    assert "their GPUs (CUDA_VISIBLE_DEVICES): 0 1" in out


def test_local_pack_jobs_take_the_machines_gpus_in_turn(monkeypatch):
    """spread_gpus: gpus_per_node GPUs per pack job, in turn, wrapping round; every GPU to every job
    where the machine has no more than one job asks for (or gpus_per_node is 0 or null). local_gpus:
    CUDA_VISIBLE_DEVICES' entries as given (UUIDs too), up to the first invalid one (as CUDA reads it);
    empty or -1: none."""
    from vgsweep.executors import local_gpus, spread_gpus

    four = ["0", "1", "2", "3"]
    assert spread_gpus(four, 1, 6) == ["0", "1", "2", "3", "0", "1"]
    assert spread_gpus(four, 2, 3) == ["0,1", "2,3", "0,1"]
    assert spread_gpus(["0", "1", "2"], 2, 3) == ["0,1", "2,0", "1,2"]
    assert spread_gpus(four, 4, 2) == spread_gpus(four, None, 2) == spread_gpus(four, 0, 2) == [None, None]
    assert spread_gpus([], 1, 2) == [None, None]
    for visible, gpus in (("2,3", ["2", "3"]), ("GPU-a1b2, GPU-c3d4", ["GPU-a1b2", "GPU-c3d4"]), ("", []), ("-1", []), ("0,-1,2", ["0"])):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert local_gpus() == gpus


def test_a_local_sweep_on_several_gpus_says_its_packs_use_one_and_how_to_use_them_all(monkeypatch, small_cfg):
    """executor=local trains pack after pack on one device: where this process sees several GPUs, the sweep
    says so, and that submitit_local trains the packs at once (a dry run among its notes). Not with one GPU,
    on the CPU, or with one pack."""
    from vgsweep.executors import several_gpus_note
    from vgsweep.jobs import Job
    from vgsweep.sweep import Sweep

    jobs = [Job(small_cfg("device=cuda", f"seed={s}")) for s in (1, 2, 3)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    said = Sweep(jobs, max_pack=2, memory_budget_gb=1, dry_run=True).describe()  # packs of 2 and 1
    assert ("note: the 2 packs train one after another on one of the 2 GPUs this process sees (cuda); "
            "hydra.launcher.executor=submitit_local trains them at once, each on its own GPU") in said, said
    assert "note:" not in Sweep(jobs, max_pack=3, memory_budget_gb=1, dry_run=True).describe()  # one pack
    assert several_gpus_note("cpu", 2) is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    assert several_gpus_note("cuda", 2) is None


def test_a_local_pack_job_sees_the_sweeps_gpus(monkeypatch):
    """A sweep without CUDA_VISIBLE_DEVICES: its submitit_local pack job has none either (submitit set
    it to no GPU at all); a SLURM job keeps what its allocation set."""
    from vgsweep.executors import PackJob

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    local, slurm = PackJob([], same_devices=True), PackJob([])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # what submitit's local controller gives the job
    local.see_devices()
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # SLURM's allocation
    slurm.see_devices()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    PackJob([], same_devices=True, gpus="1").see_devices()  # the one GPU it was given
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"


@pytest.mark.e2e
def test_a_submitit_local_sweep_interrupted_or_its_pack_job_killed_leaves_no_run_running(tmp_path,
                                                                                        ctrl_c_reaches_children):
    """submitit_local's pack jobs are processes of this machine. Ctrl-C (SIGINT to the terminal's
    process group) ends their runs KILLED, as the in-process launcher does; so does SIGTERM to the
    sweep alone, which stops the job itself (here frozen, so that the sweep must end its runs): one
    line each, no traceback (submitit's controller writes its own to .submitit/controllers.log). A
    pack job killed under the sweep (kill -9) leaves its runs FAILED with the reason, not RUNNING.
    Then the same command finishes the same runs, each epoch once."""
    data = make_idx_dataset(tmp_path / "data", n_train=3000, n_test=500)
    # 24 epochs: each interruption lands a few epochs after the checkpoints it waits for, and with 12 the
    # third sweep (two workers, their other tests beside) resumed at epoch 10 and finished before two more
    uri, epochs, ckdir = f"sqlite:///{tmp_path / 'm.db'}", 24, tmp_path / "checkpoints"
    args = ["-m", "activation=relu,tanh", "seed=0", *SMALL, "model.hidden=[128,128]", f"train.epochs={epochs}",
            f"data.root={data}", "checkpoint.every=2", f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / 'mr'}",
            "hydra.launcher.executor=submitit_local", "hydra.launcher.poll_s=0.2"]
    ids = None
    for how in ("ctrl-c", "sigterm", "kill -9"):
        t0 = time.time()
        proc = start_cli(args, cwd=tmp_path, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 240
        while len([p for p in ckdir.glob("*.pt") if p.stat().st_mtime > t0]) < 2:  # this sweep's checkpoints
            assert proc.poll() is None, f"the sweep ended before it was interrupted ({how}): make it longer"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        c, runs = _runs(uri)
        # the pack job's (two where a pack job frozen or killed -9 mid-checkpoint left its runs' checkpoints at
        # two epochs: they resume as two packs)
        pids = {int(r.data.tags["vgsweep.pid"]) for r in runs if r.info.status == "RUNNING"}
        assert pids
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # the sweep, submitit's controller and the pack job
        elif how == "sigterm":
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)  # it cannot end its runs now; submitit's SIGKILL still ends it
            proc.send_signal(signal.SIGTERM)
        else:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        c, runs = _runs(uri)
        assert ids is None or {r.info.run_id for r in runs} == ids  # each sweep resumed the same runs
        ids = {r.info.run_id for r in runs}
        if how == "kill -9":
            assert proc.returncode == 1, err[-3000:]
            assert "0 finished, 0 skipped (already in the store), 2 failed" in out + err
            assert all(r.info.status == "FAILED" and "ended without a result" in r.data.tags["vgsweep.failure"]
                       for r in runs), [(r.info.status, r.data.tags.get("vgsweep.failure")) for r in runs]
            continue
        name, code = ("SIGINT (Ctrl-C)", 130) if how == "ctrl-c" else ("SIGTERM", 143)
        assert_interrupted(proc.returncode, err, name, code, uri)
    assert "KeyboardInterrupt" in (tmp_path / "mr" / ".submitit" / "controllers.log").read_text()
    assert_finishes_each_epoch_once(args, tmp_path, uri, ids, epochs)


def test_a_checkpoint_that_is_not_vgsweeps_is_refused_not_run(tiny_root, tmp_path, caplog):
    """Checkpoints are read with weights_only=True: a pickle planted where a run's checkpoint should
    be (a shared scratch folder) is ignored with a warning, never executed, and the run trains anew.
    The warning is vgsweep's line, not torch's about the pickle's protocol (which asks for a bug report)."""
    import pickle
    import warnings

    import torch

    from vgsweep.config import config_hash
    from vgsweep.jobs import Job
    from vgsweep.sweep import checkpoint_path, load_checkpoint, run_jobs, save_checkpoint
    from vgsweep.trainer import CHECKPOINT_FORMAT

    cfg = compose_cfg([*SMALL, f"data.root={tiny_root}", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}",
                       f"checkpoint.dir={tmp_path / 'ck'}"])
    planted = checkpoint_path(cfg, config_hash(cfg))
    planted.parent.mkdir(parents=True)

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"format": CHECKPOINT_FORMAT, "payload": Payload()}, planted)
    assert load_checkpoint(planted) is None and not (tmp_path / "pwned").exists()
    planted.write_bytes(pickle.dumps(Payload(), protocol=4))  # a plain pickle too
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        [o] = run_jobs([Job(cfg)])
    assert o.status == "FINISHED" and not (tmp_path / "pwned").exists()
    assert not [w for w in said if "pickle" in str(w.message)], [str(w.message) for w in said]
    assert f"checkpoint {planted} ignored: it is not one this version reads safely" in caplog.text
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"format": CHECKPOINT_FORMAT, "theta": torch.ones(3), "history": [{"a": 1.0}], "run_id": "r"})
    assert load_checkpoint(good)["history"] == [{"a": 1.0}]


# --- a real SLURM cluster ------------------------------------------------------------------------
def _cluster_up() -> str | None:
    """Why no SLURM cluster can be used here, or None."""
    if shutil.which("sbatch") is None:
        return "sbatch not found (tools/slurm-local.sh up installs and starts a one-node cluster)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return f"sinfo failed: {e}"
    if out.returncode != 0 or not any(s in out.stdout for s in ("idle", "mixed", "allocated")):
        return f"no SLURM node answers (sinfo: {out.stdout.strip() or out.stderr.strip()[:200]}); tools/slurm-local.sh up"
    return None


@pytest.fixture(scope="module")
def slurm():
    why = _cluster_up()
    if why:
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"CI=true but {why}")
        pytest.skip(why)


def _sweep(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """The real CLI in its own session (Ctrl-C to it alone), its output (stderr too) read line by line."""
    return start_cli(args, cwd=cwd, text=True,
                     env=env or {**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, start_new_session=True)


def _read_until(proc: subprocess.Popen, text: str) -> str:
    """The sweep's output up to the line that holds `text` (fails, with the output, if it ends first)."""
    seen = ""
    while text not in seen:
        line = proc.stdout.readline()
        assert line, seen[-3000:]
        seen += line
    return seen


def _submitted(seen: str) -> list[str]:
    """The SLURM job ids the sweep's output says it submitted."""
    return re.search(r"submitted \d+ pack jobs? \(slurm\): ([^;\n]*)", seen).group(1).split(", ")


def _slurm_args(tmp_path: Path, root: Path, *more: str) -> list[str]:
    return [*SMALL, f"data.root={root}", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}",
            f"hydra.sweep.dir={tmp_path / 'mr'}", "hydra.launcher.executor=slurm", "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.sqlite_is_shared=true", "hydra.launcher.poll_s=1",
            "hydra.launcher.result_grace_s=4", *more]  # one filesystem here: no lag to wait out


@pytest.mark.slurm
@pytest.mark.e2e
def test_ctrl_c_on_a_slurm_sweep_says_its_pack_jobs_go_on_and_how_to_stop_them(slurm, tiny_root, tmp_path,
                                                                           ctrl_c_reaches_children):
    """The launcher waits for its SLURM jobs; Ctrl-C there leaves them running on the cluster (as
    submitit does) and says which they are and how to cancel them: one line, exit 130."""
    args = ["-m", "activation=relu,tanh", *_slurm_args(tmp_path, tiny_root, "train.epochs=100000")]
    proc = _sweep(args, tmp_path)
    seen = _read_until(proc, "submitted 1 pack job (slurm): ")
    [job] = _submitted(seen)
    try:
        proc.send_signal(signal.SIGINT)
        out = seen + proc.communicate(timeout=60)[0]
        assert proc.returncode == 130, out[-3000:]
        assert out.rstrip().splitlines()[-1] == (f"vgsweep: interrupted by SIGINT (Ctrl-C): the pack jobs it submitted "
                                                 f"go on in SLURM (scancel {job} stops them; `vgsweep status` follows them; the same "
                                                 "command run again waits for them instead of submitting their "
                                                 "configs again)")
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout
        assert state.strip() in ("PENDING", "RUNNING", "CONFIGURING"), state
    finally:
        subprocess.run(["scancel", job], timeout=30)


@pytest.mark.slurm
@pytest.mark.e2e
def test_a_sweep_runs_as_slurm_jobs(slurm, tiny_root, tmp_path):
    proc = run_cli(["-m", *GRID, *_slurm_args(tmp_path, tiny_root)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submitted 2 pack jobs (slurm)" in proc.stdout + proc.stderr
    _, runs = _runs(f"sqlite:///{tmp_path / 'm.db'}")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    jobs = {r.data.tags["vgsweep.job"] for r in runs}
    assert len(jobs) == 2 and all("_" in j for j in jobs)  # two tasks of one array
    logs = sorted((tmp_path / "mr").glob("*/app.log"))
    assert len(logs) == 4 and all("epoch 2:" in log.read_text() for log in logs)


@pytest.mark.slurm
@pytest.mark.e2e
def test_a_gpu_precision_is_judged_on_the_node_not_on_the_login_node(slurm, tiny_root, tmp_path):
    """precision=tf32 sent to SLURM from a login node without a GPU (this machine) is submitted, not
    refused there (before, the login node said "fp32 on the CPU"); the pack job, on a node without a GPU
    either, refuses it in one line before training anything: the jobs FAILED, exit 1, no run made."""
    args = [a for a in _slurm_args(tmp_path, tiny_root, "precision=tf32") if not a.startswith("device=")]
    proc = run_cli(["-m", "activation=relu,tanh", *args], cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "submitted 1 pack job (slurm)" in out
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("vgsweep: ")]
    assert line.startswith("vgsweep: 2 jobs failed: mnist-d2-"), line
    assert line.count(" (no run was made): on ") == 2 and "None" not in line, line
    assert line.count("precision='tf32' is not accepted; expected fp32 on the CPU") == 2, line
    c = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    exp = c.get_experiment_by_name("agarap2019")
    assert exp is None or not c.search_runs([exp.experiment_id])


@pytest.mark.slurm
@pytest.mark.e2e
def test_device_cuda_sent_to_slurm_from_a_login_node_without_a_gpu_is_planned_without_reading_one(slurm, tiny_root,
                                                                                               tmp_path):
    """The login node (this machine) has no GPU to read the memory of: the packs are not sized here (each
    pack job splits its own to fit its device), so device=cuda plans (it used to end in CUDA's traceback),
    and a dry run says so."""
    proc = run_cli(["-m", "activation=relu,tanh", *_slurm_args(tmp_path, tiny_root, "device=cuda",
                                                               "hydra.launcher.dry_run=true")], cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "pack 1: 2 runs, mlp 16-16 on mnist, epochs 1-2, batch 32, fp32 on cuda, about " in proc.stdout, proc.stdout
    assert " GiB (no GPU here to size it by: its pack job splits it where its device's memory does not hold it)" \
        in proc.stdout, proc.stdout


@pytest.mark.slurm
@pytest.mark.e2e
def test_a_requeued_pack_resumes_from_its_checkpoints(slurm, tmp_path):
    """scontrol requeue a running pack: SLURM ends it (SIGTERM: it marks its runs KILLED) and starts it
    again; the new incarnation resumes them from their checkpoints into the same MLflow runs, and every
    epoch is logged once. While the requeued job waits, its record stands: `vgsweep status` lists its
    configs as queued in it, and the same command run again would wait for it, not train them twice."""
    data = make_idx_dataset(tmp_path / "data", n_train=4000, n_test=200)
    ck, epochs = tmp_path / "ck", 40  # about 12 s of training: the requeue (SLURM kills a few s after it) lands mid-way
    args = ["-m", "activation=relu,tanh", *_slurm_args(tmp_path, data, "model.hidden=[256,256]", f"train.epochs={epochs}",
                                                      "checkpoint.every=2", f"checkpoint.dir={ck}")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = start_cli(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while len(list(ck.glob("*.pt"))) < 2:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    job = next(p.name for p in (tmp_path / "mr" / ".submitit").iterdir() if p.is_dir())  # one pack: one job
    subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)
    uri, deadline = f"sqlite:///{tmp_path / 'm.db'}", time.monotonic() + 120
    while not (len(_runs(uri)[1]) == 2 and {r.info.status for r in _runs(uri)[1]} == {"KILLED"}
               and slurm_job(job)[0] == "PENDING"):  # ended by SIGTERM, and held again (SLURM delays its start)
        assert proc.poll() is None and time.monotonic() < deadline, [r.info.status for r in _runs(uri)[1]]
        time.sleep(0.3)
    c, _ = _runs(uri)
    said = "\n".join(summary(c, c.get_experiment_by_name("agarap2019")))
    assert said.startswith("agarap2019: 2 configs: 2 queued\n"), said
    assert said.count(f"SLURM job {job}, requeued, pending (") == 2 and "it resumes it (ended by SIGTERM" in said, said
    dry = run_cli([*args, "hydra.launcher.dry_run=true"], cwd=tmp_path)
    assert "0 skipped; 2 to wait for (queued in pack jobs of an earlier sweep)" in dry.stdout, dry.stdout
    assert f"wait: queued in SLURM pack job {job} of an earlier sweep (requeued, pending: " in dry.stdout, dry.stdout
    while proc.poll() is None and time.monotonic() < deadline:  # SLURM delays a requeued job's start: let it go
        state = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True).stdout
        if "JobState=PENDING" in state:
            subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"], capture_output=True)
        elif "JobState=RUNNING" in state and "Restarts=0" not in state:
            break
        time.sleep(0.3)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    c, runs = _runs(f"sqlite:///{tmp_path / 'm.db'}")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for r in runs:
        assert r.data.tags["vgsweep.job"] == job
        steps = [m.step for m in c.get_metric_history(r.info.run_id, "test_acc")]
        assert sorted(steps) == list(range(epochs)), steps  # each epoch once, across both incarnations
    log = "".join(p.read_text() for p in (tmp_path / "mr" / ".submitit" / job).glob("*_log.*"))
    assert "2 runs it was training marked KILLED" in log and "from its checkpoint at epoch" in log
    assert not list(ck.glob("*.pt"))


@pytest.mark.slurm
@pytest.mark.e2e
@pytest.mark.parametrize("setting,key,said", [
    ("hydra.launcher.partition=nope", "hydra.launcher.partition='nope'", "invalid partition specified: nope"),
    ("hydra.launcher.gpus_per_node=1", "hydra.launcher.gpus_per_node=1", "Invalid generic resource (gres)"),
    # a flag of its own: the line named the whole request (hydra.launcher=[gpus_per_node=0 timeout_min=60])
    ("+hydra.launcher.additional_parameters={mail_type: BOGUS}",
     "hydra.launcher.additional_parameters.mail_type='BOGUS'",
     "Invalid --mail-type specification"),
    ("+hydra.launcher.additional_parameters.bogus=1", "hydra.launcher.additional_parameters.bogus=1",
     "unrecognized option '--bogus=1'"),
    # words that name no setting: the whole request, exclude too (it was left out, and it alone was the cause)
    (f"hydra.launcher.exclude={socket.gethostname().split('.')[0]}",  # the one node (tools/slurm-local.sh)
     f"hydra.launcher=[gpus_per_node=0 timeout_min=60 exclude={socket.gethostname().split('.')[0]}]",
     "Requested node configuration is not available")])
def test_packs_sbatch_refuses_are_one_line_naming_the_setting(slurm, tiny_root, tmp_path, setting, key, said):
    """A partition the cluster does not have, GPUs its nodes lack (this one has none), an sbatch flag
    it does not know or whose value it refuses: sbatch refuses the pack jobs at submission. One line
    naming the launcher's setting and sbatch's words, exit 2, no traceback, and sbatch's words not said
    again above it (submitit printed them); the sweep folder (its submission scripts and pickles)
    removed, no run made. Before, submitit's FailedJobError came through as a traceback."""
    args = _slurm_args(tmp_path, tiny_root, setting)
    if "gpus_per_node" in setting:
        args.remove("hydra.launcher.gpus_per_node=0")
    proc = run_cli(["-m", "activation=relu,tanh", *args], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("vgsweep: ")]
    assert line.startswith(f"vgsweep: invalid config: {key} is not accepted; expected ") and said in line, line
    assert "this cluster's SLURM accepts. sbatch refused the pack jobs (sbatch: " in line, line
    assert said not in proc.stderr.replace(line, ""), proc.stderr[-3000:]
    assert not (tmp_path / "mr").exists()
    c = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    exp = c.get_experiment_by_name("agarap2019")
    assert exp is None or not c.search_runs([exp.experiment_id])


@pytest.mark.e2e
def test_executor_slurm_where_slurm_is_not_is_one_line(tiny_root, tmp_path):
    """On a machine without SLURM's commands (a laptop), executor=slurm is refused before anything
    is made; before, submitit's 'Could not detect "srun"' came as a traceback."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # this venv's tools, no sbatch or srun
    proc = subprocess.run([sys.executable, "-m", "vgsweep", "-m", "activation=relu,tanh",
                           *_slurm_args(tmp_path, tiny_root)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.rstrip().splitlines()[-1] == (
        "vgsweep: invalid config: hydra.launcher.executor='slurm' is not accepted; expected local or "
        "submitit_local on this machine. sbatch and srun not found on PATH: submit from the cluster's login node, "
        "where SLURM's commands are")
    assert not (tmp_path / "mr").exists()


@pytest.mark.slurm
@pytest.mark.e2e
def test_a_pack_job_that_can_never_start_as_asked_is_cancelled_and_its_jobs_fail_saying_why(slurm, tiny_root,
                                                                                             tmp_path):
    """More CPUs per task than this cluster's node has: sbatch takes the job, SLURM keeps it PENDING
    (reason PartitionConfig) for ever. The launcher cancels it, and its jobs fail with the reason and the
    settings that asked for it: exit 1, no run made (before: "1 pending", waiting until stopped)."""
    args = ["-m", "activation=relu,tanh", *_slurm_args(tmp_path, tiny_root, "hydra.launcher.cpus_per_task=512")]
    proc = subprocess.run([sys.executable, "-m", "vgsweep", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    [job] = _submitted(out)
    try:
        assert proc.returncode == 1 and "Traceback" not in out, out[-3000:]
        assert "pack jobs: 1 pending (PartitionConfig)" in out
        why = (f"pack job {job} was cancelled: it will not start as asked: more CPUs, memory or GPUs than a node of "
               "the partition has (SLURM reason PartitionConfig); the request: hydra.launcher.timeout_min=60 "
               "hydra.launcher.cpus_per_task=512 hydra.launcher.gpus_per_node=0")
        assert proc.stderr.rstrip().splitlines()[-1] == (f"vgsweep: 2 jobs failed: mnist-d2-relu-baseline-s42 (no run "
                                                         f"was made): {why}; mnist-d2-tanh-baseline-s42 (no run was "
                                                         f"made): {why}")
        assert slurm_job(job)[0] in ("CANCELLED", "GONE")
        c = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
        exp = c.get_experiment_by_name("agarap2019")
        assert exp is None or not c.search_runs([exp.experiment_id])
    finally:
        subprocess.run(["scancel", job], timeout=30)


@pytest.mark.slurm
@pytest.mark.e2e
@pytest.mark.parametrize("why", ["cancel_unrunnable=false", "scancel refused"])
def test_with_cancel_unrunnable_false_such_a_job_waits_and_is_named_with_its_settings(slurm, tiny_root, tmp_path,
                                                                                        why, ctrl_c_reaches_children):
    """hydra.launcher.cancel_unrunnable=false: the job waits (the cluster's admins may change the
    partition); the state line shows the reason and one warning names the job, why, the settings that
    asked for it and the scancel that stops it. The same where scancel refuses (a site that allows it to
    admins only: here a scancel earlier on PATH that says so), and the warning says what scancel said."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    more = ["hydra.launcher.cancel_unrunnable=false"]
    if why == "scancel refused":
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "scancel").write_text("#!/bin/sh\necho 'scancel: error: Access/permission denied' >&2\n"
                                                  "exit 1\n")
        (tmp_path / "bin" / "scancel").chmod(0o755)
        env["PATH"], more = f"{tmp_path / 'bin'}:{env['PATH']}", []
    args = ["-m", "activation=relu,tanh", *_slurm_args(tmp_path, tiny_root, "hydra.launcher.cpus_per_task=512", *more)]
    proc, job = _sweep(args, tmp_path, env), None
    try:
        seen = _read_until(proc, "will not start as asked")
        [job] = _submitted(seen)
        assert "pack jobs: 1 pending (PartitionConfig)" in seen, seen[-3000:]
        [warning] = [x for x in seen.splitlines() if "will not start as asked" in x]
        assert f"pack job {job} will not start as asked: more CPUs, memory or GPUs than a node of the partition " \
               "has (SLURM reason PartitionConfig)" in warning
        assert "hydra.launcher.cpus_per_task=512" in warning and f"scancel {job}" in warning
        assert ("scancel failed (scancel: error: Access/permission denied)" in warning) is (why == "scancel refused")
        time.sleep(3)  # three more polls: still waiting, still pending
        assert proc.poll() is None and slurm_job(job)[0] == "PENDING"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
        if job:
            subprocess.run(["scancel", job], timeout=30)


def test_a_pack_job_splits_its_pack_on_the_node_as_the_launcher_was_told(small_cfg, monkeypatch):
    """A pack job plans its pack again on its node: with the launcher's max_pack and memory budget,
    which it carries through submitit's pickle (it split by the node's own memory alone); without a
    max_pack, on a CPU node, by the CPU's own limit (here made 1 run)."""
    import pickle

    from vgsweep import packing, tracking
    from vgsweep.executors import PackJob
    from vgsweep.jobs import Job

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(packing, "CPU_TENSOR_BYTES", 1)
    client = tracking.client_for(tracking.resolve_uri(small_cfg()))
    for told, seeds, sizes in (({"max_pack": 3}, (1, 2, 3), ["3"] * 3), ({}, (4, 5), ["1", "1"]),
                               ({"max_pack": 3, "memory_budget_gb": 1e-6}, (6, 7), ["1", "1"])):
        job = pickle.loads(pickle.dumps(PackJob([Job(small_cfg(f"seed={s}")) for s in seeds], same_devices=True,
                                                **told)))
        outcomes = job.train()
        assert [o.status for o in outcomes] == ["FINISHED"] * len(seeds)
        assert [client.get_run(o.run_id).data.tags["vgsweep.pack_size"] for o in outcomes] == sizes, told


def test_a_requeued_job_takes_back_the_runs_its_earlier_incarnation_left_running(small_cfg):
    """A pack job that died without its SIGTERM (SIGKILL, its node lost) left its runs RUNNING, with a
    heartbeat from another host that is still fresh: another sweep skips them as running, but the
    requeued job (the same scheduler id, tag vgsweep.job) takes them back, KILLED, and trains them."""
    import time as clock

    from vgsweep import tracking
    from vgsweep.executors import TAG_JOB
    from vgsweep.jobs import Job
    from vgsweep.sweep import plan

    job = Job(small_cfg("seed=3"))
    client = tracking.client_for(tracking.resolve_uri(job.cfg))
    exp_id = client.create_experiment(job.cfg.tracking.experiment)
    run = client.create_run(exp_id, run_name=job.name, tags={
        tracking.TAG_HASH: job.key(), tracking.TAG_HOST: "node-that-died", tracking.TAG_PID: "4242",
        tracking.TAG_HEARTBEAT: f"{clock.time():.0f}", TAG_JOB: "99_1"}).info.run_id
    [other] = plan([Job(small_cfg("seed=3"))], adopt="98_1")
    assert other.status == "SKIPPED" and other.reason == "running in another process"
    assert client.get_run(run).info.status == "RUNNING"
    assert plan([Job(small_cfg("seed=3"))], adopt="99_1") == [None]  # to train
    back = client.get_run(run)
    assert back.info.status == "KILLED" and "its scheduler job 99_1 was requeued" in back.data.tags["vgsweep.failure"]


@pytest.mark.slurm
@pytest.mark.e2e
def test_a_cancelled_pack_job_ends_its_runs_killed_at_once(slurm, tiny_root, tmp_path):
    """scancel a training pack job: SLURM sends SIGTERM, which submitit's job wrapper ignores until
    the SIGKILL KillWait later. The pack job ends its runs KILLED with the reason first, so a sweep
    run again from another host trains them at once instead of skipping them as running until their
    heartbeat is stale; the waiting sweep says the job failed (exit 1)."""
    from vgsweep.executors import ENDING

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    args = ["-m", "activation=relu,tanh", *_slurm_args(tmp_path, tiny_root, "train.epochs=100000", "checkpoint.every=0")]
    proc = _sweep(args, tmp_path)
    try:
        seen = _read_until(proc, "pack jobs: 1 running")
        [job] = _submitted(seen)
        deadline = time.monotonic() + 120
        client = MlflowClient(uri)
        while len([r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
                   if r.data.metrics]) < 2:  # both runs training
            assert time.monotonic() < deadline, seen[-3000:]
            time.sleep(0.5)
        subprocess.run(["scancel", job], check=True, timeout=30)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, out[-3000:]
    _, runs = _runs(uri)
    assert [(r.info.status, r.data.tags["vgsweep.failure"]) for r in runs] == [("KILLED", ENDING)] * 2
    log = "".join(p.read_text() for p in (tmp_path / "mr" / ".submitit" / job).glob("*_log.*"))
    assert f"pack job {job}: {ENDING}; 2 runs it was training marked KILLED" in log, log[-3000:]


@pytest.mark.slurm
@pytest.mark.e2e
def test_pack_jobs_waiting_in_slurm_show_in_status_and_the_same_command_waits_for_them(slurm, tiny_root, tmp_path,
                                                                                     ctrl_c_reaches_children):
    """A pack job that waits in SLURM's queue has no run in the store yet. Its configs are recorded at
    submission: `vgsweep status` lists them as queued (a job cancelled before it started: not trained),
    and the same command run again (its first terminal gone) waits for the earlier sweep's job instead
    of submitting its configs twice, while it trains those of the cancelled job. Records end with their jobs."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    grid = ["-m", "activation=relu,tanh", "regime=baseline,gna", "hydra.launcher.max_pack=2"]
    held = "+hydra.launcher.additional_parameters={begin: now+3600}"  # pending (BeginTime) until released
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def status() -> str:
        p = run_cli(["status", "--tracking-uri", uri], cwd=tmp_path)
        assert p.returncode == 0, p.stderr[-3000:]
        return p.stdout

    def sweep(*more: str, until: str) -> tuple[subprocess.Popen, str]:
        proc = _sweep([*grid, *_slurm_args(tmp_path, tiny_root, *more)], tmp_path, env)
        return proc, _read_until(proc, until)

    proc, seen = sweep(held, until="pack jobs: 2 pending (BeginTime)")
    a0, a1 = _submitted(seen)
    again = None
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        out = status()
        assert "agarap2019: 4 configs: 4 queued\n" in out, out
        for job in (a0, a1):
            assert out.count(f"SLURM job {job}, pending (BeginTime); submitted ") == 2, out
        dry = run_cli([*grid, *_slurm_args(tmp_path, tiny_root, "hydra.launcher.dry_run=true")], cwd=tmp_path)
        assert "0 skipped; 4 to wait for (queued in pack jobs of an earlier sweep)" in dry.stdout, dry.stdout
        assert f"#3 activation=tanh regime=gna: wait: queued in SLURM pack job {a1} of an earlier sweep (pending: " \
               "BeginTime): waits for it" in dry.stdout, dry.stdout

        subprocess.run(["scancel", a1], check=True, timeout=30)
        out = status()
        assert "4 configs: 2 queued, 2 not trained: their pack job (or sweep) ended before it started them\n" in out, out
        assert out.count(f"SLURM job {a1} is gone from SLURM's queue (cancelled?) without starting it") == 2, out

        # the same command again: waits for a0, trains what a1 would have (one new pack job), submits nothing twice
        wait = f"waiting for SLURM pack job {a0} of an earlier sweep: 2 of this sweep's configs"
        again, seen = sweep(until=wait)
        assert "submitted 1 pack job (slurm)" in seen and "2 jobs to train in 1 pack of 2 runs" in seen, seen[-3000:]
        [new] = _submitted(seen)
        again.send_signal(signal.SIGINT)  # interrupted while it waits: both jobs go on
        out = seen + again.communicate(timeout=60)[0]
        assert again.returncode == 130 and out.rstrip().splitlines()[-1].startswith(
            "vgsweep: interrupted by SIGINT (Ctrl-C): the pack jobs it submitted and those of an earlier sweep it "
            f"waited for go on in SLURM (scancel {new} {a0} stops them;"), out[-3000:]

        again, seen = sweep(until=wait)  # and again: a0 is waited for, the new job's configs too (or skipped: done)
        assert not re.search(r"submitted \d+ pack job", seen), seen[-3000:]
        subprocess.run(["scontrol", "update", f"JobId={a0}", "StartTime=now"], check=True, timeout=30)
        out = seen + again.communicate(timeout=180)[0]
        assert again.returncode == 0, out[-3000:]
        done = re.search(r"sweep done: 0 finished, 4 skipped \((\d) already in the store, (\d) trained by pack jobs "
                         r"of an earlier sweep\), 0 failed", out)
        assert done and int(done[2]) >= 2, out[-3000:]  # a0's two; the new job's two unless it had finished first
        assert status().startswith(f"store {uri}\nagarap2019: 4 configs: 4 finished\n")
        runs = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("agarap2019").experiment_id])
        assert len(runs) == 4 and {r.data.tags["vgsweep.job"].split("_")[0] for r in runs} == {a0.split("_")[0], new}
        exp = MlflowClient(uri).get_experiment_by_name("agarap2019")
        assert not [k for k in exp.tags if k.startswith("vgsweep.queued.")], exp.tags  # the job's own, the gone one
    finally:
        for p in (proc, again):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        subprocess.run(["scancel", a0.split("_")[0]], timeout=30)


@pytest.mark.slurm
@pytest.mark.e2e
def test_a_pack_job_cancelled_while_pending_fails_its_jobs_and_the_sweep_ends(slurm, tiny_root, tmp_path):
    """An array task cancelled before it started is forgotten by SLURM at once (`Job 12_1 not found`):
    the waiting sweep fails its jobs saying so instead of waiting for it for ever, and `vgsweep status`
    names them as not trained."""
    grid = ["-m", "activation=relu,tanh", "hydra.launcher.max_pack=1"]
    held = "+hydra.launcher.additional_parameters={begin: now+3600}"
    proc = _sweep([*grid, *_slurm_args(tmp_path, tiny_root, held)], tmp_path)
    seen = _read_until(proc, "pack jobs: 2 pending (BeginTime)")
    a0, a1 = _submitted(seen)
    try:
        subprocess.run(["scancel", a1], check=True, timeout=30)
        subprocess.run(["scontrol", "update", f"JobId={a0}", "StartTime=now"], check=True, timeout=30)
        out = seen + proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run(["scancel", a0.split("_")[0]], timeout=30)
    assert proc.returncode == 1, out[-3000:]
    assert out.rstrip().splitlines()[-1] == (
        f"vgsweep: 1 job failed: mnist-d2-tanh-baseline-s42 (no run was made): pack job {a1} is gone from SLURM's "
        "queue without a result (cancelled before it started, or ended long ago)"), out[-3000:]
    st = run_cli(["status", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"], cwd=tmp_path)
    assert "2 configs: 1 finished, 1 not trained: their pack job (or sweep) ended before it started them" in st.stdout, st.stdout
    assert f"unrun    mnist-d2-tanh-baseline-s42  SLURM job {a1} is gone from SLURM's queue (cancelled?)" in st.stdout


@pytest.mark.slurm
@pytest.mark.e2e
def test_a_setup_line_that_ends_the_pack_job_is_named_with_its_exit_status(slurm, tiny_root, tmp_path):
    """A hydra.launcher.setup line that exits ends the job's script before its pack starts: its error log
    is empty, so the failure gives SLURM's exit status, says the pack never started, and names the log
    that holds something (the script's output)."""
    setup = 'hydra.launcher.setup=["echo set-up ran", "exit 3"]'
    proc = run_cli(["-m", *_slurm_args(tmp_path, tiny_root, setup)], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.rstrip().splitlines()[-1]
    job = re.search(r"pack job (\d+)", last).group(1)
    out = tmp_path / "mr" / ".submitit" / job / f"{job}_0_log.out"
    assert last == (f"vgsweep: 1 job failed: mnist-d2-logistic-baseline-s42 (no run was made): pack job {job} "
                    "ended FAILED (exit status 3) without a result, before its pack started (its error log is empty; "
                    f"did a line of hydra.launcher.setup end its script?) (its log: {out})"), last
    assert out.read_text() == "set-up ran\n"


def test_waiting_for_an_earlier_sweeps_pack_job_takes_each_configs_result_from_the_store(small_cfg, tmp_path):
    """What the earlier job made of each config: a FINISHED run is this sweep's result (with its metrics),
    a run FAILED there fails here with its reason; neither waits for the job to end."""
    from vgsweep import tracking
    from vgsweep.executors import wait_queued
    from vgsweep.jobs import Job

    jobs = [Job(small_cfg("seed=1")), Job(small_cfg("seed=2"))]
    uri = tracking.resolve_uri(jobs[0].cfg)
    client = tracking.client_for(uri)
    exp_id = tracking.experiment_id(client, uri, str(jobs[0].cfg.tracking.experiment), None)
    submitted = time.time()
    for j, status in zip(jobs, ("FINISHED", "FAILED")):
        run = client.create_run(exp_id, tags={tracking.TAG_HASH: j.key(), "vgsweep.job": "999999"})
        client.log_metric(run.info.run_id, "test_acc", 0.5, step=0)
        if status == "FAILED":
            client.set_tag(run.info.run_id, tracking.TAG_FAILURE, "train_loss became nan at epoch 3")
        client.set_terminated(run.info.run_id, status)
    with sleeps_of(executors) as slept:
        done, failed = wait_queued("999999", submitted, jobs, poll_s=0.2)  # a job id SLURM does not know
    assert slept == []  # both answered by the store at the first look: no poll
    assert done.status == "SKIPPED" and done.final["test_acc"] == 0.5
    assert done.reason == "trained by SLURM pack job 999999 of an earlier sweep"
    assert failed.status == "FAILED" and failed.reason == ("FAILED in SLURM pack job 999999 of an earlier sweep: "
                                                           "train_loss became nan at epoch 3")


def test_a_large_packs_record_is_split_to_fit_mlflow_tags_and_a_broken_part_is_ignored(small_cfg):
    from vgsweep.executors import QUEUED_MAX, TAG_QUEUED, queued_records, read_queued
    from vgsweep.jobs import Job

    cfg = small_cfg()
    jobs = [Job(cfg, hash=f"{n:016x}", label=f"seed={n}") for n in range(400)]
    big, [small] = queued_records(jobs, now=100.0), queued_records(jobs[:3], now=200.0)
    assert len(big) > 1 and all(len(v) <= QUEUED_MAX for v in big)
    tags = {TAG_QUEUED + "7_0": big[0], **{f"{TAG_QUEUED}7_0/{n}": v for n, v in enumerate(big[1:], 2)},
            TAG_QUEUED + "8": small, TAG_QUEUED + "9": "{not json", "other": "x"}
    got = read_queued(tags)
    assert [job for job, _ in got] == ["8", "7_0"]  # newest first
    assert got[0][1]["configs"] == {j.hash: j.name for j in jobs[:3]}
    assert got[1][1]["configs"] == {j.hash: j.name for j in jobs}  # every part, merged


@pytest.mark.parametrize("reason, never", [
    ("PartitionConfig", True), ("PartitionTimeLimit", True), ("BadConstraints", True),
    ("QOSMaxCpuPerJobLimit", True), ("QOSMaxWallDurationPerJobLimit", True), ("QOSMaxGRESPerNode", True),
    ("AssocMaxMemPerJob", True), ("QOSMinCpuNotSatisfied", True),
    # they free up as other jobs end, or come by themselves
    ("Priority", False), ("Resources", False), ("QOSMaxJobsPerUserLimit", False), ("QOSMaxSubmitJobPerUserLimit", False),
    ("QOSGrpCpuLimit", False), ("AssocGrpGRES", False), ("AssocMaxJobsLimit", False), ("BeginTime", False), ("", False)])
def test_which_pending_reasons_mean_the_job_will_never_start_as_asked(reason, never):
    """Per-job limits of the partition, the QOS or the account: the request must change. Aggregate limits
    (a group's CPUs, a user's running jobs) are waited out."""
    from vgsweep.executors import never_as_asked

    assert bool(never_as_asked(reason)) is never
