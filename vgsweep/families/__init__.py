"""Model families: one module each (see base.py for what a family provides), chosen by `model.family`.

Adding a family: a module here with shape_key, order_key, build, bytes_per_run and step_tensor_bytes,
its entry in FAMILIES, its schema in vgsweep/config.py (MODEL_SCHEMAS) and one YAML per option in conf/model/.
"""

from __future__ import annotations

from types import ModuleType

from vgsweep.families import mlp, vgg

FAMILIES: dict[str, ModuleType] = {"mlp": mlp, "vgg": vgg}


def family_of(cfg) -> ModuleType:
    return FAMILIES[cfg.model.family]
