"""The results table, rebuilt from MLflow alone: `vgsweep table` (or `make table`).

One section per experiment (study) of the store, laid out as its study describes (studies.py). A
cell of the primary metric reads `75.05 ± 0.31 (+9.93*)`: mean ± std over seeds, and the difference
to the baseline of the same other axes in percentage points, the paper's way; with >= 2 seeds per
side, a 95% t-interval of that difference (paired by seed where the seeds match) marks it `*` when
it excludes 0. The published value sits beside ours only where the runs were made with the
published settings; the section's header names any setting that differs for all of them. Our
difference to it is marked `†` when the published value (one run) lies outside the 95% prediction
interval of one run of ours: not reproduced within seed noise.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from vgsweep.config import command_line, excluded, home_path
from vgsweep.jobs import shown
from vgsweep.results import reader
from vgsweep.results.studies import Axis, Study, study_for

NOT_COMPARED = ("seed",)  # besides the keys that do not change a run's numbers (config.HASH_EXCLUDE)
META = ("run_id", "run_name", "status", "start_time", "artifact_uri", *reader.TAGS, *reader.DATA)


def fetch_runs(uri: str, experiment: str) -> pd.DataFrame:
    """One row per ended run (FINISHED, FAILED, KILLED) of the experiment (see reader.runs_frame)."""
    client, exp = reader.open_experiment(uri, experiment)
    return reader.runs_frame(client, exp.experiment_id)


# Options' order where a setting is swept beside a study's axes (`init` in init_study): the default
# first, as config.yaml lists them, not alphabetical (he, normal, xavier, zero).
OPTION_ORDER = {
    "init.name": ("xavier", "he", "normal", "zero", "torch_default"),
    "optimizer.name": ("sgd", "adam"),
    "data.name": ("mnist", "fashion_mnist", "cifar10", "cifar100"),
    "activation.name": ("logistic", "tanh", "relu", "leaky_relu", "swish", "gelu", "elu", "identity"),
    "regime.name": ("baseline", "gna", "gna_bn", "bn", "gna_bn_batch", "bn_batch", "ln", "wn", "wn_data", "gna_wn"),
}


def _order(values, axis) -> list:
    vals = list(dict.fromkeys(values))
    if axis.numeric:
        return sorted(vals, key=lambda v: (float(v) if _isnum(v) else math.inf, str(v)))
    prefer = axis.order or OPTION_ORDER.get(axis.key, ())
    return [v for v in prefer if v in vals] + sorted((v for v in vals if v not in prefer), key=str)


def ordered(values, axis=None) -> list:
    """The distinct values in the table's order: an axis's preferred order, else numbers as numbers
    (depth 5 before 10), then the rest as text."""
    if axis is not None:
        return _order(values, axis)
    vals = list(dict.fromkeys(values))
    return sorted(vals, key=lambda v: (0, float(v), "") if _isnum(v) else (1, 0.0, str(v)))


def _isnum(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _values_set(s: pd.Series) -> int:
    """How many values a setting takes, a blank one (inert: reader.blank_inert) not counted."""
    return s.fillna("\0nan").loc[lambda x: x != ""].nunique()


def _varies(df: pd.DataFrame, by: list[str], c: str) -> bool:
    """Whether setting c takes more than one value among the runs that agree on `by`."""
    return bool((df.groupby(by, dropna=False)[c].agg(_values_set) > 1).any())


def grouping_keys(df: pd.DataFrame, study: Study) -> list[str]:
    """The study's axes, plus every other param that varies (where it acts) and is not implied by the
    axes: a config group swept beside the axes (`optimizer=sgd,adam`) is its option's name
    (`optimizer.name`), not also the settings of that group that come with the option (its `lr`), unless
    those vary within an option too. Other settings that vary together are each a column."""
    prim = [a.key for a in study.all_axes]
    extra = []
    for c in df.columns:
        if (c in prim or c in META or c in NOT_COMPARED or c.startswith("metric:") or excluded(c)
                or c in {m.key for m in study.metrics}):
            continue
        if _values_set(df[c]) > 1 and _varies(df, prim, c):
            extra.append(c)
    kept: list[str] = []
    for c in sorted(extra, key=lambda k: (not k.endswith(".name"), k)):
        group = c.rpartition(".")[0] + ".name"  # optimizer.lr: optimizer.name
        if group == c or group not in kept or _varies(df, prim + kept, c):
            kept.append(c)
    return prim + sorted(kept)


def _matches(a: tuple, b: tuple, skip: int) -> bool:
    """Two rows' settings agree but at position `skip`, a blank (inert) setting agreeing with any."""
    return all(x == y or "" in (x, y) for i, (x, y) in enumerate(zip(a, b)) if i != skip)


