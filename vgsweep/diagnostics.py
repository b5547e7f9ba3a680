"""What happens to the gradients: per-layer statistics, each run's record of them, and a verdict per run.

Per run, per weight layer (dense or conv kernel), per epoch (averaged over `grad_samples` evenly
spaced steps, the last step included):
  grad/<layer>/{mean_abs,std,norm}        the gradient before the added noise
  grad_noisy/<layer>/{mean_abs,std,norm}  the gradient the optimiser used (after the noise)
  update_ratio/<layer>                    ||step|| / ||weights|| of the optimiser's step
Per hidden unit layer, from one pass over `probe_examples` training inputs at the end of each epoch:
  units/<hidden>/saturated  fraction of (example, unit) pairs with f'(z) < saturation_threshold
                            (a conv's units are its channels, each at every position)
  units/<hidden>/dead       fraction of units with f'(z) < threshold on every probe example
                            (and position; for ReLU: never active)
Layers are named by the model family (dense1... for the MLP, s1.b1.conv1... for VGG).
Plus a histogram of log10|g| per layer at the last step of each epoch, before and after the noise.
They are measured on the device (vgsweep/probe.py: everything stays there until the trainer's one host
copy per epoch); this module holds a run's record of them and the verdict: numpy only, so the results
commands start without torch.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

GRAD_COLS = ("grad/mean_abs", "grad/std", "grad/norm", "grad_noisy/mean_abs", "grad_noisy/std",
             "grad_noisy/norm", "update_ratio")


def default_layer_names(n: int) -> list[str]:
    return [f"dense{i + 1}" for i in range(n)]  # the MLP's; records from before names were stored


def default_unit_names(n: int) -> list[str]:
    return [f"hidden{i + 1}" for i in range(n)]


@dataclass
class RunDiagnostics:
    """All epochs of one run: grad (E, L, 7), hist (E, 2, L, bins), saturated/dead (E, H), and the
    names of the L weight layers (input side first) and H unit layers."""

    grad: np.ndarray
    hist: np.ndarray
    saturated: np.ndarray
    dead: np.ndarray
    hist_edges: np.ndarray
    layers: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.layers = list(self.layers) or default_layer_names(self.grad.shape[1])
        self.units = list(self.units) or default_unit_names(self.saturated.shape[1])

    @classmethod
    def from_epochs(cls, epochs: list[dict], hist_min: float, hist_max: float, layers: list[str] | None = None,
                    units: list[str] | None = None) -> "RunDiagnostics":
        nb = epochs[0]["hist"].shape[-1]
        return cls(np.stack([e["grad"] for e in epochs]), np.stack([e["hist"] for e in epochs]),
                   np.stack([e["saturated"] for e in epochs]), np.stack([e["dead"] for e in epochs]),
                   np.linspace(hist_min, hist_max, nb + 1), layers or [], units or [])

    def to_npz(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, grad=self.grad.astype(np.float32), hist=self.hist.astype(np.float32),
                            saturated=self.saturated.astype(np.float32), dead=self.dead.astype(np.float32),
                            hist_edges=self.hist_edges, grad_cols=np.array(GRAD_COLS),
                            layers=np.array(self.layers), hidden=np.array(self.units))
        return buf.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> "RunDiagnostics":
        z = np.load(io.BytesIO(data))
        return cls(z["grad"], z["hist"], z["saturated"], z["dead"], z["hist_edges"],
                   [str(x) for x in z["layers"]] if "layers" in z else [],
                   [str(x) for x in z["hidden"]] if "hidden" in z else [])

    def metrics(self, epoch: int) -> dict[str, float]:
        """The MLflow metrics of one epoch."""
        out = {}
        for li, name in enumerate(self.layers):
            for ci, col in enumerate(GRAD_COLS):
                kind, _, stat = col.partition("/")
                out[f"{kind}/{name}/{stat}" if stat else f"{kind}/{name}"] = float(self.grad[epoch, li, ci])
        for hi, name in enumerate(self.units):
            out[f"units/{name}/saturated"] = float(self.saturated[epoch, hi])
            out[f"units/{name}/dead"] = float(self.dead[epoch, hi])
        return out


def first_to_last(d: RunDiagnostics) -> float:
    """The first weight layer's mean |gradient| over the last layer's, averaged over the epochs: the
    vanishing verdict's ratio (per weight, not the norm: layers differ in size by orders of magnitude)."""
    m = d.grad[:, :, GRAD_COLS.index("grad/mean_abs")]
    return float(np.mean(m[:, 0] / np.maximum(m[:, -1], 1e-30)))


def verdict(d: RunDiagnostics | None, final_test_acc: float | None, num_classes: int, vcfg,
            diverged: bool = False) -> tuple[str, str]:
    """(verdict, reason with the numbers). The first that applies: exploding, vanishing, dead_units,
    not_learning, healthy. Without diagnostics only exploding (diverged) and not_learning are known."""
    norm, mag = GRAD_COLS.index("grad/norm"), GRAD_COLS.index("grad/mean_abs")
    if diverged:
        return "exploding", "the training loss became NaN or inf"
    if d is not None:
        g = d.grad[:, :, norm]  # (E, L)
        if np.nanmax(g) > vcfg.explode_norm:
            e, layer = np.unravel_index(np.nanargmax(g), g.shape)
            return "exploding", (f"gradient norm {g[e, layer]:.3g} at {d.layers[layer]}, epoch {e + 1} > "
                                 f"{vcfg.explode_norm:g}")
        m = d.grad[:, :, mag]
        ratio = first_to_last(d)
        # a zero init's symmetric net, every unit above it off, or a gradient shrunk past float32 on its way
        # down (a 1000-layer logistic net's: each layer's derivative at most 1/4)
        if m.size and np.all(m[:, 0] == 0):
            return "vanishing", ("no gradient reaches the first layer: exactly 0 at every measured step (the "
                                 "layers above pass none back: zero weights, every unit off, or a gradient shrunk "
                                 "layer by layer below float32's smallest number, about 1e-45)")
        if ratio < vcfg.vanish_ratio:
            return "vanishing", (f"first layer's mean |gradient| is {ratio:.2g} x the last layer's "
                                 f"(mean over epochs) < {vcfg.vanish_ratio:g}")
        # The first layer's fall over training beyond the output layer's: a loss near zero (a net that
        # has learned) shrinks every layer's gradient alike, which is not vanishing.
        own = float(m[-1, 0] / max(m[0, 0], 1e-30))
        collapse = own / max(float(m[-1, -1] / max(m[0, -1], 1e-30)), 1e-30)
        if collapse < vcfg.collapse_ratio:
            return "vanishing", (f"first layer's mean |gradient| fell to {own:.2g} x its first-epoch value, "
                                 f"{collapse:.2g} x the last layer's fall < {vcfg.collapse_ratio:g}")
        dead = d.dead[-1]
        if dead.size and float(dead.max()) > vcfg.dead_fraction:
            h = int(dead.argmax())
            return "dead_units", f"{100 * dead[h]:.0f}% of {d.units[h]}'s units are dead > {100 * vcfg.dead_fraction:.0f}%"
    if final_test_acc is not None and final_test_acc < vcfg.chance_factor / num_classes:
        return "not_learning", (f"final test accuracy {100 * final_test_acc:.2f}% < {vcfg.chance_factor:g} x chance "
                                f"({100 / num_classes:.0f}%)")
    return "healthy", "no gradient or accuracy criterion applies"
