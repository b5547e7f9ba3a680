"""Four adaptations to Hydra 1.3: numeric option names, bool keys that take true or false only (on
the command line and in config files), its refusals of a command line as one line, and a help text
that computes only the fields its template names.

Numeric option names (`depth=2,5`): Hydra 1.3 parses `depth=5` as the integer 5 and then refuses it
as a group choice ("Config group override must be a string or a list. Got int"); only `depth='5'`
would work. Before Hydra sorts the overrides, this turns the numeric value of an override whose key
names a config group into its string, so `depth=5` on the command line, `depth: 2,5` in an
experiment's sweep and `- override /depth: 5` in its defaults list all select conf/depth/5.yaml.
Numeric overrides of plain keys (`seed=3`) are untouched. A list as a group's option
(`activation=[relu,tanh]`, Hydra's merge of several options) is refused: vgsweep's options are alternatives.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

from hydra._internal import config_loader_impl, config_repository, defaults_list
from hydra._internal.hydra import Hydra
from omegaconf import DictConfig, OmegaConf

_orig_init = defaults_list.Overrides.__init__


def _init(self, repo, overrides_list):
    for o in overrides_list:
        v = getattr(o, "_value", None)
        group = o.key_or_group.lstrip("+")
        if (o.is_delete() or v is None) and not o.is_sweep_override() and _alternatives(group):
            _refuse_none(o, group)
        if o.is_sweep_override() or o.is_delete():
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool) and repo.group_exists(o.key_or_group):
            o._value = str(v)
        elif isinstance(v, list) and _alternatives(group):
            _refuse_list(group, v)
        elif group in _bool_keys() and not _a_switch(group, v):
            _refuse_bool(o)
    _orig_init(self, repo, overrides_list)


def _alternatives(group: str) -> bool:
    """Whether `group` is one of vgsweep's config groups, whose options are alternatives (one activation,
    one depth): not Hydra's own (hydra/callbacks takes a list)."""
    from vgsweep.config import CONF_DIR

    return not group.startswith("hydra") and (CONF_DIR / group).is_dir()


def _refuse_list(group: str, v: list) -> None:
    """`activation=[relu,tanh]` is Hydra's selection of several options of one group, merged into one
    config: it trained one tanh net (tanh's settings over relu's), where a sweep was meant; `[]` selected
    none and trained the schema's default (logistic); `[relu]` left the group out of the run's recorded
    choices."""
    names = [str(x) for x in v]
    if len(names) == 1:
        hint = f"one option is written without brackets: {group}={names[0]}"
    elif not names:
        hint = "an empty list selects none, and the schema's defaults would train"
    else:
        hint = (f"a list selects every option in it, merged into one config ({names[-1]}'s settings over the "
                "others'): " + ("run each study on its own (" + "; ".join(f"vgsweep experiment={n}" for n in names)
                                + ")" if group == "experiment" else
                                f"to train each, sweep them: vgsweep -m {group}={','.join(names)}"))
    _refuse_option(group, f"[{','.join(names)}]", hint)


def _refuse_none(o, group: str) -> None:
    """`~activation` (and `activation=null`, a traceback of Hydra's) selected no activation, and the schema's
    default trained (logistic), which the command did not name. A group that is empty by default (experiment,
    paper_column, vgg_row) may be emptied with `~group`."""
    if o.is_delete() and group not in _needed_groups():
        return
    _refuse_option(group, "(deleted)" if o.is_delete() else "null",
                   "with none, the schema's built-in defaults would train, not an option the command chose"
                   if group in _needed_groups() else f"~{group} selects none (as the default does)")


def _refuse_option(group: str, shown: str, hint: str) -> None:
    """vgsweep's one line for a group given no single option: `group=shown is not accepted; expected one option
    of group: a, b, c. hint`, raised as Hydra's refusal while composing."""
    from hydra.errors import ConfigCompositionException

    from vgsweep.config import ConfigError, Shown, group_options

    raise ConfigCompositionException(str(ConfigError(group, Shown(shown),
                                                     f"one option of {group}: " + ", ".join(group_options(group)),
                                                     hint)))


