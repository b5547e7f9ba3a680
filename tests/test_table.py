"""The aggregator on runs with known accuracies: means, deltas, intervals, dedup, paper format."""

from __future__ import annotations

import itertools
import math
import re
import signal

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from vgsweep.results.studies import AGARAP
from vgsweep.jobs import shown
from vgsweep.results.table import aggregate, cell, delta_interval, published_cell, to_markdown


def _runs(rows):
    out = []
    for i, (act, regime, depth, seed, acc, *extra) in enumerate(rows):
        r = {"data.name": "mnist", "model.depth": str(depth), "activation.name": act, "regime.name": regime,
             "seed": str(seed), "run_id": f"r{i}", "start_time": i, "config_hash": f"{act}{regime}{depth}{seed}",
             "test_acc": acc, "optimizer.lr": "0.0003",
             "regime.grad_noise.enabled": str(regime.startswith("gna"))}  # as the store records it
        if extra:
            r.update(extra[0])
            r["config_hash"] += str(sorted(extra[0].items()))
        out.append(r)
    return pd.DataFrame(out)


BASE = [70.0, 72.0, 74.0]
GNA = [75.0, 78.0, 78.5]


def _grid():
    rows = [("logistic", "baseline", 2, s, a) for s, a in enumerate(BASE)]
    rows += [("logistic", "gna", 2, s, a) for s, a in enumerate(GNA)]
    rows += [("tanh", "baseline", 2, 0, 91.0), ("tanh", "gna", 2, 0, 90.5)]
    return _runs(rows)


def test_mean_std_and_delta():
    df = aggregate(_grid())
    gna = df[(df.activation == "logistic") & (df.regime == "gna")].iloc[0]
    assert gna["n"] == 3
    assert gna["mean"] == pytest.approx(sum(GNA) / 3)
    assert gna["std"] == pytest.approx(pd.Series(GNA).std(ddof=1))
    assert gna["delta"] == pytest.approx(sum(GNA) / 3 - sum(BASE) / 3)
    assert gna["published"] == 75.05 and gna["ours_minus_published"] == pytest.approx(gna["mean"] - 75.05)
    tanh = df[(df.activation == "tanh") & (df.regime == "gna")].iloc[0]
    assert tanh["delta"] == pytest.approx(-0.5) and math.isnan(tanh["delta_lo"])  # one seed: no interval


def test_paired_interval_by_seed():
    d = pd.Series(GNA) - pd.Series(BASE)
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    lo, hi = delta_interval(pd.Series(GNA), pd.Series(BASE))
    assert (lo, hi) == pytest.approx((d.mean() - half, d.mean() + half))


def test_welch_interval_when_seeds_differ():
    a, b = pd.Series([1.0, 2.0, 3.0], index=[0, 1, 2]), pd.Series([0.0, 0.5], index=[5, 6])
    r = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert delta_interval(a, b) == pytest.approx((r.low, r.high))


def test_duplicate_configs_count_once():
    runs = pd.concat([_grid(), _runs([("logistic", "baseline", 2, 0, 10.0)]).assign(
        config_hash="logisticbaseline20", start_time=99)])
    base = aggregate(runs).query("activation == 'logistic' and regime == 'baseline'").iloc[0]
    assert base["n"] == 3 and base["mean"] == pytest.approx((10.0 + 72 + 74) / 3)  # newest kept


def test_runs_that_differ_only_where_a_setting_does_nothing_count_once():
    """A store from before vgsweep hashed inert settings at their defaults holds `init=xavier` runs of
    init.std 0.1 and 0.5 (xavier ignores it) as two configs: the table counts each seed once (the newest
    run), where it counted seeds `0 0 1 1` (n = 4, a std over copies); with init=normal they stay two
    rows."""
    rows = [("tanh", "baseline", 2, s, acc, {"init.name": init, "init.std": std})
            for init, std, accs in (("xavier", "0.1", (90.0, 80.0)), ("xavier", "0.5", (90.0, 80.0)),
                                    ("normal", "0.1", (50.0, 52.0)), ("normal", "0.5", (60.0, 61.0)))
            for s, acc in enumerate(accs)]
    df = aggregate(_runs(rows))
    xavier = df[df["init.name"] == "xavier"]
    assert len(xavier) == 1 and xavier["n"].iloc[0] == 2 and xavier["seeds"].iloc[0] == "0 1"
    assert xavier["std"].iloc[0] == pytest.approx(pd.Series([90.0, 80.0]).std(ddof=1))
    assert sorted(df[df["init.name"] == "normal"]["mean"]) == [51.0, 60.5]


def test_a_swept_key_becomes_a_column_but_implied_ones_do_not():
    rows = [("relu", "baseline", 2, 0, 90.0, {"optimizer.lr": "0.1", "train.batch_size": "1024"}),
            ("relu", "baseline", 2, 0, 80.0, {"optimizer.lr": "0.01", "train.batch_size": "1024"}),
            ("relu", "baseline", 5, 0, 85.0, {"optimizer.lr": "0.1", "train.batch_size": "512"})]
    df = aggregate(_runs(rows))
    assert "optimizer.lr" in df.columns and "train.batch_size" not in df.columns
    assert len(df) == 3
    # the published value only beside the rows that keep the paper's settings (lr 3e-4 here: none)
    assert df["published"].isna().all()
    paper_lr = _runs([("relu", "baseline", 2, 0, 90.0, {"optimizer.lr": "0.0003"}),
                      ("relu", "baseline", 2, 0, 80.0, {"optimizer.lr": "0.01"})])
    df = aggregate(paper_lr).set_index("optimizer.lr")
    assert df.loc["0.0003", "published"] == 91.62 and pd.isna(df.loc["0.01", "published"])


def test_a_width_swept_at_any_depth_reads_as_its_depth_columns_and_compact_widths():
    """`-m model.depth=3,40 model.width=16,32`: a column per depth (model.hidden, which the width makes, varies
    with the depth alone there, so it is no column of its own), and where widths are swept a row per width,
    named as the dry run writes widths (`16x40`: its forty widths made a cell of 200 characters)."""
    hidden = lambda w, d: str([w] * d)  # noqa: E731 - as MLflow's param holds it
    rows = [("relu", "baseline", d, 0, 50.0 + w + d, {"model.hidden": hidden(w, d), "model.width": str(w)})
            for d in (3, 40) for w in (16, 32)]
    md = to_markdown(aggregate(_runs(rows)), AGARAP)
    assert "| baseline | relu | 16x3 | 69.00 |  |" in md and "| baseline | relu | 32x40 |  | 122.00 |" in md, md
    assert "| model.hidden | 3-layer | 40-layer |" in md and "[16, 16" not in md and "model.width" not in md
    md = to_markdown(aggregate(_runs([r for r in rows if "16" in r[5]["model.width"]])), AGARAP)
    assert "| baseline | relu | 69.00 | 106.00 |" in md and "model.hidden" not in md, md  # one width: a depth sweep
    assert [shown(h) for h in ("[512, 512]", "[512, 512, 256, 256, 128]", "[256, 256, 256, 8]", "[0.1, 0.1, 0.1]")] \
        == ["[512, 512]", "[512, 512, 256, 256, 128]", "256x3-8", "[0.1, 0.1, 0.1]"]


def test_an_option_swept_beside_the_axes_is_its_name_not_also_the_settings_it_brings():
    """`optimizer=sgd,adam` beside the axes: the table keeps the runs apart by the option (optimizer.name);
    the learning rate each option brings (3e-4, 1e-3) was a second column, as if swept too. It is one
    where it varies within an option."""
    rows = [("relu", "baseline", 5, 0, 50.0 + i, {"optimizer.name": n, "optimizer.lr": lr})
            for i, (n, lr) in enumerate((("adam", "0.001"), ("sgd", "0.0003")))]
    df = aggregate(_runs(rows), AGARAP)
    assert "optimizer.name" in df.columns and "optimizer.lr" not in df.columns
    assert list(df["optimizer.name"]) == ["sgd", "adam"] and list(df["mean"]) == [51.0, 50.0]
    rows.append(("relu", "baseline", 5, 0, 70.0, {"optimizer.name": "sgd", "optimizer.lr": "0.01"}))
    df = aggregate(_runs(rows), AGARAP)
    assert {"optimizer.name", "optimizer.lr"} <= set(df.columns) and len(df) == 3
    # settings of no one group that happen to vary together are each shown
    rows = [("relu", "baseline", 5, 0, 50.0 + i, {"optimizer.lr": lr, "train.epochs": e})
            for i, (lr, e) in enumerate((("0.01", "3"), ("0.1", "5")))]
    assert {"optimizer.lr", "train.epochs"} <= set(aggregate(_runs(rows), AGARAP).columns)


def test_failed_configs_are_counted_not_averaged():
    runs = _grid().assign(status="FINISHED")
    failed = _runs([("logistic", "gna", 2, 3, float("nan")), ("tanh", "gna_bn", 2, 0, float("nan"))]).assign(
        status=["FAILED", "KILLED"])
    retried = _runs([("logistic", "baseline", 2, 0, 1.0)]).assign(config_hash="logisticbaseline20", status="FAILED",
                                                                  start_time=99)  # a failed rerun of a finished config
    df = aggregate(pd.concat([runs, failed, retried]))
    gna = df[(df.activation == "logistic") & (df.regime == "gna")].iloc[0]
    assert gna["n"] == 3 and gna["failed"] == 1 and gna["mean"] == pytest.approx(sum(GNA) / 3)
    assert cell(gna).endswith("[1 failed]")
    base = df[(df.activation == "logistic") & (df.regime == "baseline")].iloc[0]
    assert base["n"] == 3 and base["failed"] == 0  # the FINISHED run of that config counts, not the failed one
    only_failed = df[(df.activation == "tanh") & (df.regime == "gna_bn")].iloc[0]
    assert only_failed["n"] == 0 and only_failed["failed"] == only_failed["killed"] == 1
    assert cell(only_failed) == "— (1 killed)"  # interrupted, not judged: not called a failure
    assert cell(pd.Series({**only_failed, "killed": 0})) == "— (1 failed)"
    assert cell(pd.Series({**gna, "failed": 3, "killed": 1})).endswith("[2 failed, 1 killed]")


def test_verdicts_are_summarised_per_cell():
    runs = _grid().assign(verdict="healthy")
    runs.loc[(runs["activation.name"] == "logistic") & (runs["regime.name"] == "gna"), "verdict"] = [
        "vanishing", "vanishing", "healthy"]
    df = aggregate(runs)
    gna = df[(df.activation == "logistic") & (df.regime == "gna")].iloc[0]
    assert gna["verdict"] == "vanishing 2/3, healthy 1/3"
    assert cell(gna).endswith(" vanishing 2/3, healthy 1/3")
    base = df[(df.activation == "logistic") & (df.regime == "baseline")].iloc[0]
    assert base["verdict"] == "healthy" and "healthy" not in cell(base)


def test_cells_in_the_papers_format():
    df = aggregate(_grid())
    gna = df[(df.activation == "logistic") & (df.regime == "gna")].iloc[0]
    assert cell(gna) == f"{gna['mean']:.2f} ± {gna['std']:.2f} (+{gna['delta']:.2f}*)"
    assert published_cell(AGARAP, ("mnist", "gna", "logistic", 2)) == "75.05 (+9.93)"
    md = to_markdown(df)
    assert "| gna | logistic |" in md and "75.05 (+9.93)" in md and "2-layer published" in md
    assert md.index("| baseline | logistic") < md.index("| baseline | tanh") < md.index("| gna | logistic")
    assert f"Published: {AGARAP.source}." in md
    # a table of rows the paper has no value for (depth 10) names no published source under it
    deep = to_markdown(aggregate(_runs([("tanh", "baseline", 10, 0, 90.0), ("tanh", "gna", 10, 0, 91.0)])), AGARAP)
    assert "| baseline | tanh |" in deep and "published" not in deep.lower()
    # `*` is explained where a cell could carry it: two seeds or more (an interval), not one
    assert "`*`: the 95% interval" in md and "`*`" not in deep


def test_runs_from_before_a_key_existed_group_with_its_neutral_value():
    """A run recorded before regime.weight_norm existed has no such param: it is a weight_norm=False run."""
    old = _runs([("logistic", "baseline", 2, 0, 70.0), ("logistic", "gna", 2, 0, 75.0)])
    new = _runs([("logistic", "baseline", 2, 1, 72.0, {"regime.weight_norm": "False"}),
                 ("logistic", "gna", 2, 1, 78.0, {"regime.weight_norm": "False"})])
    df = aggregate(pd.concat([old, new.assign(run_id=["n0", "n1"], start_time=[10, 11])], ignore_index=True))
    assert len(df) == 2 and list(df["n"]) == [2, 2]
    assert "regime.weight_norm" not in df.columns  # not a grouping key: it never varies in effect
    gna = df[df.regime == "gna"].iloc[0]
    assert gna["published"] == 75.05 and gna["ours_minus_published"] == pytest.approx(76.5 - 75.05)


def test_a_study_without_published_values_says_nothing_about_them():
    """A study name of the user's own gets the layout of its family's study and no published column or source."""
    from vgsweep.results.studies import study_for

    mine = study_for("my_mnist_study", "mlp")
    md = to_markdown(aggregate(_grid(), mine), mine)
    assert "| gna | logistic |" in md and "published" not in md.lower()
    assert "75.05" not in md


def test_the_noise_scale_study_takes_deltas_against_no_noise():
    from vgsweep.results.studies import study_for

    study = study_for("noise_scale")
    rows = [("tanh", "gna", 2, s, acc, {"regime.grad_noise.eta": eta})
            for eta, accs in (("0.0", (90.0, 91.0)), ("0.1", (92.0, 92.5)), ("1.0", (85.0, 86.0)))
            for s, acc in enumerate(accs)]
    df = aggregate(_runs(rows), study).set_index("noise eta")
    assert math.isnan(df.loc["0.0", "delta"])
    assert df.loc["0.1", "delta"] == pytest.approx(92.25 - 90.5) and df.loc["1.0", "delta"] == pytest.approx(85.5 - 90.5)
    assert "published" not in to_markdown(aggregate(_runs(rows), study), study).lower()


