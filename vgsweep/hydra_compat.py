"""Let config groups have numeric option names (`depth=2,5`).

Hydra 1.3 parses `depth=5` as the integer 5 and then refuses it as a group choice ("Config group
override must be a string or a list. Got int"); only `depth='5'` would work. Before Hydra sorts
the overrides, this turns the numeric value of an override whose key names a config group into
its string, so `depth=5` on the command line and `depth: 2,5` in an experiment file both select
conf/depth/5.yaml. Numeric overrides of plain keys (`seed=3`) are untouched.
"""

from __future__ import annotations

from hydra._internal import defaults_list

_orig_init = defaults_list.Overrides.__init__


def _init(self, repo, overrides_list):
    for o in overrides_list:
        v = getattr(o, "_value", None)
        if (isinstance(v, (int, float)) and not isinstance(v, bool) and not o.is_sweep_override()
                and repo.group_exists(o.key_or_group)):
            o._value = str(v)
    _orig_init(self, repo, overrides_list)


if not getattr(defaults_list.Overrides.__init__, "_vgsweep", False):
    _init._vgsweep = True  # type: ignore[attr-defined]
    defaults_list.Overrides.__init__ = _init
