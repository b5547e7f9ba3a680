"""Hyper-parameter searches: Hydra's Optuna sweeper (hydra/sweeper=optuna, experiment=lr_search) over the
packed launcher, through the real CLI: each batch of trials trains as one pack, each job returns its
`objective` to the sweeper, a search run again is answered by the store, bad settings are refused."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import SMALL, run_cli
from vgsweep.results.studies import LR_SEARCH
from vgsweep.results.table import aggregate, to_markdown

pytestmark = pytest.mark.e2e

# SMALL without its learning rate: the search sets it
SEARCH = [o for o in SMALL if not o.startswith("optimizer.lr=")] + ["depth=2", "data.val_size=64", "train.epochs=1"]


def _args(tiny_root: Path, uri: str, *extra: str) -> list[str]:
    return ["experiment=lr_search", *SEARCH, f"data.root={tiny_root}", f"tracking.uri={uri}",
            "hydra.sweep.dir=sweep", *extra]


def _runs(uri: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("lr_search")
    return [] if exp is None else client.search_runs([exp.experiment_id])


def _one_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.startswith("vgsweep: ")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]) and "Traceback" not in err, err[-3000:]
    return lines[0]


def test_a_search_trains_each_batch_as_one_pack_returns_its_objective_and_resumes(tiny_root, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = _args(tiny_root, uri, "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2")
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("2 jobs to train in 1 pack of 2 runs") == 2, first.stdout[-3000:]  # a batch, a pack
    runs = _runs(uri)
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.params["optimizer.lr"] for r in runs}) == 4  # the sampler's proposals, not the default
    assert {r.data.params["objective"] for r in runs} == {"best_val_acc"}
    for r in runs:  # the name shows the trial's settings (the rest of it is the same for all four)
        assert r.info.run_name == (f"mnist-d2-logistic-baseline-s42 optimizer.lr={float(r.data.params['optimizer.lr']):.4g}"
                                   f" optimizer.momentum={float(r.data.params['optimizer.momentum']):.4g}")
    # what the jobs returned is the objective: Optuna's best value is the best run's best_val_acc
    result = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    best = max(runs, key=lambda r: r.data.metrics["best_val_acc"])
    assert result["best_value"] == pytest.approx(best.data.metrics["best_val_acc"])
    tied = {float(r.data.params["optimizer.lr"]) for r in runs
            if r.data.metrics["best_val_acc"] == best.data.metrics["best_val_acc"]}
    assert float(result["best_params"]["optimizer.lr"]) in tied

    # the same command again: the sampler's seed proposes the same trials, the store answers them
    (tmp_path / "sweep" / "optimization_results.yaml").unlink()
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("2 of 2 jobs skipped") == 2 and "to train in" not in again.stdout, again.stdout[-3000:]
    assert {r.info.run_id for r in _runs(uri)} == {r.info.run_id for r in runs}
    assert yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text()) == result

    # a dry run shows the first batch (the sweeper picks the next from its results) and trains nothing
    dry = run_cli([*args, "hydra.sweeper.n_trials=6", "hydra.sweeper.sampler.seed=1", "hydra.launcher.dry_run=true"],
                  cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "dry run: 2 jobs: 2 to train" in dry.stdout and "a dry run shows its first batch" in dry.stdout
    assert len(_runs(uri)) == 4

    # the table: one row per trial, in the order of the learning rate, the objective beside the test accuracy
    from vgsweep.results.table import fetch_runs

    df = aggregate(fetch_runs(uri, "lr_search"), LR_SEARCH)
    assert list(df["lr"].astype(float)) == sorted(float(r.data.params["optimizer.lr"]) for r in runs)
    md = to_markdown(df, LR_SEARCH)
    assert "| best val acc (%) | test acc at best val (%) |" in md
    assert f"{float(best.data.params['optimizer.lr']):.4g} |" in md
    bold = [line for line in md.splitlines() if "**" in line]  # the best trial's objective, as the figure rings it
    assert len(bold) == 1 and f"**{100 * best.data.metrics['best_val_acc']:.2f}" in bold[0], md
    assert f"| {float(result['best_params']['optimizer.lr']):.4g} |" in bold[0], (result, md)  # Optuna's, among ties
    assert "Bold: the best trial (its best val acc" in md
    from vgsweep.results import figures

    paths = figures.build(uri, "lr_search", tmp_path / "figures", log_to_mlflow=False)
    paths = sorted(paths)  # the figure, its LaTeX, and the numbers of every trial beside them
    assert [p.name for p in paths] == ["curves.csv.gz", "figures.tex", "gradients.csv.gz", "search.pdf", "search.png"]
    tex = paths[1].read_text()
    caption = f"\\caption{{\\textbf{{Search:}} {len(runs)} trials. Every trial's objective"  # not the study's name
    assert caption in tex and "\\label{fig:lr_search-search}" in tex
    from vgsweep.results import report

    page = report.build(uri, tmp_path / "report", "lr_search").read_text()
    assert "## Search" in page and "![search](figures/lr_search/search.png)" in page  # the report embeds it


def test_a_search_refuses_a_direction_against_its_objective_several_and_a_validation_objective_without_a_split(
        tiny_root, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    wrong = run_cli(_args(tiny_root, uri, "hydra.sweeper.direction=minimize"), cwd=tmp_path)
    assert wrong.returncode == 2
    assert _one_line(wrong.stderr) == ("vgsweep: invalid config: hydra.sweeper.direction=minimize is not accepted; "
                                       "expected maximize for objective=best_val_acc. the search would look for the "
                                       "worst accuracy")
    # Optuna's several objectives: each job returns one number, so Optuna failed every trial after training it,
    # exit 0; a list of one direction is that direction
    several = run_cli(_args(tiny_root, uri, "hydra.sweeper.direction=[maximize,minimize]"), cwd=tmp_path)
    assert several.returncode == 2
    assert _one_line(several.stderr).startswith("vgsweep: invalid config: hydra.sweeper.direction=[maximize,minimize] "
                                                "is not accepted; expected one direction (maximize for objective=")
    one = run_cli(_args(tiny_root, uri, "hydra.sweeper.direction=[minimize]"), cwd=tmp_path)
    assert one.returncode == 2 and "expected maximize for objective=best_val_acc" in _one_line(one.stderr)
    no_split = run_cli(_args(tiny_root, uri, "data.val_size=0"), cwd=tmp_path)
    assert no_split.returncode == 2
    assert "objective='best_val_acc' is not accepted; expected one of test_acc" in _one_line(no_split.stderr)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "sweep").exists()
    # the test set as the objective is not refused, but said, before anything trains (here a dry run)
    warned = "the search chooses by objective=test_acc, the test set's: its best trial's test accuracy then overstates"
    on_test = run_cli(_args(tiny_root, uri, "objective=test_acc", "hydra.launcher.dry_run=true"), cwd=tmp_path)
    assert on_test.returncode == 0 and warned in on_test.stdout, on_test.stdout[-3000:]
    on_val = run_cli(_args(tiny_root, uri, "hydra.launcher.dry_run=true"), cwd=tmp_path)
    assert on_val.returncode == 0 and "the search chooses by" not in on_val.stdout + on_val.stderr


def test_a_search_goes_on_past_a_diverging_trial_and_ends_with_exit_status_1(tiny_root, tmp_path):
    """The file tolerates failed trials (max_failure_rate: 1.0): a rate whose loss becomes NaN is a
    result the search learns from, its run FAILED in the store; the command still says so, exit 1."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Optuna's RandomSampler with the file's seed 0 draws both rates in its first two trials
    res = run_cli(_args(tiny_root, uri, "hydra/sweeper/sampler=random", "optimizer.lr=choice(0.01,1e12)",
                        "optimizer.momentum=0.9", "activation=relu", "hydra.sweeper.n_trials=2",
                        "hydra.sweeper.n_jobs=2"), cwd=tmp_path)
    assert res.returncode == 1, res.stderr[-3000:]
    runs = {r.data.params["optimizer.lr"]: r for r in _runs(uri)}
    assert runs["0.01"].info.status == "FINISHED" and runs["1000000000000.0"].info.status == "FAILED"
    failed = runs["1000000000000.0"].info.run_id
    # named by the rate it searched; the momentum the command line set over the file's search is not swept
    assert _one_line(res.stderr).startswith(f"vgsweep: 1 job failed: run {failed} (mnist-d2-relu-baseline-s42 "
                                            "optimizer.lr=1e+12): training loss became NaN or inf"),\
        res.stderr[-2000:]
    assert runs["0.01"].info.run_name == "mnist-d2-relu-baseline-s42 optimizer.lr=0.01"
    result = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert result["best_params"]["optimizer.lr"] == 0.01