@functools.lru_cache(maxsize=None)
def _composed(overrides: tuple[str, ...]) -> dict[str, str]:
    """The config those overrides compose, flattened to MLflow's param strings. A compose is 0.15-0.3 s
    (Hydra merging conf/ into the schema), 30 of them most of `vgsweep table`'s time on the paper grid:
    each is kept in vgsweep's cache folder (published_cache) under a key of everything it reads, and
    read back from there by later commands."""
    path = published_cache(overrides)
    if path is not None:
        try:
            got = json.loads(path.read_text())
            if isinstance(got, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in got.items()):
                return got
        except (OSError, ValueError):  # none yet, or unreadable: compose it
            pass
    from vgsweep.app import compose
    from vgsweep.config import flatten, to_container

    out = {k: str(v) for k, v in flatten(to_container(compose(list(overrides)))).items()}
    if path is not None:
        with contextlib.suppress(OSError):  # a read-only or full home: composed again next time
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(out))
            os.replace(tmp, path)  # whole or not at all: another command may be reading it
    return out


@functools.lru_cache(maxsize=1)
def _sources_key() -> str:
    """A hash of everything a compose reads: conf/'s files, vgsweep's source (the schema, Hydra's shims),
    the versions of Hydra and OmegaConf, and the environment variables conf/ reads (`${oc.env:NAME}`).
    Any change to one of them is another key."""
    import re

    import hydra
    import omegaconf

    from vgsweep.config import CONF_DIR

    h = hashlib.sha256(f"hydra {hydra.__version__} omegaconf {omegaconf.__version__}".encode())
    env: set[str] = set()
    for root, suffixes in ((CONF_DIR, (".yaml", ".yml")), (Path(__file__).resolve().parents[1], (".py",))):
        for p in sorted(root.rglob("*")):
            if p.suffix in suffixes and p.is_file():
                text = p.read_bytes()
                h.update(b"\0" + p.relative_to(root).as_posix().encode() + b"\0" + text)
                if root == CONF_DIR:
                    env.update(m.decode() for m in re.findall(rb"oc\.env:\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)", text))
    for name in sorted(env):
        h.update(f"\0{name}={os.environ.get(name)!r}".encode())
    return h.hexdigest()[:32]


def published_cache(overrides: tuple[str, ...]) -> Path | None:
    """The file that keeps the config these overrides compose (None: no cache). One folder per key of the
    sources (_sources_key): a folder of another key not written to for a week is removed as a new one is made."""
    from vgsweep.tracking import cache_dir

    home = cache_dir()
    if home is None:
        return None
    try:
        key = _sources_key()
    except OSError:  # a source that cannot be read: no key that could be trusted
        return None
    folder = home / "composed" / key
    if not folder.is_dir():
        with contextlib.suppress(OSError):
            for old in (home / "composed").iterdir():
                if old.name != key and time.time() - old.stat().st_mtime > 7 * 86400:
                    shutil.rmtree(old, ignore_errors=True)
    return folder / (hashlib.sha256("\0".join(overrides).encode()).hexdigest()[:32] + ".json")


def paper_differences(study: Study, axis_values: dict, params: dict) -> list[str]:
    """`key=value` for every setting of a run that differs from the published setting of its row."""
    try:
        paper = _composed(tuple(study.paper_overrides(axis_values)))
    except Exception:  # noqa: BLE001 - a row the published setting cannot even be composed for
        return ["(no published setting for this row)"]
    out = []
    for k, v in params.items():
        if (k in META or k in NOT_COMPARED or k.startswith(("metric:", "_")) or excluded(k) or _missing(v)
                or k in {m.key for m in study.metrics}):
            continue
        if k not in paper or str(v) != paper[k]:
            out.append(f"{k}={v}")
    return out


def _missing(v) -> bool:
    """No value to compare: not recorded, or blank because it does nothing in this run (inert)."""
    return v is None or v == "" or (isinstance(v, float) and math.isnan(v))


def _t975(df: float) -> float:
    """Student's t's 97.5% quantile for `df` degrees of freedom (any real df > 0: Welch's are not whole):
    scipy.special's, which is what scipy.stats.t.ppf computes, without importing scipy.stats (1 s)."""
    from scipy.special import stdtrit

    return float(stdtrit(df, 0.975))


