"""Where a pack's time goes: one pack trained under torch.profiler, measured against its floor.

    python -m vgsweep.profile activation=logistic,tanh,relu,leaky_relu,swish regime=baseline,gna,gna_bn \\
        depth=2 data.root=.devdata --epochs 3 --trace results/bench/trace.json.gz

Overrides use the CLI's syntax; comma lists expand to a grid, and every job of the grid must fit
one pack (same shapes, batch, data, precision, device). Nothing is logged to MLflow. It trains one
warm-up epoch (allocations, cuBLAS handles), then --epochs timed epochs, then one epoch under the
profiler, and prints:

- wall time per epoch and per step, and the pack's arithmetic per epoch;
- the arithmetic floor: every matmul of an epoch timed alone on this device at the pack's shapes
  and precision (forward: x W; backward: dX and dW of the same sizes), summed;
- device busy time (kernels) and host time per step, kernel launches per step from the host and kernels
  per step on the device (they differ where a CUDA graph replays the step);
- time per phase of a step (vgsweep.trainer.PHASES), host and device;
- the operators that take the most time.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from vgsweep import packing, trainer
from vgsweep.config import (ArgumentError, ConfigError, command_line, enum_value, home_path,
                            resolve_device, settle, validate)
from vgsweep.preflight import not_creatable


def expand(overrides: list[str]) -> list[list[str]]:
    """The grid of a multirun's overrides, as Hydra's basic sweeper expands it (a,b -> two jobs)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    axes = []
    for o in OverridesParser.create().parse_overrides(overrides):
        if o.is_sweep_override():
            key = o.get_key_element()
            axes.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            axes.append([o.input_line])
    return [list(c) for c in itertools.product(*axes)]


def compose(overrides: list[str]):
    from vgsweep.app import compose as app_compose

    return app_compose(overrides)


def pack_of(overrides: list[str]):
    from vgsweep.jobs import Job
    from vgsweep.preflight import check_data

    cfgs = [compose(o) for o in expand(overrides)]
    for c in cfgs:
        settle(c)
        validate(c)
    if len({packing.pack_key(c) for c in cfgs}) != 1:
        raise ConfigError("overrides", " ".join(overrides), "a grid whose jobs share one pack",
                          "Profile one pack at a time: the same model shape, normalisation, batch, data "
                          "and precision for every job")
    check_data([Job(c) for c in cfgs])  # as a sweep checks it: one line, not the trainer's traceback
    return cfgs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_floor(cfg, K: int, sizes: tuple[int, ...], n_test: int, steps: int, repeats: int = 20) -> tuple[float, float]:
    """(seconds, FLOPs) of one epoch's matmuls, each shape timed alone at the pack's precision.

    Per step and layer (in, out): forward (K,B,in)@(K,in,out); backward dX (K,B,out)@(K,out,in)
    (not for the first layer: the inputs need no gradient) and dW (K,in,B)@(K,B,out), all three
    2*K*B*in*out FLOPs. Evaluation: the test set forward once. The probe pass and the element-wise
    work are left out, so the floor is a lower bound."""
    device = resolve_device(cfg.device)
    precision = enum_value(cfg.precision)
    B = int(cfg.train.batch_size)
    dtype = torch.float32

    def timed(m: int, k: int, n: int) -> float:
        a = torch.randn(K, m, k, device=device, dtype=dtype)
        b = torch.randn(K, k, n, device=device, dtype=dtype)
        with trainer.tf32(precision == "tf32" and device.type == "cuda"), \
                trainer.precision_ctx(precision, device):
            for _ in range(3):
                torch.bmm(a, b)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(repeats):
                torch.bmm(a, b)
            _sync(device)
        return (time.perf_counter() - t0) / repeats

    seconds = flops = 0.0
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        f = 2.0 * K * B * n_in * n_out
        per_step = timed(B, n_in, n_out) + timed(n_in, B, n_out) + (timed(B, n_out, n_in) if i else 0.0)
        seconds += steps * per_step
        flops += steps * f * (3 if i else 2)
        seconds += timed(n_test, n_in, n_out)  # evaluation over the test set
        flops += 2.0 * K * n_test * n_in * n_out
    return seconds, flops