def test_the_init_scale_study_takes_the_noises_delta_at_each_gain():
    """experiment=init_scale: a gna row's delta is against the baseline with the same init.gain."""
    from vgsweep.results.studies import study_for

    study = study_for("init_scale")
    rows = [("logistic", regime, 5, s, acc, {"init.name": "xavier", "init.gain": gain})
            for gain, regime, accs in (("1.0", "baseline", (11.35, 11.35)), ("1.0", "gna", (80.0, 81.0)),
                                       ("4.0", "baseline", (90.0, 91.0)), ("4.0", "gna", (90.5, 91.5)))
            for s, acc in enumerate(accs)]
    df = aggregate(_runs(rows), study).set_index(["init gain", "regime"])
    assert list(df.index) == [("1.0", "baseline"), ("1.0", "gna"), ("4.0", "baseline"), ("4.0", "gna")]
    assert df.loc[("1.0", "gna"), "delta"] == pytest.approx(80.5 - 11.35)
    assert df.loc[("4.0", "gna"), "delta"] == pytest.approx(91.0 - 90.5)
    assert math.isnan(df.loc[("4.0", "baseline"), "delta"])


def test_the_double_softmax_study_sets_both_variants_beside_the_published_values():
    """Rows with and without the double softmax each show the published value and their distance to it,
    and deltas to the baseline of their own variant."""
    from vgsweep.app import compose
    from vgsweep.config import flatten, to_container
    from vgsweep.results.studies import study_for

    study = study_for("double_softmax")
    rows = []
    for ds in (False, True):
        for regime, acc in (("baseline", 65.0 - 50 * ds), ("gna", 75.0 - 50 * ds)):
            params = {k: str(v) for k, v in flatten(to_container(compose(
                [f"regime={regime}", "activation=logistic", "depth=2", f"model.double_softmax={str(ds).lower()}"]))).items()}
            params.pop("seed")
            rows.append(("logistic", regime, 2, 0, acc, params))
    df = aggregate(_runs(rows), study)
    gna = df[df.regime == "gna"].set_index("double softmax")
    assert list(gna["published"]) == [75.05, 75.05] and list(gna["not_comparable"]) == ["", ""]
    assert gna.loc["True", "ours_minus_published"] == pytest.approx(25.0 - 75.05)
    assert gna.loc["False", "delta"] == pytest.approx(10.0) and gna.loc["True", "delta"] == pytest.approx(10.0)


def test_the_table_as_coded_sets_the_published_values_beside_each_column_run_as_its_code_ran_it():
    """experiment=paper_table1_as_coded: the 2-layer runs with the plain loss and the 5-layer runs with
    the double softmax are each the published setting of their cell; a 5-layer run with the plain
    loss is not (it is the paper_table1 study's)."""
    from vgsweep.app import compose
    from vgsweep.config import flatten, to_container
    from vgsweep.results.studies import study_for

    study = study_for("agarap2019_as_coded")
    rows = []
    for over, depth, acc in ((["paper_column=2"], 2, 90.0), (["paper_column=5"], 5, 40.0),
                             (["depth=5", "model.double_softmax=false"], 5, 92.0)):
        params = {k: str(v) for k, v in flatten(to_container(compose(
            [*over, "regime=baseline", "activation=swish", "study=agarap2019_as_coded"]))).items()}
        params.pop("seed")
        rows.append(("swish", "baseline", depth, 0, acc, params))
    df = aggregate(_runs(rows[:2]), study).set_index("depth")
    assert list(df["published"]) == [89.95, 37.18] and list(df["not_comparable"]) == ["", ""]
    assert df.loc[5, "ours_minus_published"] == pytest.approx(40.0 - 37.18)
    plain = aggregate(_runs([rows[2]]), study)
    assert "model.double_softmax=False" in plain["not_comparable"].iloc[0]


def test_lines_keyed_on_two_axes_differ_in_dash_where_they_share_a_colour():
    from vgsweep.results.figures import _style

    lines = [("False", "baseline"), ("False", "gna"), ("True", "baseline"), ("True", "gna")]
    assert [_style(lines, x) for x in lines] == ["-", "-", "--", "--"]
    assert _style([("relu",)], ("relu",)) == "-"


def test_a_figures_run_that_fails_ends_failed_or_killed_and_keeps_the_previous_one(tmp_path, monkeypatch):
    """`figures` replaces the experiment's figures run only once the new one is complete: an upload
    that fails leaves the new run FAILED with the reason (not RUNNING), one interrupted KILLED, and the
    previous run intact."""
    from mlflow.tracking import MlflowClient

    from vgsweep.results.figures import log_figures

    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    pngs = []
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"png")
        pngs.append(tmp_path / name)
    log_figures(client, exp, pngs)
    [first] = client.search_runs([exp])
    assert first.info.status == "FINISHED"

    def broken(run_id, path, artifact_path=None):
        raise OSError("disk full")

    monkeypatch.setattr(client, "log_artifact", broken)
    with pytest.raises(OSError, match="disk full"):
        log_figures(client, exp, pngs)
    runs = {r.info.run_id: r for r in client.search_runs([exp])}
    assert runs[first.info.run_id].info.status == "FINISHED" and len(runs) == 2  # the previous one is kept
    [new] = [r for r in runs.values() if r.info.run_id != first.info.run_id]
    assert new.info.status == "FAILED" and new.data.tags["vgsweep.failure"] == "OSError: disk full"
    # interrupted while it uploads (Ctrl-C; SIGTERM and SIGHUP raised as vgsweep's Terminated): KILLED, as a
    # sweep's runs are, with what interrupted it
    from vgsweep.app import Terminated

    for signal_, said in ((KeyboardInterrupt(), "SIGINT (Ctrl-C)"), (Terminated(signal.SIGTERM), "SIGTERM"),
                          (Terminated(signal.SIGHUP), "SIGHUP (its terminal closed)")):
        def interrupted(run_id, path, artifact_path=None, e=signal_):
            raise e

        monkeypatch.setattr(client, "log_artifact", interrupted)
        with pytest.raises(type(signal_)):
            log_figures(client, exp, pngs)
        [killed] = [r for r in client.search_runs([exp]) if r.info.run_id not in runs]
        assert killed.info.status == "KILLED" and killed.data.tags["vgsweep.failure"] == f"interrupted by {said}"
        runs[killed.info.run_id] = killed
    assert runs[first.info.run_id].info.status == "FINISHED"  # still the experiment's figures
    monkeypatch.undo()
    log_figures(client, exp, pngs)  # a complete one replaces them all
    [last] = client.search_runs([exp])
    assert last.info.status == "FINISHED" and last.info.run_id not in runs
    assert sorted(a.path for a in client.list_artifacts(last.info.run_id, "figures")) == ["figures/a.png", "figures/b.png"]


def test_figures_never_average_runs_of_different_configs():
    """A setting swept beside the study's axes (here the double softmax) splits the figures, as it
    splits the table's rows: a figure's mean and band are over seeds only. Settings the axes imply
    (the hidden sizes of a depth) and the seed do not split them."""
    from vgsweep.results.figures import _by_other_settings

    import itertools

    rows = []
    for regime, (depth, hidden), seed, ds in itertools.product(("baseline", "gna"), (("2", "[512, 512]"), ("5", "[512]")),
                                                               (0, 1), ("False", "True")):
        rows.append({"run_id": f"r{len(rows)}", "config_hash": f"h{len(rows)}", "data.name": "mnist",
                     "regime.name": regime, "activation.name": "relu", "model.depth": depth, "model.hidden": hidden,
                     "seed": seed, "model.double_softmax": ds, "regime": regime, "activation": "relu", "depth": depth,
                     "dataset": "mnist", "diagnostics": True})
    runs = pd.DataFrame(rows)
    parts = _by_other_settings(runs, AGARAP)
    assert [extra for extra, _ in parts] == [(("model.double_softmax", "False"),), (("model.double_softmax", "True"),)]
    for (extra, part) in parts:
        assert set(part["model.double_softmax"]) == {extra[0][1]} and len(part) == 8  # 2 regimes x 2 depths x 2 seeds
    same = runs[runs["model.double_softmax"] == "False"]
    [(extra, part)] = _by_other_settings(same, AGARAP)
    assert extra == () and part.equals(same)


@pytest.mark.parametrize("name", ["agarap2019", "vgg_cifar100", "noise_scale", "init_scale", "double_softmax",
                                  "agarap2019_as_coded", "lr_search"])
def test_each_figure_of_a_study_keeps_apart_the_runs_of_every_axis(name):
    """A figure draws one line per value of its `by`, `panel` and `line` axes, averaged over the runs
    that share them: an axis of the study it names nowhere (but the data set, whose runs figures.build
    draws apart; the activation of gradient_distribution, drawn one per figure) would be averaged over."""
    from vgsweep.results.studies import STUDIES

    study = STUDIES[name]
    assert set(STUDIES) == {"agarap2019", "vgg_cifar100", "noise_scale", "init_scale", "double_softmax",
                            "agarap2019_as_coded", "lr_search"}  # a new study joins the list above
    axes = {a.label for a in study.all_axes} - {"dataset"}
    for spec in study.figures:
        if spec.kind in ("activations", "search"):  # not per run: the functions; one point per trial
            continue
        named = {spec.by, *spec.panel, *spec.line, *spec.x} | ({"activation"} if spec.kind == "gradient_distribution"
                                                               else set())
        assert axes <= named, (spec.kind, axes - named)


def test_the_results_figure_draws_each_seed_its_mean_and_the_published_value_where_the_table_sets_it():
    """The table as a figure: a panel per depth, a place per activation, a colour per regime; each seed a
    dot, the mean ± std as an error bar, the published value a diamond beside the cells the table compares
    with it: not beside runs made at another learning rate. The panels share their places on the x axis."""
    from vgsweep.results import figures

    rows = [("logistic", "baseline", 2, s, a) for s, a in enumerate(BASE)]
    rows += [("logistic", "gna", 2, s, a) for s, a in enumerate(GNA)]
    rows += [("tanh", "baseline", 5, s, a, {"optimizer.lr": "0.003"}) for s, a in enumerate((95.0, 96.0))]
    d = _runs(rows)
    d = d.assign(**{"metric:test_acc": d.pop("test_acc") / 100, "status": "FINISHED", "diagnostics": True,
                    **{a.label: d[a.key] for a in AGARAP.all_axes}})
    spec = next(f for f in AGARAP.figures if f.kind == "results")
    fig = figures.fig_results(d, AGARAP, spec, "Table 1")
    try:
        axes = [ax for ax in fig.axes if ax.get_visible()]
        assert [ax.get_title() for ax in axes] == ["2-layer networks", "5-layer networks"]
        assert [[t.get_text() for t in ax.get_xticklabels()] for ax in axes] == [["logistic", "tanh"]] * 2

        def drawn(ax, label):
            return sorted(round(float(y), 6) for c in ax.collections if c.get_label() == label
                          for y in c.get_offsets()[:, 1])

        means = {c.get_label(): (c.lines[0].get_ydata()[0], c.has_yerr) for c in axes[0].containers}
        assert means == {"baseline": (pytest.approx(72.0), True), "gna": (pytest.approx(sum(GNA) / 3), True)}
        assert drawn(axes[0], "published") == [65.12, 75.05]  # beside logistic baseline and gna, 2 layers
        assert drawn(axes[1], "published") == []  # the tanh runs are not the paper's setting (lr 0.003)
        assert drawn(axes[0], "_seed") == sorted(BASE + GNA)  # every seed, none averaged away
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ["baseline", "gna", "published"]
        assert "n = 2-3" in fig._suptitle.get_text() and "published" in fig._suptitle.get_text()
    finally:
        figures.plt.close(fig)
    assert figures.fig_results(d.drop(columns="metric:test_acc"), AGARAP, spec, "t") is None  # nothing to draw

    spec = next(f for f in AGARAP.figures if f.kind == "deltas")  # the same cells as deltas to the baseline
    fig = figures.fig_results(d, AGARAP, spec, "Table 1")
    try:
        [ax] = [ax for ax in fig.axes if ax.get_visible()]  # 5 layers: a baseline alone, no delta, no panel
        assert ax.get_title() == "2-layer networks" and ax.get_ylabel() == "test accuracy: delta to baseline (pp)"
        [bar] = ax.containers
        lo, hi = delta_interval(pd.Series(GNA), pd.Series(BASE))
        mean = sum(GNA) / 3 - sum(BASE) / 3
        assert bar.get_label() == "gna" and bar.lines[0].get_ydata()[0] == pytest.approx(mean)
        segment = bar.lines[2][0].get_segments()[0]  # the interval, paired by seed
        assert [y for _, y in segment] == [pytest.approx(lo), pytest.approx(hi)]
        assert drawn(ax, "published") == [round(75.05 - 65.12, 6)]  # the published cell against its baseline
    finally:
        figures.plt.close(fig)

    # nothing learnt: every cell 10% and every delta 0 up to float noise (and no published value to widen the axis)
    same = d.assign(**{"metric:test_acc": 0.1 + 1e-16 * (d.index % 3), "optimizer.lr": "0.003"})
    for spec in [f for f in AGARAP.figures if f.kind in ("results", "deltas")]:
        fig = figures.fig_results(same, AGARAP, spec, "t")
        lo, hi = fig.axes[0].get_ylim()
        fig.canvas.draw()
        assert hi - lo >= 1 and fig.axes[0].yaxis.get_offset_text().get_text() == ""  # not a 1e-17 axis
        figures.plt.close(fig)


def _figures_of(monkeypatch, tmp_path, rows: list[dict]) -> tuple[list, dict]:
    """figures.build over these runs (reader's store calls answered from them, a loss history of two
    epochs each, a run's name its id): its paths, and the results and deltas figures it drew, by kind."""
    from types import SimpleNamespace

    from vgsweep.results import figures, reader

    monkeypatch.setattr(reader, "open_experiment",
                        lambda uri, name: (None, SimpleNamespace(experiment_id="1", artifact_location=None)))
    monkeypatch.setattr(reader, "runs_frame", lambda client, exp_id, statuses=(): pd.DataFrame(rows).assign(
        run_name=lambda d: d.run_id).loc[lambda d: d["status"].isin(statuses) if statuses else d.index == d.index])
    monkeypatch.setattr(reader, "history", lambda client, run_id, key: np.array([2.3, 2.2]))
    monkeypatch.setattr(reader, "by_step", lambda client, run_id, key: {0: 2.3, 1: 2.2})  # curves.csv's
    drawn = {}
    real = figures.fig_results
    monkeypatch.setattr(figures, "fig_results", lambda d, study, spec, title, **kw: drawn.setdefault(
        spec.kind, real(d, study, spec, title, **kw)))
    return figures.build("sqlite:///unused.db", "agarap2019", tmp_path, log_to_mlflow=False), drawn


@pytest.mark.parametrize("key, values, shown", [("model.double_softmax", ("False", "True"), "model.double_softmax"),
                                               ("init.name", ("xavier", "he"), "init")])