def delta_interval(ours: pd.Series, base: pd.Series) -> tuple[float, float]:
    """95% interval of mean(ours) - mean(base); series indexed by seed. (nan, nan) if < 2 seeds."""
    common = ours.index.intersection(base.index)
    if len(common) >= 2 and len(common) == len(ours) == len(base):
        d = ours[common] - base[common]  # paired: same seed, same init and data noise
        half = _t975(len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
        return d.mean() - half, d.mean() + half
    if len(ours) >= 2 and len(base) >= 2:  # Welch
        v1, v2 = ours.var(ddof=1) / len(ours), base.var(ddof=1) / len(base)
        se = math.sqrt(v1 + v2)
        diff = ours.mean() - base.mean()
        if se == 0:
            return diff, diff
        dof = (v1 + v2) ** 2 / (v1 ** 2 / (len(ours) - 1) + v2 ** 2 / (len(base) - 1))
        return diff - _t975(dof) * se, diff + _t975(dof) * se
    return float("nan"), float("nan")


def outside_seed_noise(ours: pd.Series, published: float, rounding: float = 0.005) -> float:
    """1.0 if a published value (one run) lies outside the 95% prediction interval of one run of
    ours, mean ± t(n-1) s sqrt(1 + 1/n) over our n seeds: not reproduced within seed noise; 0.0 if
    inside; nan with fewer than 2 seeds. A published value stands for anything its rounding could
    have printed as it (± `rounding`: half its last digit, 0.01 pp in Table 1), so seeds that agree
    exactly (a collapsed net's 11.35% in every seed: no spread at all) reproduce a published 11.35."""
    n = len(ours)
    if n < 2:
        return float("nan")
    half = _t975(n - 1) * ours.std(ddof=1) * math.sqrt(1 + 1 / n)
    return float(abs(published - ours.mean()) > half + rounding)


def summarise_verdicts(v: pd.Series) -> str:
    """`vanishing` when all seeds agree, else `vanishing 2/3, healthy 1/3` (most common first)."""
    counts = v[v != ""].value_counts()
    if counts.empty:
        return ""
    if len(counts) == 1:
        return str(counts.index[0])
    return ", ".join(f"{name} {c}/{len(v)}" for name, c in counts.items())


def keyed(runs: pd.DataFrame, study: Study) -> tuple[pd.DataFrame, list[str]]:
    """The runs the table counts (one per config, inert settings blank, the study's axes kept) and the
    keys it groups them by (grouping_keys): what aggregate and the report's verdict counts share."""
    for col, default in (("status", "FINISHED"), ("verdict", ""), ("parameters", "")):
        if col not in runs:
            runs = runs.assign(**{col: default})
    runs = reader.blank_inert(reader.one_per_config(reader.fill_neutral(runs)), {a.key for a in study.all_axes})
    return runs, grouping_keys(runs, study)


def aggregate(runs: pd.DataFrame, study: Study | None = None) -> pd.DataFrame:
    """The long table: one row per group of seeds, with the metrics' means and stds, the primary
    metric's delta and its interval, the published values where the settings match, and
    `not_comparable` (the settings that differ from the published ones)."""
    from vgsweep.results.studies import AGARAP

    study = study or AGARAP
    if runs.empty:
        return pd.DataFrame()
    runs, keys = keyed(runs, study)
    runs = runs.assign(seed=runs["seed"].astype(int))
    primary = study.metrics[0]
    groups = dict(list(runs.groupby(keys, dropna=False)))
    fin = {k: g[g["status"] == "FINISHED"] for k, g in groups.items()}

    def series(g: pd.DataFrame, m) -> pd.Series:
        """The metric per seed in display units: from MLflow (`metric:<key>`, scaled) or given so (`<key>`)."""
        if f"metric:{m.key}" in g:
            return g.set_index("seed")[f"metric:{m.key}"] * m.scale
        return g.set_index("seed")[m.key] if m.key in g else pd.Series(dtype=float)

    per_seed = {k: series(g, primary).dropna() for k, g in fin.items() if len(g)}
    out = []
    for k, g in groups.items():
        row = dict(zip(keys, k))
        s = per_seed.get(k, pd.Series(dtype=float))
        row.update(n=len(s), mean=s.mean() if len(s) else float("nan"),
                   std=s.std(ddof=1) if len(s) > 1 else float("nan"), failed=int((g["status"] != "FINISHED").sum()),
                   killed=int((g["status"] == "KILLED").sum()),
                   seeds=" ".join(map(str, sorted(s.index))), verdict=summarise_verdicts(fin[k]["verdict"]),
                   parameters=next((p for p in g["parameters"] if p), ""),
                   _started=fin[k]["start_time"].min() if "start_time" in g and len(fin[k]) else np.nan,
                   _confirm=next((c for c in fin[k]["confirm"] if c), "") if "confirm" in g else "")
        for m in study.metrics[1:]:
            v = series(fin[k], m).dropna()
            row[f"{m.key}_mean"] = v.mean() if len(v) else float("nan")
            row[f"{m.key}_std"] = v.std(ddof=1) if len(v) > 1 else float("nan")
        if study.baseline:
            label, value = study.baseline
            bkey = next(a.key for a in study.all_axes if a.label == label)
            base_key = tuple(value if kk == bkey else v for kk, v in zip(keys, k))
            base = per_seed.get(base_key)
            if base is None:  # the baseline may leave blank what acts only in this row (eta = 0: no schedule)
                near = [b for b in per_seed if b[keys.index(bkey)] == value and _matches(b, k, keys.index(bkey))]
                base = per_seed[near[0]] if len(near) == 1 else None
            if base is not None and len(s) and row[bkey] != value:
                row["delta"] = s.mean() - base.mean()
                row["delta_lo"], row["delta_hi"] = delta_interval(s, base)
        axis_values = {a.label: str(row[a.key]) for a in study.all_axes}
        pub = study.published.get(tuple(axis_values[a.label] for a in study.all_axes), {})
        first = g.assign(_f=g["status"].ne("FINISHED")).sort_values("_f").iloc[0] if len(g) else None
        diff = paper_differences(study, axis_values, first.to_dict()) if (pub and first is not None) else []
        # None where no published value exists for the row: nothing to be comparable with
        row["not_comparable"] = "; ".join(d for d in diff if d.split("=")[0] not in keys) if pub else None
        if pub and not diff:
            for m in study.metrics:
                if m.key in pub:
                    ours = row["mean"] if m is primary else row[f"{m.key}_mean"]
                    row["published" if m is primary else f"{m.key}_published"] = pub[m.key]
                    if m is primary:
                        row["ours_minus_published"] = ours - pub[m.key]
                        row["published_outside_noise"] = outside_seed_noise(s, pub[m.key])
        out.append(row)
    df = pd.DataFrame(out).rename(columns={a.key: a.label for a in study.all_axes})
    for c in ("delta", "delta_lo", "delta_hi", "published", "ours_minus_published", "published_outside_noise"):
        if c not in df:
            df[c] = np.nan
    if study.column is not None and study.column.numeric:
        df[study.column.label] = df[study.column.label].astype(int)
    sort_cols = []
    for a in study.all_axes:
        order = _order(df[a.label], a)
        df[f"_{a.label}"] = df[a.label].map(lambda v, order=order: order.index(v))
        sort_cols.append(f"_{a.label}")
    extra = []
    for c in (c for c in keys if c not in {a.key for a in study.all_axes}):  # numbers in numeric order
        numeric = df[c].dropna().loc[lambda x: x != ""].map(_isnum).all()
        if c in OPTION_ORDER:
            rank = {v: i for i, v in enumerate(_order(df[c].astype(str), Axis(c, c)))}
            df[f"_{c}"] = df[c].astype(str).map(rank)
        else:
            df[f"_{c}"] = df[c].map(lambda v: float(v) if _isnum(v) else math.inf) if numeric else df[c].astype(str)
        extra.append(f"_{c}")
    # rows by the axes in order, then the extra keys; the column axis last (it spreads over columns)
    by = sort_cols[:-1] + extra + sort_cols[-1:] if study.column else sort_cols + extra
    return df.sort_values(by).drop(columns=sort_cols + extra).reset_index(drop=True)


def _signed(x: float) -> str:
    return f"{x:+.2f}"


def cell(row: pd.Series) -> str:
    """`75.05 ± 0.31 (+9.93*)`; ± only with >= 2 seeds; * when the 95% interval excludes 0;
    then the verdict when not healthy, and how many configs of the cell failed or were killed."""
    if row["n"] == 0:
        return f"— ({not_finished(row)})"
    s = f"{row['mean']:.2f}"
    if row["n"] > 1:
        s += f" ± {row['std']:.2f}"
    if not pd.isna(row.get("delta")):
        sig = "*" if not pd.isna(row["delta_lo"]) and (row["delta_lo"] > 0 or row["delta_hi"] < 0) else ""
        s += f" ({_signed(row['delta'])}{sig})"
    if row.get("verdict") and row["verdict"] != "healthy":
        s += f" {row['verdict']}"
    if row.get("failed", 0):
        s += f" [{not_finished(row)}]"
    return s


def not_finished(row: pd.Series) -> str:
    """`2 failed`, `1 killed`, `1 failed, 1 killed`: the cell's configs whose run did not finish
    (`failed` counts both; a killed run was interrupted, its config not judged)."""
    killed = int(row.get("killed", 0) or 0)
    failed = int(row["failed"]) - killed
    return ", ".join(f"{c} {w}" for c, w in ((failed, "failed"), (killed, "killed")) if c)


def _plain(mean: float, std: float, n: int, digits: int) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 and not pd.isna(std) else "")


