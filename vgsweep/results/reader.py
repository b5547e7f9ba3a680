"""The one reader of runs: everything the table, the figures and the report show comes through here,
from MLflow alone."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from vgsweep import tracking
from vgsweep.config import HASH_NEUTRAL, excluded, inert_keys, schema_keys
from vgsweep.diagnostics import RunDiagnostics

ENDED = ("FINISHED", "FAILED", "KILLED")
TAGS = {"config_hash": tracking.TAG_HASH, "verdict": "vgsweep.verdict", "verdict_reason": "vgsweep.verdict_reason",
        "failure": tracking.TAG_FAILURE, "failed_epoch": "vgsweep.failed_epoch", "overrides": tracking.TAG_OVERRIDES,
        "parameters": "vgsweep.parameters", "made_by": "vgsweep.git_commit", "made_with": "vgsweep.torch_version",
        "made_on": "vgsweep.device", "confirm": tracking.TAG_CONFIRM}
DATA = {f"data:{s}": s for s in tracking.SPLITS}  # runs_frame's columns of the digests of the data a run saw
# MLflow draws a progress bar for every artifact it downloads: a report reads one file per run (its
# diagnostics), and 60 runs printed 120 bars of "Downloading artifacts" around the figures' paths.
# The environment still decides where it says so.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def open_experiment(uri: str, experiment: str):
    """(client, experiment) or SystemExit saying what to do."""
    client = tracking.client_for(uri)
    exp = tracking.retry(client.get_experiment_by_name, experiment)
    if exp is None:
        there = experiments(uri)
        raise SystemExit(f"vgsweep: no experiment {experiment!r} in {tracking.hide_passwords(uri)}: "
                         + (f"its experiments with training runs are {', '.join(map(repr, there))} (--experiment)"
                            if there else "run a sweep first (or pass --experiment / --tracking-uri)"))
    return client, exp


def folder(experiment: str) -> str:
    """The experiment's folder under results/figures/: its name, where that is one plain folder name.
    Otherwise / \\ { } (and a name of dots only) become _ and a short hash of the name is added, so that two
    experiments never share a folder: an MLflow name such as /Users/me/study would be an absolute path,
    ../x a folder outside results/, a/b a nested one that figures.tex cannot name, and a brace one that
    LaTeX cannot read in a path. A name too long for a folder is cut, with the hash."""
    safe = re.sub(r"[/\\{}\x00]", "_", experiment)
    if not safe.strip("."):
        safe = safe.replace(".", "_")
    if safe == experiment and len(safe.encode()) <= 120:
        return safe
    while len(safe.encode()) > 120:
        safe = safe[:-1]
    return f"{safe}-{hashlib.sha256(experiment.encode()).hexdigest()[:8]}"


def store_args(ap) -> None:
    """The options every results command takes: which store, which experiment."""
    from vgsweep.config import nonempty

    ap.add_argument("--tracking-uri", default=None, type=nonempty,
                    help="MLflow tracking URI (default: MLFLOW_TRACKING_URI where it is set, else "
                         "the project's mlflow.db)")
    ap.add_argument("--experiment", default=None, type=nonempty,
                    help="one MLflow experiment (default: every one with runs)")


# --- --where: the runs of a results command -------------------------------------------------------
# A group named as on the sweep's command line (`--where activation=relu`): the key its option sets.
GROUP_KEYS = {"dataset": "data.name", "depth": "model.depth"}


def where_arg(ap) -> None:
    ap.add_argument("--where", action="append", default=[], type=where_item, metavar="KEY=VALUE",
                    help="only the runs whose config has this value (or one of a,b,c; range(0,5) too), as the sweep's "
                         "command line writes it: --where train.epochs=100 --where seed=0,1,2; a config group "
                         "names its option (activation=relu, or 'activation=glob(*relu)'). Repeat for several keys "
                         "(all must hold)")


class Where(NamedTuple):
    """One `--where` condition: the key, the values it accepts, and the condition as written."""

    key: str
    values: list
    text: str

    def __str__(self) -> str:
        return self.text


def where_item(item: str) -> Where:
    """`--where key=value` parsed with Hydra's override grammar (a,b,c; range(...); [1,2] a list value),
    the key checked against the training config's (a group's name stands for the key its option sets).
    Anything else is argparse's error: one line, exit 2, before anything is read."""
    import argparse

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob

    from vgsweep.config import CONF_DIR, group_options, unknown_key

    key, eq, written = item.partition("=")
    try:
        if not eq or not key.strip() or not written.strip():
            raise ValueError("no key=value")
        o = OverridesParser.create().parse_override(item)
        if isinstance(o.value(), Glob):  # glob(*relu): of a group's options, as a sweep's
            if not (CONF_DIR / key.strip()).is_dir():
                raise ValueError(f"glob(...) picks options of a config group (activation=glob(*relu)); {key} is none")
            values = o.value().filter(group_options(key.strip()))
        else:
            values = list(o.sweep_iterator()) if o.is_sweep_override() else [o.value()]
    except Exception as e:  # noqa: BLE001 - Hydra's parser says why in its own words
        raise argparse.ArgumentTypeError(f"{item!r} is not KEY=VALUE (or KEY=a,b,c) as Hydra's overrides write it: "
                                         + " ".join(str(e).split())[:200]) from None
    key = key.strip()
    known = schema_keys()
    if key not in known:
        name = GROUP_KEYS.get(key, f"{key}.name")
        if (CONF_DIR / key).is_dir() and name in known:
            return _checked(Where(name, values, item), key)
        parts = key.split(".")
        prefixes = {".".join(k.split(".")[:i]) for k in known for i in range(1, k.count(".") + 1)}
        if key in prefixes:  # `train=3`: a node of keys
            raise argparse.ArgumentTypeError(f"{key} holds keys of its own; expected one of them: "
                                             + ", ".join(k for k in known if k.startswith(key + ".")))
        i = next(i for i in range(len(parts)) if ".".join(parts[:i + 1]) not in prefixes)  # the first unknown part
        if ".".join(parts[:i + 1]) in known:  # `seed.x=1`: under a key that holds a value
            raise argparse.ArgumentTypeError(f"{key} is not a key of the runs' config; expected "
                                             f"{'.'.join(parts[:i + 1])}=VALUE (it holds a value, not keys)")
        parent = ".".join(parts[:i])
        siblings = {k.split(".")[i] for k in known if not parent or k.startswith(parent + ".")}
        e = unknown_key(key, values, siblings, ".".join(parts[:i + 1]) if i + 1 < len(parts) else None)
        hint = "" if e.hint == "vgsweep reads no other key" else f". {e.hint}"
        raise argparse.ArgumentTypeError(f"{key} is not a key of the runs' config; expected {e.accepted}{hint}")
    return _checked(Where(key, values, item), key)