def test_the_table_orders_a_swept_number_as_a_number_and_shortens_it():
    rows = [{"data.name": "mnist", "regime.name": "baseline", "activation.name": "relu", "model.depth": "2",
             "seed": "42", "run_id": f"r{i}", "start_time": i, "config_hash": f"h{i}", "test_acc": 90.0 + i,
             "optimizer.lr": lr} for i, lr in enumerate(["0.5", "10.0", "2.0", "0.012345678901"])]
    from vgsweep.results.studies import AGARAP

    df = aggregate(pd.DataFrame(rows), AGARAP)
    assert list(df["optimizer.lr"]) == ["0.012345678901", "0.5", "2.0", "10.0"]
    assert "| 0.01235 |" in to_markdown(df, AGARAP)


def test_a_run_name_shows_the_swept_settings_it_does_not_name():
    from vgsweep.jobs import label

    assert label(["init=he", "activation=relu", "seed=1", "data.root=x"], ["init", "activation", "seed"], "mlp") == "init=he"
    assert label(["optimizer.lr=0.01567667719550607", "optimizer.momentum=0.7"], ["optimizer.lr", "optimizer.momentum"],
                 "mlp") == "optimizer.lr=0.01568 optimizer.momentum=0.7"
    assert label(["optimizer.lr=0.01", "vgg_row=vgg38"], ["optimizer.lr", "vgg_row"], "vgg") == ""  # VGG names its lr
    assert label(["model.double_softmax=true"], ["model.double_softmax"], "mlp") == "model.double_softmax=true"