@functools.cache
def _needed_groups() -> frozenset[str]:
    """The groups conf/config.yaml's defaults list sets an option of (dataset, depth, model, ...)."""
    from vgsweep.config import CONF_DIR

    defaults = OmegaConf.load(CONF_DIR / "config.yaml").defaults
    return frozenset(k for d in defaults if isinstance(d, DictConfig) for k, v in d.items()
                     if v is not None and _alternatives(k))


# OmegaConf reads 1, 0, 3, yes, no, on, off into a bool field (`model.double_softmax=3` trained the
# double softmax); a bool key of vgsweep's takes true or false, as its README says, on the command
# line (above) and in a config file (_load_single_config, below).
_BOOL_KEYS: dict[str, dict[str, tuple[str, ...]]] = {}


def _bool_keys() -> dict[str, dict[str, tuple[str, ...]]]:
    """The dotted keys whose schema type is bool (the training config's, every model family's, the
    packed launcher's), each with the values another model family takes for the same key:
    `model.residual` is the MLP's switch and VGG's enum (none, processing)."""
    if not _BOOL_KEYS:
        import dataclasses
        import enum
        import typing

        from vgsweep.config import MODEL_SCHEMAS, Config

        types: dict[str, dict[str, object]] = {}

        def walk(schema, prefix, owner):
            hints = typing.get_type_hints(schema)
            for f in dataclasses.fields(schema):
                t = hints[f.name]
                if dataclasses.is_dataclass(t):
                    walk(t, f"{prefix}{f.name}.", owner)
                else:
                    types.setdefault(prefix + f.name, {})[owner] = t

        walk(Config, "", "")
        for family, schema in MODEL_SCHEMAS.items():
            walk(schema, "model.", family)
        try:
            from hydra_plugins.vgsweep_launcher.packed_launcher import PackedLauncherConf

            walk(PackedLauncherConf, "hydra.launcher.", "")
        except ImportError:  # the plugin is found beside the package; without it only its keys go unchecked
            pass
        for key, by_owner in types.items():
            others = {o: t for o, t in by_owner.items() if t is not bool}
            if len(others) < len(by_owner) and all(isinstance(t, type) and issubclass(t, enum.Enum)
                                                   for t in others.values()):
                _BOOL_KEYS[key] = {o: tuple(m.value for m in t) for o, t in others.items()}
    return _BOOL_KEYS


def _a_switch(key: str, v) -> bool:
    """Whether `v` is a value the bool key takes: true or false, or another family's value for it."""
    import enum

    return isinstance(v, (bool, enum.Enum)) or any(v in values for values in _bool_keys()[key].values())


def _accepted(key: str) -> str:
    others = _bool_keys()[key]
    return "true or false" + "".join(f", or with the {o} family one of {', '.join(vs)}" for o, vs in others.items())


def _refuse_bool(o) -> None:
    from hydra.errors import ConfigCompositionException

    from vgsweep.config import ConfigError

    key = o.key_or_group.lstrip("+")
    value = _value(o.input_line) if o.input_line else o._value
    raise ConfigCompositionException(str(ConfigError(key, value, _accepted(key))))


_orig_load_single_config = config_loader_impl.ConfigLoaderImpl._load_single_config
# config path (experiment/mine) -> (its file, its raw values at their package): the last loaded, so
# that a refusal of one of its values while Hydra merges it can name the file and the value
_LOADED: dict[str, tuple[str, DictConfig]] = {}


def _load_single_config(self, default, repo):
    """Hydra's loading of one config file (or structured config), then the same rule for the bool keys
    a file sets as for an override: `double_softmax: 1` in a user's experiment file is refused, not
    read as true. The result holds the file's raw values, placed at its package, before the merge into
    the schema converts them."""
    res = _orig_load_single_config(self, default, repo)
    name = f"{default.config_path}.yaml"
    path = str(Path(res.path.removeprefix("file://")) / name) if res.path.startswith("file://") else name
    if isinstance(res.config, DictConfig):
        _LOADED[default.config_path] = (path, res.config)
        for key in _bool_keys():
            node = res.config
            for part in key.split("."):
                node = node._get_node(part) if isinstance(node, DictConfig) and part in node else None
            if node is None or node._is_interpolation() or _a_switch(key, node._value()):
                continue
            from hydra.errors import ConfigCompositionException

            from vgsweep.config import ConfigError

            raise ConfigCompositionException(str(ConfigError(key, node._value(), _accepted(key), where=f" ({path})")))
    return res


