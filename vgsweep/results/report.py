"""One page with the table, the verdicts and the figures: `vgsweep report` (make report).

Regenerates results/table.md, results/table.tex, results/table.csv and results/figures/ from MLflow, then writes
results/report.md that embeds them, with every run whose verdict is not healthy and why, and every
run that failed or was killed and why; and results/report.tex, the tables and figures as one LaTeX
document (pdflatex report.tex in results/ makes report.pdf).
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import pandas as pd

from vgsweep import plots
from vgsweep.config import command_line, home_path
from vgsweep.results import figures, reader, table
from vgsweep.tracking import hide_passwords

AXES = {"data.name": "dataset", "model.name": "model", "model.depth": "depth", "activation.name": "activation",
        "regime.name": "regime", "optimizer.lr": "lr"}


def _label(r: pd.Series) -> dict:
    return {label: r[k] for k, label in AXES.items() if k in r and not pd.isna(r[k])}


def _named(runs: pd.DataFrame) -> pd.DataFrame:
    """The configs' runs, each named so that two configs of one run name are told apart
    (reader.told_apart: `mnist-d2-relu-baseline-s42 optimizer.lr=1e+30`), as `vgsweep status` names them."""
    return runs.assign(run_name=reader.told_apart(runs)) if not runs.empty else runs


def verdict_rows(runs: pd.DataFrame, extra: dict[str, dict[str, str]] | None = None) -> pd.DataFrame:
    """The verdict of each config's run that the table counts (reader.one_per_config), where FINISHED;
    `extra`: more columns, {column: {run id: value}} (swept_beside)."""
    runs = _named(reader.one_per_config(runs))
    fin = runs[runs["status"] == "FINISHED"] if not runs.empty else runs
    rows = [{"run": r.run_name, "verdict": r.verdict, "reason": r.verdict_reason,
             "test acc (%)": round(100 * r.get("metric:test_acc", float("nan")), 2), **_label(r),
             **{k: by_run.get(r.run_id, "") for k, by_run in (extra or {}).items()}}
            for _, r in fin.iterrows() if r.verdict]
    return pd.DataFrame(rows)


def swept_beside(runs: pd.DataFrame, study) -> dict[str, dict[str, str]]:
    """The settings swept beside the study's axes that the table keeps apart (table.grouping_keys:
    `model.residual` in residual_study), each run's value of each ("" where it does nothing in the run)."""
    if study is None or runs.empty or "run_id" not in runs:
        return {}
    own = {a.key for a in study.all_axes}
    if not own <= set(runs.columns):  # runs of another layout than the study's: no table keys them
        return {}
    runs, keys = table.keyed(runs, study)
    return {k: dict(zip(runs["run_id"], runs[k].fillna("").astype(str))) for k in keys if k not in own and k not in AXES}


def failed_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """The configs whose run that speaks for them (reader.one_per_config: none FINISHED) FAILED or was
    KILLED, with the reason it carries (a divergence's names its epoch): what the table counts as failed,
    not a failure a later run of the config has since made good."""
    runs = _named(reader.one_per_config(runs))
    bad = runs[runs["status"].isin(["FAILED", "KILLED"])] if not runs.empty else runs
    return pd.DataFrame([{"run": r.run_name, "status": r.status,
                          "reason": r.failure or "killed (its process was gone)",
                          "overrides": r.overrides} for _, r in bad.iterrows()])


def made_line(runs: pd.DataFrame) -> str:
    """What made the runs the table counts (reader.one_per_config, FINISHED): vgsweep's commit, PyTorch's
    release, the device, each with its count where they differ; for a methods section, and to see a table mix
    runs of code since changed. '' where none finished."""
    from vgsweep.tracking import short_commit

    fin = reader.one_per_config(runs)
    fin = fin[fin["status"] == "FINISHED"] if not fin.empty else fin
    if fin.empty:
        return ""
    parts = []
    for col, what, shown in (("made_by", "vgsweep commit", short_commit), ("made_with", "PyTorch", str),
                             ("made_on", "device", str)):
        vals = (fin[col].fillna("").astype(str) if col in fin else pd.Series([""] * len(fin))).replace("", "unknown")
        counts = vals.value_counts()
        parts.append(f"{what} {shown(counts.index[0])}" if len(counts) == 1 else
                     f"{what}s " + ", ".join(f"{shown(v)} ({figures.n_runs(n)})" for v, n in counts.items()))
    line = f"The table's {figures.n_runs(len(fin))} {'was' if len(fin) == 1 else 'were'} made with {'; '.join(parts)}."
    return line + data_said(fin)


def data_said(fin: pd.DataFrame) -> str:
    """Which examples the runs `fin` trained and were tested on: per split, the digest their records hold
    (runs.dataset_inputs), with counts where they differ, as ` They trained on mnist: train set e8c78536,
    test set 9295b4d5.`; '' where none recorded one (runs made before vgsweep kept them)."""
    parts = []
    for col, split in reader.DATA.items():
        if col not in fin or not fin[col].fillna("").astype(bool).any():
            continue
        counts = fin[col].fillna("").astype(str).replace("", "not recorded").value_counts()
        parts.append(f"{split} set {counts.index[0]}" if len(counts) == 1 else
                     f"{split} sets " + ", ".join(f"{v} ({figures.n_runs(n)})" for v, n in counts.items()))
    if not parts:
        return ""
    names = ", ".join(dict.fromkeys(fin["data.name"].astype(str))) if "data.name" in fin else "their data set"
    return f" They trained on {names}: {', '.join(parts)} (digests of the examples, as MLflow's Datasets show them)."


