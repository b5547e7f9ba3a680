"""Benchmark: the paper grid as a plain PyTorch port would train it, one run at a time.

    python bench/port.py --data-root .devdata                        # on the GPU machine
    python bench/port.py --data-root ../shared/data --epochs 1 --limit-train 6000   # a CPU smoke

What a researcher porting the original TensorFlow code would write, with nothing of vgsweep's in the
timed loop: an nn.Sequential (Linear, activation; Glorot-uniform weights, zero biases; the gna_bn
runs with a BatchNorm1d after the last hidden activation, in its usual batch-statistics mode: the
original's frozen one costs the same), torch.optim.SGD(lr 3e-4, momentum 0.9), a
DataLoader over the training tensors (shuffled, last partial batch dropped, batches moved to the
device), the gradient noise added to every parameter's gradient before the step, the loss read
with `.item()` every step and the test set evaluated every epoch. No MLflow, no diagnostics, no
checkpoints (all of which vgsweep's runs have). The MNIST files are read with vgsweep's checked
loader (not timed).

Each depth and regime of one activation (tanh) is timed for --epochs epochs after one warm-up
epoch; an epoch costs the same for every activation within a few per cent, so the grid's time is
sum over depths and regimes of (seconds per epoch x 5 activations x 100 epochs), plus nothing for
start-up (which favours the port). Prints the table, the extrapolation, and each timed run's test
accuracy after its epochs (a check that the port learns).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NETS = {2: ([512, 512], 1024), 5: ([512, 512, 256, 256, 128], 512)}  # hidden widths, batch (DESIGN.md §1)
REGIMES = ("baseline", "gna", "gna_bn")
ACTIVATIONS = 5  # logistic, tanh, relu, leaky_relu, swish
EPOCHS = 100


def mnist(root: str, limit_train: int | None) -> tuple[torch.Tensor, ...]:
    """Train and test tensors on the CPU: pixels / 255 flattened, training inputs with N(0, 0.05^2) once."""
    from omegaconf import OmegaConf

    from vgsweep.data.loader import load

    d = OmegaConf.create({"name": "mnist", "root": root, "verify": True, "download": False,
                          "limit_train": limit_train, "limit_test": None, "val_size": 0, "split_seed": 0,
                          "pad_to": None, "mean": None, "std": None})
    ds = load(d, torch.device("cpu"))
    x = ds.train.x.flatten(1)
    x = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(42))
    return x, ds.train.y, ds.test.x.flatten(1), ds.test.y


def net(depth: int, regime: str) -> nn.Sequential:
    hidden, _ = NETS[depth]
    layers, d = [], 784
    for w in hidden:
        layers += [nn.Linear(d, w), nn.Tanh()]
        d = w
    if regime == "gna_bn":
        layers.append(nn.BatchNorm1d(d, eps=1e-3))
    layers.append(nn.Linear(d, 10))
    for m in layers:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


def train(depth: int, regime: str, data, device: torch.device, epochs: int) -> tuple[float, float]:
    """(seconds per epoch over the timed epochs, test accuracy after them) of one run."""
    xtr, ytr, xte, yte = data
    _, batch = NETS[depth]
    torch.manual_seed(42)
    model = net(depth, regime).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=3e-4, momentum=0.9)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xtr, ytr), batch_size=batch,
                                         shuffle=True, drop_last=True)
    xte, yte = xte.to(device), yte.to(device)
    times, acc = [], 0.0
    for epoch in range(epochs + 1):  # epoch 0 warms up (cuBLAS, allocator) and is not timed
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.train()
        total = 0.0
        std = 1.0 / (1 + epoch) ** 0.55  # the original code's noise: a standard deviation, per epoch
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            if regime != "baseline":
                with torch.no_grad():
                    for p in model.parameters():
                        p.grad.add_(torch.randn_like(p.grad) * std)
            opt.step()
            total += loss.item()  # a port's usual per-step host sync (its running loss), kept on purpose
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        if epoch:
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times), acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per run (after one warm-up epoch)")
    ap.add_argument("--limit-train", type=int, default=None, help="fewer training examples (CPU smoke)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tf32", action="store_true", help="TF32 matrix products (fp32 otherwise)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = a.tf32
    device = torch.device(a.device)
    data = mnist(a.data_root, a.limit_train)
    rows, grid = [], 0.0
    for depth in NETS:
        for regime in REGIMES:
            sec, acc = train(depth, regime, data, device, a.epochs)
            grid += sec * ACTIVATIONS * EPOCHS
            rows.append({"depth": depth, "regime": regime, "epoch_s": sec, "test_acc": acc})
            print(f"depth {depth}, {regime}: {sec:.3f} s an epoch; test accuracy {100 * acc:.2f}% after "
                  f"{a.epochs + 1} epochs", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    result = {"date": date.today().isoformat(), "torch": torch.__version__, "python": platform.python_version(),
              "device": name, "tf32": a.tf32, "limit_train": a.limit_train, "runs": rows, "grid_s": grid}
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))
    n = a.limit_train or 60000
    print(f"\n{name}, torch {torch.__version__}, {'tf32' if a.tf32 else 'fp32'}, {n} training examples: the paper "
          f"grid (30 runs x {EPOCHS} epochs) as a plain PyTorch port, one run at a time: {grid:.0f} s "
          f"({grid / 60:.1f} min) of epochs, extrapolated from {a.epochs} timed epochs of each depth and regime")


if __name__ == "__main__":
    main()