def test_a_setting_swept_beside_the_studys_axes_is_a_marker_of_the_one_results_figure(monkeypatch, tmp_path, key,
                                                                                      values, shown):
    """The double softmax (or the init) swept beside the paper grid: one results figure holds both values
    (a marker shape each, the regimes keep their colours), where the curves come one figure per value
    (files named by the setting: init, not init.name's `name`); the published values stand beside the
    runs made with the published setting only (the first value), as in the table."""
    import itertools

    from vgsweep.results import figures

    rows = [{"run_id": f"r{i}", "config_hash": f"h{i}", "start_time": i, "status": "FINISHED", "study": "agarap2019",
             "model.family": "mlp", "diagnostics.enabled": "False", "data.name": "mnist", "model.depth": "2",
             "activation.name": act, "regime.name": regime, "seed": str(seed), key: v,
             "optimizer.lr": "0.0003", "metric:test_acc": 0.5 + 0.1 * (v == values[1]) + 0.01 * seed}
            for i, (act, regime, seed, v) in enumerate(itertools.product(("relu", "tanh"), ("baseline", "gna"),
                                                                          (0, 1), values))]
    titles = []
    real = figures.fig_curves
    monkeypatch.setattr(figures, "fig_curves", lambda client, d, study, spec, title: titles.append(title) or real(
        client, d, study, spec, title))
    paths, drawn = _figures_of(monkeypatch, tmp_path, rows)
    assert titles == [f"2-layer networks ({shown}={v})" for v in values]  # as the legends name it: init=he
    stems = sorted({p.stem for p in paths})
    short = key.split(".")[-1] if key != "init.name" else "init"
    assert stems == sorted(["activations", "curves.csv", *(f"curves_d2_{short}-{v}" for v in values), "deltas",
                            "figures", "results"])  # curves.csv.gz: the numbers of every run, both values of the setting
    curves = pd.read_csv(tmp_path / "curves.csv.gz")
    assert len(curves) == 2 * len(rows) and set(curves[key].astype(str)) == set(values)  # a column of its own
    labels = [f"{shown}={v} {r}" for v in values for r in ("baseline", "gna")]
    legend = [t.get_text() for t in drawn["results"].legends[0].get_texts() if t.get_text()]  # not its empty places
    assert legend == [*labels, "published"]
    ax = drawn["results"].axes[0]
    # the published values beside the runs made with the published setting only: the table's rule, read
    # with the study as it was before the swept setting joined its axes
    published = sorted(round(float(y), 6) for c in ax.collections if c.get_label() == "published"
                       for y in c.get_offsets()[:, 1])
    assert published == [91.12, 91.61, 91.62, 92.37]
    assert {c.get_label(): c.lines[0].get_marker() for c in ax.containers} == dict(zip(labels, "ooss"))
    assert {c.get_label(): c.lines[0].get_color() for c in ax.containers}[labels[-1]] == figures.FIXED["gna"]
    fig = drawn["results"]
    fig.canvas.draw()  # the legend's long entries take as many columns as fit the page, not four side by side
    assert fig.get_tightbbox().width <= fig.get_figwidth() + 0.05


def test_figures_of_runs_apart_by_long_widths_get_file_names_a_file_system_takes(monkeypatch, tmp_path):
    """Runs of three model.hidden at one depth: figures apart per value, each named by it as names show it
    (`16x1000`, not a list of 1,000 widths: OSError, file name too long, and no figure written after it),
    a value that stays long cut with a short hash of it (two such never share a name); the title too."""
    import hashlib
    import itertools

    from vgsweep.results import figures

    values = (str([8] * 1000), str([512, 256] * 40))
    rows = [{"run_id": f"r{i}", "config_hash": f"h{i}", "start_time": i, "status": "FINISHED", "study": "agarap2019",
             "model.family": "mlp", "diagnostics.enabled": "False", "data.name": "mnist", "model.depth": "2",
             "activation.name": "relu", "regime.name": regime, "seed": "0", "model.hidden": v,
             "optimizer.lr": "0.0003", "metric:test_acc": 0.5}
            for i, (regime, v) in enumerate(itertools.product(("baseline", "gna"), values))]
    titles = []
    real = figures.fig_curves
    monkeypatch.setattr(figures, "fig_curves", lambda client, d, study, spec, title: titles.append(title) or real(
        client, d, study, spec, title))
    paths, _ = _figures_of(monkeypatch, tmp_path, rows)
    curves = sorted(p.name for p in paths if p.name.startswith("curves_d2") and p.suffix == ".png")
    cut = "512-256-" * 6 + "512-256-512"
    digest = hashlib.sha256(values[1].encode()).hexdigest()[:8]
    assert curves == sorted(["curves_d2_hidden-8x1000.png", f"curves_d2_hidden-{cut[:51]}-{digest}.png"]), curves
    assert all(p.is_file() and len(p.name) < 100 for p in paths)
    assert sorted(titles) == sorted(f"2-layer networks (model.hidden={v})" for v in ("8x1000", values[1]))
    assert [figures._in_file_name(v) for v in ("[16, 16]", "init/he", "0.01567667719550607")] == [
        "16-16", "init-he", "0.01567667719550607"]  # two trials' rates stay two names


def test_no_figure_but_the_results_ones_mixes_data_sets(monkeypatch, tmp_path):
    """The paper grid on MNIST and Fashion-MNIST: the curves and gradient figures come one per data set
    (files `curves_d2_mnist`, `curves_d2_fashion_mnist`, the data set in the title); they averaged the
    two data sets' runs as if seeds (a band with one seed each). A figure names the configs it leaves out
    of its own data set only. The results figure keeps a panel per data set; the report counts the
    verdicts per data set and shows the figures in the study's order (mnist first)."""
    import itertools

    from vgsweep.results import figures
    from vgsweep.results.report import verdict_lines

    rows = [{"run_id": f"r{i}", "config_hash": f"h{i}", "start_time": i, "study": "agarap2019",
             "status": "FAILED" if (ds, act, seed) == ("fashion_mnist", "tanh", 1) else "FINISHED",
             "model.family": "mlp", "diagnostics.enabled": "False", "data.name": ds, "model.depth": "2",
             "activation.name": act, "regime.name": regime, "seed": str(seed), "optimizer.lr": "0.0003",
             "metric:test_acc": 0.5 + 0.01 * seed, "verdict": "healthy" if act == "relu" else "not_learning",
             "verdict_reason": "why"}
            for i, (ds, act, regime, seed) in enumerate(itertools.product(("fashion_mnist", "mnist"), ("relu", "tanh"),
                                                                           ("baseline", "gna"), (0, 1)))]
    seen = []
    real = figures.fig_curves
    monkeypatch.setattr(figures, "fig_curves", lambda client, d, study, spec, title: seen.append(
        (set(d["dataset"]), len(d), title)) or real(client, d, study, spec, title))
    paths, drawn = _figures_of(monkeypatch, tmp_path, rows)
    assert [p.stem for p in paths if p.suffix == ".png" and p.stem.startswith("curves")] == \
        ["curves_d2_mnist", "curves_d2_fashion_mnist"]
    assert [(ds, n) for ds, n, _ in seen] == [({"mnist"}, 8), ({"fashion_mnist"}, 6)]  # its two failed runs left out
    assert "(fashion_mnist)" in seen[1][2] and "(mnist)" in seen[0][2]
    tex = (tmp_path / "figures.tex").read_text()
    mnist_caption = tex[tex.index("curves_d2_mnist.pdf"):].split("\\label")[0]
    fashion_caption = tex[tex.index("curves_d2_fashion_mnist.pdf"):].split("\\label")[0]
    assert "Not drawn" in fashion_caption and "Not drawn" not in mnist_caption
    assert [ax.get_title() for ax in drawn["results"].axes if ax.get_visible()] == \
        ["mnist depth=2", "fashion_mnist depth=2"]
    counts = verdict_lines(pd.DataFrame(rows).assign(run_name=lambda d: d.run_id), AGARAP)[0].splitlines()
    assert [[c.strip() for c in ln.split("|")[1:3]] for ln in counts[2:]] == [["mnist", "2"], ["fashion_mnist", "2"]]
    assert [[c.strip() for c in ln.split("|")[3:]][:2] for ln in counts[2:]] == [["4", "4"], ["4", "2"]]
    bad = verdict_lines(pd.DataFrame(rows).assign(run_name=lambda d: d["data.name"] + "-" + d.run_id),
                        AGARAP)[4].splitlines()[2:]
    assert [ln.split("|")[1].strip().startswith("mnist") for ln in bad] == [True] * 4 + [False] * 2  # mnist first


def test_an_accuracy_axis_stops_near_0_and_100_percent_where_a_std_bar_reaches_past(monkeypatch, tmp_path):
    """Two seeds at 0% and 30%: the mean's ±1 std bar reaches -6%, and the axis went down to -8% (ticks
    at -5 on an accuracy); it stops just below 0 (the markers at 0 whole). 100% likewise at the top."""
    rows = [{"run_id": f"r{i}", "config_hash": f"h{i}", "start_time": i, "status": "FINISHED", "study": "agarap2019",
             "model.family": "mlp", "diagnostics.enabled": "False", "data.name": "mnist", "model.depth": "2",
             "activation.name": "relu", "regime.name": regime, "seed": str(seed), "optimizer.lr": "0.0003",
             "metric:test_acc": acc}
            for i, (regime, seed, acc) in enumerate((("baseline", 0, 0.0), ("baseline", 1, 0.3), ("gna", 0, 0.7),
                                                     ("gna", 1, 1.0)))]
    _, drawn = _figures_of(monkeypatch, tmp_path, rows)
    lo, hi = drawn["results"].axes[0].get_ylim()
    assert -3 < lo < 0 and 100 < hi < 103, (lo, hi)


def test_the_results_figure_marks_chance_where_its_axis_spans_it(monkeypatch, tmp_path):
    """Nets stuck at chance beside nets that learned: a dotted line at chance (10% on MNIST) across the
    panel, said in the title; nets that all learned (95-98%) get none, their axis not stretched to 10%;
    the deltas figure (differences, not accuracies) none either."""
    def rows(accs):
        return [{"run_id": f"r{i}", "config_hash": f"h{i}", "start_time": i, "status": "FINISHED",
                 "study": "agarap2019", "model.family": "mlp", "diagnostics.enabled": "False", "data.name": "mnist",
                 "model.depth": "2", "activation.name": "relu", "regime.name": regime, "seed": str(seed),
                 "optimizer.lr": "0.0003", "metric:test_acc": acc}
                for i, (regime, seed, acc) in enumerate(zip(("baseline", "baseline", "gna", "gna"), (0, 1) * 2, accs))]

    def chance(fig):
        return [ln.get_ydata()[0] for ax in fig.axes for ln in ax.get_lines()
                if ln.get_color() == "0.35" and list(ln.get_xdata()) == [0, 1]]

    _, drawn = _figures_of(monkeypatch, tmp_path / "stuck", rows((0.10, 0.11, 0.95, 0.97)))
    assert chance(drawn["results"]) == [10.0] and "; dotted: chance (accuracy 10%)" in drawn["results"]._suptitle.get_text()
    assert chance(drawn["deltas"]) == [] and "chance" not in drawn["deltas"]._suptitle.get_text()
    monkeypatch.undo()  # _figures_of again: its own fig_results in place of the one patched above
    _, drawn = _figures_of(monkeypatch, tmp_path / "learned", rows((0.95, 0.96, 0.97, 0.98)))
    assert chance(drawn["results"]) == [] and drawn["results"].axes[0].get_ylim()[0] > 90
    assert "chance" not in drawn["results"]._suptitle.get_text()


def test_the_results_figure_of_several_data_sets_is_a_row_per_data_set(monkeypatch, tmp_path):
    """Two data sets and two depths: a row of panels per data set, a column per depth (they wrapped three
    to a row: mnist 2, mnist 5, fashion_mnist 2, then fashion_mnist 5 alone)."""
    import itertools

    rows = [{"run_id": f"r{i}", "config_hash": f"h{i}", "start_time": i, "status": "FINISHED", "study": "noise_scale",
             "model.family": "mlp", "diagnostics.enabled": "False", "data.name": ds, "model.depth": depth,
             "activation.name": "relu", "regime.name": "gna", "regime.grad_noise.enabled": "True",
             "regime.grad_noise.eta": eta, "seed": "0",
             "optimizer.lr": "0.0003", "metric:test_acc": 0.5}
            for i, (ds, depth, eta) in enumerate(itertools.product(("fashion_mnist", "mnist"), ("5", "2"), ("0.0", "1.0")))]
    _, drawn = _figures_of(monkeypatch, tmp_path, rows)
    for kind in ("results", "deltas"):
        shown = [ax for ax in drawn[kind].axes if ax.get_visible()]
        where = {ax.get_title(): ax.get_subplotspec() for ax in shown}
        assert {t: (sp.rowspan.start, sp.colspan.start) for t, sp in where.items()} == {
            "mnist depth=2": (0, 0), "mnist depth=5": (0, 1), "fashion_mnist depth=2": (1, 0),
            "fashion_mnist depth=5": (1, 1)}, (kind, where)


def test_a_users_study_names_no_setting_where_it_does_nothing_in_its_figures(monkeypatch, tmp_path):
    """A study vgsweep does not know sweeps optimizer and momentum: its swept settings label the figures'
    series, and an Adam run's label leaves out the momentum it was given (Adam has none), as its table
    cell does. Its labels said `optimizer.momentum=0.5 optimizer=adam`."""
    from vgsweep.results import figures

    rows = [{"run_id": f"r{i}", "config_hash": f"h{i}", "start_time": i, "status": "FINISHED", "study": "opt",
             "model.family": "mlp", "diagnostics.enabled": "False", "data.name": "mnist", "model.depth": "2",
             "activation.name": "relu", "regime.name": "baseline", "seed": str(seed), "optimizer.name": name,
             "optimizer.momentum": mom, "optimizer.lr": "0.01", "metric:test_acc": 0.5 + 0.01 * i}
            for i, (name, mom, seed) in enumerate((n, m, s) for n, m in (("sgd", "0.5"), ("sgd", "0.9"),
                                                                          ("adam", "0.5")) for s in (0, 1))]
    curves = []
    real = figures.fig_curves
    monkeypatch.setattr(figures, "fig_curves", lambda *a, **k: curves.append(real(*a, **k)) or curves[-1])
    _, drawn = _figures_of(monkeypatch, tmp_path, rows)
    for fig in (drawn["results"], *curves):
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert any("optimizer=adam" in t for t in labels) and len(labels) == 3, labels
        assert all(("momentum" in t) == ("sgd" in t) for t in labels), labels


