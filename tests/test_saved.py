"""tracking.save_weights: each run's trained model stored with it, and read back as the network it was."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.conftest import make_idx_dataset
from vgsweep.jobs import Job
from vgsweep.sweep import run_jobs


def test_a_saved_run_gives_back_its_own_test_numbers_alone_from_a_mixed_pack(small_cfg, tiny_root, tmp_path):
    """Runs with and without batch norm (frozen, and real with running statistics) trained as one pack: each
    run's weights hold its own layout (no other run's batch norm), and the network load_run rebuilds from
    them computes the run's recorded test accuracy and loss exactly (CPU). A run trained without
    save_weights has none, and load_run says how to get them."""
    from vgsweep.saved import WEIGHTS_ARTIFACT, load_run

    regimes = ("baseline", "gna_bn", "bn_batch")
    jobs = [Job(small_cfg(f"regime={r}", "seed=3", "tracking.save_weights=true")) for r in regimes]
    plain = Job(small_cfg("regime=baseline", "seed=4"))
    elsewhere = Job(small_cfg("regime=baseline", "seed=3", "tracking.save_weights=true", "study=other"))
    # the first one's name, another rate
    faster = Job(small_cfg("regime=baseline", "seed=3", "optimizer.lr=0.05", "tracking.save_weights=true"))
    # a sweep's run: its name ends with its swept setting, shortened (an Optuna trial's rate)
    trial = Job(small_cfg("regime=baseline", "seed=7", "optimizer.lr=0.01567667719550607", "tracking.save_weights=true"),
                label="optimizer.lr=0.01568")
    outcomes = run_jobs([*jobs, plain, elsewhere, faster, trial])
    assert [o.status for o in outcomes] == ["FINISHED"] * 7
    uri = jobs[0].cfg.tracking.uri
    client = MlflowClient(uri)
    assert {client.get_run(o.run_id).data.tags["vgsweep.pack_size"] for o in outcomes} == {"7"}  # one pack

    for regime, o in zip(regimes, outcomes):
        run = load_run(o.run_id, uri)
        names = set(run.parameters())
        assert {"W0", "W1", "W2"} <= names and any(n.startswith("bn") for n in names) == (regime != "baseline")
        assert run.epochs == 2 and run.cfg.regime.name == regime
        test = run.data(root=str(tiny_root)).test
        logits = run.forward(test.x)
        assert logits.shape == (len(test), 10)
        metrics = client.get_run(o.run_id).data.metrics
        correct = int((logits.argmax(-1) == test.y).sum())
        assert correct == round(metrics["test_acc"] * len(test))
        loss = float(torch.nn.functional.cross_entropy(logits, test.y))
        assert loss == pytest.approx(metrics["test_loss"], rel=1e-6)
    # its data given from a folder that holds other files (a smoke test's small set): said, with the digests
    other = make_idx_dataset(tmp_path / "other-data", seed=1)
    said = (rf"{other / 'MNIST' / 'raw'} does not hold the data run {run.name} trained on \(its train set's digest "
            r"\w{8}, here \w{8}; its test set's digest \w{8}, here \w{8}\): its predictions on them will not give its "
            r"recorded metrics")
    with pytest.warns(UserWarning, match=said):
        run.data(root=str(other))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run.data(root=str(shutil.copytree(tiny_root, tmp_path / "same-data")))  # the same files elsewhere
    bn = load_run(outcomes[2].run_id, uri).model.buffers  # real batch norm: its running statistics, trained
    assert set(bn) == {"bn0.mean", "bn0.var", "bn1.mean", "bn1.var"}
    assert all(not torch.equal(v[0], torch.full_like(v[0], 0.0 if n.endswith(".mean") else 1.0)) for n, v in bn.items())

    # by its name, as the report shows it: one config of that name per study, so the study says which
    name = client.get_run(outcomes[1].run_id).info.run_name
    assert load_run(name, uri).run_id == outcomes[1].run_id
    # printed (a notebook's cell): its name, id, net and epochs, not the whole config and a model object
    assert repr(load_run(name, uri)) == f"SavedRun({name!r}, run_id={outcomes[1].run_id!r}, mlp 16-16, logistic, " \
                                        "2 epochs, on cpu)"
    same = client.get_run(outcomes[0].run_id).info.run_name
    assert same == client.get_run(outcomes[4].run_id).info.run_name
    with pytest.raises(LookupError, match=f"{same}' names the runs of 3 configs") as e:
        load_run(same, uri)
    assert load_run(same, uri, experiment="other").run_id == outcomes[4].run_id
    # two configs of that name in one study: named as the report and `vgsweep status` name them
    lr = client.get_run(outcomes[0].run_id).data.params["optimizer.lr"]
    assert f"'{same} optimizer.lr=0.05' (run {outcomes[5].run_id}, experiment agarap2019)" in str(e.value)
    assert f"'{same} optimizer.lr={lr}' (run {outcomes[0].run_id}, experiment agarap2019)" in str(e.value)
    assert load_run(f"{same} optimizer.lr=0.05", uri).run_id == outcomes[5].run_id
    for written in ("5e-2", "0.050", "5.0E-02"):  # the same number written another way
        assert load_run(f"{same} optimizer.lr={written}", uri).run_id == outcomes[5].run_id
    with pytest.raises(LookupError, match="no FINISHED run"):
        load_run(f"{same} optimizer.lr=0.051", uri)
    assert load_run(f"{same} optimizer.lr={lr}", uri, experiment="agarap2019").run_id == outcomes[0].run_id
    labelled = client.get_run(outcomes[6].run_id).info.run_name
    assert labelled == "mnist-d2-logistic-baseline-s7 optimizer.lr=0.01568" and load_run(labelled, uri).run_id == \
        outcomes[6].run_id
    assert load_run("mnist-d2-logistic-baseline-s7 optimizer.lr=0.01567667719550607", uri).run_id == outcomes[6].run_id
    with pytest.raises(LookupError, match="no FINISHED run with the id or name 'mnist-d9'"):
        load_run("mnist-d9", uri)

    assert WEIGHTS_ARTIFACT not in [f.path for f in client.list_artifacts(outcomes[3].run_id, "model")]
    with pytest.raises(FileNotFoundError, match="tracking.save_weights=true rerun=true"):
        load_run(outcomes[3].run_id, uri)

    # the store copied elsewhere with its artifact folder (from the GPU machine), the recorded folder
    # gone: MLflow's paths name the old place; the run is read from the folder beside the copy
    here = load_run(outcomes[2].run_id, uri)
    db = Path(uri.removeprefix("sqlite:///"))
    copied = db.parent / "copied"
    copied.mkdir()
    shutil.copy(db, copied / db.name)
    shutil.copytree(db.parent / "mlartifacts", copied / "mlartifacts")
    (db.parent / "mlartifacts").rename(db.parent / "gone")
    there = load_run(outcomes[2].run_id, f"sqlite:///{copied / db.name}")
    assert torch.equal(there.model.theta, here.model.theta) and there.cfg == here.cfg
    assert set(there.model.buffers) == set(here.model.buffers)
    shutil.rmtree(copied / "mlartifacts")  # copied without its artifacts: said so, not "trained without"
    with pytest.raises(FileNotFoundError, match=f"trained with tracking.save_weights=true, but its {WEIGHTS_ARTIFACT} "
                                                f"cannot be read from {db.parent / 'mlartifacts'}"):
        load_run(outcomes[2].run_id, f"sqlite:///{copied / db.name}")


def test_a_names_settings_match_the_params_however_the_value_is_written():
    from vgsweep.saved import _same_value

    assert _same_value("true", "True") and _same_value("False", "False") and not _same_value("true", "False")
    assert _same_value("0.01568", "0.01567667719550607") and _same_value("1e-2", "0.01")
    assert not _same_value("0.0157", "0.01567667719550607") and not _same_value("he", "xavier")
    assert not _same_value("nan", "NaN") and not _same_value("0.01", None)