def published_delta(study: Study, values: tuple) -> float | None:
    """The published primary metric of a row (axis values in axes + column order) minus that of its
    baseline row; None without both, or for the baseline row itself."""
    if not study.baseline:
        return None
    metric = study.metrics[0].key
    label, value = study.baseline
    i = [a.label for a in study.all_axes].index(label)
    pub = study.published.get(tuple(str(v) for v in values), {}).get(metric)
    base = study.published.get(tuple(value if j == i else str(v) for j, v in enumerate(values)), {}).get(metric)
    return None if pub is None or base is None or str(values[i]) == value else pub - base


def published_cell(study: Study, values: tuple, metric: str = "") -> str:
    """The published value of a row (axis values in axes + column order), with its own delta."""
    metric = metric or study.metrics[0].key
    pub = study.published.get(tuple(str(v) for v in values), {})
    if metric not in pub:
        return ""
    delta = published_delta(study, values) if metric == study.metrics[0].key else None
    return f"{pub[metric]:.2f}" + ("" if delta is None else f" ({_signed(delta)})")


def not_comparable_note(df: pd.DataFrame) -> str:
    """The settings that keep rows from being compared with the published values; one that holds in only
    some of the rows that have a published value says in how many (`optimizer.lr=0.001 (in 2 of the 4 rows)`)."""
    told = df.get("not_comparable", pd.Series(dtype=object)).dropna()
    counts = Counter(n for v in told for n in {x.strip() for x in str(v).split(";")} if n)
    if not counts:
        return ""
    notes = [n if c == len(told) else f"{n} (in {c} of the {len(told)} rows)" for n, c in sorted(counts.items())]
    return f"**{', '.join(notes)}: not comparable with the published values**, which are not shown beside these rows."


