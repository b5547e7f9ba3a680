"""End to end: the real CLI in a subprocess, a real SQLite store, tiny data in MNIST's format."""

from __future__ import annotations

import contextlib
import csv
import getpass
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import SMALL, run_cli, start_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sweep(tiny_root, tmp_path_factory):
    """One small multirun shared by the tests of this module: 2 activations x 2 regimes x 2 seeds, with
    Hydra's PickleJobInfoCallback on (it writes each job's config.pickle into its .hydra/ folder), and the
    experiment's name read from a variable of hydra.job.env_set (the packed launcher resolved the jobs'
    configs, and trained them, before Hydra's run_job set it: the name did not resolve)."""
    tmp = tmp_path_factory.mktemp("sweep")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    proc = run_cli([*_sweep_args(tmp / "multirun", tiny_root), f"tracking.uri={uri}"], cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, uri, proc


def _sweep_args(folder: Path, tiny_root: Path) -> list[str]:
    """The fixture's sweep, but for its store, its jobs' folders in `folder`."""
    return ["-m", "activation=relu,tanh", "regime=baseline,gna", "seed=0,1", "depth=2",
            *[a for a in SMALL if not a.startswith("tracking.learning_curve")],
            f"data.root={tiny_root}", "regime.grad_noise.eta=0.01", f"hydra.sweep.dir={folder}",
            "+hydra.callbacks.save_job_info._target_=hydra.experimental.callbacks.PickleJobInfoCallback",
            "+hydra.job.env_set.VGSWEEP_TEST_EXPERIMENT=agarap2019",
            "tracking.experiment=${oc.env:VGSWEEP_TEST_EXPERIMENT}"]


def _runs(uri):
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("agarap2019")
    return c, c.search_runs([exp.experiment_id], max_results=1000)


def test_every_job_is_one_finished_run_with_params_tags_metrics(sweep):
    tmp, uri, proc = sweep
    # the launch line says what came before training: composing the jobs (forked on a machine with cores
    # to spare) and checking them
    assert re.search(r"Launching 8 jobs, trained in packs \(8 configs composed in \d+\.\d s by \d+ process(es)?, "
                     r"checked in \d+\.\d s\)", proc.stdout + proc.stderr), (proc.stdout + proc.stderr)[-3000:]
    client, runs = _runs(uri)
    runs = [r for r in runs if "vgsweep.kind" not in r.data.tags]
    assert len(runs) == 8
    combos = {(r.data.params["activation.name"], r.data.params["regime.name"], r.data.params["seed"]) for r in runs}
    assert len(combos) == 8
    for r in runs:
        assert r.info.status == "FINISHED"
        p, t = r.data.params, r.data.tags
        assert p["model.hidden"] == "[16, 16]" and p["train.epochs"] == "2" and p["optimizer.lr"] == "0.01"
        assert len(t["vgsweep.config_hash"]) == 16 and t["vgsweep.torch_version"] and t["vgsweep.device"].startswith("cpu")
        assert t["vgsweep.git_commit"] and f"seed={p['seed']}" in t["vgsweep.overrides"]
        # MLflow's own tags of who ran it from what (its UI's User and Source), which create_run leaves out
        assert t["mlflow.user"] == r.info.user_id == getpass.getuser(), (t, r.info.user_id)
        assert t["mlflow.source.name"] == "vgsweep" and t["mlflow.source.type"] == "LOCAL"
        assert t.get("mlflow.source.git.commit") == (t["vgsweep.git_commit"].removesuffix("-dirty")
                                                     if t["vgsweep.git_commit"] != "unknown" else None)
        for m in ("train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds"):
            hist = client.get_metric_history(r.info.run_id, m)
            assert sorted(h.step for h in hist) == [0, 1], m
        assert 0.0 <= r.data.metrics["test_acc"] <= 1.0
    assert len({r.data.tags["vgsweep.config_hash"] for r in runs}) == 8
    # each run records the data it saw as MLflow dataset inputs (its UI's Datasets): the train and test
    # splits of the data set's files, each with the digest of its examples as the files hold them
    root = next(Path(a.split("=", 1)[1]) for a in proc.args if str(a).startswith("data.root="))
    raw = root / "MNIST" / "raw"
    expect = {}
    for context, split in (("train", "train"), ("test", "t10k")):
        images = gzip.decompress((raw / f"{split}-images-idx3-ubyte.gz").read_bytes())[16:]
        labels = gzip.decompress((raw / f"{split}-labels-idx1-ubyte.gz").read_bytes())[8:]
        h = hashlib.md5(repr(((len(labels), 1, 28, 28), "uint8", (len(labels),))).encode())
        h.update(images)
        h.update(b"".join(int(v).to_bytes(8, "little") for v in labels))
        expect[context] = (h.hexdigest()[:8], len(labels))
    for r in runs:
        seen = {i.tags[0].value: i.dataset for i in r.inputs.dataset_inputs}
        assert {c: (d.digest, json.loads(d.profile)["features_shape"][0]) for c, d in seen.items()} == expect, seen
        assert {(d.name, d.source_type, json.loads(d.source)["uri"]) for d in seen.values()} == {
            ("mnist", "local", str(raw.resolve()))}
    found = client.search_runs([runs[0].info.experiment_id], f"datasets.digest = '{expect['train'][0]}'")
    assert len([r for r in found if "vgsweep.kind" not in r.data.tags]) == 8


def test_artifacts_and_hydra_output_dirs(sweep):
    tmp, uri, _ = sweep
    client, runs = _runs(uri)
    r = runs[0]
    top = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"config.yaml", "learning_curve.png", "hydra"} <= top
    hydra_files = {Path(a.path).name for a in client.list_artifacts(r.info.run_id, "hydra")}
    # Hydra's files; not the callback's pickle (the config again, its passwords not hidden), whose bytes
    # failed every run as it was read as text
    assert {"config.yaml", "overrides.yaml", "hydra.yaml"} <= hydra_files and "config.pickle" not in hydra_files
    local = Path(client.download_artifacts(r.info.run_id, "learning_curve.png", str(tmp)))
    assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    job_dirs = sorted((tmp / "multirun").iterdir())
    assert len([d for d in job_dirs if (d / ".hydra" / "config.yaml").is_file()]) == 8
    assert len([d for d in job_dirs if (d / ".hydra" / "config.pickle").is_file()]) == 8