def _loaded(rows: list[dict]) -> pd.DataFrame:
    """Runs as figures.load_runs gives them: the study's axes by key and by label, a seed, a start time."""
    df = pd.DataFrame([{"seed": 42, "status": "FINISHED", "start_time": i, **r} for i, r in enumerate(rows)])
    for a in LR_SEARCH.all_axes:
        df[a.key] = df[a.label]
    return df


def test_the_search_figure_adds_sgds_effective_step_when_rate_and_momentum_vary():
    from vgsweep.results.figures import fig_search

    trials = _loaded([{"dataset": "mnist", "regime": "baseline", "activation": "logistic", "depth": "5",
                       "lr": lr, "momentum": m, "metric:best_val_acc": acc}
                      for lr, m, acc in [("0.1", "0.9", 0.9), ("0.5", "0.5", 0.8), ("0.001", "0.5", 0.1)]])
    fig = fig_search(trials, LR_SEARCH, LR_SEARCH.figures[0], "t")
    assert [ax.get_xlabel() for ax in fig.axes] == ["lr", "momentum", "lr / (1 − momentum)"]
    x, y = fig.axes[2].collections[0].get_offsets().T  # the trials, in the third panel
    assert list(x) == pytest.approx([1.0, 1.0, 0.002]) and list(y) == pytest.approx([90.0, 80.0, 10.0])
    assert list(fig.axes[2].collections[1].get_offsets()[0]) == pytest.approx([1.0, 90.0])  # the best, ringed
    # trials that never logged the objective (a search run without a validation split): no figure, no error
    assert fig_search(trials.drop(columns="metric:best_val_acc"), LR_SEARCH, LR_SEARCH.figures[0], "t") is None