@dataclass
class Block:
    """One data set's table, ready to render: a title, a note, the header, the rows, the footnote."""

    title: str
    note: str
    head: list[str]
    rows: list[list[str]]
    foot: str
    keys: int  # the first `keys` columns name the row (axes, extra settings); the others are numbers
    groups: list[tuple[str, list[str]]] | None = None  # LaTeX: a header over groups of columns, their own names


def layout(df: pd.DataFrame, study: Study | None = None) -> list[Block]:
    """The aggregated frame as the paper lays it out, one block per data set (rendered by
    to_markdown and to_latex)."""
    from vgsweep.results.studies import AGARAP

    study = study or AGARAP
    blocks = []
    labels = [a.label for a in study.axes]
    stat_cols = {c for c in df.columns if c in ("n", "failed", "killed", "mean", "std", "seeds", "verdict", "delta", "delta_lo",
                                               "delta_hi", "published", "ours_minus_published", "not_comparable",
                                               "published_outside_noise",
                                               "parameters") or c.endswith(("_mean", "_std", "_published"))
                 or c.startswith("_")}  # the aggregate's own (_started): not a setting
    axis_cols = labels + ([study.column.label] if study.column else [])
    extra = [c for c in df.columns if c not in (*axis_cols, *stat_cols)]
    primary = study.metrics[0]
    for dataset, d in df.groupby(labels[0], sort=False):
        n = f"{d['n'].min()}" if d["n"].min() == d["n"].max() else f"{d['n'].min()}-{d['n'].max()}"
        n += "; failed or killed runs are counted apart" if d["failed"].any() else ""
        show_pub = d["published"].notna().any() or any(d.get(f"{m.key}_published", pd.Series(dtype=float)).notna().any()
                                                        for m in study.metrics[1:])
        title = (f"{dataset}: {primary.label}, mean ± std over seeds (n = {n})"
                 + (", (delta to baseline, pp)" if study.baseline else ""))
        rows_by = [c for c in labels[1:]] + extra
        rows: list[list[str]] = []
        best, per = set(), ""  # a search's best trials (no column)
        if study.column is not None:
            cols = sorted(d[study.column.label].unique())
            head = [*rows_by]
            groups = []
            for c in cols:
                head.append(f"{c}-layer" if study.column.label == "depth" else f"{study.column.label} {c}")
                if show_pub:
                    groups.append((head[-1], ["ours", "published", "ours − published"]))
                    head += [f"{head[-1]} published", f"{head[-1]} ours − published"]
            for key, g in d.groupby(rows_by, sort=False, dropna=False):
                key = key if isinstance(key, tuple) else (key,)
                row = [shown(x) for x in key]
                for c in cols:
                    r = g[g[study.column.label] == c]
                    row.append(cell(r.iloc[0]) if len(r) else "")
                    if show_pub:  # only beside runs made with the published settings
                        comparable = len(r) and not pd.isna(r["published"].iloc[0])
                        vals = (dataset, *key[:len(labels) - 1], c)
                        row.append(published_cell(study, vals) if comparable else "")
                        row.append(_signed(r["ours_minus_published"].iloc[0])
                                   + (" †" if r["published_outside_noise"].iloc[0] == 1 else "") if comparable else "")
                rows.append(row)
        else:
            head = [*rows_by]
            has_params = d["parameters"].astype(str).str.len().gt(0).any()
            if has_params:
                head.append("parameters")
            for m in study.metrics:
                head.append(m.label)
                if show_pub:
                    head.append("published")
            best, per = best_trials(d, study)
            for i, r in d.iterrows():
                row = [shown(r[c]) for c in rows_by]
                if has_params:
                    row.append(f"{int(r['parameters']):,}" if str(r["parameters"]).isdigit() else "")
                for m in study.metrics:
                    if m is primary:
                        row.append(f"**{cell(r)}**" if i in best else cell(r))
                        pub = r.get("published")
                    else:
                        row.append(_plain(r[f"{m.key}_mean"], r[f"{m.key}_std"], r["n"], m.digits))
                        pub = r.get(f"{m.key}_published")
                    if show_pub:
                        row.append("" if pub is None or pd.isna(pub) else f"{pub:.{m.digits}f}")
                rows.append(row)
        # `*` explained where a cell could carry it: a delta with an interval (two seeds or more, paired)
        tested = study.baseline and "delta_lo" in d and d["delta_lo"].notna().any()
        foot = "`*`: the 95% interval of the delta (paired by seed) excludes 0. " if tested else ""
        judged = d["published_outside_noise"].dropna()
        if len(judged):  # cells with a published value and at least 2 seeds of ours
            foot += (f"Within seed noise of the published value: {int((judged == 0).sum())} of {len(judged)} cells. ")
        if judged.eq(1).any():
            foot += ("`†`: the published value (one run) lies outside the 95% prediction interval of one run of "
                     "ours (mean ± t·s·√(1 + 1/n) over our n seeds): not reproduced within seed noise. ")
        if best:
            foot += f"Bold: the best trial{per} (its {primary.label.removesuffix(' (%)')}, as the search figure rings it). "
        foot += ("A word after a cell is the runs' verdict when not healthy (vanishing, exploding, dead_units, "
                 "not_learning)." + (f" Published: {study.source}." if study.source and show_pub else "")
                 + "".join(f" {x}" for x in study.notes + (study.published_notes if show_pub else ())))
        blocks.append(Block(title, not_comparable_note(d), head, rows, foot, len(rows_by),
                            groups if study.column is not None and show_pub else None))
    return blocks