_orig_create_defaults_list = config_repository.ConfigRepository._create_defaults_list


def _create_defaults_list(self, config_path, defaults):
    """A numeric option in a config file's defaults list (`- override /depth: 5`) names the option,
    as `depth=5` on the command line does; Hydra 1.3 stopped there with a traceback ("Unsupported
    item value in defaults : int")."""
    from omegaconf import read_write

    for item in defaults._iter_ex(resolve=False):
        if isinstance(item, DictConfig) and len(item) == 1:
            key = next(iter(item.keys()))
            v = item._get_node(key)._value()
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                with read_write(item):
                    item[key] = str(v)
    return _orig_create_defaults_list(self, config_path, defaults)


_hydras_get_help = Hydra.get_help


def _get_help(self, help_cfg, cfg, args_parser, resolve: bool) -> str:
    """Hydra's get_help with each field computed only where the template names it. Hydra lists every
    config group twice over (its own, $HYDRA_CONFIG_GROUPS, and the app's, $APP_CONFIG_GROUPS) whether
    the template shows them or not: a repository of the config search path built and copied per group,
    2 of `vgsweep --help`'s 2.5 s on two cores, for lists vgsweep's template does not show (its
    ${vgsweep_groups:} reads conf/ itself). The text is Hydra's, field for field."""
    import string

    def groups(hydra: bool):
        return lambda: self.format_config_groups(lambda x: (x.startswith("hydra/") or x == "hydra") == hydra)

    fields = {"FLAGS_HELP": lambda: self.format_args_help(args_parser), "HYDRA_CONFIG_GROUPS": groups(True),
              "APP_CONFIG_GROUPS": groups(False), "CONFIG": lambda: OmegaConf.to_yaml(cfg, resolve=resolve)}

    class Fields(dict):
        def __missing__(self, key):  # a field the template names: computed once; any other, Hydra's KeyError
            self[key] = fields[key]()
            return self[key]

    return string.Template(help_cfg.template).substitute(Fields())


if not getattr(defaults_list.Overrides.__init__, "_vgsweep", False):
    _init._vgsweep = True  # type: ignore[attr-defined]
    defaults_list.Overrides.__init__ = _init
    config_loader_impl.ConfigLoaderImpl._load_single_config = _load_single_config
    config_repository.ConfigRepository._create_defaults_list = _create_defaults_list
    Hydra.get_help = _get_help


# --- Hydra's refusals as one line ----------------------------------------------------------------
# Hydra refuses an unknown option, an unknown key, a value of the wrong type or an override it cannot
# parse with a message of five to twenty lines (the options one per line, the config search path, "Set
# the environment variable HYDRA_FULL_ERROR=1 ..."). vgsweep says the same in its one line: key, value,
# what is accepted.
def _value(override: str):
    """The value of `key=value` as Hydra parses it (1.5 a float, abc a string); the text if it cannot."""
    from vgsweep.config import Shown

    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        v = OverridesParser.create().parse_override(override).value()
        return v if isinstance(v, (int, float, str, bool)) or v is None else Shown(override.partition("=")[2])
    except Exception:  # noqa: BLE001 - shown as written
        return Shown(override.partition("=")[2])


_EXPECTED = [  # OmegaConf's type errors (first line) -> what is accepted
    (r"could not be converted to Integer", "an int"),
    (r"could not be converted to Float", "a number"),
    (r"is not a valid bool", "true or false"),
    (r"expected one of \[(.*)\]", None),  # an enum: its values
    (r"Cannot convert '\w+' to string", "a string"),
    (r"is not a ListConfig, list or tuple", "a list, e.g. [1,2]"),
    (r"is not a subclass of (\w+)", "one of its keys set on its own (key.subkey=value)"),
    (r"does not support deletion", "a value: vgsweep reads every key of its schema"),
]