def conv_floor(cfg, K: int, shape: tuple[int, ...], classes: int, n_test: int, steps: int,
               repeats: int = 10) -> tuple[float, float]:
    """(seconds, FLOPs) of one epoch's convolutions (the VGG family), each shape timed alone as the
    pack runs it (on a GPU one grouped convolution of K runs, on the CPU one convolution per run:
    PackedVGG._conv), at the pack's precision. Backward counts as two more convolutions of the same
    cost (dX, dW; the first layer's dX is not needed). A lower bound."""
    import torch.nn.functional as F

    from vgsweep.families.vgg import convs

    device = resolve_device(cfg.device)
    precision = enum_value(cfg.precision)
    B, Fn = int(cfg.train.batch_size), int(cfg.model.filters)

    grouped = device.type != "cpu"  # as PackedVGG chooses
    G = K if grouped else 1  # runs in one call; the CPU's K calls are one call's time K times

    def timed(n: int, cin: int, h: int, w: int) -> float:
        x = torch.randn(n, G * cin, h, w, device=device)
        wt = torch.randn(G * Fn, cin, 3, 3, device=device)
        with trainer.tf32(precision == "tf32" and device.type == "cuda"), trainer.precision_ctx(precision, device):
            for _ in range(2):
                F.conv2d(x, wt, padding=1, groups=G)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(repeats):
                F.conv2d(x, wt, padding=1, groups=G)
            _sync(device)
        return (time.perf_counter() - t0) / repeats * K / G

    seconds = flops = 0.0
    C, h, w = shape
    for i, (name, *_rest) in enumerate(convs(cfg.model)):
        if name.endswith("red.conv2"):
            h, w = h // 2, w // 2
        cin = C if i == 0 else Fn
        f = 2.0 * K * B * h * w * Fn * cin * 9
        seconds += steps * timed(B, cin, h, w) * (2 if i == 0 else 3) + timed(min(n_test, 500), cin, h, w) * n_test / min(n_test, 500)
        flops += steps * f * (2 if i == 0 else 3) + 2.0 * K * n_test * h * w * Fn * cin * 9
    return seconds, flops


def _summary(prof, device: torch.device, top: int) -> dict:
    """The numbers of one profiled epoch (times in seconds)."""
    ka = prof.key_averages()
    ev = {e.key: e for e in ka}
    top_level = [e for e in prof.events() if e.cpu_parent is None
                 and e.device_type == torch.autograd.DeviceType.CPU]
    cuda = device.type == "cuda"
    return {"host_s": sum(e.cpu_time_total for e in top_level) / 1e6,
            "launches": sum(e.count for k, e in ev.items() if "LaunchKernel" in k),
            "table": ka.table(sort_by="self_device_time_total" if cuda else "self_cpu_time_total", row_limit=top)}


DEVICE_WORK = ("kernel", "gpu_memcpy", "gpu_memset")  # a Chrome trace's device events that are work


def phase_times(events: list[dict]) -> dict:
    """Each phase's calls, host seconds (its ranges on the host) and device seconds (its ranges on the
    device, None on the CPU), from the Chrome trace's annotation events. Not from key_averages: there a
    phase's host range and its device range are two entries under one name, and keeping one lost the
    host's times on the GPU (0.000 for every phase on the H200)."""
    ranges: dict[tuple[str, str], list[float]] = {}
    for e in events:
        if e.get("cat") in ("user_annotation", "gpu_user_annotation") and str(e.get("name")).startswith("vgsweep."):
            ranges.setdefault((e["cat"], e["name"][len("vgsweep."):]), []).append(e.get("dur", 0))
    out: dict = {}
    for name in trainer.PHASES:
        host, dev = ranges.get(("user_annotation", name)), ranges.get(("gpu_user_annotation", name))
        if host:
            out[name] = {"host_s": sum(host) / 1e6, "device_s": sum(dev) / 1e6 if dev else None, "calls": len(host)}
    return out