def confirm_lines(sec: table.Section) -> list[str]:
    """A search's best trials (the table's bold rows) that have one seed: the command each one's search ended
    with, which trains it over more seeds (its run's tag, confirm.record). None once confirmed."""
    df = sec.df
    if sec.study is None or df.empty or "_confirm" not in df:
        return []
    best, _ = table.best_trials(df, sec.study)
    commands = list(dict.fromkeys(df.loc[i, "_confirm"] for i in sorted(best)
                                  if df.loc[i, "n"] == 1 and df.loc[i, "_confirm"]))
    if not commands:
        return []
    which = "The best trial has" if len(commands) == 1 else "These best trials have"
    return [f"{which} one seed; to confirm {'it' if len(commands) == 1 else 'each'} over five, the command its "
            "search ended with (the table then gives its row mean ± std):", "", "```", *commands, "```", ""]


def verdict_lines(runs: pd.DataFrame, study) -> list[str]:
    """report.md's verdicts: how many runs of each depth (or model, at each rate) have each verdict, and the runs that
    are not healthy and why, in the table's order (depth 5 before 10, its regimes and activations)."""
    extra = swept_beside(runs, study)
    v = verdict_rows(runs, extra)
    if v.empty:
        return ["No finished run has a verdict yet.", ""]
    group = "depth" if "depth" in v and v["depth"].astype(str).str.len().gt(0).any() else "model"
    axes = {a.label: a for a in study.all_axes} if study is not None else {}

    def in_order(col: pd.Series) -> pd.Series:  # a swept option (init) in the table's order too
        axis = axes.get(col.name) or (table.Axis(col.name, col.name) if col.name in table.OPTION_ORDER else None)
        return col.map({x: i for i, x in enumerate(table.ordered(col, axis))})

    # a row per data set (where there are several), depth (or model) and value of each setting swept beside
    # the axes: residual_study's verdicts with and without skips, not summed into one count
    # the CNN study's rows are a model at a rate (vgg38_bn at 1e-3 and at 1e-2): counted apart, as in its table
    lr = ["lr"] if group == "model" and "lr" in axes and "lr" in v and v["lr"].nunique() > 1 else []
    by = [*(["dataset"] if "dataset" in v and v["dataset"].nunique() > 1 else []), group, *lr, *extra]
    counts = v.groupby([*by, "verdict"]).size().unstack(fill_value=0).reset_index()
    counts = counts.sort_values(by, key=in_order)
    from vgsweep.jobs import compact

    for c in extra:  # a list of widths as the table shows it (8x1000: a 1000-layer net's row was 3,000 characters)
        counts[c] = counts[c].map(lambda x: compact(x) if str(x).startswith("[") else x)
    bad = v[v.verdict != "healthy"].drop(columns=list(extra))  # their run names say them (and the data set)
    bad = bad.sort_values([c for c in ("dataset", group, "activation", "regime", "run") if c in bad], key=in_order)
    bad = bad.drop(columns=["dataset"] if "dataset" in bad else [])
    # a setting every run of the experiment shares is no column (the MLPs' one learning rate, a study's one depth)
    bad = bad.drop(columns=[c for c in AXES.values() if c in bad and v[c].nunique(dropna=False) < 2])
    # the settings as the params hold them (1.0, not tabulate's 1: its parsing of numbers differs by version)
    return [table.md_table(counts.rename_axis(columns=None), index=False, disable_numparse=True,
                           colalign=["left"] * len(by) + ["right"] * (counts.shape[1] - len(by))), "",
            "Runs that are not healthy:", "",
            table.md_table(bad, index=False) if not bad.empty else "None.", ""]