# Hydra's sweeper plugins, by option name: what to install (optuna is vgsweep's [search] extra).
_SWEEPER_PLUGINS = {"optuna": "'vgsweep[search]' (hydra-optuna-sweeper; make install has it)",
                    "ax": "hydra-ax-sweeper", "nevergrad": "hydra-nevergrad-sweeper"}


def _known_keys(schema) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else []


def bad_input_message(e: BaseException) -> str | None:
    """vgsweep's one line for a command line that Hydra refused while composing, or None when `e` is
    not such a refusal."""
    from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    from vgsweep.config import CONF_DIR, ConfigError, Shown, first_leaf, group_options, unknown_key

    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    merging = re.search(r"^\s*full_key: (\S+)$", str(e), re.M)  # OmegaConf's words on an error of Python's own
    if merging and not isinstance(e, (HydraException, OmegaConfBaseException)):
        return _not_merged(e, merging.group(1), first)
    if isinstance(e, MissingConfigException) and "/" in (e.missing_cfg_file or ""):
        group, value = e.missing_cfg_file.rsplit("/", 1)
        options = group_options(group) if (CONF_DIR / group).is_dir() else list(e.options or [])
        named = re.match(r"In '([^']+)'", first)
        hint = f"named in conf/{named.group(1)}.yaml" if named and named.group(1) != "config" and \
            (CONF_DIR / f"{named.group(1)}.yaml").is_file() else ""
        accepted = "one of " + ", ".join(options) if options else f"an option of {group}"
        if group == "hydra/sweeper" and value in _SWEEPER_PLUGINS:
            hint = f"Hydra's {value} sweeper is a plugin: pip install {_SWEEPER_PLUGINS[value]}"
        return str(ConfigError(group, Shown(value), accepted, hint))
    if isinstance(e, OverrideParseException):
        key, _, value = str(e.override).partition("=")
        quote = (f"; a value with ~ goes in quotes: '{key}=\"{value}\"' (~ is the home folder in vgsweep's paths)"
                 if "~" in value and not value.startswith(("'", '"')) else "")
        return (f"invalid config: cannot parse the override {e.override!r} ({str(e.message or first).splitlines()[0]}); "
                "expected key=value, or key=a,b,c to sweep (https://hydra.cc/docs/advanced/override_grammar/basic/)"
                + quote)
    if re.search(r"BasicSweeper does not support sweep type", first):
        return ("invalid config: interval(...) and other sampled sweeps need a sweeper that samples "
                "(hydra/sweeper=optuna, see the README's \"Searching\"); Hydra's basic sweeper expands lists "
                "(a,b,c), range(...) and glob(...)")
    if (swept := _sweep_not_expanded(e)) is not None:
        return swept
    if isinstance(e, ConfigCompositionException) and first.startswith("invalid config"):
        return first  # vgsweep's own refusal while Hydra composes (_refuse_bool)
    if re.search(r"Error in call to target '[\w.]*OptunaSweeper'", first) and \
            isinstance(e.__cause__ or e.__context__, AssertionError):  # its one check: max_failure_rate in [0, 1]
        return str(ConfigError("hydra.sweeper.max_failure_rate", Shown(_given("hydra.sweeper.max_failure_rate")),
                               "a number from 0 to 1 (the share of a batch's trials that may fail before the search "
                               "stops)"))
    if not isinstance(e, ConfigCompositionException):
        return "invalid config: " + " ".join(str(e).split()) if isinstance(e, HydraException) else None
    cause = e.__cause__
    cause_first = str(cause).strip().splitlines()[0] if cause is not None and str(cause).strip() else ""
    sampler_key = re.search(r"Key '\w+' not in '\w*SamplerConfig'\s+full_key: (hydra\.sweeper\.sampler\.\w+)", str(e))
    if sampler_key:  # a key an experiment file sets that the sampler chosen on the command line lacks
        return _sampler_key_message(sampler_key.group(1), first)
    sweep = re.match(r"Ambiguous value for argument '([^']*)'", first)
    if sweep:
        return (f"invalid config: {sweep.group(1)} lists values to sweep over, in a single run; expected -m "
                "(--multirun) before the overrides to sweep, or key=[a,b] for a list value")
    in_file = re.match(r"In '([^']+)': \w+ raised while composing config", first)
    m = re.search(r"use \+(\S+)", str(e)) or re.match(r"Error merging override (.+)", first)
    where, item, said = "", False, ""  # said: the key as the command line names it
    if in_file and getattr(e.__context__, "full_key", None):  # a config file's key or value (Hydra raises
        cause = e.__context__                                  # it while handling OmegaConf's error)
        cause_first = str(cause).strip().splitlines()[0]
        key = str(cause.full_key)
        path, raw = _LOADED.get(in_file.group(1), (f"{in_file.group(1)}.yaml", None))
        where = f" ({path})"
        value = OmegaConf.select(raw, key, default=None, throw_on_resolution_failure=False) if raw is not None else None
        if re.match(r"Key '.*' not in", cause_first):  # an unknown key holding keys: name the first as written
            said, value = first_leaf(key, value)
        value = Shown("...") if value is None else value if isinstance(value, (int, float, str, bool)) else Shown(value)
    elif m is None:  # e.g. "+train=3": an item is already there; Hydra's own words, on one line
        return "invalid config: " + " ".join(str(e).split())
    else:
        override = m.group(1)
        said = override.partition("=")[0].lstrip("+~")
        key = str(getattr(cause, "full_key", "") or said)
        value = Shown("(deleted)") if override.startswith("~") else _value(override)
        item = "[" in key  # an item of a list: the override names the list
        if item:
            key = said
    if re.match(r"Key '.*' not in", cause_first):  # an unknown key
        err = unknown_key(said if said.startswith(key + ".") else key, value,  # train.noise.eta: name all of it
                          _known_keys(getattr(cause, "object_type", None)), key)
        return str(ConfigError(err.key, err.value, err.accepted, err.hint, where))
    for pattern, accepted in _EXPECTED:
        hit = re.search(pattern, cause_first)
        if hit:
            accepted = accepted or "one of " + hit.group(1)
            hint = ""
            if "subclass" in pattern:  # a group of keys given one value: `data=mnist` for `dataset=mnist`?
                groups = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name.startswith(key)
                                and str(value) in group_options(p.name))
                hint = f"did you mean {groups[0]}={value}?" if groups else ""
            return str(ConfigError(key, value, f"a list whose items are each {accepted}" if item else accepted, hint,
                                   where))
    if m is not None and not m.group(1).startswith("+") and re.match(r"Key '.*' is not in struct", cause_first):
        # a new key of a mapping that takes them (hydra.job.env_set.NAME): Hydra's grammar adds it with +
        return str(ConfigError(key, value, "a key the config has", f"+{said}={m.group(1).partition('=')[2]} adds "
                               "a new one", where))
    return str(ConfigError(key, value, "a value of the schema's type", cause_first or first, where))


