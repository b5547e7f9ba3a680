"""`python -m vgsweep.profile`: a pack's time by phase, against its counted arithmetic."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from tests.conftest import SMALL, compose_cfg, run_cli
from vgsweep import profile, trainer


def test_expand_is_the_sweep_grid():
    grid = profile.expand(["activation=relu,tanh", "regime=baseline,gna", "seed=1"])
    assert sorted(tuple(g) for g in grid) == sorted(
        (f"activation={a}", f"regime={r}", "seed=1") for a in ("relu", "tanh") for r in ("baseline", "gna"))


def test_profile_counts_phases_and_arithmetic(tiny_root, tmp_path, capsys):
    args = [*SMALL, f"data.root={tiny_root}", "activation=logistic,tanh", "regime=baseline,gna"]
    trace, out = tmp_path / "trace.json.gz", tmp_path / "profile.json"
    assert profile.main([*args, "--epochs", "1", "--trace", str(trace), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    K, B, n_train, n_test = 4, 32, 384, 128
    steps = n_train // B
    assert (r["runs"], r["steps"], r["batch"]) == (K, steps, B)
    # Each phase of a step ran once a step in the profiled epoch; the probe three times on each
    # step it samples (diagnostics.grad_samples of them, the last included), and on no other.
    for phase in ("forward", "backward", "noise", "optimizer", "metrics"):
        assert r["phases"][phase]["calls"] == steps, phase
    assert r["phases"]["diagnostics"]["calls"] == 3 * compose_cfg([]).diagnostics.grad_samples
    assert r["phases"]["epoch_end"]["calls"] == 1
    # The counted arithmetic: per step forward + dW for the first layer, forward + dX + dW after it;
    # plus one forward over the test set.
    sizes = (784, 16, 16, 10)
    pairs = list(zip(sizes[:-1], sizes[1:]))
    train = sum(2 * K * B * i * o * (3 if n else 2) for n, (i, o) in enumerate(pairs)) * steps
    assert r["flops_per_epoch"] == pytest.approx(train + sum(2 * K * n_test * i * o for i, o in pairs))
    assert 0 < r["floor_s"] and 0 < r["epoch_s"] and r["device_busy_s"] is None  # CPU: no device timeline
    printed = capsys.readouterr().out
    assert "| forward | 12 |" in printed and "aten::" in printed
    assert printed.startswith("# Profile: 4 runs, hidden [16, 16]") and "(each matmul timed alone here)" in printed
    events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
    assert any(e.get("name") == "vgsweep.backward" for e in events)
    assert trainer.scope.enabled is False  # switched off again: training outside the profiler pays nothing


@pytest.mark.e2e
def test_vgsweep_profile_on_the_cpu_prints_the_profile_and_no_kinetos_lines(tiny_root, tmp_path):
    """Through the CLI (Kineto reads its log level once per process, as its first profiler starts): the
    profile on stdout, and none of PyTorch's Kineto lines on stderr (`USDT: ... profiler_start`, `ERROR: ...
    gpuGetDeviceCount failed with code 35` where no GPU is, alarming and meaningless for a CPU's profile)."""
    proc = run_cli(["profile", *SMALL, f"data.root={tiny_root}", "activation=relu,tanh", "--epochs", "1"], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("# Profile: 2 runs, hidden [16, 16]"), proc.stderr[-2000:]
    kineto = [line for line in proc.stderr.splitlines() if re.match(r"[A-Z]+:\d{4}-\d\d-\d\d \d", line)]
    assert not kineto, kineto


def test_the_printed_profile_says_one_run_and_a_cnns_floor_in_its_own_words():
    """`# Profile: 1 runs` read wrongly, and a VGG pack's floor, its grouped convolutions, was called matmuls."""
    r = {"runs": 1, "model": "vgg08 (0 blocks per stage)", "batch": 100, "precision": "fp32", "device": "cpu",
         "torch": "2.x", "epoch_s": 2.0, "steps": 10, "step_ms": 200.0, "flops_per_epoch": 1e12, "floor_s": 0.5,
         "floor_of": "grouped convolution", "profiled_epoch_s": 2.1, "host_s": 2.1, "device_busy_s": None,
         "launches_per_step": None, "phases": {}, "table": "ops"}
    text = profile.report(r)
    assert text.startswith("# Profile: 1 run, vgg08 (0 blocks per stage), batch 100, fp32\n")
    assert "floor 0.500 s (each grouped convolution timed alone here) = 25% of the epoch" in text