def test_a_swept_setting_that_does_nothing_in_a_run_is_left_out_of_its_cell_as_in_the_table():
    """init.std swept beside init=normal,xavier: the std does nothing in a xavier run, so the xavier runs
    of both stds are one cell (as the table's row), named without a std, and its gna cell has a delta."""
    from vgsweep.results import figures
    from vgsweep.results.studies import AGARAP

    rows = [{"run_id": f"r{i}", "config_hash": f"h{i}", "start_time": i, "status": "FINISHED", "data.name": "mnist",
             "model.depth": "2", "activation.name": "relu", "regime.name": regime, "seed": str(seed),
             "init.name": init, "init.std": std, "optimizer.lr": "0.0003",
             "metric:test_acc": 0.8 + 0.05 * (regime == "gna") + 0.01 * seed + 0.001 * (std == "0.1")}
            for i, (init, std, regime, seed) in enumerate(itertools.product(("normal", "xavier"), ("0.05", "0.1"),
                                                                              ("baseline", "gna"), (0, 1)))]
    d = pd.DataFrame(rows)
    d = d.assign(**{a.label: d[a.key] for a in AGARAP.all_axes})
    study = figures._with_swept_axes(d, AGARAP)
    cells = {}
    for kind in ("results", "deltas"):
        fig = figures.fig_results(d, study, next(f for f in study.figures if f.kind == kind), "t", table_study=AGARAP)
        cells[kind] = {c.get_label(): c.lines[0].get_ydata()[0] for c in fig.axes[0].containers}
        if kind == "results":
            seeds = [len(c.get_offsets()) for c in fig.axes[0].collections if c.get_label() == "_seed"]
        figures.plt.close(fig)
    assert sorted(cells["results"]) == ["init=normal init.std=0.05 baseline", "init=normal init.std=0.05 gna",
                                        "init=normal init.std=0.1 baseline", "init=normal init.std=0.1 gna",
                                        "init=xavier baseline", "init=xavier gna"]
    assert sorted(seeds) == [2, 2, 2, 2, 4, 4]  # the xavier cells hold the runs of both stds
    assert sorted(cells["deltas"]) == ["init=normal init.std=0.05 gna", "init=normal init.std=0.1 gna",
                                       "init=xavier gna"]
    assert cells["deltas"]["init=xavier gna"] == pytest.approx(5.0)


def test_the_per_epoch_gradient_flow_colours_each_epoch_as_its_colour_bar_says(monkeypatch, tmp_path):
    """gradient_flow_epochs (the VGG study's): a line per epoch, coloured on the colour bar's scale of the
    study's epochs, so a run that ended early (here after 2 of 5) ends in epoch 2's colour, not epoch 5's;
    the bar's ticks are whole epochs (two epochs read 1.0, 1.2, ..., 2.0); `(seed 42)` stays on one line of
    a wrapped title."""
    import numpy as np

    from vgsweep.diagnostics import GRAD_COLS, RunDiagnostics
    from vgsweep.results import figures, reader
    from vgsweep.results.studies import VGG

    epochs = {"a": 5, "b": 2}

    def fake_diagnostics(client, run_id, tmp):
        e = epochs[run_id]
        return RunDiagnostics(np.full((e, 4, len(GRAD_COLS)), 1e-3), np.zeros((e, 2, 4, 4)), np.zeros((e, 5)),
                              np.zeros((e, 5)), np.zeros(5))

    monkeypatch.setattr(reader, "diagnostics", fake_diagnostics)
    spec = next(f for f in VGG.figures if f.kind == "gradient_flow_epochs")
    for n in (5, 2):
        runs = pd.DataFrame({"run_id": ["a", "b"], "model": ["vgg38_bn_rc", "vgg38_bn_rc"], "lr": ["0.001", "0.01"],
                             "seed": [42, 42], "train.epochs": [n, n]})
        epochs = {"a": n, "b": 2}
        fig = figures.fig_gradient_flow_epochs(None, runs, VGG, spec, "t", tmp_path)
        fig.canvas.draw()
        bar = fig.axes[-1]
        ticks = [t for t in bar.get_yticks() if 1 <= t <= n]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        a, b = (ax for ax in fig.axes[:-1] if ax.get_visible() and ax.get_lines())
        cmap, norm = figures.plt.get_cmap("viridis"), figures.plt.Normalize(1, n)
        assert len(a.get_lines()) == n and len(b.get_lines()) == 2
        assert np.allclose(a.get_lines()[-1].get_color(), cmap(1.0))  # the last epoch: the bar's top
        assert np.allclose(b.get_lines()[-1].get_color(), cmap(norm(2))), n  # its epoch 2, not the top
        for ax in (a, b):
            assert "(seed\u00a042)" in ax.get_title() and not ax.get_title().split("\n")[0].endswith("(seed")
        figures.plt.close(fig)


def test_a_gradient_flow_figure_of_many_panels_wraps_them_three_to_a_row(monkeypatch, tmp_path):
    """Six panels (init_scale's gains x regimes): a row per gain (they wrapped three to a row, a gain's
    regimes split across rows), each with its own title and the layer names under it; the layer axis named
    on the bottom row. A user's study's regimes x five momenta: a regime's five take two rows of three, the
    spare cell hidden, the axis named under each panel with none below it."""
    import numpy as np

    from vgsweep.diagnostics import GRAD_COLS, RunDiagnostics
    from vgsweep.results import figures, reader
    from vgsweep.results.studies import study_for

    def fake_diagnostics(client, run_id, tmp):  # six weight layers, gradients from the run's number
        g = np.full((3, 6, len(GRAD_COLS)), 1e-3 * (1 + int(run_id[1:])))
        return RunDiagnostics(g, np.zeros((3, 2, 6, 4)), np.zeros((3, 5)), np.zeros((3, 5)), np.zeros(5))

    monkeypatch.setattr(reader, "diagnostics", fake_diagnostics)
    study = study_for("init_scale")
    spec = next(f for f in study.figures if f.kind == "gradient_flow")
    for n_gains, shape in ((3, (3, 2)), (2, (2, 2)), (1, (1, 2))):
        rows = [{"run_id": f"r{i}", "seed": 0, "init gain": gain, "regime": regime, "activation": "logistic",
                 "depth": "5"} for i, (gain, regime) in enumerate(
                    (g, r) for g in ("1.0", "2.0", "4.0")[:n_gains] for r in ("baseline", "gna"))]
        fig = figures.fig_gradient_flow(None, pd.DataFrame(rows), study, spec, "t", tmp_path)
        grid = fig.axes[0].get_subplotspec().get_gridspec()
        assert (grid.nrows, grid.ncols) == shape
        shown = [ax for ax in fig.axes if ax.get_visible()]
        assert len(shown) == 2 * n_gains and len({ax.get_title() for ax in shown}) == 2 * n_gains
        assert all([t.get_text() for t in ax.get_xticklabels()] == [f"dense{i}" for i in range(1, 7)] for ax in shown)
        labelled = [i for i, ax in enumerate(shown) if ax.get_xlabel()]  # no panel below them
        assert labelled == [i for i in range(len(shown)) if i + shape[1] >= len(shown)]
        assert [ax.get_title() for ax in shown[:2]] == ["init gain=1.0 baseline", "init gain=1.0 gna"]
        figures.plt.close(fig)
    from dataclasses import replace

    from vgsweep.results.studies import Axis

    mom = replace(study, axes=study.axes + (Axis("optimizer.momentum", "optimizer.momentum", numeric=True),))
    spec = replace(spec, panel=("regime", "optimizer.momentum"))
    rows = [{"run_id": f"r{i}", "seed": 0, "init gain": "1.0", "regime": r, "optimizer.momentum": m,
             "activation": "logistic", "depth": "5"}
            for i, (r, m) in enumerate((r, m) for r in ("baseline", "gna") for m in ("0", "0.5", "0.9", "0.95", "0.99"))]
    fig = figures.fig_gradient_flow(None, pd.DataFrame(rows), mom, spec, "5-layer networks (mnist)", tmp_path)
    # the title's settings and what the figure shows in one pair of parentheses (there were two in a row)
    assert fig._suptitle.get_text() == "Gradient flow, 5-layer networks (mnist; mean over epochs and seeds)"
    where = {ax.get_title().replace("\n", " "): (ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start, bool(ax.get_xlabel()))
             for ax in fig.axes if ax.get_visible()}
    assert where["gna optimizer.momentum=0"] == (2, 0, False) and where["baseline optimizer.momentum=0.95"] == (1, 0, False)
    assert where["baseline optimizer.momentum=0.5"] == (0, 1, False) and where["baseline optimizer.momentum=0.9"][2]
    assert where["gna optimizer.momentum=0.99"] == (3, 1, True) and where["gna optimizer.momentum=0.9"] == (2, 2, True)
    assert len(where) == 10 and fig.axes[0].get_subplotspec().get_gridspec().nrows == 4
    figures.plt.close(fig)


def test_the_vanishing_ratio_against_depth_is_drawn_where_the_runs_span_depths(monkeypatch, tmp_path):
    """A study of several depths gets `gradient_ratio`: the verdict's ratio (first weight layer's mean |g|
    over the last's, mean over epochs) at each depth, a line per activation through the seeds' geometric
    mean, a panel per regime, the verdict's threshold dashed; none where the runs have one depth. A zero
    ratio (a first layer's gradient that underflowed float32, or init=zero's), which a log axis leaves out,
    is a ▼ a decade below the smallest ratio shown, the line down to it, the title saying so; the verdict
    uses the same ratio."""
    import itertools

    from vgsweep.config import VerdictConfig
    from vgsweep.diagnostics import GRAD_COLS, RunDiagnostics, verdict
    from vgsweep.results import figures, reader
    from vgsweep.results.studies import AGARAP

    def ratio_of(run_id):  # logistic: 10x lower per layer of depth; relu stays at 0.5; seed 1 twice seed 0's
        r = grid[int(run_id[1:])]
        base = 0.5 if r["activation"] in ("relu", "tanh") else 10.0 ** -int(r["depth"])
        return base * (1 + int(r["seed"])) if r["regime"] == "baseline" else 0.0

    def fake_diagnostics(client, run_id, tmp):  # the last layer's mean |g| 1, the first's the ratio
        g = np.ones((3, 4, len(GRAD_COLS)))
        g[:, 0, GRAD_COLS.index("grad/mean_abs")] = ratio_of(run_id)
        return RunDiagnostics(g, np.zeros((3, 2, 4, 4)), np.zeros((3, 3)), np.zeros((3, 3)), np.linspace(-10, 2, 5))

    grid = [{"run_id": f"r{i}", "depth": depth, "activation": act, "regime": regime, "seed": seed}
            for i, (depth, act, regime, seed) in enumerate(itertools.product(("5", "2", "10"), ("relu", "logistic"),
                                                                              ("baseline", "gna"), (0, 1)))]
    monkeypatch.setattr(reader, "diagnostics", fake_diagnostics)
    [spec] = [f for f in AGARAP.figures if f.kind == "gradient_ratio"]
    fig = figures.fig_gradient_ratio(None, pd.DataFrame(grid), AGARAP, spec, "t", tmp_path)
    base, gna = [ax for ax in fig.axes if ax.get_visible()]
    assert (base.get_title(), gna.get_title()) == ("baseline", "gna")
    lines = {ln.get_label(): ln.get_xydata().tolist() for ln in base.get_lines() if not ln.get_label().startswith("_")}
    gm = np.sqrt(2)  # the geometric mean of 1x and 2x
    assert lines.keys() == {"logistic", "relu"}
    assert np.allclose(lines["logistic"], [[2, 1e-2 * gm], [5, 1e-5 * gm], [10, 1e-10 * gm]])
    assert np.allclose(lines["relu"], [[2, 0.5 * gm], [5, 0.5 * gm], [10, 0.5 * gm]])
    assert [ln.get_ydata()[0] for ln in base.get_lines() if ln.get_linestyle() == "--"] == [VerdictConfig().vanish_ratio]
    [zeros] = [ln for ln in gna.get_lines() if ln.get_label() == "logistic"]  # seeds' 0: their mean 0
    assert zeros.get_xydata().tolist() == [[2, 1e-11], [5, 1e-11], [10, 1e-11]]  # the smallest shown: 1e-10
    downs = [ln.get_xydata().tolist() for ln in gna.get_lines() if ln.get_marker() == "v"]
    assert sorted(downs) == [[[2, 1e-11], [5, 1e-11], [10, 1e-11]]] * 2  # relu's and logistic's
    dots = [c.get_offsets().tolist() for c in gna.collections if c.get_paths() and len(c.get_offsets())]
    assert [[2, 1e-11], [2, 1e-11]] in dots and not [p for d in dots for p in d if p[1] == 0]  # each seed's
    assert gna.get_ylim()[0] < 1e-11 and "▼: a value of 0 (below float32's smallest number, about 1e-45, or " \
        "exactly 0), drawn at 1e-11, a decade below the smallest value shown." in fig._suptitle.get_text().replace(
            "\n", " ")  # noqa: SLF001
    assert "coincide" not in fig._suptitle.get_text()  # noqa: SLF001
    figures.plt.close(fig)
    relu = [r for r in grid if r["activation"] == "relu"]  # a tanh line on relu's, hidden by it: named below
    grid += [{**r, "run_id": f"r{len(grid) + i}", "activation": "tanh"} for i, r in enumerate(relu)]  # the title
    fig = figures.fig_gradient_ratio(None, pd.DataFrame(grid), AGARAP, spec, "t", tmp_path)
    assert fig._suptitle.get_text().endswith("Lines that coincide, each hiding the others: baseline: tanh = relu.")  # noqa: SLF001
    run = next(r["run_id"] for r in grid if r["activation"] == "logistic" and r["regime"] == "baseline")
    assert verdict(fake_diagnostics(None, run, None), 0.9, 10, VerdictConfig())[1].startswith(
        f"first layer's mean |gradient| is {ratio_of(run):.2g} x")  # the verdict's ratio, the figure's
    figures.plt.close(fig)
    # made by `vgsweep figures` where the runs span depths, not where they have one
    rows = [{**r, "config_hash": f"h{i}", "start_time": i, "status": "FINISHED", "study": "agarap2019",
             "model.family": "mlp", "diagnostics.enabled": "True", "data.name": "mnist", "model.depth": r["depth"],
             "activation.name": r["activation"], "regime.name": r["regime"], "seed": str(r["seed"]),
             "optimizer.lr": "0.0003", "metric:test_acc": 0.5}
            for i, r in enumerate(grid) if r["activation"] == "logistic" and r["seed"] == 0 and r["regime"] == "baseline"]
    rows = [{k: v for k, v in r.items() if k not in ("depth", "activation", "regime")} for r in rows]
    monkeypatch.setattr(figures, "_save", lambda fig, out, name, captions: figures.plt.close(fig) or [out / f"{name}.png"])
    paths, _ = _figures_of(monkeypatch, tmp_path / "all", rows)
    assert "gradient_ratio" in {p.stem for p in paths}
    paths, _ = _figures_of(monkeypatch, tmp_path / "one", [r for r in rows if r["model.depth"] == "5"])
    assert "gradient_ratio" not in {p.stem for p in paths} and paths