def _sweep_not_expanded(e: BaseException) -> str | None:
    """A sweep override the sweeper failed to expand, as a traceback before any job: Hydra's basic sweeper
    on `seed=range(0,3,0)` (range() arg 3 must not be zero), Optuna's on a distribution it cannot make
    (`interval(0.1,0.001)`, `tag(log,interval(0,1))`, `range(5,0)`, a glob). The override is the one the
    sweeper was expanding (a local of the frame that raised)."""
    from hydra.core.override_parser.types import ValueType

    from vgsweep.config import ConfigError, Shown

    override, expanding, splitting, tb = None, False, False, e.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_name
        if name in ("split_arguments", "create_optuna_distribution_from_override"):
            override = tb.tb_frame.f_locals.get("override", override)
            expanding, splitting = name != "split_arguments", name == "split_arguments"
        elif name in ("sweep_iterator", "sweep_string_iterator"):  # raised expanding it, not after the loop
            expanding = True
        tb = tb.tb_next
    if splitting and not expanding and isinstance(e, AssertionError):  # its one check: max_batch_size > 0
        return str(ConfigError("hydra.sweeper.max_batch_size", Shown(_given("hydra.sweeper.max_batch_size")),
                               "a positive int (jobs launched at once), "
                               "or null for all of them"))
    if not expanding or not hasattr(override, "value_type"):
        return None
    said = " ".join(str(e).split()) or type(e).__name__
    kind = override.value_type
    if kind == ValueType.GLOB_CHOICE_SWEEP:  # Optuna's sweeper takes no glob (an AssertionError, no words)
        accepted, said = "a list of options (a,b,c) with Optuna's sweeper", "It does not expand glob(...)"
    elif kind == ValueType.INTERVAL_SWEEP:
        accepted = "interval(low, high) with low <= high, and low > 0 on a log scale (tag(log, ...))"
    elif kind == ValueType.RANGE_SWEEP:
        accepted = "range(start, stop, step) with a step that is not 0 (above 0, and start <= stop, for Optuna)"
    else:
        accepted = "a sweep the sweeper can expand"
    return str(ConfigError(override.key_or_group, Shown(override.get_value_string()), accepted, said))


