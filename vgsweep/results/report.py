"""One page with the table, the verdicts and the figures: `vgsweep report` (make report).

Regenerates results/table.md, results/table.tex, results/table.csv and results/figures/ from MLflow, then writes
results/report.md that embeds them, with every run whose verdict is not healthy and why, and every
run that failed or was killed and why.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from vgsweep.results import figures, reader, table

AXES = {"model.name": "model", "model.depth": "depth", "activation.name": "activation", "regime.name": "regime",
        "optimizer.lr": "lr"}


def _label(r: pd.Series) -> dict:
    return {label: r[k] for k, label in AXES.items() if k in r and not pd.isna(r[k])}


def verdict_rows(runs: pd.DataFrame) -> pd.DataFrame:
    fin = runs[runs["status"] == "FINISHED"] if not runs.empty else runs
    rows = [{"run": r.run_name, "verdict": r.verdict, "reason": r.verdict_reason,
             "test acc (%)": round(100 * r.get("metric:test_acc", float("nan")), 2), **_label(r)}
            for _, r in fin.iterrows() if r.verdict]
    return pd.DataFrame(rows)


def failed_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that FAILED or were KILLED, with the reason they carry (a divergence's names its epoch)."""
    bad = runs[runs["status"].isin(["FAILED", "KILLED"])] if not runs.empty else runs
    return pd.DataFrame([{"run": r.run_name, "status": r.status,
                          "reason": r.failure or "killed (its process was gone)",
                          "overrides": r.overrides} for _, r in bad.iterrows()])


def section(uri: str, sec: table.Section, out: Path, activation: str) -> list[str]:
    experiment, runs, md = sec.name, sec.runs, sec.md
    fig_dir = out / "figures" / experiment
    figs = [p for p in figures.build(uri, experiment, fig_dir, activation) if p.suffix == ".png"] \
        if (not runs.empty and runs["status"].eq("FINISHED").any()) else []
    lines = [md.replace("# Results: experiment", "# Experiment"), "## Verdicts", ""]
    v = verdict_rows(runs)
    if not v.empty:
        group = "depth" if "depth" in v and v["depth"].astype(str).str.len().gt(0).any() else "model"
        counts = v.groupby([group, "verdict"]).size().unstack(fill_value=0)
        lines += [counts.to_markdown(), "", "Runs that are not healthy:", ""]
        bad = v[v.verdict != "healthy"].sort_values([c for c in (group, "activation", "regime", "run") if c in v])
        lines += [table.md_table(bad, index=False) if not bad.empty else "None.", ""]
    failed = failed_rows(runs)
    lines += ["## Failed or killed runs", "", table.md_table(failed, index=False) if not failed.empty else "None.", ""]
    if figs:
        tex = (fig_dir / "figures.tex").relative_to(out).as_posix()
        lines += [f"The figures below as PDF for a paper, each with its caption and label: [{tex}]({tex}) (LaTeX).", ""]
    for kind, (heading, what) in figures.KINDS.items():
        chosen = sorted(p for p in figs if figures.kind_of(p.stem) == kind)
        if chosen:
            lines += [f"## {heading}", "", what, ""]
            lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in chosen] + [""]
    return lines


def build(uri: str, out: Path, experiment: str | None = None, activation: str = "logistic") -> Path:
    secs = table.sections(uri, experiment)  # the runs of each experiment, read once for the table and the page
    table.write(secs, out)
    names = [sec.name for sec in secs]
    lines = ["# vgsweep report", "",
             f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from `{uri}`: "
             + ", ".join(f"`{n}`" for n in names) + ".",
             "The same tables for a paper in [table.tex](table.tex) (LaTeX, booktabs), every number unrounded in "
             "[table.csv](table.csv).", ""]
    for sec in secs:
        lines += section(uri, sec, out, activation)
    path = out / "report.md"
    path.write_text("\n".join(lines))
    print(path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vgsweep report", description=__doc__.splitlines()[0])
    reader.store_args(ap)
    ap.add_argument("--out", default="results", type=Path,
                    help="folder for report.md, table.md and figures/ (default: results)")
    reader.activation_arg(ap)
    a = ap.parse_args(argv)
    build(reader.store_uri(a.tracking_uri), reader.out_dir("--out", a.out), a.experiment, a.activation)
    return 0


if __name__ == "__main__":
    sys.exit(main())