def _checked(where: Where, written: str) -> Where:
    """`where`, each of its values one the key can hold (_unaccepted); else argparse's error, naming the key
    as written (`activation`, for activation.name)."""
    import argparse

    for v in where.values:
        if (expected := _unaccepted(where.key, v)) is not None:
            raise argparse.ArgumentTypeError(f"{written}={_text(v)} is not accepted; expected {expected}")
    return where


def _text(value) -> str:
    """A value as an override writes it: null, true, [1, 2]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_text, value)) + "]"
    return str(value)


def _unaccepted(key: str, value) -> str | None:
    """What `key` holds where `value` (as Hydra parsed it) is none of it, else None: `seed=abc` (an int), a
    typo in one of several options (`activation=relu,tanhh`) that would leave its runs out unsaid."""
    import enum
    import math
    import typing

    from vgsweep.config import MODEL_SCHEMAS, group_options, schema_hint
    from vgsweep.data.sets import DATASETS

    hint = schema_hint(key)
    if typing.get_origin(hint) is typing.Union:  # Optional[X]: X or null
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    names = {"activation.name": lambda: group_options("activation"), "init.name": lambda: group_options("init"),
             "optimizer.name": lambda: group_options("optimizer"), "data.name": lambda: sorted(DATASETS),
             "model.family": lambda: list(MODEL_SCHEMAS)}  # the closed sets, read only for their own key
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key in names:
        options = names[key]()
        return None if str(value) in options else "one of " + ", ".join(options)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        options = [m.value for m in hint]
        return None if str(value) in options else "one of " + ", ".join(options)
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if number and float(value).is_integer() else "an int"
    if hint is float:
        return None if number and math.isfinite(value) else "a float (NaN and inf match no run)"
    if typing.get_origin(hint) is list:
        item = typing.get_args(hint)[0]
        ok = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                             and (item is float or float(v).is_integer()) for v in value)
        return None if ok else f"a list of {item.__name__}s, e.g. {'[512,512]' if item is int else '[0.5]'}"
    return None


def _typed(value):
    """A param as MLflow holds it (a string: '5', '0.0003', 'True', 'None', '[512, 512]') or an override's
    value (Hydra's: 5, 3e-4, True, None, [512, 512]) in one form, so that equal settings compare equal."""
    if isinstance(value, (list, tuple)):
        return tuple(_typed(v) for v in value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    s = str(value).strip()
    if s in ("True", "False", "true", "false"):
        return s.lower() == "true"
    if s in ("None", "null"):
        return None
    if s.startswith("[") and s.endswith("]"):
        import yaml

        try:
            return _typed(yaml.safe_load(s))
        except yaml.YAMLError:
            return s
    try:
        return float(s)
    except ValueError:
        return s


def select(df: pd.DataFrame, where: list[Where]) -> pd.DataFrame:
    """The runs (rows of runs_frame) whose params meet every condition; a key no run has matches none."""
    for key, values, _ in where:
        if df.empty:
            break
        if key not in df:
            return df.iloc[0:0]
        wanted = [_typed(v) for v in values]
        keep = df[key].map(lambda p: any(_equal(_typed(p), w) for w in wanted))
        df = df[keep.astype(bool)]
    return df


def _equal(a, b) -> bool:
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def unmatched(df: pd.DataFrame, where: list[Where]) -> list[str]:
    """Each value of `where` that no run of df holds, as key=value: the 22 of `--where seed=0,1,22`."""
    out = []
    for key, values, _ in where:
        held_here = {_typed(p) for p in df[key].dropna()} if key in df else set()
        out += [f"{key}={_text(v)}" for v in values if not any(_equal(_typed(v), h) for h in held_here)]
    return out


def held(frames: list[pd.DataFrame], where: list[Where], most: int = 12) -> str:
    """What the runs of `frames` hold of each key of `where`: `seed 0, 1, 2, 42; model.depth 2`
    ('' where they hold none of them)."""
    def order(v: str):
        t = _typed(v)
        return (0, t, "") if isinstance(t, float) else (1, 0.0, str(v))

    parts = []
    for key in dict.fromkeys(w.key for w in where):
        values = sorted({str(v) for f in frames if key in f for v in f[key].dropna()}, key=order)
        if values:
            shown = ", ".join(values[:most]) + (f", ... ({len(values)} values)" if len(values) > most else "")
            parts.append(f"{key} {shown}")
    return "; ".join(parts)


def none_where(uri: str, where: list[Where], frames: list[pd.DataFrame]) -> str:
    """The line of a results command whose `--where` leaves no run: what the store's runs hold instead."""
    have = held(frames, where)
    return (f"vgsweep: no ended run in {tracking.hide_passwords(uri)} where {said(where)}"
            + (f"; the ended runs have {have}" if have else ""))


def said(where: list[Where]) -> str:
    """The conditions as a clause: `train.epochs=100 and seed=0,1,2` ('' for none)."""
    return " and ".join(map(str, where))


def activation_arg(ap) -> None:
    from vgsweep.config import group_options

    ap.add_argument("--activation", default="logistic", choices=group_options("activation"),
                    help="activation of the gradient-distribution figure (default: logistic; where the "
                         "experiment has no run of it, its first activation)")


def store_uri(tracking_uri: str | None, must_exist: bool = True) -> str:
    """The store a results command reads (--tracking-uri, else MLFLOW_TRACKING_URI's, else the project's),
    checked before anything is read as a sweep checks it: a URI that names no store, a file that is not an
    MLflow store or a server that does not answer is an ArgumentError (one line, exit 2). Reading never
    creates a store: a missing SQLite file is SystemExit (exit 1), saying to run a sweep first."""
    from vgsweep.config import ArgumentError, ConfigError, expand_home
    from vgsweep.preflight import check_store

    uri = expand_home(tracking_uri) if tracking_uri else tracking.default_uri()
    key = "--tracking-uri" if tracking_uri or tracking.environment_uri() is None else tracking.ENV_URI
    try:
        check_store(uri, key)
    except ConfigError as e:
        raise ArgumentError(e.key, e.value, e.accepted, e.hint) from None
    p = tracking.sqlite_path(uri)
    if must_exist and p is not None and not p.is_file():
        raise SystemExit(f"vgsweep: no store at {p}" + (f" (where {key} points)" if key == tracking.ENV_URI else "")
                         + ": run a sweep first (or pass --tracking-uri)")
    return uri


def out_dir(key: str, p: Path) -> Path:
    """An output folder that exists or can be made (the sweep's check), else an ArgumentError before
    anything is read."""
    from vgsweep.config import ArgumentError, ConfigError
    from vgsweep.preflight import check_dir

    try:
        check_dir(key, p)
    except ConfigError as e:
        raise ArgumentError(e.key, e.value, e.accepted, e.hint) from None
    return p


def chosen(uri: str, experiment: str | None, also=None) -> list[str]:
    """The experiment named, or every one of the store with training runs (or for which `also(experiment)`
    is true); SystemExit if there are none."""
    names = [experiment] if experiment else experiments(uri, also)
    if not names:
        raise SystemExit(f"vgsweep: no training runs in {tracking.hide_passwords(uri)}: run a sweep first "
                         "(or pass --tracking-uri)")
    return names


def experiments(uri: str, also=None) -> list[str]:
    """Names of the experiments of the store that hold training runs (or for which `also(experiment)` is
    true), oldest first."""
    client = tracking.client_for(uri)
    out = []
    for e in sorted(tracking.retry(client.search_experiments), key=lambda e: e.creation_time or 0):
        if (also is not None and also(e)) or tracking.has_training_runs(client, e.experiment_id):
            out.append(e.name)
    return out


def runs_frame(client, exp_id: str, statuses: tuple[str, ...] = ENDED) -> pd.DataFrame:
    """One row per training run with one of `statuses`: its params as columns (keys added in later
    versions filled with the value that meant their old behaviour), run_id, run_name, status,
    start_time, artifact_uri, the vgsweep tags (TAGS) and the last value of every metric (accuracies in [0, 1])."""
    flt = (f"attributes.status = '{statuses[0]}'" if len(statuses) == 1
           else "attributes.status != 'RUNNING'" if "RUNNING" not in statuses else "")  # MLflow's filters have no OR
    rows = []
    for r in tracking.training_runs(client, exp_id, flt):
        if r.info.status not in statuses:
            continue
        row = {**r.data.params, "run_id": r.info.run_id, "run_name": r.info.run_name, "status": r.info.status,
               "start_time": r.info.start_time, "artifact_uri": r.info.artifact_uri}
        row.update({k: r.data.tags.get(t, "") for k, t in TAGS.items()})
        row.update({f"metric:{k}": v for k, v in r.data.metrics.items()})
        row.update({f"data:{c}": d for c, d in tracking.data_digests(r).items()})
        rows.append(row)
    return fill_neutral(pd.DataFrame(rows))


def one_family(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The runs of the experiment's model family (that of most of its runs, the MLP's on a tie), and a
    sentence naming those of another, which its table and figures leave out ('' where none): an MLP's
    table has no place for a VGG (no model.depth), a VGG's none for an MLP (`model=vgg08` swept into the
    MLP study's experiment beside its MLPs)."""
    if "model.family" not in df or df["model.family"].nunique() < 2:
        return df, ""
    counts = df["model.family"].value_counts()
    family = sorted(counts.index, key=lambda f: (-counts[f], f != "mlp", f))[0]
    left = df[df["model.family"] != family]
    others = ", ".join(f"{n} run{'s' if n > 1 else ''} of model.family={f}"
                       for f, n in left["model.family"].value_counts().items())
    kept = len(df) - len(left)
    wheres = " or ".join(f"--where model.family={f}" for f in left["model.family"].value_counts().index)
    return df[df["model.family"] == family], (
        f"Left out: {others}, beside the experiment's {kept} {family} run{'s' if kept > 1 else ''}: one table "
        f"cannot hold two model families; {wheres} tables them, or train each family into an experiment of its "
        "own (tracking.experiment=...).")


def fill_neutral(df: pd.DataFrame) -> pd.DataFrame:
    """Runs recorded before a key existed ran with its neutral value (config.HASH_NEUTRAL): say so."""
    if df.empty:
        return df
    df = df.copy()
    for col, neutral in HASH_NEUTRAL.items():
        df[col] = df[col].fillna(str(neutral)) if col in df else str(neutral)
    return df


def blank_inert(df: pd.DataFrame, keep=()) -> pd.DataFrame:
    """Each run's settings that change nothing it computes (config.inert_keys: `init.std` of a xavier
    run, the noise schedule of a run without noise) as "", but the `keep` columns (a study's axes)."""
    if df.empty:
        return df
    inert = [inert_keys(row) for row in df.to_dict("records")]
    df = df.copy()
    for k in {k for ks in inert for k in ks if k in df.columns and k not in keep}:
        df[k] = df[k].astype(object).where([k not in ks for ks in inert], "")
    return df


def told_apart(df: pd.DataFrame, name: str = "run_name") -> pd.Series:
    """Per row (a run), its `name` column, and where another row shares that name, the settings that tell
    it from them (a name shows the data set, depth, activation, regime and seed: `optimizer.lr=0.01,1e30`
    gives two runs of one name): `mnist-d2-relu-baseline-s42 optimizer.lr=1e+30`. Settings that do nothing
    in a run are left out. Call on runs_frame's rows (fill_neutral applied)."""
    out = df[name].fillna("").astype(str) if name in df else pd.Series("", index=df.index, dtype=object)
    known = set(schema_keys())
    for _, idx in out[out != ""].groupby(out[out != ""]).groups.items():
        if len(idx) < 2:
            continue
        part = blank_inert(df.loc[idx])
        cols = [c for c in sorted(part.columns) if c in known and not excluded(c)
                and part[c].nunique(dropna=False) > 1]
        for i, row in zip(idx, part[cols].to_dict("records")):
            settings = " ".join(f"{c}={v}" for c, v in row.items() if v != "" and v == v)
            if settings:
                out.loc[i] = f"{out.loc[i]} {settings}"
    return out


def config_keys(df: pd.DataFrame, blank_inert: bool = True) -> pd.Series:
    """Per run, what it computes: its config's params but those that change nothing (config.HASH_EXCLUDE:
    the store, the device, ...; config.inert_keys: `init.std` of a xavier run, ...), as one string. Runs
    of one config hash share it; so do runs recorded before vgsweep hashed inert settings at their
    defaults (config.effective), where `init=xavier init.std=0.01` and `init.std=0.1` were two hashes.
    Call on runs_frame's rows (fill_neutral applied). blank_inert=False: the inert settings as given."""
    known = set(schema_keys())
    cols = sorted(c for c in df.columns if c in known and not excluded(c))
    out = []
    for row in df[cols].astype(object).where(df[cols].notna(), "").astype(str).to_dict("records"):
        inert = inert_keys(row) if blank_inert else ()
        out.append("\0".join(f"{k}={'' if k in inert else v}" for k, v in row.items()))
    return pd.Series(out, index=df.index, dtype=object)


def one_per_config(df: pd.DataFrame) -> pd.DataFrame:
    """The run that speaks for each config (config_keys): the newest FINISHED one, else the newest other."""
    if df.empty:
        return df
    return (df.assign(_fin=df["status"].eq("FINISHED"), _cfg=config_keys(df)).sort_values(["_fin", "start_time"])
            .drop_duplicates("_cfg", keep="last").drop(columns=["_fin", "_cfg"]))


def history(client, run_id: str, key: str) -> np.ndarray:
    h = sorted(tracking.retry(client.get_metric_history, run_id, key), key=lambda m: m.step)
    return np.array([m.value for m in h])


def by_step(client, run_id: str, key: str) -> dict[int, float]:
    """A run's metric as {step: value} (the epoch, 0-based, for the per-epoch metrics)."""
    return {m.step: m.value for m in sorted(tracking.retry(client.get_metric_history, run_id, key),
                                            key=lambda m: (m.step, m.timestamp))}


class Memo:
    """A client that reads each run's metric history and each artifact once: the figures of a study ask
    for the same runs' curves and diagnostics again (the learning curves and curves.csv, the gradient
    flow and distributions). Everything else goes to the client as it is.

    `runs`: runs_frame's rows, whose artifact_uri column says where each run's artifacts are: those are
    downloaded from there. MlflowClient.download_artifacts(run_id, ...) first looks the run up and asks
    whether it logged a model (two queries, 13 ms a run on SQLite, a report's 150 runs 2 s; from
    the artifact's URI 1.3 ms). `moved`: tracking.moved_artifacts' (recorded root, root now), for a store
    whose folder was moved or copied. `unreadable`: the runs whose diagnostics could not be read, and why."""

    def __init__(self, client, runs: pd.DataFrame | None = None, moved: tuple[str, str] | None = None):
        self._client, self._got = client, {}
        self._where: dict[str, str] = {}
        if runs is not None and not runs.empty and "artifact_uri" in runs:
            self._where = {r: u for r, u in zip(runs["run_id"], runs["artifact_uri"]) if isinstance(u, str) and u}
        if moved is not None:
            self._where = {r: tracking.relocated(u, moved) for r, u in self._where.items()}
        self.unreadable: dict[str, str] = {}

    def _once(self, key: tuple, read):
        if key not in self._got:  # what failed is asked again (a store that was locked for a moment)
            self._got[key] = read()
        return self._got[key]

    def get_metric_history(self, run_id: str, key: str):
        return self._once(("history", run_id, key), lambda: self._client.get_metric_history(run_id, key))

    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None):
        """The path of the file downloaded the first time: the caller gives each run a folder of its own
        (the same artifact of another run would overwrite it in a shared one)."""
        return self._once(("artifact", run_id, path, dst_path), lambda: self._download(run_id, path, dst_path))

    def _download(self, run_id: str, path: str, dst_path: str | None):
        where = self._where.get(run_id)
        if where is None:
            return self._client.download_artifacts(run_id, path, dst_path)
        return tracking.download_artifact(where, path, dst_path, self._client.tracking_uri)

    def location(self, run_id: str) -> str:
        """Where the run's artifacts are read from."""
        return self._where.get(run_id, f"runs:/{run_id}")

    def __getattr__(self, name: str):
        return getattr(self._client, name)


def diagnostics(client, run_id: str, tmp: Path) -> RunDiagnostics | None:
    """The run's diagnostics.npz, downloaded into a folder of its own under tmp (a Memo client hands the
    same file out again), or None where it cannot be read: a Memo client keeps why (`unreadable`), for
    the command to say so and end as failed."""
    dst = tmp / run_id
    dst.mkdir(parents=True, exist_ok=True)
    try:
        p = tracking.retry(client.download_artifacts, run_id, "diagnostics/diagnostics.npz", str(dst))
        return RunDiagnostics.from_npz(Path(p).read_bytes())
    except Exception as e:  # noqa: BLE001 - missing, cut short, a store that fails: the figures go on without it
        if isinstance(client, Memo):
            # MLflow's download error ends with the file's own ("No such artifact: 'diagnostics.npz'")
            why = ([x for x in str(e).strip().splitlines() if x.strip()] or [type(e).__name__])[-1]
            client.unreadable.setdefault(run_id, f"{client.location(run_id)}/diagnostics/diagnostics.npz: {why}")
        return None