def _trace(name: str) -> list[dict]:
    return json.loads(gzip.decompress((Path(__file__).parent / "data" / name).read_bytes()))["traceEvents"]


def test_phase_times_come_from_the_host_and_the_device_ranges():
    """The annotation ranges of an H200 trace (tests/data: one epoch of the 2-layer pack at tf32 without
    the graph, 58 steps). The profile of that session printed 0.000 host seconds for every phase (it
    kept the device's entry of each phase's two under one name); its device column, 0.059 s forward,
    0.152 s backward, is the device ranges' sum."""
    r = profile.phase_times(_trace("h200_phase_ranges.json.gz"))
    assert r["forward"]["calls"] == r["backward"]["calls"] == 58 and r["diagnostics"]["calls"] == 12
    assert r["forward"]["device_s"] == pytest.approx(0.0588, abs=5e-4)
    assert r["backward"]["device_s"] == pytest.approx(0.1525, abs=5e-4)
    assert r["forward"]["host_s"] == pytest.approx(0.0638, abs=5e-4) and r["epoch_end"]["host_s"] > 0
    cpu = [e for e in _trace("h200_phase_ranges.json.gz") if e["cat"] == "user_annotation"]
    assert profile.phase_times(cpu)["backward"]["device_s"] is None  # a CPU trace has no device ranges


def test_the_device_timeline_counts_work_not_annotations_and_kernels_inside_graph_replays():
    """An excerpt of a real trace (tests/data: two CUDA-graph replays of the paper grid's 5-layer pack at
    tf32 on an H200, 238 kernels each (213 kernels, 25 copies), 2.79 ms of kernels in 3.04 ms). The profile of that session summed
    every device-time key, the ProfilerStep and phase ranges that span the kernels included, and said
    the device was busy 204% of the epoch; and it counted the host's launches (one per replay), not the
    kernels that ran."""
    events = _trace("h200_graph_replays.json.gz")
    assert any(e.get("cat") == "gpu_user_annotation" and e["dur"] > 100_000 for e in events)  # ProfilerStep: 0.19 s
    r = profile.device_timeline(events, steps=2)
    assert r["kernels"] == 476 and r["kernels_per_step"] == 238
    assert r["device_busy_s"] == pytest.approx(2.788e-3, rel=1e-3)
    work = [e for e in events if e.get("cat") in profile.DEVICE_WORK]
    span = max(e["ts"] + e["dur"] for e in work) - min(e["ts"] for e in work)
    assert r["device_busy_s"] < span / 1e6  # gaps between kernels: not busy
    overlapping = [{"cat": "kernel", "ts": 0, "dur": 10}, {"cat": "kernel", "ts": 5, "dur": 10},
                   {"cat": "gpu_memcpy", "ts": 30, "dur": 5}]  # two streams at once count once
    assert profile.device_timeline(overlapping, 1)["device_busy_s"] == pytest.approx(20e-6)
    assert profile.device_timeline([{"cat": "cpu_op", "ts": 0, "dur": 5}], 1)["device_busy_s"] is None


def test_profile_refuses_a_grid_of_several_packs(tiny_root, capsys):
    code = profile.main([*SMALL, f"data.root={tiny_root}", "regime=baseline,wn"])
    err = capsys.readouterr().err
    assert code == 2 and "overrides" in err and "one pack" in err
    # a sweep's command with profile put in front: its -m, anywhere, is taken (argparse refused it with every
    # override after it), and the grid is judged as without it
    for args in (["-m", *SMALL], [*SMALL, "--multirun"], [SMALL[0], "-m", *SMALL[1:]]):
        code = profile.main([*args, f"data.root={tiny_root}", "regime=baseline,wn"])
        err = capsys.readouterr().err
        assert code == 2 and "one pack" in err and "unrecognized" not in err, err
    # what the data cannot hold, as a sweep's check says it (the trainer's ValueError was a traceback)
    code = profile.main([*SMALL, f"data.root={tiny_root}", "train.batch_size=100000"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("vgsweep: invalid config: train.batch_size=100000 is not accepted; expected "
                                        "at most ") and err.count("\n") == 1, err