def device_timeline(events: list[dict], steps: int) -> dict:
    """The device's side of a profiled epoch from its Chrome trace events: busy seconds (the union of
    the kernels', copies' and fills' intervals; the annotation ranges that span them, ProfilerStep and
    the phases, are not work) and kernels per step (copies and fills included), counted on the device:
    inside a CUDA graph's replay too, where the host launches one graph. None each on the CPU (no device events)."""
    work = sorted((e["ts"], e["ts"] + e.get("dur", 0)) for e in events if e.get("cat") in DEVICE_WORK)
    if not work:
        return {"device_busy_s": None, "kernels": None, "kernels_per_step": None}
    busy, end = 0.0, float("-inf")
    for a, b in work:  # union of intervals (µs): streams may overlap
        if b > end:
            busy += b - max(a, end)
            end = b
    kernels = len(work)  # copies and fills are device launches too, as a graph's nodes
    return {"device_busy_s": busy / 1e6, "kernels": kernels, "kernels_per_step": kernels / steps}


def profile(cfgs, epochs: int, trace: Path | None = None, top: int = 15) -> dict:
    """Time the pack over `epochs` epochs after a warm-up one, then profile one more epoch."""
    from torch.profiler import ProfilerActivity, schedule
    from torch.profiler import profile as torch_profile

    from vgsweep.data.loader import load

    c0 = cfgs[0]
    device = resolve_device(c0.device)
    ds = load(c0.data, device)
    K, B = len(cfgs), int(c0.train.batch_size)
    steps = len(ds.train) // B if c0.train.drop_last else -(-len(ds.train) // B)

    def train(n: int, on_epoch=None) -> list[float]:
        for c in cfgs:
            c.train.epochs = n
        seconds: list[float] = []

        def record(r):
            seconds.append(r.seconds)
            if on_epoch:
                on_epoch()

        trainer.train_pack(cfgs, on_epoch=record, dataset=ds)
        return seconds

    timed = train(epochs + 1)[1:]  # the first epoch warms up (allocations, cuBLAS handles)
    epoch_s = sum(timed) / len(timed)

    # Profile the second of two epochs: the pack's set-up and first epoch are the warm-up cycle.
    out: dict = {}

    def ready(prof) -> None:
        out.update(_summary(prof, device, top))
        events = _export(prof, trace)
        out.update(device_timeline(events, steps), phases=phase_times(events))

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    if device.type != "cuda":  # PyTorch's Kineto says on stderr where no GPU is profiled: `USDT: ... profiler_start`
        # and `ERROR: ... gpuGetDeviceCount failed`, alarming and meaningless here. It reads its log level once, as
        # the process's first profiler starts; on a GPU its level stays (its USDT level is above ERROR: CUPTI's
        # errors would go with it). A level the user set is theirs.
        os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    trainer.scope.enabled = True
    try:
        with warnings.catch_warnings(), torch_profile(activities=activities, on_trace_ready=ready,
                                                      schedule=schedule(wait=0, warmup=1, active=1)) as prof:
            warnings.filterwarnings("ignore", message=".*Profiler clears events")  # one cycle is all we want
            profiled = train(2, on_epoch=prof.step)
    finally:
        trainer.scope.enabled = False

    if c0.model.family == "mlp":
        floor_s, flops = matmul_floor(c0, K, (ds.input_dim, *c0.model.hidden, ds.num_classes), len(ds.test), steps)
        shape = f"hidden {list(c0.model.hidden)}"
    else:
        floor_s, flops = conv_floor(c0, K, ds.shape, ds.num_classes, len(ds.test), steps)
        shape = f"{c0.model.name} ({c0.model.blocks_per_stage} blocks per stage)"
    return {"device": trainer.device_name(device), "torch": torch.__version__, "runs": K, "steps": steps,
            "batch": B, "model": shape, "precision": enum_value(c0.precision),
            "floor_of": "matmul" if c0.model.family == "mlp" else
            "grouped convolution" if device.type != "cpu" else "convolution, one per run,",
            "epoch_s": epoch_s, "step_ms": 1e3 * epoch_s / steps, "profiled_epoch_s": profiled[1],
            "flops_per_epoch": flops, "floor_s": floor_s, **out,
            "launches_per_step": out["launches"] / steps if out.get("launches") else None}