@pytest.mark.parametrize("labels,group,grid", [
    # init_scale: 3 gains x 2 regimes: a column per gain, a row per regime (it read 1.0 baseline, 2.0 baseline,
    # 2.0 gna, 4.0 baseline, 4.0 gna / 1.0 gna: columns of two and one, read by rows)
    ([f"init gain={g} {r}" for g in ("1.0", "2.0", "4.0") for r in ("baseline", "gna")], 2,
     [[f"init gain={g} {r}" for g in ("1.0", "2.0", "4.0")] for r in ("baseline", "gna")]),
    # the same and the published values: their own column, its other place empty
    ([f"init gain={g} {r}" for g in ("1.0", "2.0", "4.0") for r in ("baseline", "gna")] + ["published"], 2,
     [[f"init gain={g} baseline" for g in ("1.0", "2.0", "4.0")] + ["published"],
      [f"init gain={g} gna" for g in ("1.0", "2.0", "4.0")]]),
    # 2 gains x 4 regimes: a column per gain, though 4 would divide the 8 entries too
    ([f"gain={g} {r}" for g in ("1", "4") for r in ("baseline", "gna", "gna_bn", "bn")], 4,
     [[f"gain={g} {r}" for g in ("1", "4")] for r in ("baseline", "gna", "gna_bn", "bn")]),
    (["a", "b", "c"], 0, [["a", "b", "c"]]),  # one row where they fit
])
def test_a_legend_of_settings_is_a_grid_a_row_per_value_of_the_last(labels, group, grid):
    """Each panel drew every other line (the legend met them out of order); the legend puts them in the
    study's order, in a grid whose columns matplotlib fills top to bottom."""
    from vgsweep.results import figures

    with figures.plt.rc_context(figures.RC):
        fig, axes = figures.plt.subplots(1, 2, figsize=(figures.PAGE_IN, 2), squeeze=False, layout="constrained")
        for i, lab in enumerate(labels):
            axes[0, i % 2].plot([1, 2], [i, i], label=lab)
        figures._legend_below(fig, axes, [lab for lab in labels if lab != "published"], group)  # drawn out of order
        fig.canvas.draw()
        at = {t.get_text(): t.get_window_extent() for t in fig.legends[0].get_texts() if t.get_text()}
    assert set(at) == set(labels)
    rows = sorted({round(b.y0) for b in at.values()}, reverse=True)
    drawn = [sorted((lab for lab in at if round(at[lab].y0) == y), key=lambda lab: at[lab].x0) for y in rows]
    assert drawn == grid
    figures.plt.close(fig)


def test_a_gradient_flow_figure_of_many_layers_numbers_them_in_whole_layers(monkeypatch, tmp_path):
    """Past 12 weight layers the names give way to numbers: whole ones (a 20-layer net's axis said 2.5, 7.5)."""
    import numpy as np

    from vgsweep.diagnostics import GRAD_COLS, RunDiagnostics
    from vgsweep.results import figures, reader
    from vgsweep.results.studies import study_for

    g = np.broadcast_to(np.logspace(-2, 0, 21)[None, :, None], (3, 21, len(GRAD_COLS)))  # as a ReLU net's
    monkeypatch.setattr(reader, "diagnostics", lambda client, run_id, tmp: RunDiagnostics(
        g.copy(), np.zeros((3, 2, 21, 4)), np.zeros((3, 5)), np.zeros((3, 5)),
        np.zeros(5)))
    study = study_for("depth_study")
    spec = next(f for f in study.figures if f.kind == "gradient_flow")
    rows = [{"run_id": f"r{i}", "seed": 0, "regime": regime, "activation": "tanh", "depth": "20"}
            for i, regime in enumerate(("baseline", "gna"))]
    with figures.plt.rc_context(figures.RC):  # as build draws it: 7-point tick labels, room for more ticks
        fig = figures.fig_gradient_flow(None, pd.DataFrame(rows), study, spec, "t", tmp_path)
        fig.canvas.draw()
        for ax in (ax for ax in fig.axes if ax.get_visible()):
            shown = [x for x in ax.get_xticks() if ax.get_xlim()[0] <= x <= ax.get_xlim()[1]]
            assert len(shown) >= 3 and all(float(x).is_integer() for x in shown), shown
    figures.plt.close(fig)


def test_gradients_that_underflowed_to_0_are_drawn_on_the_floor_of_the_log_axis(monkeypatch, tmp_path):
    """A 1000-layer logistic net's first layers' mean |gradient| is 0 in float32 (it halves and more per layer):
    the log axis left them out, its gradient flow a line that began at layer 935 without a word. Now each 0 is
    a ▼ a decade below the smallest value shown, the line running down to it, its own markers only where it has
    a value; the title says so. The per-epoch figure (the VGG study's) the same; one without a 0 says nothing.
    The gradient distribution, whose histogram counts them in its bottom row (at -10), says that row holds them."""
    import numpy as np

    from vgsweep.diagnostics import GRAD_COLS, RunDiagnostics
    from vgsweep.results import figures, reader
    from vgsweep.results.studies import VGG, study_for

    flow = np.logspace(-30, 0, 40)
    flow[:10] = 0  # (layers,): the first ten underflowed
    last = np.zeros(40)
    last[-1] = 1e-3  # a VGG's: a gradient in its last layer alone
    monkeypatch.setattr(reader, "diagnostics", lambda client, run_id, tmp: RunDiagnostics(
        np.broadcast_to((flow if run_id != "r9" else last)[None, :, None], (3, 40, len(GRAD_COLS))).copy(),
        np.zeros((3, 2, 40, 4)), np.zeros((3, 5)), np.zeros((3, 5)), np.zeros(5)))
    said = "▼: a value of 0 (below float32's smallest number, about 1e-45, or exactly 0), drawn at 1e-24, a decade"
    study = study_for("depth_study")
    spec = next(f for f in study.figures if f.kind == "gradient_flow")
    rows = [{"run_id": f"r{i}", "seed": 0, "regime": "baseline", "activation": act, "depth": "40"}
            for i, act in enumerate(("logistic", "tanh"))]
    fig = figures.fig_gradient_flow(None, pd.DataFrame(rows), study, spec, "t", tmp_path)
    [ax] = [ax for ax in fig.axes if ax.get_visible()]
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "logistic")
    # the smallest value shown is layer 11's, 10**-22.3: the floor a decade below its decade
    assert np.allclose(line.get_ydata(), np.where(flow == 0, 1e-24, flow), rtol=1e-6, atol=0)
    assert line.get_markevery() == list(range(10, 40))
    [down] = [ln for ln in ax.get_lines() if ln.get_marker() == "v" and ln.get_color() == line.get_color()]
    assert down.get_xydata().tolist() == [[x, 1e-24] for x in range(1, 11)] and ax.get_ylim()[0] < 1e-24
    assert said in fig._suptitle.get_text().replace("\n", " ")  # noqa: SLF001
    figures.plt.close(fig)
    spec = next(f for f in VGG.figures if f.kind == "gradient_flow_epochs")
    runs = pd.DataFrame([{"run_id": "r9", "seed": 0, "model": "vgg38", "lr": "0.001", "train.epochs": 3}])
    fig = figures.fig_gradient_flow_epochs(None, runs, VGG, spec, "t", tmp_path)
    ax = next(ax for ax in fig.axes if ax.get_visible() and ax.get_lines())
    epochs = [ln for ln in ax.get_lines() if ln.get_marker() != "v"]
    assert len(epochs) == 3 and all(ln.get_ydata().tolist() == [1e-4] * 39 + [1e-3] for ln in epochs)
    assert len([ln for ln in ax.get_lines() if ln.get_marker() == "v"]) == 3
    assert "drawn at 0.0001, a decade" in fig._suptitle.get_text().replace("\n", " ")  # noqa: SLF001
    figures.plt.close(fig)
    # the distribution's histogram counts a |g| past its range in its end rows (0 in the bottom one): said
    hist = np.zeros((3, 2, 40, 4))
    hist[:, :, 0, 0] = 1.0  # every first-layer gradient in the bottom row (below 1e-10: it underflowed)
    monkeypatch.setattr(reader, "diagnostics", lambda client, run_id, tmp: RunDiagnostics(
        np.ones((3, 40, len(GRAD_COLS))), hist.copy(), np.zeros((3, 5)), np.zeros((3, 5)), np.linspace(-10, 2, 5)))
    spec = next(f for f in study.figures if f.kind == "gradient_distribution")
    fig = figures.fig_gradient_distribution(None, pd.DataFrame(rows[:1]), study, spec, "t", tmp_path)
    assert fig._suptitle.get_text().endswith(  # noqa: SLF001
        "\nThe bottom row also counts every |g| below 1e-10 (0 included)."), fig._suptitle.get_text()  # noqa: SLF001
    figures.plt.close(fig)
    hist[:, :, 0] = [0, 0.5, 0.25, 0.25]  # the top row too, the bottom one empty: said of the top alone
    fig = figures.fig_gradient_distribution(None, pd.DataFrame(rows[:1]), study, spec, "t", tmp_path)
    assert fig._suptitle.get_text().endswith("\nThe top row also counts every |g| above 1e2.")  # noqa: SLF001
    figures.plt.close(fig)
    hist[:, :, 0] = [0, 0.5, 0.5, 0]
    fig = figures.fig_gradient_distribution(None, pd.DataFrame(rows[:1]), study, spec, "t", tmp_path)
    assert "row" not in fig._suptitle.get_text()  # noqa: SLF001
    figures.plt.close(fig)
    flow[:10] = 1e-33
    monkeypatch.setattr(reader, "diagnostics", lambda client, run_id, tmp: RunDiagnostics(
        np.broadcast_to(flow[None, :, None], (3, 40, len(GRAD_COLS))).copy(), np.zeros((3, 2, 40, 4)),
        np.zeros((3, 5)), np.zeros((3, 5)), np.zeros(5)))
    fig = figures.fig_gradient_flow(None, pd.DataFrame(rows), study, next(f for f in study.figures
                                                                          if f.kind == "gradient_flow"), "t", tmp_path)
    assert "▼" not in fig._suptitle.get_text()  # noqa: SLF001
    assert not [ln for ln in fig.axes[0].get_lines() if ln.get_marker() == "v"]
    figures.plt.close(fig)


def test_panels_named_by_several_swept_settings_wrap_their_titles_and_never_overlap(monkeypatch, tmp_path):
    """A user's study sweeping optimizer, rate and momentum names each gradient panel by all three: the
    titles wrap to their panel's width (they ran into each other), and the gradient distributions come
    three panels to a row (six side by side left each a finger's width)."""
    import numpy as np

    from vgsweep.diagnostics import GRAD_COLS, RunDiagnostics
    from vgsweep.results import figures, reader
    from vgsweep.results.studies import AGARAP, study_for

    def fake_diagnostics(client, run_id, tmp):
        g = np.full((3, 6, len(GRAD_COLS)), 1e-3 * (1 + int(run_id[1:])))
        return RunDiagnostics(g, np.zeros((3, 2, 6, 4)), np.zeros((3, 5)), np.zeros((3, 5)), np.linspace(-10, 2, 5))

    monkeypatch.setattr(reader, "diagnostics", fake_diagnostics)
    combos = [(n, lr, m) for lr in ("0.001", "0.01") for n, m in (("sgd", "0.5"), ("sgd", "0.9"), ("adam", ""))]
    runs = pd.DataFrame([{"run_id": f"r{i}", "config_hash": f"h{i}", "seed": 0, "data.name": "mnist",
                          "regime.name": "baseline", "activation.name": "relu", "model.depth": "2",
                          "optimizer.name": n, "optimizer.lr": lr, "optimizer.momentum": m,
                          "diagnostics.enabled": "True"} for i, (n, lr, m) in enumerate(combos)])
    for a in AGARAP.all_axes:
        runs[a.label] = runs[a.key]
    study = figures._with_swept_axes(runs, study_for("opt"))
    for kind, shape in (("gradient_distribution", (4, 3)), ("gradient_flow", (2, 3))):
        spec = next(f for f in study.figures if f.kind == kind)
        runs["regime.grad_noise.enabled"] = ["True"] + ["False"] * 5  # a noisy run: before and after the noise
        draw = figures.fig_gradient_distribution if kind == "gradient_distribution" else figures.fig_gradient_flow
        with figures.plt.rc_context(figures.RC):  # as figures.build draws them
            fig = draw(None, runs, study, spec, "t", tmp_path)
            fig.canvas.draw()
        grid = fig.axes[0].get_subplotspec().get_gridspec()
        assert (grid.nrows, grid.ncols) == shape, kind
        titled = [ax for ax in fig.axes if ax.get_visible() and "optimizer" in ax.get_title()]
        assert len(titled) == 6 and all("\n" in ax.get_title() for ax in titled), kind
        boxes = [ax.title.get_window_extent() for ax in titled]
        for i, a in enumerate(boxes):
            assert not any(a.overlaps(b) for b in boxes[i + 1:]), (kind, [ax.get_title() for ax in titled])
        figures.plt.close(fig)
    runs["regime.grad_noise.enabled"] = "False"  # no run has noise: one image a panel, not the same one twice
    spec = next(f for f in study.figures if f.kind == "gradient_distribution")
    fig = figures.fig_gradient_distribution(None, runs, study, spec, "t", tmp_path)
    grid = fig.axes[0].get_subplotspec().get_gridspec()
    assert (grid.nrows, grid.ncols) == (2, 3) and not any("noise" in ax.get_title() for ax in fig.axes)
    figures.plt.close(fig)