def section(uri: str, sec: table.Section, out: Path, activation: str,
            problems: list[str] | None = None, where: Sequence[reader.Where] = ()) -> tuple[list[str], bool]:
    """The experiment's part of report.md, and whether it has figures (and so a figures.tex). `problems`:
    where the line saying what could not be read (figures.unreadable_line) goes, for the command's end."""
    experiment, runs, md = sec.name, sec.runs, sec.md
    fig_dir = out / "figures" / reader.folder(experiment)
    made = figures.build(uri, experiment, fig_dir, activation, ended=runs, where=where) \
        if (not runs.empty and runs["status"].eq("FINISHED").any()) else figures.Made([], {})
    figs = [p for p in made if p.suffix == ".png"]
    data = [p.relative_to(out).as_posix() for p in made if p.name.endswith(".csv.gz")]
    lines = [md.replace("# Results: experiment", "# Experiment"), *confirm_lines(sec)]
    if by := made_line(runs):
        lines += [by, ""]
    if made.unreadable:
        line = figures.unreadable_line(experiment, made.unreadable)
        if problems is not None:
            problems.append(line)
        lines += [f"**The diagnostics of {figures.n_runs(len(made.unreadable))} could not be read**: the gradient "
                  "figures and gradients.csv.gz leave them out.", ""]
        lines += [f"- `{run}`: {why}" for run, why in list(made.unreadable.items())[:10]]
        lines += [f"- and {len(made.unreadable) - 10} more"] * (len(made.unreadable) > 10) + [""]
    lines += ["## Verdicts", "", *verdict_lines(runs, sec.study)]
    failed = failed_rows(runs)
    lines += ["## Failed or killed runs", "", table.md_table(failed, index=False) if not failed.empty else "None.", ""]
    if figs:
        tex = (fig_dir / "figures.tex").relative_to(out).as_posix()
        lines += [f"The figures below as PDF for a paper, each with its caption and label: [{tex}]({tex}) (LaTeX). "
                  "The numbers they are drawn from, to plot them another way (CSV, compressed): "
                  + ", ".join(f"[{d.rsplit('/', 1)[-1]}]({d})" for d in data) + ".", ""]
    for kind, (heading, what) in figures.KINDS.items():  # each kind's figures in the order drawn: the study's
        chosen = [p for p in figs if figures.kind_of(p.stem) == kind]  # (depth 5 before 10, mnist first)
        if chosen:
            lines += [f"## {heading}", "", what, ""]
            lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in chosen] + [""]
    return lines, bool(figs)


def latex_page(uri: str, secs: list[table.Section], with_figures: list[bool], when: str,
               where: Sequence[reader.Where] = ()) -> str:
    """report.tex: one LaTeX document of every experiment's tables and figures (their figures.tex,
    with the captions), to compile into report.pdf in the report's folder."""
    from vgsweep.results.table import FIT_MACRO, tex, tex_path_line

    lines = ["% vgsweep report as one document: each experiment's tables (as in table.tex) and figures (its",
             "% figures.tex). In this folder, pdflatex report.tex twice (the figure numbers) makes report.pdf.",
             r"\documentclass{article}", r"\usepackage[margin=2cm]{geometry}", r"\usepackage{booktabs, graphicx}",
             r"\providecommand{\vgsweepfigures}{figures}", FIT_MACRO,
             r"\extrafloats{200}",  # a study's dozens of figures wait for pages without "Too many unprocessed floats"
             r"\title{vgsweep report}", r"\author{}",
             r"\date{Generated " + tex(when) + r" from \texttt{" + tex(hide_passwords(uri)) + "}"
             + (r"\\ only the runs where \texttt{" + tex(reader.said(where)) + "}" if where else "") + "}",
             r"\begin{document}", r"\maketitle", ""]
    for sec, figs in zip(secs, with_figures):
        lines += [r"\section{Experiment \texttt{" + tex(sec.name) + "}}", sec.tex]
        if figs:
            lines += [tex_path_line(r"\input{", f"figures/{reader.folder(sec.name)}/figures.tex", "}")]
        lines += [r"\clearpage", ""]
    return "\n".join(lines + [r"\end{document}", ""])


def build(uri: str, out: Path, experiment: str | None = None, activation: str = "logistic",
          problems: list[str] | None = None, where: Sequence[reader.Where] = ()) -> Path:
    """report.md (and the table, the figures, report.tex); `problems`: section's; `where`: only the runs
    that meet it (reader.where_item)."""
    plots.start_curve_pool(plots.POOL_MIN_CURVES)  # the workers that write the figures start while the table is made
    secs = table.sections(uri, experiment, where)  # the runs of each experiment, read once for the table and the page
    table.write(secs, out)
    names = [sec.name for sec in secs]
    when = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    lines = ["# vgsweep report", "",
             f"Generated {when} from `{hide_passwords(uri)}`: " + ", ".join(f"`{n}`" for n in names) + "."
             + (f" Only the runs where `{reader.said(where)}`." if where else ""),
             "The same tables for a paper in [table.tex](table.tex) (LaTeX, booktabs), every number unrounded in "
             "[table.csv](table.csv); this page as one LaTeX document, tables and figures with their captions, in "
             "[report.tex](report.tex) (`pdflatex report.tex` in this folder).", ""]
    with_figures = []
    for sec in secs:
        part, figs = section(uri, sec, out, activation, problems, where)
        lines += part
        with_figures.append(figs)
    (out / "report.tex").write_text(latex_page(uri, secs, with_figures, when, where))
    path = out / "report.md"
    path.write_text("\n".join(lines))
    print(path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = command_line("vgsweep report", __doc__.splitlines()[0])
    reader.store_args(ap)
    ap.add_argument("--out", default="results", type=home_path,
                    help="folder for report.md, table.md and figures/ (default: results)")
    reader.activation_arg(ap)
    reader.where_arg(ap)
    a = ap.parse_args(argv)
    problems: list[str] = []
    build(reader.store_uri(a.tracking_uri), reader.out_dir("--out", a.out), a.experiment, a.activation, problems,
          a.where)
    for line in problems:  # the report is written, saying so too; the command ends as failed
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