def test_each_run_stores_its_own_learning_curve(sweep):
    """The 8 curves of the pack are drawn at once in a worker process (plots.start_curve_pool): each
    run's PNG is the one drawn from its own history and name, byte for byte, not a neighbour's."""
    import matplotlib.pyplot as plt

    from vgsweep import plots

    tmp, uri, _ = sweep
    client, runs = _runs(uri)
    runs = [r for r in runs if "vgsweep.kind" not in r.data.tags]
    assert len({r.data.metrics["test_acc"] for r in runs}) > 1  # the curves differ, so a swap would show
    for r in runs:
        names = [m for m in ("train_loss", "val_loss", "test_loss", "train_acc", "val_acc", "test_acc")
                 if m in r.data.metrics]
        hist = {m: {h.step: h.value for h in client.get_metric_history(r.info.run_id, m)} for m in names}
        history = [{m: hist[m][e] for m in names} for e in sorted(hist["test_acc"])]
        with plt.style.context("default"):
            drawn = plots.curve_png(history, r.info.run_name)
        stored = Path(client.download_artifacts(r.info.run_id, "learning_curve.png", str(tmp / r.info.run_id)))
        assert stored.read_bytes() == drawn, r.info.run_name


def test_table_from_the_store(sweep):
    tmp, uri, _ = sweep
    out = tmp / "results"
    proc = run_cli(["table", "--tracking-uri", uri, "--out", str(out)], cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| gna | relu |" in proc.stdout and (out / "table.md").read_text() in proc.stdout
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert len(rows) == 4 and all(r["n"] == "2" for r in rows)
    _, runs = _runs(uri)
    runs = [r for r in runs if "vgsweep.kind" not in r.data.tags]

    def mean(act, regime):
        v = [100 * r.data.metrics["test_acc"] for r in runs
             if r.data.params["activation.name"] == act and r.data.params["regime.name"] == regime]
        return sum(v) / len(v)

    for r in rows:
        assert float(r["mean"]) == pytest.approx(mean(r["activation"], r["regime"]))
        if r["regime"] == "gna":
            assert float(r["delta"]) == pytest.approx(mean(r["activation"], "gna") - mean(r["activation"], "baseline"))
            assert float(r["delta_lo"]) <= float(r["delta"]) <= float(r["delta_hi"])
        # 2 epochs of a 16-unit net on made-up data: never set beside the paper's 100-epoch numbers
        assert r["published"] == "" and "train.epochs=2" in r["not_comparable"]
    md = (out / "table.md").read_text()
    assert "2-layer published" not in md and "75.05" not in md
    assert "not comparable with the published values" in md and "model.hidden=[16, 16]" in md
    tex = (out / "table.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\textbf{model.hidden=[16, 16]" in tex and "gna & relu &" in tex


def test_mlflow_tracking_uri_names_the_store_where_vgsweep_is_given_none(sweep, tiny_root, tmp_path, monkeypatch):
    """MLflow's own setting of the store, MLFLOW_TRACKING_URI, is where a sweep and the results commands go
    when they name no store (MLflow's commands and client take it so); the sweep says so. It was ignored: the
    runs went into the project's mlflow.db. A store named on the command line wins; one the variable names
    that cannot be used is one line naming the variable, exit 2."""
    tmp, uri, _ = sweep
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    again = run_cli(_sweep_args(tmp_path / "multirun", tiny_root), cwd=tmp_path)  # every config is in that store
    said = again.stdout + again.stderr
    assert again.returncode == 0 and "0 finished, 8 skipped" in said, said[-3000:]
    assert f"tracking.uri is unset: the runs go to {uri}, the store MLFLOW_TRACKING_URI names" in said
    status = run_cli(["status"], cwd=tmp_path)
    assert status.returncode == 0 and f"store {uri}" in status.stdout and "8 finished" in status.stdout, status
    bad = f"sqlite:///{tmp_path / 'no' / 'm.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", bad)
    for args in (["table", "--out", str(tmp_path / "t")], _sweep_args(tmp_path / "multirun", tiny_root)):
        proc = run_cli(args, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        [line] = [x for x in proc.stderr.splitlines() if x.startswith("vgsweep: ")]
        assert f"MLFLOW_TRACKING_URI='{bad}' is not accepted" in line and "unset MLFLOW_TRACKING_URI" in line, line
    named = run_cli(["table", "--tracking-uri", uri, "--out", str(tmp_path / "t")], cwd=tmp_path)
    assert named.returncode == 0 and "| gna | relu |" in named.stdout, named.stderr[-3000:]
    assert not (tmp_path / "no").exists()


def test_a_config_finished_on_other_data_is_skipped_with_a_warning_that_says_so(sweep, tiny_root, tmp_path):
    """The config hash leaves data.root out (the same files elsewhere are the same data), so a config FINISHED
    on a smoke test's small set counted as done for the real one, silently. The runs' recorded digests tell
    them apart: a copy of the data in another folder is skipped as before; other files are skipped with a
    warning naming the digests, and the sweep's last lines count them. Nothing is trained either way."""
    from tests.conftest import make_idx_dataset

    tmp, uri, _ = sweep
    copy = shutil.copytree(tiny_root, tmp_path / "copy")
    other = make_idx_dataset(tmp_path / "other", seed=1)
    args = ["-m", "activation=relu", "regime=baseline", "seed=0", "depth=2", *SMALL, "regime.grad_noise.eta=0.01",
            f"data.root={copy},{other}", f"hydra.sweep.dir={tmp_path / 'multirun'}",
            "tracking.experiment=agarap2019", f"tracking.uri={uri}"]
    proc = run_cli(args, cwd=tmp_path)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "0 finished, 2 skipped" in said, said[-3000:]
    skips = [x for x in said.splitlines() if "skip mnist-d2-relu-baseline-s0 data.root=" in x]  # root: swept
    assert len(skips) == 2 and "other data" not in skips[0], said[-3000:]  # the copy: the same examples
    client, runs = _runs(uri)
    [run] = [r for r in runs if r.info.run_name == "mnist-d2-relu-baseline-s0"]
    was = {i.tags[0].value: i.dataset.digest for i in run.inputs.dataset_inputs}
    from vgsweep.data.files import read_checked
    from vgsweep.data.loader import digest

    now = read_checked("mnist", other, False, False)
    assert (f"which trained on other data (its train set's digest {was['train']}, here "
            f"{digest(now['train_x'], now['train_y'])}; its test set's digest {was['test']}, here "
            f"{digest(now['test_x'], now['test_y'])}) (rerun=true trains it again)") in skips[1], skips[1]
    assert ("1 of the runs skipped trained on other data than this sweep's (their data set's digests differ; see "
            "the skip lines above): rerun=true trains it again on this data") in said, said[-3000:]


def test_the_report_reads_the_runs_once(sweep, monkeypatch, tmp_path):
    """make report reads the experiment's runs once for its table, verdicts and figures (a few ms a run:
    it read them six times, once only to see that the experiment holds a training run)."""
    from vgsweep import tracking
    from vgsweep.results import figures, report

    _, uri, _ = sweep
    reads, real = [], tracking.training_runs
    monkeypatch.setattr(tracking, "training_runs", lambda *a, **kw: reads.append(a[1:]) or real(*a, **kw))
    monkeypatch.setattr(figures, "_save", lambda fig, out, name, captions: figures.plt.close(fig) or [])  # no files
    report.build(uri, tmp_path / "once")
    assert len(reads) == 1, reads
    assert "| gna | relu |" in (tmp_path / "once" / "report.md").read_text()  # it did read them
    assert (tmp_path / "once" / "figures" / "agarap2019" / "curves.csv.gz").is_file()


def test_the_results_commands_find_the_experiments_that_hold_training_runs(tmp_path):
    """An experiment whose runs carry no config hash (runs of another tool, or only the `figures` run) is
    not one the results commands list; one with a training run among others is."""
    from vgsweep import tracking
    from vgsweep.results import reader

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = tracking.client_for(uri)
    other = client.create_experiment("other")
    client.set_terminated(client.create_run(other, tags={"vgsweep.kind": "figures"}).info.run_id)
    mixed = client.create_experiment("mixed")
    client.set_terminated(client.create_run(mixed, tags={tracking.TAG_HASH: "0123456789abcdef"}).info.run_id)
    for _ in range(3):
        client.set_terminated(client.create_run(mixed).info.run_id)
    assert reader.experiments(uri) == ["mixed"]
    assert [tracking.has_training_runs(client, e) for e in ("0", other, mixed)] == [False, False, True]


def test_ctrl_c_on_vgsweep_figures_is_one_line_and_leaves_whole_files_and_no_worker(sweep, ctrl_c_reaches_children):
    """Ctrl-C (SIGINT to the terminal's foreground group: the command and its drawing workers) while the
    figures are drawn: one line and exit 130, not a traceback; the figures being written are finished (no file
    is left cut short) and those not begun are dropped, and no worker outlives the command."""
    tmp, uri, _ = sweep
    out = tmp / "interrupted"
    proc = start_cli(["figures", "--tracking-uri", uri, "--out", str(out), "--no-mlflow"], cwd=tmp,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((out / "agarap2019").glob("*.png")):  # past its start: drawing
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    seen = sorted(p.name for p in (out / "agarap2019").iterdir())
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, (seen, err[-3000:])
    assert [line for line in err.splitlines() if line.startswith("vgsweep")] == [
        "vgsweep: interrupted by SIGINT (Ctrl-C): vgsweep figures stopped before it finished; run it again for all "
        "of its output"], err[-3000:]
    group = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(proc.pid)], capture_output=True, text=True)
    assert not [p for p in group.stdout.splitlines() if p.split()[1][0] != "Z"], group.stdout  # exited: reaped or not
    for f in (out / "agarap2019").iterdir():
        if f.suffix == ".png":
            assert f.read_bytes().endswith(b"IEND\xaeB`\x82"), f.name
        elif f.suffix == ".pdf":
            assert f.read_bytes().rstrip().endswith(b"%%EOF"), f.name


def test_report_and_figures_from_the_store(sweep):
    """make report: table, verdicts and every figure regenerated from the sweep's MLflow store."""
    tmp, uri, _ = sweep
    out = tmp / "report"
    proc = run_cli(["report", "--tracking-uri", uri, "--out", str(out)], cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Downloading artifacts" not in proc.stderr  # MLflow's bar per run's diagnostics file: 2 lines a run
    figs = out / "figures" / "agarap2019"
    # gradient_distribution: logistic absent, tanh the first in paper order
    expected = ["activations", "curves_d2", "gradient_flow_d2", "gradient_distribution_tanh_d2", "results",
                "deltas"]
    for stem in expected:
        assert (figs / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem
        pdf = (figs / f"{stem}.pdf").read_bytes()
        assert pdf[:4] == b"%PDF" and b"/FontFile2" in pdf and b"/Type3" not in pdf, stem  # TrueType fonts
    report = (out / "report.md").read_text()
    assert all(f"figures/agarap2019/{stem}.png" in report for stem in expected)
    _figures_for_a_paper(out, figs, expected, report)
    _figure_data(figs, uri)
    assert "[curves.csv.gz](figures/agarap2019/curves.csv.gz), [gradients.csv.gz](figures/agarap2019/gradients.csv.gz)." \
        in report
    assert "## Verdicts" in report and "| gna | relu |" in report
    import torch

    from vgsweep.tracking import git_commit, short_commit

    assert re.search(rf"The table's \d+ runs were made with vgsweep commit {re.escape(short_commit(git_commit()))}; "
                     rf"PyTorch {re.escape(torch.__version__)}; device cpu \(", report), report[:3000]
    assert "[table.tex](table.tex)" in report and (out / "table.tex").is_file()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("agarap2019")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    trained = next(r for r in runs if "vgsweep.kind" not in r.data.tags)  # its data: every training run's
    seen = {i.tags[0].value: i.dataset.digest for i in trained.inputs.dataset_inputs}
    assert (f"They trained on mnist: train set {seen['train']}, test set {seen['test']} (digests of the examples"
            in report), report[:3000]
    fig_runs = [r for r in runs if r.data.tags.get("vgsweep.kind") == "figures"]
    assert len(fig_runs) == 1
    again = run_cli(["report", "--tracking-uri", uri, "--out", str(out)], cwd=tmp)  # make report, twice
    assert again.returncode == 0, again.stderr[-3000:]
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    fig_runs = [r for r in runs if r.data.tags.get("vgsweep.kind") == "figures"]
    assert len(fig_runs) == 1  # the figures run is replaced, not added to
    assert fig_runs[0].data.tags["mlflow.source.name"] == "vgsweep figures"
    assert fig_runs[0].data.tags["mlflow.user"] == fig_runs[0].info.user_id == getpass.getuser()
    logged = {Path(a.path).name for a in client.list_artifacts(fig_runs[0].info.run_id, "figures")}
    assert {f"{s}.png" for s in expected} <= logged
    for r in runs:
        if r not in fig_runs:
            assert r.data.tags["vgsweep.verdict"] in ("healthy", "vanishing", "exploding", "dead_units", "not_learning")
            assert "diagnostics/diagnostics.npz" in {a.path for a in client.list_artifacts(r.info.run_id, "diagnostics")}
            assert "grad/dense1/norm" in r.data.metrics and "units/hidden1/dead" in r.data.metrics


def test_the_results_commands_read_only_the_runs_where_a_setting_has_a_value(sweep):
    """`--where seed=0 --where activation=relu`: the table, the report and its figures of those runs only
    (as the sweep's command line writes values; a group names its option), said under the heading; the
    store's figures run is not replaced by a selection's. A key the config lacks is one line, exit 2; a
    selection that no run meets, exit 1."""
    import gzip

    tmp, uri, _ = sweep
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("agarap2019")

    def figure_runs():
        return {r.info.run_id for r in client.search_runs([exp.experiment_id], "tags.`vgsweep.kind` = 'figures'")}

    _, runs = _runs(uri)
    acc = {(r.data.params["activation.name"], r.data.params["regime.name"], r.data.params["seed"]):
           100 * r.data.metrics["test_acc"] for r in runs if "vgsweep.kind" not in r.data.tags}
    before, out = figure_runs(), tmp / "where"
    proc = run_cli(["report", "--tracking-uri", uri, "--out", str(out), "--where", "seed=0", "--where",
                    "activation=relu"], cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert sorted((r["activation"], r["regime"], r["n"]) for r in rows) == [("relu", "baseline", "1"),
                                                                           ("relu", "gna", "1")]
    for r in rows:
        assert float(r["mean"]) == pytest.approx(acc[("relu", r["regime"], "0")])
    md = (out / "table.md").read_text()
    assert "Only the runs where seed=0 and activation=relu: 2 of the experiment's 8 ended runs." in md
    assert "Only the runs where `seed=0 and activation=relu`." in (out / "report.md").read_text()
    with gzip.open(out / "figures" / "agarap2019" / "curves.csv.gz", "rt") as f:
        drawn = {(r["activation"], r["seed"]) for r in csv.DictReader(f)}
    assert drawn == {("relu", "0")}
    assert figure_runs() == before  # the store's figures stay those of every run

    # Hydra's grammar: a list of values, a range; a float as written another way than the store holds it
    proc = run_cli(["table", "--tracking-uri", uri, "--out", str(tmp / "where2"), "--where", "seed=range(0,5)",
                    "--where", "regime=baseline", "--where", "regime.grad_noise.eta=1e-2"], cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Only the runs where seed=range(0,5) and regime=baseline and regime.grad_noise.eta=1e-2: 4 of" \
        in proc.stdout
    bad = run_cli(["table", "--tracking-uri", uri, "--out", str(tmp / "where3"), "--where", "train.epoch=2"], cwd=tmp)
    assert bad.returncode == 2 and "train.epoch is not a key of the runs' config" in bad.stderr, bad.stderr
    assert "did you mean train.epochs?" in bad.stderr and not (tmp / "where3").exists()
    none = run_cli(["figures", "--tracking-uri", uri, "--out", str(tmp / "where4"), "--where", "seed=7"], cwd=tmp)
    assert none.returncode == 1 and "no ended run in" in none.stderr and "where seed=7" in none.stderr, none.stderr
    assert "; the ended runs have seed 0, 1" in none.stderr, none.stderr
    typo = run_cli(["table", "--tracking-uri", uri, "--out", str(tmp / "where6"), "--where", "seed=0,7"], cwd=tmp)
    assert typo.returncode == 0 and "ended runs (none has seed=7)." in typo.stdout, typo.stdout[-2000:]
    none = run_cli(["figures", "--tracking-uri", uri, "--out", str(tmp / "where4"), "--where", "seed=7", "--experiment",
                    "agarap2019"], cwd=tmp)
    assert none.returncode == 1 and "no FINISHED runs in experiment 'agarap2019' where seed=7" in none.stderr
    assert "; its FINISHED runs have seed 0, 1" in none.stderr, none.stderr
    figs = run_cli(["figures", "--tracking-uri", uri, "--out", str(tmp / "where5"), "--where", "seed=1", "--where",
                    "regime=gna"], cwd=tmp)
    assert figs.returncode == 0 and "the figures of the runs where seed=1 and regime=gna are not logged to MLflow" \
        in figs.stderr, figs.stderr[-3000:]
    with gzip.open(tmp / "where5" / "agarap2019" / "curves.csv.gz", "rt") as f:
        assert {(r["regime"], r["seed"]) for r in csv.DictReader(f)} == {("gna", "1")}
    assert figure_runs() == before


def _figure_data(figs: Path, uri: str) -> None:
    """curves.csv.gz and gradients.csv.gz beside the figures: every run's own numbers, as the store holds
    them (each run's diagnostics its own, not another run's: the figures read each file once, into a
    folder of its own); not logged to MLflow with the figures (the store holds them already)."""
    import numpy as np
    import pandas as pd

    client, runs = _runs(uri)
    [fig_run] = [r for r in runs if r.data.tags.get("vgsweep.kind") == "figures"]
    assert not [a for a in client.list_artifacts(fig_run.info.run_id, "figures") if ".csv" in a.path]
    runs = {r.info.run_id: r for r in runs if "vgsweep.kind" not in r.data.tags}
    # the file has every digit; pandas before 3 reads the last one of some floats one unit off by default
    exact = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
    curves = pd.read_csv(figs / "curves.csv.gz", **exact)
    assert list(curves.columns[:8]) == ["run_id", "run_name", "dataset", "regime", "activation", "depth", "seed",
                                        "epoch"], list(curves.columns)
    assert set(curves.run_id) == set(runs) and len(curves) == 8 * 2  # 8 runs, 2 epochs each
    assert list(curves.activation.drop_duplicates()) == ["tanh", "relu"]  # the study's order, as the table's
    for rid, c in curves.groupby("run_id"):
        r = runs[rid]
        assert (c.run_name.iloc[0], str(c.seed.iloc[0])) == (r.info.run_name, r.data.params["seed"])
        for key in ("train_loss", "test_acc", "epoch_seconds"):  # every digit
            store = {m.step + 1: m.value for m in client.get_metric_history(rid, key)}
            assert dict(zip(c.epoch, c[key])) == store, (rid, key)
    grads = pd.read_csv(figs / "gradients.csv.gz")
    assert set(grads.run_id) == set(runs) and len(grads) == 8 * 2 * 3  # runs x epochs x layers (dense1-3)
    assert list(grads.columns[-6:]) == ["layer", "layer_index", "grad/mean_abs", "grad/norm", "grad_noisy/mean_abs",
                                        "update_ratio"]
    last = grads[(grads.epoch == 2) & (grads.layer == "dense1")].set_index("run_id")
    for rid, r in runs.items():
        for col, metric in (("grad/mean_abs", "grad/dense1/mean_abs"), ("grad_noisy/mean_abs",
                                                                        "grad_noisy/dense1/mean_abs")):
            assert np.float32(last.loc[rid, col]) == np.float32(r.data.metrics[metric]), (rid, col)


def _figures_for_a_paper(out: Path, figs: Path, stems: list[str], report: str) -> None:
    """figures.tex: each PDF in a figure with its caption and label, which the real pdflatex compiles
    beside table.tex from a paper's folder (the figures' folder named there), and in report.tex, the
    report as one document; the PDFs leave their titles to the captions, the PNGs keep them."""
    from tests.conftest import pdf_text, pdflatex

    tex = (figs / "figures.tex").read_text()
    assert "[figures/agarap2019/figures.tex](figures/agarap2019/figures.tex)" in report
    for stem in stems:
        assert f"\\includegraphics{{\\vgsweepfigures/agarap2019/{stem}.pdf}}" in tex, stem
        assert tex.count(f"\\label{{fig:agarap2019-{stem}}}") == 1, stem
    assert tex.count("\\caption{") == tex.count("\\begin{figure") == len(list(figs.glob("*.pdf")))
    assert tex.isascii() and "\\caption{\\textbf{Gradient flow:} 2-layer networks (mean over epochs and seeds)." in tex
    log = pdflatex(out, "\\newcommand{\\vgsweepfigures}{figures}\n\\input{table.tex}\n\\input{figures/agarap2019/figures.tex}")
    assert "Overfull \\hbox" not in log and "undefined" not in log, log[-3000:]
    paper = " ".join(pdf_text(out / "doc.pdf").split())
    # the title's band, then its chance line where the tiny nets' curves reach chance (float details decide)
    assert re.search(r"Figure 3: Learning curves: 2-layer networks: mean over seeds, band ± 1 std(; dotted: chance "
                     r"\([^)]*\))?\.", paper.replace("±1", "± 1")), paper[:3000]
    assert "Table 1: Agarap et al. 2019" in paper
    assert "[report.tex](report.tex)" in report
    log = pdflatex(out, name="report")  # make report, then pdflatex report.tex in its folder
    assert "Overfull \\hbox" not in log and "Warning" not in log, log[-3000:]
    page = " ".join(pdf_text(out / "report.pdf").split())
    assert "vgsweep report" in page and "1 Experiment agarap2019" in page and "Table 1: Agarap et al. 2019" in page
    assert page.count("Figure ") >= len(stems) and "Figure 6: Activation functions." in page, page[:3000]
    drawn = pdf_text(figs / "curves_d2.pdf")
    assert "tanh" in drawn and "relu" in drawn and "networks" not in drawn  # the panels, not the title


def test_an_experiment_named_as_a_path_gets_its_own_folder_under_results(sweep, tmp_path):
    """MLflow names experiments freely (Databricks: /Users/me/study): the figures of one named like an
    absolute path, with ../ and a brace, go to one folder under --out/figures/, nothing outside it, and
    report.md's links and report.tex (the real pdflatex) find them there."""
    from tests.conftest import pdf_text, pdflatex
    from vgsweep.results.reader import folder

    src, _, _ = sweep
    shutil.copy(src / "mlflow.db", tmp_path / "mlflow.db")  # the runs' artifacts stay where they are
    uri, name = f"sqlite:///{tmp_path / 'mlflow.db'}", f"{tmp_path}/abs/../noise{{2}}"
    client = MlflowClient(uri)
    client.rename_experiment(client.get_experiment_by_name("agarap2019").experiment_id, name)
    out = tmp_path / "results"
    proc = run_cli(["report", "--tracking-uri", uri, "--out", str(out)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "mlflow.db.lock", "results"]  # no abs/ nor noise{2}/
    [figs] = (out / "figures").iterdir()
    assert figs.name == folder(name) and figs.name.startswith(f"{tmp_path}/abs/../noise_2_-".replace("/", "_"))
    report = (out / "report.md").read_text()
    links = [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert links and all((out / link).is_file() for link in links), links
    log = pdflatex(out, name="report")
    assert "Error" not in log and "not found" not in log, log[-3000:]
    assert "Figure 6: Activation functions." in " ".join(pdf_text(out / "report.pdf").split())


def test_an_experiments_folder_is_its_name_when_that_is_one_plain_folder_name():
    from vgsweep.results.reader import folder

    for plain in ("agarap2019", "noise v2", "R&D 50%", "a.b", "...x"):
        assert folder(plain) == plain
    odd = ["a/b", "a\\b", "a_b-x", "/a/b", "a{b}", ".", "..", "../..", "x" * 300, "x" * 301]
    made = [folder(n) for n in odd]
    assert len(set(made)) == len(odd) and "a_b-x" in made  # never two experiments in one folder
    for m in made:
        assert m.strip(".") and not set(m) & set("/\\{}") and len(m.encode()) <= 129, m


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _page_text(url: str, tmp: Path) -> str:
    """What a person sees at url: headless Chromium runs the page's scripts, then the DOM's text."""
    import re

    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp / 'chromium'}", "--window-size=1600,1200",
                           "--virtual-time-budget=30000", "--dump-dom", url],
                          capture_output=True, text=True, timeout=180)
    html = re.sub(r"<script.*?</script>|<style.*?</style>", " ", proc.stdout, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_ui_opens_the_experiment_on_its_training_runs(sweep):
    """The real `vgsweep ui` (mlflow ui) and a real browser: the printed address shows the runs of the
    experiment, and a run's page shows its test_acc."""
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("CI=true but chromium is missing (.ci/run installs Debian's chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    import urllib.request

    from tests.conftest import free_port
    from vgsweep import ui

    tmp, uri, _ = sweep
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("agarap2019")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    from vgsweep.results.studies import STUDIES
    port = free_port()
    proc = start_cli(["ui", "--tracking-uri", uri, "--port", str(port)],
                     cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                     start_new_session=True)
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        url = lines[1].split(": ", 1)[1].strip()
        assert lines[1].startswith("agarap2019: ") and url.endswith(f"/#/experiments/{exp.experiment_id}?{ui.WORKFLOW}")
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "mlflow ui did not start"
                time.sleep(0.3)
        session = []  # `mlflow ui` and the one server process it starts (MLflow's default would start four more)
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):  # a process that ended meanwhile
                if os.getsid(int(pid)) == proc.pid:
                    session.append(Path(f"/proc/{pid}/cmdline").read_bytes()[:200])
        assert len(session) == 2, session
        runs = [r for r in client.search_runs([exp.experiment_id]) if "vgsweep.kind" not in r.data.tags]
        page = _page_text(url, tmp)
        assert "Detect Issues" not in page and "Runs" in page  # the training runs, not the GenAI overview
        assert all(r.info.run_name in page for r in runs), page[:3000]
        r = runs[0]
        run_page = _page_text(ui.run_url(f"http://127.0.0.1:{port}", exp.experiment_id, r.info.run_id), tmp)
        assert f"test_acc {r.data.metrics['test_acc']}" in run_page, run_page[:3000]
        # MLflow's own tags: who made the run from what; the study's title as the experiment's description
        assert f"Created by {getpass.getuser()}" in run_page and "Source vgsweep" in run_page, run_page[-3000:]
        seen = {i.tags[0].value: i.dataset.digest for i in r.inputs.dataset_inputs}  # the data it trained on
        assert f"Datasets mnist ({seen['train']}) train" in run_page, run_page[-3000:]
        assert f"mnist ({seen['train']}) train , mnist ({seen['test']}) test" in page, page[:3000]
        assert exp.tags["mlflow.note.content"] == STUDIES["agarap2019"].title and STUDIES["agarap2019"].title in page
        second = subprocess.run([sys.executable, "-m", "vgsweep", "ui", "--tracking-uri", uri, "--port", str(port)],
                                cwd=tmp, capture_output=True, text=True, timeout=120)  # the port is this UI's
        assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr[-2000:]
        assert f"--port={port} is not accepted; expected a free port. 127.0.0.1:{port} cannot be listened on" \
            in second.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