def test_the_latex_table_holds_the_markdown_tables_cells():
    """results/table.tex: the same blocks as table.md, one booktabs `table` each; every row has the
    header's columns; TeX's special characters are escaped (leaky_relu), ± and − are math, the delta's
    `*` a superscript, and nothing of markdown's syntax is left."""
    import re

    from vgsweep.results.table import layout, tex, to_latex

    runs = _grid()
    runs.loc[runs["activation.name"] == "tanh", "activation.name"] = "leaky_relu"
    df = aggregate(runs)
    out = to_latex(df, AGARAP, "Agarap et al. 2019")
    [block] = layout(df, AGARAP)
    tables = out.split(r"\begin{table}")[1:]
    assert len(tables) == 1 and r"\caption{Agarap et al. 2019: mnist: test accuracy (\%)" in tables[0]
    body = [ln for ln in tables[0].split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
            if ln != r"\addlinespace"]
    assert len(body) == len(block.rows)
    for line, row in zip(body, block.rows):
        assert line.endswith(r" \\") and line[:-3].split(" & ") == [tex(c) for c in row]
        assert len(row) == len(block.head)
    gna = df[(df.activation == "logistic") & (df.regime == "gna")].iloc[0]
    assert f"{gna['mean']:.2f} $\\pm$ {gna['std']:.2f} (+{gna['delta']:.2f}$^{{*}}$)" in out
    assert "leaky\\_relu" in out and "75.05 (+9.93)" in out and "ours $-$ published" in out
    assert r"\multicolumn{3}{c}{2-layer}" in out and "($-$0.50)" in out  # depth over ours/published/diff.; tanh's delta
    assert not re.search(r"[±−—`]|\*\*|(?<!\\)_", out), "unescaped characters"
    assert out.count("{") == out.count("}") and out.count(r"\begin{") == out.count(r"\end{")
    assert r"\begin{tabular}{ll" + "r" * (len(block.head) - 2) + "}" in out


def test_latex_reads_code_and_signs_inside_bold_as_outside_it():
    from vgsweep.results.table import tex

    assert tex("**`init.gain=4`, eta=-0.5: not comparable** a_b") == (
        r"\textbf{\texttt{init.gain=4}, eta=$-$0.5: not comparable} a\_b")


def test_a_published_value_outside_our_seed_noise_is_marked():
    """† when the published run lies outside the 95% prediction interval of one run of ours: logistic
    gna at 2 layers (published 75.05) against seeds at 77.0 ± 0.1 is; against GNA (77.17 ± 1.89) it is
    not; with one seed nothing is said."""
    from vgsweep.results.table import outside_seed_noise

    half = stats.t.ppf(0.975, 2) * pd.Series(GNA).std(ddof=1) * math.sqrt(1 + 1 / 3)
    assert outside_seed_noise(pd.Series(GNA), sum(GNA) / 3 + half * 0.99) == 0.0
    assert outside_seed_noise(pd.Series(GNA), sum(GNA) / 3 - half * 1.01) == 1.0
    assert math.isnan(outside_seed_noise(pd.Series([77.0]), 75.05))
    # a collapsed net scores 11.35% (the test set's share of ones) in every seed: no spread, and the
    # accuracy comes as float32, 11.349999904632568; the published 11.35 is that (seen on the GPU grid),
    # 11.36 and 10.28 are not
    collapsed = pd.Series([float(np.float32(0.1135)) * 100] * 5)
    assert collapsed.mean() != 11.35
    assert outside_seed_noise(collapsed, 11.35) == 0.0
    assert outside_seed_noise(collapsed, 11.36) == 1.0 and outside_seed_noise(collapsed, 10.28) == 1.0
    tight = _runs([("logistic", "baseline", 2, s, a) for s, a in enumerate(BASE)]
                  + [("logistic", "gna", 2, s, a) for s, a in enumerate([76.9, 77.0, 77.1])]
                  + [("tanh", "baseline", 2, s, a) for s, a in enumerate([90.0, 91.0, 92.0])])
    df = aggregate(tight).set_index(["activation", "regime"])
    assert df.loc[("logistic", "gna"), "published_outside_noise"] == 1.0
    assert df.loc[("tanh", "baseline"), "published_outside_noise"] == 0.0  # 91.12 within 91 ± 4.97
    md = to_markdown(aggregate(tight))
    assert f"{77.0 - 75.05:+.2f} †" in md and f"{91.0 - 91.12:+.2f} |" in md and "`†`: the published value" in md
    assert df.loc[("logistic", "baseline"), "published_outside_noise"] == 0.0
    assert "Within seed noise of the published value: 2 of 3 cells." in md  # the footnote's count


def _noise_rows():
    """The noise study's eta = 0 runs beside noisy runs whose schedule varies (unit: epoch or step) and
    a run with another init; enabled, gamma and gives as the runs record them."""
    noise = {"regime.grad_noise.enabled": "True", "regime.grad_noise.gives": "std", "init.name": "xavier",
             "init.std": "0.05"}
    rows = [("logistic", "gna", 2, s, acc, {**noise, "regime.grad_noise.eta": "0.0", "regime.grad_noise.unit": "epoch"})
            for s, acc in enumerate((68.0, 67.0))]
    rows += [("logistic", "gna", 2, s, acc, {**noise, "regime.grad_noise.eta": "1.0", "regime.grad_noise.unit": unit})
             for unit, accs in (("epoch", (77.0, 78.0)), ("step", (69.0, 68.0))) for s, acc in enumerate(accs)]
    rows += [("logistic", "gna", 2, 0, 84.0, {**noise, "regime.grad_noise.eta": "0.0", "regime.grad_noise.unit": "epoch",
                                               "init.name": "normal", "init.std": "0.1"})]
    return _runs(rows)


def test_settings_that_do_nothing_are_blank_and_a_row_pairs_with_the_baseline_that_differs_only_in_them():
    """With eta = 0 the noise's schedule (unit) changes nothing: the eta = 0 runs leave it blank, and
    both noisy rows (unit epoch and step) take their delta against them; init.std acts only for
    init=normal, so xavier runs leave it blank and do not make it vary; the normal run is a row (and a
    baseline) of its own."""
    from vgsweep.config import inert_keys
    from vgsweep.results.studies import study_for

    assert {"regime.grad_noise.unit", "init.std", "activation.negative_slope"} <= inert_keys(
        {"regime.grad_noise.enabled": "True", "regime.grad_noise.eta": "0.0", "init.name": "xavier"})
    assert not {"regime.grad_noise.unit", "regime.grad_noise.eta", "init.std"} & inert_keys(
        {"regime.grad_noise.enabled": "True", "regime.grad_noise.eta": "1.0", "init.name": "normal"})
    assert "init.gain" in inert_keys({"init.name": "normal"}) and "init.gain" not in inert_keys({"init.name": "he"})
    df = aggregate(_noise_rows(), study_for("noise_scale"))
    assert list(df["regime.grad_noise.unit"]) == ["", "", "epoch", "step"]  # eta 0: normal init, then xavier
    assert "init.std" not in df  # one value where it acts (the normal run): not a setting that varies
    assert math.isnan(df["delta"].iloc[0]) and math.isnan(df["delta"].iloc[1])
    assert list(df["delta"].iloc[2:]) == pytest.approx([77.5 - 67.5, 68.5 - 67.5])
    assert df["delta_lo"].iloc[3] == pytest.approx(delta_interval(pd.Series([69.0, 68.0]), pd.Series([68.0, 67.0]))[0])


def test_a_run_whose_setting_does_nothing_is_drawn_in_every_figure_of_that_setting():
    from vgsweep.results.figures import _by_other_settings
    from vgsweep.results.studies import study_for

    runs = _noise_rows().assign(dataset="mnist", activation="logistic", depth="2", diagnostics=True)
    runs["noise eta"] = runs["regime.grad_noise.eta"]
    parts = dict(_by_other_settings(runs, study_for("noise_scale")))
    unit_epoch = (("init.name", "xavier"), ("regime.grad_noise.unit", "epoch"))
    unit_step = (("init.name", "xavier"), ("regime.grad_noise.unit", "step"))
    normal = (("init.name", "normal"),)
    assert set(parts) == {unit_epoch, unit_step, normal}
    assert sorted(parts[unit_step]["test_acc"]) == [67.0, 68.0, 68.0, 69.0]  # the eta = 0 runs drawn beside it
    assert sorted(parts[unit_epoch]["test_acc"]) == [67.0, 68.0, 77.0, 78.0]
    assert list(parts[normal]["test_acc"]) == [84.0]


def test_a_study_vgsweep_does_not_know_draws_the_settings_it_sweeps_in_its_figures(monkeypatch):
    """A user's experiment (study `momentum`, sweeping optimizer.momentum) gets its family's figures
    with the swept setting as lines of the curves and panels of the gradient figures: one curves
    figure compares momentum 0 and 0.9, where a built-in study splits a setting swept beside its axes
    into one figure per value. Epochs are whole numbers on the x axis."""
    from types import SimpleNamespace

    from vgsweep.results import figures, reader
    from vgsweep.results.studies import AGARAP, Axis, study_for

    runs = pd.DataFrame([{"run_id": f"r{i}", "config_hash": f"h{i}", "seed": 42, "data.name": "mnist",
                          "regime.name": "baseline", "activation.name": act, "model.depth": "5",
                          "optimizer.momentum": mom, "diagnostics.enabled": "True"}
                         for i, (mom, act) in enumerate((m, a) for m in ("0.0", "0.9") for a in ("logistic", "relu"))])
    for a in AGARAP.all_axes:
        runs[a.label] = runs[a.key]
    assert len(figures._by_other_settings(runs, AGARAP)) == 2  # a built-in study: a figure per momentum

    study = figures._with_swept_axes(runs, study_for("momentum"))
    assert study.axes[-1] == Axis("optimizer.momentum", "optimizer.momentum", numeric=True)
    assert {f.kind: (f.panel, f.line) for f in study.figures if f.kind != "activations"} == {
        "curves": (("activation",), ("regime", "optimizer.momentum")),
        "gradient_flow": (("regime", "optimizer.momentum"), ("activation",)),
        "gradient_ratio": (("regime", "optimizer.momentum"), ("activation",)),
        "gradient_distribution": (("regime", "optimizer.momentum"), ()),
        "results": (("depth",), ("optimizer.momentum", "regime")),
        "deltas": (("depth",), ("optimizer.momentum", "regime"))}
    assert [extra for extra, _ in figures._by_other_settings(runs, study)] == [()]  # no split left

    monkeypatch.setattr(reader, "history", lambda client, run_id, key: [2.3, 2.2])
    fig = figures.fig_curves(SimpleNamespace(), runs, study, study.figures[0], "5-layer networks")
    fig.canvas.draw()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["baseline optimizer.momentum=0.0",
                                                                  "baseline optimizer.momentum=0.9"]
    assert all(float(x).is_integer() for ax in fig.axes for x in ax.get_xticks())
    figures.plt.close(fig)


def test_the_latex_tables_fit_the_text_width_and_are_never_scaled_up(tmp_path):
    """table.tex through the real pdflatex: a table whose cells carry the runs' verdicts is wider than an
    article's text and is scaled down to it (no overfull box: a table of 4 columns ran 199 pt into the
    margin when only tables of more than 6 were scaled); one that fits keeps its size."""
    from tests.conftest import pdflatex
    from vgsweep.results.table import FIT_MACRO, to_latex

    runs = _grid().assign(**{"train.epochs": "3"})  # a smoke sweep's: no published columns beside it
    narrow = to_latex(aggregate(runs), AGARAP, "fits")
    words = ["vanishing", "not_learning", "healthy", "dead_units"]
    runs = runs.assign(verdict=[words[i % 4] for i in range(len(runs))])
    runs = pd.concat([runs, runs.assign(**{"model.depth": "5", "config_hash": runs["config_hash"] + "d5"})])
    wide = to_latex(aggregate(runs), AGARAP, "wide")
    assert "not\\_learning 1/3" in wide and wide.count(r"\begin{tabular}{llrr}") == 1
    count = r"\let\plainresize\resizebox \renewcommand{\resizebox}{\typeout{vgsweep-scaled}\plainresize}"
    for tex, scaled in ((narrow, 0), (wide, 1)):
        (tmp_path / "table.tex").write_text(FIT_MACRO + "\n" + tex)
        log = pdflatex(tmp_path, count + "\n\\input{table.tex}")
        assert "Overfull \\hbox" not in log and log.count("\nvgsweep-scaled") == scaled, log[-3000:]


def test_the_reports_lists_of_runs_take_each_config_once_as_the_table_does():
    """report.md's verdicts and failed runs come from the run that speaks for each config: a config that
    failed and then finished is not listed as failed; one that failed twice is listed once (the newest);
    runs that differ only where a setting does nothing (xavier's init.std) are one config. They listed
    every run, so the report's counts disagreed with the table's."""
    from vgsweep.results.report import failed_rows, verdict_rows

    def run(t, seed, status, init_std="0.05", lr="0.0003"):
        return {"run_name": f"r{t}", "start_time": t, "seed": str(seed), "status": status, "init.name": "xavier",
                "init.std": init_std, "optimizer.lr": lr, "model.depth": "2", "activation.name": "logistic",
                "regime.name": "baseline", "verdict": "vanishing" if status == "FINISHED" else "exploding",
                "verdict_reason": "", "failure": f"failed at {t}" if status == "FAILED" else "", "overrides": "",
                "metric:test_acc": 0.1}

    runs = pd.DataFrame([run(1, 0, "FAILED"), run(2, 0, "FINISHED"),  # made good
                         run(3, 1, "FAILED", lr="1e20"), run(4, 1, "FAILED", lr="1e20"),  # failed twice
                         run(5, 2, "FINISHED", "0.1"), run(6, 2, "FINISHED", "0.5")])  # one config
    assert sorted(verdict_rows(runs)["run"]) == ["r2", "r6"]
    assert list(failed_rows(runs)["run"]) == ["r4"] and list(failed_rows(runs)["reason"]) == ["failed at 4"]


def test_the_report_says_what_made_the_runs_the_table_counts():
    """report.md names the vgsweep commit, PyTorch release and device of the runs the table counts (one per config,
    FINISHED), each with its count where they differ: a methods section's facts, and a table that mixes runs of
    code since changed shows it. A run the table does not count (an older one of a config) is not named."""
    from vgsweep.results.report import made_line

    def run(t, seed, commit, status="FINISHED"):
        return {"run_name": f"r{t}", "start_time": t, "seed": str(seed), "status": status, "model.depth": "2",
                "activation.name": "relu", "regime.name": "baseline", "made_by": commit,
                "made_with": "2.14.1+cu130", "made_on": "cuda:0 (NVIDIA H100 80GB HBM3)"}

    old, new = "0123456789abcdef0123456789abcdef01234567", "fedcba9876543210fedcba9876543210fedcba98-dirty"
    runs = pd.DataFrame([run(1, 0, old), run(2, 0, new), run(3, 1, new), run(4, 2, old),
                         run(5, 3, "unknown", "FAILED")])
    assert made_line(runs) == ("The table's 3 runs were made with vgsweep commits fedcba987654-dirty (2 runs), "
                               "0123456789ab (1 run); PyTorch 2.14.1+cu130; device cuda:0 (NVIDIA H100 80GB HBM3).")
    assert made_line(runs.iloc[[0]]) == ("The table's 1 run was made with vgsweep commit 0123456789ab; PyTorch "
                                         "2.14.1+cu130; device cuda:0 (NVIDIA H100 80GB HBM3).")
    assert made_line(runs.iloc[[4]]) == ""  # nothing finished
    # and the examples they trained on where the runs recorded them (their dataset inputs' digests): a table
    # that mixes a smoke test's small set with the real one shows it
    runs = runs.assign(**{"data.name": "mnist", "data:train": ["aaaa0000", "e8c78536", "e8c78536", "7bcab36f", ""],
                          "data:test": "9295b4d5"})
    assert made_line(runs).endswith("device cuda:0 (NVIDIA H100 80GB HBM3). They trained on mnist: train sets "
                                    "e8c78536 (2 runs), 7bcab36f (1 run), test set 9295b4d5 (digests of the examples, "
                                    "as MLflow's Datasets show them)."), made_line(runs)
    runs.loc[3, "data:train"] = None  # a run recorded before vgsweep kept them
    assert "train sets e8c78536 (2 runs), not recorded (1 run), test set" in made_line(runs), made_line(runs)