def best_trials(d: pd.DataFrame, study: Study) -> tuple[set, str]:
    """A search's table (a study with a search figure): the index of each group's best row by the primary
    metric, the groups being the figure's colours (search figures ring the same trials), and the words
    for the footnote (" of each activation"; "" for one group)."""
    from vgsweep.config import higher_is_better

    spec = next((f for f in study.figures if f.kind == "search"), None)
    col = "mean"  # the primary metric's (aggregate)
    if spec is None or col not in d or d[col].isna().all():
        return set(), ""
    by = [a for a in spec.line if a in d and d[a].nunique(dropna=False) > 1]
    best = set()
    for _, g in d.groupby(by, sort=False, dropna=False) if by else [((), d)]:
        if (i := best_trial(g[col], g.get("_started"), higher_is_better(study.metrics[0].key))) is not None:
            best.add(i)
    return best, "".join(f" of each {a}" for a in by)


def best_trial(y: pd.Series, started: pd.Series | None, higher: bool):
    """The index of the best of y; among equal values the trial that started first, which is the one Optuna's
    sweeper names best (the first to reach it: optimization_results.yaml). The table bolded the first in its
    own order (by learning rate) and the figure ringed another. None where y has no value."""
    y = pd.to_numeric(y, errors="coerce").dropna()
    if y.empty:
        return None
    top = y.index[y == (y.max() if higher else y.min())]
    when = None if started is None else pd.to_numeric(started.loc[top], errors="coerce")
    return top[0] if when is None or when.isna().all() else when.idxmin()


def md_cell(value) -> str:
    """A markdown table's cell: a `|` in it (a verdict's reason: mean |gradient|) escaped, where it would
    end the cell and shift the rest of the row into columns of their own."""
    return str(value).replace("|", r"\|")


def md_table(df: pd.DataFrame, **kw) -> str:
    """pandas' to_markdown with md_cell's escaping (pandas leaves a `|` in a cell as it is)."""
    return df.apply(lambda col: col.map(lambda v: md_cell(v) if isinstance(v, str) else v)).to_markdown(**kw)


def to_markdown(df: pd.DataFrame, study: Study | None = None) -> str:
    if df.empty:
        return "No finished runs.\n"
    lines = []
    for b in layout(df, study):
        lines += [f"## {b.title}", ""]
        if b.note:
            lines += [b.note, ""]
        lines += ["| " + " | ".join(map(md_cell, b.head)) + " |", "|" + "---|" * len(b.head)]
        lines += ["| " + " | ".join(map(md_cell, r)) + " |" for r in b.rows]
        lines += ["", b.foot, ""]
    return "\n".join(lines)


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "±": r"$\pm$", "−": r"$-$", "—": "---", "×": r"$\times$", "†": r"$^{\dagger}$",
                "·": r"$\cdot$", "√": r"$\surd$", "|": r"$|$", "◇": r"$\diamond$",
                "▼": r"$\bigtriangledown$"}