def test_the_search_figure_draws_a_trial_confirmed_over_seeds_as_one_point_as_the_table_counts_it():
    """The seeds of a confirmed trial are one trial at their mean with a bar from the lowest to the highest;
    the ring goes to the best mean (the table's bold), not to the luckiest seed."""
    from vgsweep.results.figures import fig_search, plt

    rows = [{"lr": "0.1", "metric:best_val_acc": acc, "seed": seed} for seed, acc in [(42, 1.0), (0, 0.8), (1, 0.9)]]
    rows.append({"lr": "0.5", "metric:best_val_acc": 0.95, "seed": 42})
    trials = _loaded([{"dataset": "mnist", "regime": "baseline", "activation": "logistic", "depth": "5",
                       "momentum": "0.9", **r} for r in rows])
    fig = fig_search(trials, LR_SEARCH, LR_SEARCH.figures[0], "t")
    points, ring, bars = fig.axes[0].collections
    assert [list(p) for p in points.get_offsets()] == [pytest.approx([0.1, 90.0]), pytest.approx([0.5, 95.0])]
    assert list(ring.get_offsets()[0]) == pytest.approx([0.5, 95.0])
    assert [list(map(list, seg)) for seg in bars.get_segments()] == [[[0.1, pytest.approx(80.0)],
                                                                       [0.1, pytest.approx(100.0)]]]
    assert fig._suptitle.get_text() == ("t: 2 trials (1 of them over 3 seeds: the mean, a bar from the lowest "
                                        "to the highest)")
    plt.close(fig)


def test_a_search_tables_best_trial_is_each_colours_best_in_the_objectives_direction():
    """The bold rows are the trials the search figure rings: one per activation (its colours), the highest
    accuracy or the lowest loss; a study without a search figure marks none."""
    from dataclasses import replace

    from vgsweep.results.studies import AGARAP, LR_SEARCH, Metric
    from vgsweep.results.table import best_trials

    d = pd.DataFrame({"activation": ["relu", "relu", "tanh", "tanh", "tanh"], "mean": [0.5, 0.7, 0.9, 0.2, float("nan")]})
    assert best_trials(d, LR_SEARCH) == ({1, 2}, " of each activation")
    loss = replace(LR_SEARCH, metrics=(Metric("best val loss", "best_val_loss"),))
    assert best_trials(d, loss) == ({0, 3}, " of each activation")
    assert best_trials(d[d.activation == "tanh"], LR_SEARCH) == ({2}, "")
    assert best_trials(d, AGARAP) == (set(), "")
    # equal objectives: the trial that started first, the one Optuna's sweeper names best (the first to reach it)
    tie = pd.DataFrame({"activation": ["relu"] * 3, "mean": [0.7, 0.7, 0.5], "_started": [20, 10, 5]})
    assert best_trials(tie, LR_SEARCH) == ({1}, "")
    from vgsweep.results.figures import fig_search, plt

    trials = _loaded([{"dataset": "mnist", "regime": "baseline", "activation": "logistic", "depth": "5",
                       "lr": lr, "momentum": "0.9", "metric:best_val_acc": acc, "start_time": t}
                      for lr, acc, t in [("0.1", 0.9, 30), ("0.5", 0.9, 10), ("0.001", 0.1, 5)]])
    fig = fig_search(trials, LR_SEARCH, LR_SEARCH.figures[0], "t")
    assert list(fig.axes[0].collections[1].get_offsets()[0]) == pytest.approx([0.5, 90.0])  # ringed: started first
    plt.close(fig)