def test_an_option_swept_beside_the_axes_comes_in_the_configs_order_default_first():
    """init_study's rows: xavier (the default), he, normal, zero, as config.yaml lists them; they came
    alphabetically (he, normal, xavier, zero), in the table and in the figures' legends."""
    from vgsweep.results import figures
    from vgsweep.results.studies import AGARAP

    inits = ("zero", "he", "xavier", "normal")
    runs = _runs([("tanh", "baseline", 5, 0, 50.0 + i, {"init.name": init}) for i, init in enumerate(inits)])
    df = aggregate(runs, AGARAP)
    assert list(df["init.name"]) == ["xavier", "he", "normal", "zero"]
    study = figures._with_swept_axes(runs.rename(columns={"test_acc": "metric:test_acc"}), AGARAP)
    [init] = [a.label for a in study.axes if a.key == "init.name"]
    frame = pd.DataFrame({init: list(inits)})
    assert figures._values(frame, study, (init,)) == [("xavier",), ("he",), ("normal",), ("zero",)]
    from vgsweep.results.report import verdict_lines  # and the report's verdict counts, a row per init

    counts = verdict_lines(runs.assign(status="FINISHED", verdict="healthy", verdict_reason="",
                                       run_name=[f"mnist-d5-tanh-baseline-s0 init={i}" for i in inits]), AGARAP)[0]
    assert [ln.split("|")[2].strip() for ln in counts.splitlines()[2:]] == ["xavier", "he", "normal", "zero"], counts


def test_the_reports_verdicts_come_in_the_tables_order():
    """report.md's verdict counts and its runs that are not healthy: depth 5 before 10 and the study's
    regimes and activations in the table's order. MLflow's params are strings, and they sorted as
    strings: depth 10 before 5, `mnist-d10-...` before `mnist-d5-...` (seen in a norm_study report)."""
    from vgsweep.results.report import verdict_lines

    runs = pd.DataFrame([{"run_name": f"mnist-d{d}-{a}-{r}-s0", "seed": "0", "start_time": i, "status": "FINISHED",
                          "verdict": "healthy" if a == "tanh" else "not_learning", "verdict_reason": "why",
                          "metric:test_acc": 0.1, "model.depth": str(d), "activation.name": a, "regime.name": r,
                          "optimizer.lr": "0.0003"}
                         for i, (d, a, r) in enumerate((d, a, r) for d in (10, 5, 20) for a in ("tanh", "relu", "logistic")
                                                       for r in ("gna", "baseline"))])
    counts, _, _, _, bad, _ = verdict_lines(runs, AGARAP)
    assert [ln.split("|")[1].strip() for ln in counts.splitlines()[2:]] == ["5", "10", "20"], counts
    names = [ln.split("|")[1].strip() for ln in bad.splitlines()[2:]]
    # the runs' settings that vary are columns; those all share (the one learning rate, no model) are not
    assert [c.strip() for c in bad.splitlines()[0].split("|")[1:-1]] == [
        "run", "verdict", "reason", "test acc (%)", "depth", "activation", "regime"]
    assert names == [f"mnist-d{d}-{a}-{r}-s0" for d in (5, 10, 20) for a in ("logistic", "relu")
                     for r in ("baseline", "gna")], names
    assert verdict_lines(runs.iloc[:0], AGARAP) == ["No finished run has a verdict yet.", ""]


def test_the_reports_verdicts_are_counted_apart_for_each_setting_swept_beside_the_axes():
    """residual_study: the verdict counts per depth summed the nets with and without skips (exploding
    ones with skips, not_learning ones without, in one row); now a row per value of model.residual, and
    of residual_scale where it acts (blank without skips, where it does nothing: one config)."""
    from vgsweep.results.report import verdict_lines

    grid = [(d, res, sc) for d in (20, 10) for res in ("False", "True") for sc in ("1.0", "0.18")]
    runs = pd.DataFrame([{"run_id": f"r{i}", "run_name": f"mnist-d{d}-relu-baseline-s0 model.residual={res}",
                          "seed": "0", "start_time": i, "status": "FINISHED", "metric:test_acc": 0.1,
                          "verdict": {"False": "not_learning", "True": "exploding" if sc == "1.0" else "healthy"}[res],
                          "verdict_reason": "why", "model.depth": str(d), "activation.name": "relu",
                          "regime.name": "baseline", "model.residual": res, "model.residual_scale": sc, "data.name": "mnist",
                          "config_hash": f"h{d}{res}{sc if res == 'True' else ''}"}
                         for i, (d, res, sc) in enumerate(grid)])
    counts = verdict_lines(runs, AGARAP)[0].splitlines()
    head = [c.strip() for c in counts[0].split("|")[1:-1]]
    assert head == ["depth", "model.residual", "model.residual_scale", "exploding", "healthy", "not_learning"]
    rows = [[c.strip() for c in ln.split("|")[1:-1]] for ln in counts[2:]]
    assert rows == [["10", "False", "", "0", "0", "1"], ["10", "True", "0.18", "0", "1", "0"],
                    ["10", "True", "1.0", "1", "0", "0"], ["20", "False", "", "0", "0", "1"],
                    ["20", "True", "0.18", "0", "1", "0"], ["20", "True", "1.0", "1", "0", "0"]], counts
    # widths swept at a depth (model.width): a row per width, its widths as the table writes them
    wide = pd.DataFrame([{**runs.iloc[0].to_dict(), "run_id": f"w{w}", "config_hash": f"w{w}", "model.depth": "40",
                          "model.hidden": str([w] * 40), "model.residual": "False"} for w in (16, 32)])
    counts = verdict_lines(wide, AGARAP)[0].splitlines()
    rows = [[c.strip() for c in ln.split("|")[1:-1]] for ln in counts[2:]]
    assert rows == [["40", "16x40", "1"], ["40", "32x40", "1"]], counts


def test_the_vgg_reports_verdicts_count_each_model_at_each_rate_apart():
    """The VGG study's table has a row per model and rate (vgg38_bn at 1e-3 does not learn, at 1e-2 it
    does); its report counted the verdicts per model, one row summing both rates."""
    from vgsweep.results.report import verdict_lines
    from vgsweep.results.studies import VGG

    rows = [("vgg38", "0.001", "vanishing"), ("vgg38_bn", "0.01", "healthy"), ("vgg38_bn", "0.001", "not_learning")]
    runs = pd.DataFrame([{"run_id": f"r{i}", "run_name": f"cifar100-{m}-lr{lr}-baseline-s0", "seed": "0",
                          "start_time": i, "status": "FINISHED", "metric:test_acc": 0.1, "verdict": v,
                          "verdict_reason": "why",
                          "model.name": m, "optimizer.lr": lr, "data.name": "cifar100", "config_hash": f"h{i}"}
                         for i, (m, lr, v) in enumerate(rows)])
    counts = verdict_lines(runs, VGG)[0].splitlines()
    assert [c.strip() for c in counts[0].split("|")[1:-1]] == ["model", "lr", "healthy", "not_learning", "vanishing"]
    assert [[c.strip() for c in ln.split("|")[1:-1]] for ln in counts[2:]] == [
        ["vgg38", "0.001", "0", "0", "1"], ["vgg38_bn", "0.001", "0", "1", "0"], ["vgg38_bn", "0.01", "1", "0", "0"]]


def test_a_curves_figure_names_the_lines_that_lie_on_one_another():
    """Lines of a panel that coincide hide each other (the last drawn on top): in a norm_study figure
    baseline, frozen BN and weight norm trained alike and only weight norm's colour showed. The figure
    names them below its title, per panel, or once where every panel agrees; on a log axis, by ratio;
    per row (metric) where a panel's rows disagree (init_scale's logistic panel: the gains' losses apart,
    their accuracies at chance on one another: both rows' groups, run together, read as a contradiction)."""
    import matplotlib.pyplot as plt

    from vgsweep.results.figures import _coinciding

    fig, axes = plt.subplots(2, 2)
    (a, b), (c, e) = axes
    base = np.array([2.3, 2.2, 2.1])
    drawn = {("tanh", "loss", a): [("baseline", base), ("bn", base + 0.002), ("ln", base - 0.5), ("wn", base - 0.001)],
             ("relu", "loss", b): [("baseline", base), ("bn", base - 0.4), ("ln", base - 0.8)]}
    assert _coinciding(drawn, set()) == "Lines that coincide, each hiding the others: tanh: baseline = bn = wn."
    drawn[("relu", "loss", b)] = [("baseline", base), ("bn", base + 0.001), ("ln", base - 0.5), ("wn", base)]
    assert _coinciding(drawn, set()) == \
        "Lines that coincide in every panel, each hiding the others: baseline = bn = wn."
    # a second row (accuracy): where it agrees with the first, said once; where not, each row by its name
    acc = {("tanh", "acc", c): [("baseline", base), ("bn", base), ("ln", base - 0.5), ("wn", base)],
           ("relu", "acc", e): [("baseline", base), ("bn", base), ("ln", base - 0.5), ("wn", base)]}
    assert _coinciding({**drawn, **acc}, set()) == \
        "Lines that coincide in every panel, each hiding the others: baseline = bn = wn."
    acc[("relu", "acc", e)] = [("baseline", base), ("bn", base), ("ln", base), ("wn", base)]
    assert _coinciding({**drawn, **acc}, set()) == ("Lines that coincide, each hiding the others: tanh: baseline = bn "
                                                    "= wn; relu, loss: baseline = bn = wn; relu, acc: all 4 lines.")
    acc[("relu", "acc", e)] = [("baseline", base), ("bn", base - 0.3), ("ln", base - 0.6), ("wn", base - 0.9)]
    assert _coinciding({**drawn, **acc}, set()).endswith("tanh: baseline = bn = wn; relu, loss: baseline = bn = wn.")
    # lines of two settings that coincide with those of the same gain only: said once for the gains
    gains = lambda *apart: {("logistic", "", a): [  # noqa: E731
        (f"init gain={g} {r}", base + (0.5 * i if g not in apart else 0.5 * i + 0.1 * (r == "gna")))
        for i, g in enumerate(("1.0", "2.0", "4.0")) for r in ("baseline", "gna")]}
    assert _coinciding(gains(), set()).endswith(": logistic: baseline = gna at each init gain.")
    assert _coinciding(gains("4.0"), set()).endswith(": logistic: baseline = gna at init gain=1.0, 2.0.")
    assert _coinciding(gains("2.0", "4.0"), set()).endswith(": logistic: init gain=1.0 baseline = init gain=1.0 gna.")
    # a loss falling over decades (a log axis): 1.00 and 1.01 near the bottom are apart there
    low = np.array([100.0, 10.0, 1.0])
    far = {("tanh", "", a): [("baseline", low), ("gna", low * np.array([1, 1, 1.3]))]}
    assert _coinciding(far, {id(a)}) == ""
    assert _coinciding({("tanh", "", a): [("baseline", low), ("gna", low * 1.001)]}, {id(a)}) != ""
    assert _coinciding({("tanh", "", a): [("baseline", base), ("gna", base - 0.3)]}, set()) == ""
    plt.close(fig)


def test_a_pipe_in_a_cell_keeps_the_markdown_tables_columns():
    """report.md's table of runs that are not healthy: a vanishing verdict's reason says "mean |gradient|",
    whose bars ended the cell, so the row had two columns more than its header (seen in a report)."""
    import re

    from vgsweep.results.report import verdict_rows
    from vgsweep.results.table import md_table, to_markdown

    reason = "first layer's mean |gradient| is 0.0034 x the last layer's (mean over epochs) < 0.01"
    runs = pd.DataFrame([{"run_name": f"mnist-d2-logistic-baseline-s{s}", "seed": str(s), "start_time": s,
                          "status": "FINISHED", "verdict": "vanishing",
                          "verdict_reason": reason, "metric:test_acc": 0.1, "model.depth": "2",
                          "activation.name": "logistic", "regime.name": "baseline"} for s in (0, 1)])
    runs["activation.name"] = runs["activation.name"].where(runs.index == 0, "a|b")  # a cell of the table too
    for md in (md_table(verdict_rows(runs), index=False),
               to_markdown(aggregate(_runs([("a|b", "baseline", 2, 0, 50.0)])), AGARAP)):
        rows = [ln for ln in md.splitlines() if ln.startswith("|")]
        cells = {len(re.findall(r"(?<!\\)\|", ln)) for ln in rows}
        assert len(rows) >= 3 and len(cells) == 1, md
    assert r"mean \|gradient\|" in md_table(verdict_rows(runs), index=False)


def test_six_values_of_a_setting_swept_beside_the_regimes_draw_no_two_series_alike(monkeypatch, tmp_path):
    """optimizer.momentum with six values beside baseline and gna: the results figure's twelve series
    differ in colour or marker; with four marker shapes the fifth value's series looked like the first's."""
    import itertools

    from vgsweep.results import figures

    moms = ("0.0", "0.5", "0.8", "0.9", "0.95", "0.99")
    rows = [{"run_id": f"r{i}", "config_hash": f"h{i}", "start_time": i, "status": "FINISHED", "study": "agarap2019",
             "model.family": "mlp", "diagnostics.enabled": "False", "data.name": "mnist", "model.depth": "2",
             "activation.name": "relu", "regime.name": regime, "seed": "0", "optimizer.momentum": m,
             "optimizer.lr": "0.0003", "metric:test_acc": 0.5 + 0.01 * i}
            for i, (regime, m) in enumerate(itertools.product(("baseline", "gna"), moms))]
    _, drawn = _figures_of(monkeypatch, tmp_path, rows)
    looks = {c.get_label(): (c.lines[0].get_color(), c.lines[0].get_marker()) for c in drawn["results"].axes[0].containers}
    assert len(looks) == 12 and len(set(looks.values())) == 12, looks
    styles = [figures._style([(m, r) for m in moms for r in ("a", "b")], (m, "a")) for m in moms]  # the curves' dashes
    assert len(set(map(str, styles))) == 6