def tex(text: str) -> str:
    """A table string as LaTeX: special characters escaped, ±, − and a negative number's sign in
    math, the delta's `*` as a superscript, markdown's **bold** and `code` as \\textbf and \\texttt."""
    import re

    def esc(t: str) -> str:
        return "".join(_TEX_SPECIAL.get(ch, ch) for ch in t)

    out, pos = [], 0
    for m in re.finditer(r"\*\*(.+?)\*\*|`([^`]*)`|(?<=\d)\*(?=\))|(?<![\w.])-(?=\d)", text):
        out.append(esc(text[pos:m.start()]))
        if m.group(0) == "-":
            out.append(r"$-$")  # a negative number's minus, not a hyphen
        elif m.group(1) is not None:
            out.append(r"\textbf{" + tex(m.group(1)) + "}")  # its `code`, minus signs, ... as outside it
        elif m.group(2) is not None:
            out.append(r"\texttt{" + esc(m.group(2)) + "}" if m.group(2) != "*" else r"$^{*}$")
        else:
            out.append(r"$^{*}$")
        pos = m.end()
    return "".join(out) + esc(text[pos:])


# Characters a folder may hold that LaTeX reads as commands in a file name; spaces and _ need nothing (LaTeX 2019+).
TEX_PATH_SPECIALS = "#%&~$^"
_PLAIN = "".join(rf"\catcode`\{c}=12 " for c in TEX_PATH_SPECIALS)
TEX_PATH_IMPOSSIBLE = "{}\\"  # a brace or a backslash in a file name: nothing in LaTeX reads it back


def tex_path_line(before: str, path: str, after: str = "", define: str | None = None) -> str:
    """`before + path + after`: a line of LaTeX that names a file (an \\includegraphics, an \\input), as it is
    where the path has none of TEX_PATH_SPECIALS; else the path is first read with them as plain characters,
    in a group, into \\vgsweeppath (globally), and the line names that: the file itself is read outside
    the group, its own % comments as comments. define: instead, define this command (`\\vgsweepfigures`) as
    the path where it is not defined yet, as \\providecommand would."""
    special = any(c in path for c in TEX_PATH_SPECIALS)
    if define is not None:
        return (rf"\begingroup{_PLAIN}\ifdefined{define}\else\xdef{define}{{{path}}}\fi\endgroup" if special
                else rf"\providecommand{{{define}}}{{{path}}}")
    if not special:
        return before + path + after
    return rf"\begingroup{_PLAIN}\xdef\vgsweeppath{{{path}}}\endgroup" + before + r"\vgsweeppath" + after


# \vgsweepfit{<box>}: the box at its own size, scaled down to the line's width only where it is wider.
# A table's width depends on its cells (a verdict beside a mean made a 4-column table 199 pt wider
# than an article's text) and a figure's on its legend, which no column count foresees; graphicx only.
FIT_MACRO = (r"\providecommand{\vgsweepfit}[1]{\sbox0{#1}\ifdim\wd0>\linewidth"
             r"\resizebox{\linewidth}{!}{\usebox0}\else\usebox0\fi}")


def _latex_head(b: Block) -> list[str]:
    """The header row; with groups (a depth's ours, published, difference) two rows, the paper's way."""
    if not b.groups:
        return [" & ".join(tex(h) for h in b.head) + r" \\"]
    top, rules, col = [""] * b.keys, [], b.keys + 1
    for label, names in b.groups:
        top.append(r"\multicolumn{%d}{c}{%s}" % (len(names), tex(label)))
        rules.append(r"\cmidrule(lr){%d-%d}" % (col, col + len(names) - 1))
        col += len(names)
    sub = [tex(h) for h in b.head[:b.keys]] + [tex(n) for _, names in b.groups for n in names]
    return [" & ".join(top) + r" \\", " ".join(rules), " & ".join(sub) + r" \\"]


