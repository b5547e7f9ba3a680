"""One page with the table, the verdicts and the figures: `python -m vgsweep.report` (make report).

Regenerates results/table.md, results/table.csv and results/figures/ from MLflow, then writes
results/report.md that embeds them, with every run whose verdict is not healthy and why.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from vgsweep import figures, table, tracking

SECTIONS = [  # (file stem prefix, heading, what it shows)
    ("curves_d", "Learning curves", "Training loss and accuracy per activation, regimes overlaid (mean ± std over seeds)."),
    ("gradient_flow_d", "Gradient flow", "Mean |gradient| of each layer's weights: level when healthy, falling toward the input when vanishing."),
    ("gradient_distribution_", "Gradient distribution over training", "log10 |g| of the first layer's weights per epoch, before and after the added noise."),
    ("activations", "Activation functions", "The activations and their derivatives (logistic's is at most 0.25)."),
]


def verdict_rows(uri: str, experiment: str) -> pd.DataFrame:
    client = tracking.client_for(uri)
    exp = tracking.retry(client.get_experiment_by_name, experiment)
    rows = []
    for r in tracking.training_runs(client, exp.experiment_id, "attributes.status = 'FINISHED'"):
        t, p = r.data.tags, r.data.params
        if "vgsweep.verdict" in t:
            rows.append({"run": r.info.run_name, "verdict": t["vgsweep.verdict"], "reason": t.get("vgsweep.verdict_reason", ""),
                         "test acc (%)": round(100 * r.data.metrics.get("test_acc", float("nan")), 2),
                         "depth": p.get("model.depth"), "activation": p.get("activation.name"), "regime": p.get("regime.name")})
    return pd.DataFrame(rows)


def failed_rows(uri: str, experiment: str) -> pd.DataFrame:
    """Runs that FAILED or were KILLED, with the reason and epoch they carry."""
    client = tracking.client_for(uri)
    exp = tracking.retry(client.get_experiment_by_name, experiment)
    rows = []
    for r in tracking.training_runs(client, exp.experiment_id, "attributes.status != 'FINISHED'"):
        if r.info.status in ("FAILED", "KILLED"):
            t = r.data.tags
            rows.append({"run": r.info.run_name, "status": r.info.status,
                         "reason": t.get("vgsweep.failure", "killed (its process was gone)"),
                         "epoch": t.get("vgsweep.failed_epoch", ""), "overrides": t.get(tracking.TAG_OVERRIDES, "")})
    return pd.DataFrame(rows)


def build(uri: str, experiment: str, out: Path, activation: str = "logistic") -> Path:
    tab = table.build(uri, experiment, out)
    figs = [p for p in figures.build(uri, experiment, out / "figures", activation) if p.suffix == ".png"]
    v = verdict_rows(uri, experiment)
    lines = [f"# vgsweep report: `{experiment}`", "",
             f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from `{uri}`; "
             f"{int(tab['n'].sum()) if not tab.empty else 0} finished runs.", "",
             (out / "table.md").read_text().split("\n", 2)[2], "## Verdicts", ""]
    if not v.empty:
        counts = v.groupby(["depth", "verdict"]).size().unstack(fill_value=0)
        lines += [counts.to_markdown(), "", "Runs that are not healthy:", ""]
        bad = v[v.verdict != "healthy"].sort_values(["depth", "activation", "regime", "run"])
        lines += [bad.to_markdown(index=False) if not bad.empty else "None.", ""]
    failed = failed_rows(uri, experiment)
    lines += ["## Failed or killed runs", "",
              failed.to_markdown(index=False) if not failed.empty else "None.", ""]
    for prefix, heading, what in SECTIONS:
        chosen = sorted(p for p in figs if p.stem.startswith(prefix))
        if chosen:
            lines += [f"## {heading}", "", what, ""]
            lines += [f"![{p.stem}](figures/{p.name})" for p in chosen] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    print(path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vgsweep.report", description=__doc__.splitlines()[0])
    ap.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: the project's mlflow.db)")
    ap.add_argument("--experiment", default="agarap2019")
    ap.add_argument("--out", default="results", type=Path)
    ap.add_argument("--activation", default="logistic", help="activation of the gradient-distribution figure")
    a = ap.parse_args(argv)
    build(a.tracking_uri or tracking.default_uri(), a.experiment, a.out, a.activation)
    return 0


if __name__ == "__main__":
    sys.exit(main())