@pytest.mark.parametrize("folder,experiment", [("my paper", "noise v2"),  # spaces: LaTeX 2019+ reads them as they are
                                               ("R&D 50%", "noise#2~$x^2")])  # # % & ~ $ ^: read as plain there
def test_figures_tex_and_report_tex_name_folders_with_latex_specials(tmp_path, folder, experiment):
    """An --out folder or an experiment's name may hold characters LaTeX reads as commands (before, a
    `%` commented the rest of the \\includegraphics line out, a `#` stopped LaTeX): figures.tex and
    report.tex still compile with the real pdflatex and show the figure."""
    from types import SimpleNamespace

    from tests.conftest import pdf_text, pdflatex
    from vgsweep.plots import pyplot
    from vgsweep.results import report
    from vgsweep.results.figures import write_latex
    from vgsweep.results.table import tex_path_line

    out = tmp_path / folder / "figures" / experiment
    out.mkdir(parents=True)
    fig, ax = pyplot().subplots(figsize=(2, 1))
    ax.text(0.5, 0.5, "vgsweepdrawn", ha="center")
    fig.savefig(out / "results.pdf")
    pyplot().close(fig)
    caption = f"{experiment}: mean over seeds; ◇ published. ▼: a value of 0"  # the figures' signs, in LaTeX's
    write_latex(out, experiment, {out / "results.pdf": (caption, 2.0)})
    # a paper's own document elsewhere: figures.tex's own \vgsweepfigures, the folder's whole path as written
    paper = tmp_path / "paper"
    paper.mkdir()
    pdflatex(paper, tex_path_line(r"\input{", (out / "figures.tex").as_posix(), "}"))
    assert "vgsweepdrawn" in pdf_text(paper / "doc.pdf")
    page = report.latex_page("sqlite:///x.db", [SimpleNamespace(name=experiment, tex="")], [True], "now")
    (tmp_path / folder / "report.tex").write_text(page)
    log = pdflatex(tmp_path / folder, name="report")
    text = pdf_text(tmp_path / folder / "report.pdf")
    assert "vgsweepdrawn" in text and "Figure 1: Results: mean over seeds; ⋄ published. ▽: a value of 0." in text, (
        text, log[-2000:])


def test_a_folder_latex_cannot_name_gets_a_figures_tex_that_says_so(tmp_path, caplog):
    """A brace or a backslash in the path: no LaTeX reads it in a file name. figures.tex stops LaTeX with
    that message instead of a cryptic error, and making it says so."""
    from vgsweep.results.figures import write_latex

    out = tmp_path / "a{b}" / "agarap2019"
    out.mkdir(parents=True)
    path = write_latex(out, "agarap2019", {out / "results.pdf": ("agarap2019: x", 2.0)})
    assert path.read_text().startswith("\\errmessage{vgsweep figures.tex: the figures' folder has a brace")
    assert "brace or backslash" in caplog.text and str(path) in caplog.text


def test_a_figure_names_the_configs_it_leaves_out_having_no_finished_run(small_cfg, tmp_path):
    """Runs that failed or were killed have no curve: a figure beside them says which it leaves out (a
    diverged net dropped silently read as never run), in its title and its caption in figures.tex; a
    figure with every config drawn says nothing of the kind."""
    import re

    from vgsweep import tracking
    from vgsweep.jobs import Job
    from vgsweep.results import figures
    from vgsweep.sweep import run_jobs

    out = run_jobs([Job(small_cfg(f"activation={a}", f"seed={s}", f"depth={d}", f"model.hidden={h}",
                                  "diagnostics.enabled=false"))
                    for a, s, d, h in (("tanh", 1, 2, "[16,16]"), ("relu", 1, 2, "[16,16]"), ("relu", 2, 2, "[16,16]"),
                                       ("tanh", 1, 5, "[8,8,8,8,8]"))])
    assert [o.status for o in out] == ["FINISHED"] * 4
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client_for(uri)
    for o in out[1:3]:  # both relu seeds of depth 2, as a sweep's Ctrl-C leaves them
        client.set_terminated(o.run_id, "KILLED")
    figures.build(uri, "agarap2019", tmp_path / "figs", log_to_mlflow=False)
    tex = (tmp_path / "figs" / "figures.tex").read_text()
    caption = next(x for x in tex.splitlines() if x.startswith(r"\caption{\textbf{Learning curves:} 2-layer"))
    # after the title's band (and its chance line, where the tiny nets' curves reach chance)
    assert re.search(r"one seed per line(; dotted: chance \([^)]*\))?\. Not drawn, no finished run: relu baseline "
                     r"\(killed: seeds 1, 2\)\. Loss", caption), caption
    assert "Not drawn" not in next(x for x in tex.splitlines() if x.startswith(r"\caption{\textbf{Learning curves:} 5-"))
    results = next(x for x in tex.splitlines() if x.startswith(r"\caption{\textbf{Results:}"))
    assert "Not drawn, no finished run: 2-layer relu baseline (killed: seeds 1, 2)." in results  # every config's figure


def test_a_report_of_a_study_without_a_finished_run_says_so_under_its_verdicts(small_cfg, tmp_path):
    from vgsweep import tracking
    from vgsweep.jobs import Job
    from vgsweep.results import report
    from vgsweep.sweep import run_jobs

    [out] = run_jobs([Job(small_cfg("diagnostics.enabled=false"))])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.client_for(uri).set_terminated(out.run_id, "KILLED")
    page = report.build(uri, tmp_path / "res").read_text()
    verdicts = page.split("## Verdicts")[1].split("## Failed or killed runs")
    assert verdicts[0].strip() == "No finished run has a verdict yet." and "| KILLED " in verdicts[1], page


def test_a_published_setting_is_composed_once_then_read_from_the_cache_until_a_source_changes(tmp_path, monkeypatch):
    """The config a row's published overrides compose (table._composed, 0.15-0.3 s of Hydra each, 30 per
    paper table) is kept under $XDG_CACHE_HOME/vgsweep and read back by a later command: the same dict as
    composing it. Another key of the sources (a conf/ file changed) composes again; an unreadable entry
    is composed and written again; VGSWEEP_CACHE=0 or a home that cannot be written keeps nothing. An
    environment variable conf/ reads (`${oc.env:X}`) is part of the key."""
    import json
    import os
    import shutil
    import time

    import vgsweep.app
    from vgsweep import config
    from vgsweep.results import table

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VGSWEEP_CACHE", raising=False)
    over = ("depth=5", "activation=tanh", "regime=gna_bn")
    table._composed.cache_clear()
    fresh = table._composed(over)
    assert fresh["model.depth"] == "5" and fresh["regime.name"] == "gna_bn" and fresh["activation.name"] == "tanh"
    kept = table.published_cache(over)
    assert kept.parent.parent == tmp_path / "cache" / "vgsweep" / "composed" and json.loads(kept.read_text()) == fresh

    real = vgsweep.app.compose
    calls = []
    monkeypatch.setattr(vgsweep.app, "compose", lambda o: calls.append(o) or real(o))
    table._composed.cache_clear()  # a later command: read back, not composed
    assert table._composed(over) == fresh and calls == []
    kept.write_text('{"model.depth": ')  # cut short
    table._composed.cache_clear()
    assert table._composed(over) == fresh and len(calls) == 1 and json.loads(kept.read_text()) == fresh

    # a source changed: conf/ copied and one file edited is another key, and so another entry
    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf)
    monkeypatch.setattr(config, "CONF_DIR", conf)
    table._sources_key.cache_clear()
    same = table._sources_key()
    (conf / "depth" / "5.yaml").write_text((conf / "depth" / "5.yaml").read_text() + "\n# edited\n")
    table._sources_key.cache_clear()
    assert table._sources_key() != same and table.published_cache(over) != kept
    table._composed.cache_clear()
    assert table._composed(over) == fresh and len(calls) == 2 and table.published_cache(over).is_file()
    # a folder of an old key is removed as a new key's is made, once not written to for a week
    old = tmp_path / "cache" / "vgsweep" / "composed" / "old"
    old.mkdir()
    week = time.time() - 8 * 86400
    os.utime(old, (week, week))
    (conf / "depth" / "2.yaml").write_text((conf / "depth" / "2.yaml").read_text() + "\n# edited\n")
    table._sources_key.cache_clear()
    table.published_cache(over)
    assert not old.exists() and kept.is_file()  # the key of a day ago stays
    # an environment variable conf/ reads is part of the key: another value, another key
    (conf / "depth" / "2.yaml").write_text((conf / "depth" / "2.yaml").read_text() + "# ${oc.env:VGSWEEP_TEST_X}\n")
    keys = []
    for value in ("a", "a", "b"):
        monkeypatch.setenv("VGSWEEP_TEST_X", value)
        table._sources_key.cache_clear()
        keys.append(table._sources_key())
    assert keys[0] == keys[1] != keys[2]

    monkeypatch.setenv("VGSWEEP_CACHE", "0")  # no cache: composed each time, nothing written
    table._composed.cache_clear()
    before = sorted((tmp_path / "cache").rglob("*"))
    assert table.published_cache(over) is None and table._composed(over) == fresh and len(calls) == 3
    assert sorted((tmp_path / "cache").rglob("*")) == before
    monkeypatch.delenv("VGSWEEP_CACHE")
    blocked = tmp_path / "a-file"  # a cache folder that cannot be made (root writes where modes say not)
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    table._composed.cache_clear()
    assert table._composed(over) == fresh and len(calls) == 4 and blocked.is_file()
    table._composed.cache_clear()
    table._sources_key.cache_clear()


def test_a_where_condition_matches_a_setting_however_the_store_and_the_command_line_write_it():
    """The store holds params as strings ('0.0003', 'True', '[16, 16]', 'None'); `--where` values are
    Hydra's (3e-4, true, [16,16], null). A value the key cannot hold is refused, each of a list's values
    (a typo among them left its runs out unsaid): 1 for a bool, a word for an int, NaN, an option the
    group does not have."""
    import argparse

    from vgsweep.results.reader import select, where_item

    df = pd.DataFrame({"optimizer.lr": ["0.0003", "0.001", "0.0003"], "model.hidden": ["[16, 16]", "[16, 16]", "[8]"],
                       "regime.grad_noise.enabled": ["True", "False", "True"],
                       "data.limit_train": ["None", "100", "100"], "activation.name": ["relu", "tanh", "relu"],
                       "seed": ["0", "1", "2"]})

    def rows(*items):
        return list(select(df, [where_item(i) for i in items]).index)

    assert rows("optimizer.lr=3e-4") == [0, 2] and rows("optimizer.lr=0.001,1") == [1]
    assert rows("model.hidden=[16,16]") == [0, 1] and rows("model.hidden=[8]") == [2]
    assert rows("regime.grad_noise.enabled=true") == [0, 2] and rows("seed=1.0") == [1]
    assert rows("data.limit_train=null") == [0] and rows("activation=relu", "seed=range(1,3)") == [2]
    assert rows("depth=5") == []  # a key no run holds: none
    assert rows("activation=glob(*relu)") == [0, 2] and rows("activation=glob(*,exclude=relu)") == [1]
    for bad, said in (("activation.nme=relu", "did you mean activation.name?"), ("seed", "is not KEY=VALUE"),
                      ("train=3", "train holds keys of its own; expected one of them: train.epochs, train.batch_size"),
                      ("seed=", "is not KEY=VALUE"), ("seed=glob(*)", "glob(...) picks options of a config group"),
                      ("seed.x=1", "expected seed=VALUE (it holds a value, not keys)"),
                      ("seed=[0", "is not KEY=VALUE"),
                      ("regime.grad_noise.enabled=1", "grad_noise.enabled=1 is not accepted; expected true or false"),
                      ("seed=0,1,x", "seed=x is not accepted; expected an int"), ("seed=null", "seed=null is not"),
                      ("optimizer.lr=nan", "optimizer.lr=nan is not accepted; expected a float"),
                      ("activation=relu,tanhh", "activation=tanhh is not accepted; expected one of elu, gelu,"),
                      ("dataset=cifar", "expected one of cifar10, cifar100, fashion_mnist, mnist"),
                      ("regime.bn.placement=before", "expected one of none, last, all"),
                      ("model.hidden=[1.5,2]", "model.hidden=[1.5, 2] is not accepted; expected a list of ints")):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(said)):
            where_item(bad)


def test_a_where_value_no_run_holds_is_said_with_the_values_the_runs_hold():
    """`--where seed=0,1,22`: the table says none has seed=22 (a typo would otherwise pass unsaid); a
    selection that leaves no run says what the runs hold instead."""
    from vgsweep.results.reader import held, none_where, unmatched, where_item

    df = pd.DataFrame({"seed": ["0", "1", "42"], "model.depth": ["2", "5", "2"], "data.limit_train": ["None"] * 3})
    assert unmatched(df, [where_item("seed=0,1,22"), where_item("depth=range(2,4)")]) == ["seed=22", "model.depth=3"]
    assert unmatched(df, [where_item("seed=1.0"), where_item("data.limit_train=null")]) == []
    assert held([df, pd.DataFrame({"seed": ["7"]})], [where_item("seed=3"), where_item("depth=3")]) == \
        "seed 0, 1, 7, 42; model.depth 2, 5"
    assert none_where("sqlite:///m.db", [where_item("seed=3")], [df]) == \
        "vgsweep: no ended run in sqlite:///m.db where seed=3; the ended runs have seed 0, 1, 42"
    assert held([df], [where_item("train.epochs=3")]) == ""


def test_a_setting_that_keeps_only_some_rows_from_the_published_values_says_in_how_many():
    """The table's note under a heading names every setting off the paper's; one that holds in only some of
    the rows with a published value (Adam's own rate beside SGD's) says in how many, not as if in all;
    a row the paper has no value for (gna_wn) counts in neither."""
    from vgsweep.results.table import not_comparable_note

    df = aggregate(_runs([("tanh", "baseline", 2, 0, 91.0, {"train.epochs": "3"}),
                          ("tanh", "gna", 2, 0, 90.5, {"train.epochs": "3", "optimizer.lr": "0.001"}),
                          ("tanh", "gna_wn", 2, 0, 90.0, {"train.epochs": "3", "optimizer.lr": "0.001"})]))
    assert df.set_index("regime")["not_comparable"].isna().tolist() == [False, False, True]
    note = not_comparable_note(df)
    assert note.startswith("**optimizer.lr=0.001 (in 1 of the 2 rows), train.epochs=3: not comparable"), note
    assert not_comparable_note(aggregate(_runs([("tanh", "baseline", 2, 0, 91.0), ("tanh", "gna", 2, 0, 90.5)]))) == ""