def to_latex(df: pd.DataFrame, study: Study | None = None, title: str = "") -> str:
    """The same tables as to_markdown, one LaTeX `table` each (\\usepackage{booktabs, graphicx})."""
    if df.empty:
        return "% No finished runs.\n"
    out = []
    for b in layout(df, study):
        caption = f"{title}: {b.title}" if title else b.title
        spec = "l" * b.keys + "r" * (len(b.head) - b.keys)
        out += [r"\begin{table}[htbp]", r"\centering", r"\small", r"\caption{" + tex(caption) + "}",
                r"\vgsweepfit{%", r"\begin{tabular}{" + spec + "}", r"\toprule", *_latex_head(b), r"\midrule"]
        for i, r in enumerate(b.rows):
            if i and b.keys > 1 and r[0] != b.rows[i - 1][0]:
                out.append(r"\addlinespace")  # between the groups of the first key (regimes)
            out.append(" & ".join(tex(c) for c in r) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}}", r"\par\smallskip",
                r"\parbox{\linewidth}{\footnotesize " + tex(" ".join(x for x in (b.note, b.foot) if x)) + "}",
                r"\end{table}", ""]
    return "\n".join(out)


@dataclass
class Section:
    """One experiment's part of the results: its ended runs (reader.runs_frame), the aggregated
    frame, the markdown section and the LaTeX tables."""

    name: str
    runs: pd.DataFrame
    df: pd.DataFrame
    md: str
    tex: str
    study: Optional[Study] = None  # None where no run has ended


def section(uri: str, experiment: str, where: Sequence[reader.Where] = ()) -> Section:
    """One experiment's section; `where` (reader.where_item): only the runs that meet it, said below its heading."""
    ended = fetch_runs(uri, experiment)
    runs = reader.select(ended, list(where))
    none = reader.unmatched(ended, list(where)) if len(runs) else []  # a value no run has: a typo the rest hides
    only = (f"Only the runs where {reader.said(where)}: {len(runs)} of the experiment's {len(ended)} ended runs"
            + (f" (none has {', '.join(none)})" if none else "") + ".\n\n" if where else "")
    if runs.empty:
        have = reader.held([ended], list(where)) if where else ""
        return Section(experiment, runs, pd.DataFrame(),
                       f"# Results: experiment `{experiment}`\n\n{only}No ended runs{' there' if where else ''}"
                       + (f" (they have {have})" if have else "") + ".\n",
                       f"% experiment {tex(experiment)}: no ended runs\n")
    runs, left = reader.one_family(runs)
    study = study_for(str(runs["study"].iloc[0]) if "study" in runs else experiment,
                      str(runs["model.family"].iloc[0]) if "model.family" in runs else "mlp", runs)
    df = aggregate(runs, study)
    return Section(experiment, runs, df,
                   f"# Results: experiment `{experiment}`\n\n{study.title}.\n\n{only}" + to_markdown(df, study)
                   + (f"\n{left}\n" if left else ""),
                   f"% experiment {tex(experiment)}" + (f", {tex(only.strip())}" if only else "") + "\n"
                   + to_latex(df, study, study.title) + (f"\n{tex(left)}\n" if left else ""), study)


def sections(uri: str, experiment: str | None, where: Sequence[reader.Where] = ()) -> list[Section]:
    """One section per experiment (all of the store's unless named). With `where`, the experiments
    with no run that meets it are left out, unless named; SystemExit where none has one."""
    names = reader.chosen(uri, experiment)
    secs = [section(uri, name, where) for name in names]
    if where and not experiment:
        secs = [s for s in secs if not s.runs.empty]
        if not secs:
            raise SystemExit(reader.none_where(uri, list(where), [fetch_runs(uri, n) for n in names]))
    return secs


def write(secs: list[Section], out: Path) -> pd.DataFrame:
    """results/table.md, table.tex and table.csv from the sections; the frames, one table."""
    out.mkdir(parents=True, exist_ok=True)
    df = pd.concat([s.df.assign(experiment=s.name) for s in secs], ignore_index=True)
    df.drop(columns=[c for c in df if str(c).startswith("_")]).to_csv(out / "table.csv", index=False)
    md = "\n".join(s.md for s in secs)
    (out / "table.md").write_text(md)
    (out / "table.tex").write_text("% vgsweep table: the tables of table.md for a paper; needs \\usepackage{booktabs, graphicx}\n"
                                   + FIT_MACRO + "\n\n" + "\n".join(s.tex for s in secs))
    print(md)
    return df


def build(uri: str, experiment: str | None, out: Path, where: Sequence[reader.Where] = ()) -> pd.DataFrame:
    """results/table.md, table.tex and table.csv: one section per experiment (all of the store's
    unless named), of the runs that meet `where`."""
    return write(sections(uri, experiment, where), out)


def main(argv: list[str] | None = None) -> int:
    ap = command_line("vgsweep table", __doc__.splitlines()[0])
    reader.store_args(ap)
    ap.add_argument("--out", default="results", type=home_path, help="folder for table.md, table.tex and table.csv")
    reader.where_arg(ap)
    a = ap.parse_args(argv)
    build(reader.store_uri(a.tracking_uri), a.experiment, reader.out_dir("--out", a.out), a.where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
