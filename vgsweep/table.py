"""The results table, rebuilt from MLflow alone: `python -m vgsweep.table` (or `make table`).

Each cell: mean ± std of the final test accuracy over seeds, and the difference to the baseline of
the same activation and depth in percentage points, the paper's way: `75.05 ± 0.31 (+9.93)`.
With >= 2 seeds per side, a 95% t-interval of that difference (paired by seed where the seeds
match) says whether it stands out from seed noise: such deltas are marked `*`. The published
value (Agarap et al. 2019, Table 1) sits beside ours where one exists.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from vgsweep import tracking
from vgsweep.config import HASH_EXCLUDE, HASH_NEUTRAL

# Agarap et al. 2019, Table 1 (test accuracy %, MNIST): (activation, regime) -> {depth: value}.
PUBLISHED: dict[tuple[str, str], dict[int, float]] = {
    ("logistic", "baseline"): {2: 65.12, 5: 10.28}, ("logistic", "gna"): {2: 75.05, 5: 11.35},
    ("logistic", "gna_bn"): {2: 76.37, 5: 11.35},
    ("tanh", "baseline"): {2: 91.12, 5: 91.27}, ("tanh", "gna"): {2: 91.61, 5: 91.78},
    ("tanh", "gna_bn"): {2: 91.81, 5: 92.15},
    ("relu", "baseline"): {2: 91.62, 5: 88.65}, ("relu", "gna"): {2: 92.37, 5: 83.62},
    ("relu", "gna_bn"): {2: 92.49, 5: 84.40},
    ("leaky_relu", "baseline"): {2: 91.38, 5: 90.43}, ("leaky_relu", "gna"): {2: 92.02, 5: 83.34},
    ("leaky_relu", "gna_bn"): {2: 92.12, 5: 92.39},
    ("swish", "baseline"): {2: 89.95, 5: 37.18}, ("swish", "gna"): {2: 90.92, 5: 83.10},
    ("swish", "gna_bn"): {2: 91.03, 5: 91.65},
}
ACT_ORDER = ["logistic", "tanh", "relu", "leaky_relu", "swish"]
REGIME_ORDER = ["baseline", "gna", "gna_bn"]
PRIMARY = {"dataset": "data.name", "depth": "model.depth", "activation": "activation.name",
           "regime": "regime.name"}
BASELINE = "baseline"
STAT_COLS = ("n", "failed", "mean", "std", "seeds", "verdict", "delta", "delta_lo", "delta_hi", "published",
             "ours_minus_published")


def fetch_runs(uri: str, experiment: str) -> pd.DataFrame:
    """One row per ended run (FINISHED, FAILED, KILLED): params as columns, plus run_id, status,
    start_time, config_hash, verdict and test_acc (NaN where the run logged none)."""
    client = tracking.client_for(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"no experiment {experiment!r} in {uri}: run a sweep first "
                         "(or pass --experiment / --tracking-uri)")
    rows = [{**r.data.params, "run_id": r.info.run_id, "status": r.info.status,
             "start_time": r.info.start_time, "config_hash": r.data.tags[tracking.TAG_HASH],
             "verdict": r.data.tags.get("vgsweep.verdict", ""),
             "test_acc": 100.0 * r.data.metrics.get("test_acc", float("nan"))}
            for r in tracking.training_runs(client, exp.experiment_id, "attributes.status != 'RUNNING'")]
    return pd.DataFrame(rows)


def _grouping_keys(df: pd.DataFrame) -> list[str]:
    """Primary keys, plus every other param that varies and is not implied by the primary keys."""
    prim = list(PRIMARY.values())
    extra = []
    for c in df.columns:
        if c in prim or c in ("seed", "run_id", "status", "start_time", "config_hash", "test_acc", "verdict"):
            continue
        if any(c == x or c.startswith(x + ".") for x in HASH_EXCLUDE):
            continue
        if df[c].nunique(dropna=False) > 1 and (df.groupby(prim)[c].nunique(dropna=False) > 1).any():
            extra.append(c)
    return prim + sorted(extra)


@functools.lru_cache(maxsize=1)
def paper_defaults() -> dict[str, str]:
    """The default config, flattened to MLflow's param strings: a run matches the paper only if its
    other swept keys (init, lr, residual, ...) keep these values."""
    from hydra import compose, initialize_config_dir

    import vgsweep.app as app
    from vgsweep.config import flatten, to_container

    with initialize_config_dir(config_dir=app.CONF_DIR, version_base="1.3"):
        return {k: str(v) for k, v in flatten(to_container(compose(config_name="config"))).items()}


def _t975(df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


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
        if se == 0:
            diff = ours.mean() - base.mean()
            return diff, diff
        dof = (v1 + v2) ** 2 / (v1 ** 2 / (len(ours) - 1) + v2 ** 2 / (len(base) - 1))
        diff = ours.mean() - base.mean()
        return diff - _t975(dof) * se, diff + _t975(dof) * se
    return float("nan"), float("nan")


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """The long table: one row per group of seeds, with delta, its interval and the published value."""
    if runs.empty:
        return pd.DataFrame()
    for col, default in (("status", "FINISHED"), ("verdict", "")):
        if col not in runs:
            runs = runs.assign(**{col: default})
    for col, neutral in HASH_NEUTRAL.items():  # runs recorded before a key existed ran without it
        if col in runs:
            runs = runs.assign(**{col: runs[col].fillna(str(neutral))})
    # One run per config: the newest FINISHED one, else the newest that failed or was killed.
    runs = (runs.assign(_fin=runs["status"].eq("FINISHED")).sort_values(["_fin", "start_time"])
            .drop_duplicates("config_hash", keep="last").drop(columns="_fin"))
    keys = _grouping_keys(runs)
    defaults = paper_defaults() if len(keys) > len(PRIMARY) else {}
    runs = runs.assign(seed=runs["seed"].astype(int))
    groups = dict(list(runs.groupby(keys, dropna=False)))
    fin = {k: g[g["status"] == "FINISHED"] for k, g in groups.items()}
    per_seed = {k: g.set_index("seed")["test_acc"] for k, g in fin.items() if len(g)}
    out = []
    for k, g in groups.items():
        s = per_seed.get(k, pd.Series(dtype=float))
        row = dict(zip(keys, k))
        row.update(n=len(s), mean=s.mean() if len(s) else float("nan"),
                   std=s.std(ddof=1) if len(s) > 1 else float("nan"), failed=int((g["status"] != "FINISHED").sum()),
                   seeds=" ".join(map(str, sorted(s.index))), verdict=summarise_verdicts(fin[k]["verdict"]))
        base_key = tuple(BASELINE if kk == PRIMARY["regime"] else v for kk, v in zip(keys, k))
        base = per_seed.get(base_key)
        if base is not None and len(s) and row[PRIMARY["regime"]] != BASELINE:
            row["delta"] = s.mean() - base.mean()
            row["delta_lo"], row["delta_hi"] = delta_interval(s, base)
        pub = PUBLISHED.get((row[PRIMARY["activation"]], row[PRIMARY["regime"]]), {})
        depth = int(row[PRIMARY["depth"]])
        as_paper = all(str(row[c]) == defaults.get(c, str(row[c])) for c in keys if c not in PRIMARY.values())
        if row[PRIMARY["dataset"]] == "mnist" and depth in pub and as_paper:
            row["published"] = pub[depth]
            row["ours_minus_published"] = row["mean"] - pub[depth]
        out.append(row)
    df = pd.DataFrame(out).rename(columns={v: k for k, v in PRIMARY.items()})
    for c in ("delta", "delta_lo", "delta_hi", "published", "ours_minus_published"):
        if c not in df:
            df[c] = np.nan
    df["depth"] = df["depth"].astype(int)
    df["_a"] = df["activation"].map(lambda a: (ACT_ORDER.index(a) if a in ACT_ORDER else 99, a))
    df["_r"] = df["regime"].map(lambda r: (REGIME_ORDER.index(r) if r in REGIME_ORDER else 99, r))
    extra = [c for c in df.columns if c not in (*PRIMARY, *STAT_COLS, "_a", "_r")]
    df = df.sort_values(["dataset", "_r", "_a", *extra, "depth"]).drop(columns=["_a", "_r"])
    return df.reset_index(drop=True)


def summarise_verdicts(v: pd.Series) -> str:
    """`vanishing` when all seeds agree, else `vanishing 2/3, healthy 1/3` (most common first)."""
    counts = v[v != ""].value_counts()
    if counts.empty:
        return ""
    if len(counts) == 1:
        return str(counts.index[0])
    return ", ".join(f"{name} {c}/{len(v)}" for name, c in counts.items())


def _signed(x: float) -> str:
    return f"{x:+.2f}"


def cell(row: pd.Series) -> str:
    """`75.05 ± 0.31 (+9.93*)`; ± only with >= 2 seeds; * when the 95% interval excludes 0;
    then the verdict when not healthy, and how many configs of the cell failed or were killed."""
    if row["n"] == 0:
        return f"— ({row['failed']} failed)"
    s = f"{row['mean']:.2f}"
    if row["n"] > 1:
        s += f" ± {row['std']:.2f}"
    if not pd.isna(row.get("delta")):
        sig = "*" if not pd.isna(row["delta_lo"]) and (row["delta_lo"] > 0 or row["delta_hi"] < 0) else ""
        s += f" ({_signed(row['delta'])}{sig})"
    if row.get("verdict") and row["verdict"] != "healthy":
        s += f" {row['verdict']}"
    if row.get("failed", 0):
        s += f" [{row['failed']} failed]"
    return s


def published_cell(activation: str, regime: str, depth: int) -> str:
    pub = PUBLISHED.get((activation, regime), {})
    if depth not in pub:
        return ""
    s = f"{pub[depth]:.2f}"
    base = PUBLISHED.get((activation, BASELINE), {}).get(depth)
    if regime != BASELINE and base is not None:
        s += f" ({_signed(pub[depth] - base)})"
    return s


def to_markdown(df: pd.DataFrame) -> str:
    """Paper-shaped: rows regime x activation (x other swept keys), columns per depth."""
    if df.empty:
        return "No finished runs.\n"
    lines = []
    extra = [c for c in df.columns if c not in (*PRIMARY, *STAT_COLS)]
    for dataset, d in df.groupby("dataset", sort=False):
        depths = sorted(d["depth"].unique())
        show_pub = dataset == "mnist" and d["published"].notna().any()
        n = f"{d['n'].min()}" if d["n"].min() == d["n"].max() else f"{d['n'].min()}-{d['n'].max()}"
        n += "; failed or killed runs are counted apart" if d["failed"].any() else ""
        lines += [f"## {dataset}: final test accuracy (%), mean ± std over seeds (n = {n}), "
                  "(delta to baseline, pp)", ""]
        head = ["regime", "activation", *extra]
        for dp in depths:
            head.append(f"{dp}-layer")
            if show_pub:
                head += [f"{dp}-layer published", f"{dp}-layer ours − published"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for key, g in d.groupby(["regime", "activation", *extra], sort=False, dropna=False):
            row = [str(x) for x in key]
            for dp in depths:
                r = g[g["depth"] == dp]
                row.append(cell(r.iloc[0]) if len(r) else "")
                if show_pub:
                    row.append(published_cell(key[1], key[0], dp))
                    omp = r["ours_minus_published"].iloc[0] if len(r) else np.nan
                    row.append("" if pd.isna(omp) else _signed(omp))
            lines.append("| " + " | ".join(row) + " |")
        lines += ["", "`*`: the 95% interval of the delta (paired by seed) excludes 0. A word after a cell is "
                  "the runs' verdict when not healthy (vanishing, exploding, dead_units, not_learning). "
                  "Published: Agarap et al. 2019, Table 1 (one run, seed 42).", ""]
    return "\n".join(lines)


def build(uri: str, experiment: str, out: Path) -> pd.DataFrame:
    runs = fetch_runs(uri, experiment)
    df = aggregate(runs)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "table.csv", index=False)
    md = f"# Results: experiment `{experiment}`\n\n" + to_markdown(df)
    (out / "table.md").write_text(md)
    print(md)
    return df


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vgsweep.table", description=__doc__.splitlines()[0])
    ap.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: the project's mlflow.db)")
    ap.add_argument("--experiment", default="agarap2019", help="MLflow experiment (the study name)")
    ap.add_argument("--out", default="results", type=Path, help="folder for table.md and table.csv")
    a = ap.parse_args(argv)
    build(a.tracking_uri or tracking.default_uri(), a.experiment, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