def _export(prof, trace: Path | None) -> list[dict]:
    """The profiled epoch's Chrome trace events; written to `trace` too where one is asked for."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(raw))
        if trace:
            trace.parent.mkdir(parents=True, exist_ok=True)
            if trace.suffix == ".gz":
                with raw.open("rb") as f, gzip.open(trace, "wb") as g:
                    shutil.copyfileobj(f, g)
            else:
                shutil.copy(raw, trace)
        return json.loads(raw.read_text()).get("traceEvents", [])


def report(r: dict) -> str:
    lines = [f"# Profile: {r['runs']} run{'s' if r['runs'] != 1 else ''}, {r['model']}, batch {r['batch']}, "
             f"{r['precision']}",
             f"{r['device']}, torch {r['torch']}", "",
             f"epoch: {r['epoch_s']:.3f} s wall ({r['steps']} steps, {r['step_ms']:.2f} ms a step)",
             (f"arithmetic: {r['flops_per_epoch'] / 1e12:.3f} TFLOP an epoch; "
              f"floor {r['floor_s']:.3f} s (each {r['floor_of']} timed alone here) = "
              f"{100 * r['floor_s'] / r['epoch_s']:.0f}% of the epoch"),
             (f"profiled epoch: {r['profiled_epoch_s']:.3f} s wall (the profiler adds its own cost), "
              f"host {r['host_s']:.3f} s")
             + (f", device busy {r['device_busy_s']:.3f} s ({100 * r['device_busy_s'] / r['profiled_epoch_s']:.0f}%)"
                if r["device_busy_s"] is not None else ", no device timeline (CPU)")]
    if r["launches_per_step"]:
        lines.append(f"kernel launches: {r['launches_per_step']:.0f} a step from the host"
                     + (f"; kernels run on the device: {r['kernels_per_step']:.0f} a step (a CUDA graph's replay is "
                        "one launch of all of its kernels)" if r.get("kernels_per_step") else ""))
    gpu = r["device_busy_s"] is not None
    lines += ["", "| phase | calls | host s |" + (" device s |" if gpu else ""),
              "|---|---|---|" + ("---|" if gpu else "")]
    for name, p in r["phases"].items():
        lines.append(f"| {name} | {p['calls']} | {p['host_s']:.3f} |"
                     + ((f" {p['device_s']:.3f} |" if p["device_s"] is not None else " |") if gpu else ""))
    lines += ["", "```", r["table"].rstrip(), "```"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = command_line("vgsweep profile", __doc__.splitlines()[0])
    ap.add_argument("overrides", nargs="*", help="Hydra overrides; comma lists expand to the pack's runs")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs after the warm-up (default 2)")
    ap.add_argument("--top", type=int, default=15, help="operators in the table (default 15)")
    ap.add_argument("--trace", type=home_path, default=None, help="write a Chrome trace (.json or .json.gz)")
    ap.add_argument("--json", type=home_path, default=None, help="write the numbers as JSON")
    # a sweep's command with `profile` put in front (`vgsweep profile -m activation=relu,tanh`): its -m was
    # refused with every override after it ("unrecognized arguments: -m activation=relu,tanh")
    ap.add_argument("-m", "--multirun", action="store_true",
                    help="taken as a sweep's command line takes it: comma lists expand to the pack's runs either way")
    a = ap.parse_intermixed_args(argv)  # options among the overrides, as a sweep's command line has them
    for key in ("epochs", "top"):
        if getattr(a, key) < 1:
            raise ArgumentError(f"--{key}", getattr(a, key), "an int >= 1")
    for key in ("trace", "json"):  # where the results go, checked before the pack trains (not after)
        p = getattr(a, key)
        why = None if p is None else (f"{p} is a folder" if p.is_dir() else not_creatable(p.parent))
        if why:
            raise ArgumentError(f"--{key}", str(p), "a file that can be written", why)
    from hydra.errors import HydraException

    from vgsweep.data import DataError
    from vgsweep.hydra_compat import bad_input_message

    try:
        cfgs = pack_of(a.overrides)
        r = profile(cfgs, a.epochs, a.trace, a.top)
    except (ConfigError, DataError, HydraException) as e:
        message = bad_input_message(e) if isinstance(e, HydraException) else str(e)
        if message is None:
            raise
        print(f"vgsweep: {message}", file=sys.stderr)
        return 2
    print(report(r))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({k: v for k, v in r.items() if k != "table"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