def _given(key: str, missing: str | None = "?") -> str | None:
    """The value the command line gave `key` (its last `key=`, `+key=`, `++key=` or `~key=` override), as
    written: what a refusal of a value Hydra or a plugin checked in words of its own shows. `missing` where
    none gave it (an experiment file's value)."""
    given = [o.partition("=")[2] for o in sys.argv[1:] if o.lstrip("+~").partition("=")[0] == key]
    return given[-1] if given else missing


def _not_merged(e: BaseException, key: str, first: str) -> str:
    """An override OmegaConf failed to merge with an error of Python's own, which Hydra lets through as a
    traceback: `hydra.sweeper.params={activation: "relu,tanh"}` (a mapping into the sweeper's empty
    params: AttributeError: 'NoneType' object has no attribute 'get')."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from vgsweep.config import ConfigError, Shown

    given = _given(key, None)
    hint = f"OmegaConf could not merge it ({type(e).__name__}: {first})"
    if key.endswith("sweeper.params") and given is not None:  # the sweep it meant, as the overrides that give it
        try:
            params = OverridesParser.create().parse_override(f"{key}={given}").value()
            sweep = " ".join(f"{k}={v}" for k, v in params.items()) if isinstance(params, dict) else ""
        except Exception:  # noqa: BLE001 - not a mapping Hydra's grammar reads: no example
            sweep = ""
        hint = (f"a sweep's keys are overrides{f' ({sweep})' if sweep else ''}; hydra.sweeper.params is set in a "
                f"config file, such as an experiment's. {hint}")
    return str(ConfigError(key, Shown("..." if given is None else given),
                           "a value that merges into the config", hint))


def _sampler_key_message(full_key: str, first: str) -> str:
    """A key of hydra.sweeper.sampler that the chosen Optuna sampler lacks: an experiment file sets a
    search's seed (lr_search), and `hydra/sweeper/sampler=grid` has none."""
    from hydra.core.config_store import ConfigStore

    field = full_key.rsplit(".", 1)[1]
    store = ConfigStore.instance()
    try:
        names = [n.removesuffix(".yaml") for n in store.list("hydra/sweeper/sampler")]
        takers = [n for n in names if field in store.load(f"hydra/sweeper/sampler/{n}.yaml").node]
    except Exception:  # noqa: BLE001 - the plugin's samplers unreadable: name none
        names, takers = [], []
    named = re.match(r"In '([^']+)'", first)
    where = f" (set in conf/{named.group(1)}.yaml)" if named and named.group(1) != "config" else ""
    lacking = ", ".join(n for n in names if n not in takers)
    return (f"invalid config: {full_key}{where} is not a key of the chosen Optuna sampler; expected a sampler that "
            f"has it: hydra/sweeper/sampler={','.join(sorted(takers)) or '...'}"
            + (f". {lacking} has no {field}" if lacking else "")
            + (": a grid enumerates listed values (a,b,c), a search of intervals needs a sampler that samples"
               if "grid" in lacking else ""))


def job_env(config: DictConfig):
    """A context with the config's hydra.job.env_set in the environment, as Hydra's run_job sets it around
    a job's task (hydra.core.utils.env_override: restored after)."""
    from hydra.core.utils import env_override

    env = OmegaConf.select(config, "hydra.job.env_set") or {}
    return env_override({str(k): str(v) for k, v in env.items()})
