"""Activations, their derivatives, and weight initialisers: shared by every model family.

Adding an activation or an init scheme: one function here, one entry in the registry, one YAML
file in conf/activation or conf/init. The parametrised tests pick it up.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from vgsweep.config import GAINLESS_INITS

# --- activations --------------------------------------------------------------------------------
# Each takes (h, negative_slope) so that all share one signature; only leaky_relu reads the slope.
ACTIVATIONS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "logistic": lambda h, a: torch.sigmoid(h),
    "tanh": lambda h, a: torch.tanh(h),
    "relu": lambda h, a: F.relu(h),
    "leaky_relu": lambda h, a: F.leaky_relu(h, a),
    "swish": lambda h, a: F.silu(h),  # z * sigmoid(z), beta = 1: PyTorch's SiLU, one kernel each way
    "gelu": lambda h, a: F.gelu(h),
    "elu": lambda h, a: F.elu(h),
    "identity": lambda h, a: h,
}


# Their derivatives f'(z), written out (no autograd) for the saturation / dead-unit diagnostics.
_SQRT_2PI = math.sqrt(2 * math.pi)
DERIVATIVES: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "logistic": lambda z, a: torch.sigmoid(z) * (1 - torch.sigmoid(z)),
    "tanh": lambda z, a: 1 - torch.tanh(z) ** 2,
    "relu": lambda z, a: (z > 0).to(z.dtype),
    "leaky_relu": lambda z, a: torch.where(z > 0, 1.0, a).to(z.dtype),
    "swish": lambda z, a: torch.sigmoid(z) * (1 + z * (1 - torch.sigmoid(z))),
    "gelu": lambda z, a: 0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * torch.exp(-0.5 * z * z) / _SQRT_2PI,
    "elu": lambda z, a: torch.where(z > 0, 1.0, torch.exp(z)).to(z.dtype),
    "identity": lambda z, a: torch.ones_like(z),
}


# --- initialisers -------------------------------------------------------------------------------
# Each returns a weight of `shape` (float64), drawn with the run's own CPU generator; fan_in and
# fan_out are the layer's (a dense layer's in and out; a conv's channels x kernel area).
def _xavier(shape: tuple, fan_in: int, fan_out: int, g: torch.Generator, std: float) -> torch.Tensor:
    limit = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform, Keras' default
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * limit


def _he(shape: tuple, fan_in: int, fan_out: int, g: torch.Generator, std: float) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float64) * math.sqrt(2.0 / fan_in)


def _normal(shape: tuple, fan_in: int, fan_out: int, g: torch.Generator, std: float) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float64) * std


def _zero(shape: tuple, fan_in: int, fan_out: int, g: torch.Generator, std: float) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.float64)


def _torch_default(shape: tuple, fan_in: int, fan_out: int, g: torch.Generator, std: float) -> torch.Tensor:
    # nn.Linear / nn.Conv2d's reset_parameters: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound


INITS: dict[str, Callable[[tuple, int, int, torch.Generator, float], torch.Tensor]] = {
    "xavier": _xavier,
    "he": _he,
    "normal": _normal,
    "zero": _zero,
    "torch_default": _torch_default,
}


def init_weight(init: str, shape: tuple, fan_in: int, fan_out: int, g: torch.Generator, std: float,
                gain: float = 1.0) -> torch.Tensor:
    """A weight drawn by scheme `init`, times `gain` for the schemes that have no scale of their own
    (xavier, he, torch_default; `normal` has its std, zero stays zero)."""
    w = INITS[init](shape, fan_in, fan_out, g, std)
    return w if init in GAINLESS_INITS else w * gain


def init_bias(init: str, n: int, fan_in: int, g: torch.Generator) -> torch.Tensor:
    """Biases: zero (Keras) for every scheme but torch_default (U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's)."""
    if init == "torch_default":
        return (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) / math.sqrt(fan_in)
    return torch.zeros(n, dtype=torch.float64)