@pytest.mark.parametrize("launcher", ["packed", "basic"])
def test_a_search_ends_with_the_command_that_confirms_its_best_trial_over_seeds(tiny_root, tmp_path, launcher):
    """The study file cannot be that command (its file is Optuna's): the line spells out the trial's config,
    the file's settings and the command line's, and its seed list starts with the trial's own seed (in the
    store: skipped), so that the table's row of that trial is then the mean of five seeds. Under either
    launcher (the trial is read from its job folder's .hydra/overrides.yaml)."""
    import shlex

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    search = run_cli(_args(tiny_root, uri, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                           "activation=tanh", "model.hidden=[16,8]", f"hydra/launcher={launcher}"), cwd=tmp_path)
    assert search.returncode == 0, search.stderr[-3000:]
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())["best_params"]
    said = [x for x in search.stdout.splitlines() if "to confirm it over 5 seeds" in x]
    assert len(said) == 1, search.stdout[-3000:]
    shown, command = said[0].split(": vgsweep -m ")
    lr, momentum = best["optimizer.lr"], best["optimizer.momentum"]
    assert shown.endswith(f"the best trial, optimizer.lr={lr!r} optimizer.momentum={momentum!r}, trained with seed 42"
                          "; to confirm it over 5 seeds (the table then gives its row mean ± std)")
    args = shlex.split(command)
    assert "experiment=lr_search" not in args and not any("sweeper" in a for a in args)
    assert f"hydra/launcher={launcher}" in args  # the search's own Hydra overrides, but the sweeper's
    assert not any(a.startswith("depth=") for a in args)  # the file's depth=5 set back to the default, 2
    for given in ("study=lr_search", "objective=best_val_acc", "data.val_size=64", "activation=tanh",
                  "model.hidden=[16,8]", f"optimizer.lr={lr!r}", f"optimizer.momentum={momentum!r}"):
        assert given in args, args
    assert args[-1] == "seed=42,0,1,2,3"
    # the store keeps it (the terminal may not): the best trial's run's tag, and the report below the table
    tagged = [r for r in _runs(uri) if "vgsweep.confirm" in r.data.tags]
    assert len(tagged) == 1 and float(tagged[0].data.params["optimizer.lr"]) == lr
    assert tagged[0].data.tags["vgsweep.confirm"] == "vgsweep -m " + command
    if launcher == "basic":  # the same command; what it trains is the packed launcher's case
        return
    from vgsweep.results import report

    said = "The best trial has one seed; to confirm it over five, the command its search ended with"
    page = report.build(uri, tmp_path / "before", "lr_search").read_text()
    assert f"{said} (the table then gives its row mean ± std):\n\n```\nvgsweep -m {command}\n```" in page, page

    confirm = run_cli(["-m", *args, "hydra.sweep.dir=confirm"], cwd=tmp_path)
    assert confirm.returncode == 0, confirm.stderr[-3000:]
    assert len([r for r in _runs(uri) if "vgsweep.config_hash" in r.data.tags]) == 6  # its seed 42 not again
    from vgsweep.results.table import fetch_runs

    df = aggregate(fetch_runs(uri, "lr_search"), LR_SEARCH)
    assert len(df) == 2  # the two trials, one of them now over five seeds
    row = df[df["lr"].astype(float) == lr]
    assert list(row["n"]) == [5], df.to_string()
    from vgsweep.results import figures  # the search figure counts as the table does: two trials, one over 5 seeds

    tex = next(p for p in figures.build(uri, "lr_search", tmp_path / "figures", log_to_mlflow=False)
               if p.name == "figures.tex").read_text()
    assert "2 trials (1 of them over 5 seeds: the mean, a bar from the lowest to the highest)" in tex, tex
    assert said not in report.build(uri, tmp_path / "after", "lr_search").read_text()  # confirmed: nothing to say


@pytest.mark.parametrize("v", [0.1 + 0.2, 1e-05, -3.5e+20, float("inf"), 3, True, False, None, "relu", "a b",
                               "it's", "1e-3", "true", "null", "[x]", "a,b", "${study}", [16, 8], [0.5, "x y"],
                               {"a": 1, "b": "c d"}, ""])
def test_a_confirmation_writes_each_value_as_hydra_reads_it_back(v):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from vgsweep.confirm import value

    got = OverridesParser.create().parse_override(f"k={value(v)}").value()
    assert got == v and type(got) is type(v), value(v)


def test_the_confirmation_command_kept_in_the_store_hides_a_database_password(small_cfg):
    """The command names the search's store as its command line did (tracking.uri=postgresql://user:pw@...):
    the tag, which the report prints, writes the password *** as every other tag does."""
    from vgsweep import confirm, tracking
    from vgsweep.jobs import Job

    job = Job(small_cfg())
    uri = tracking.resolve_uri(job.cfg)
    client = tracking.client_for(uri)
    exp = tracking.experiment_id(client, uri, str(job.cfg.tracking.experiment), None)
    run = client.create_run(exp, tags={tracking.TAG_HASH: job.key()})
    client.set_terminated(run.info.run_id)
    confirm.record(job, "vgsweep -m 'tracking.uri=postgresql://ada:s3cret@db/mlflow' optimizer.lr=0.1 seed=42,0,1")
    assert client.get_run(run.info.run_id).data.tags[tracking.TAG_CONFIRM] == \
        "vgsweep -m 'tracking.uri=postgresql://ada:***@db/mlflow' optimizer.lr=0.1 seed=42,0,1"
