"""A run's trained model: stored with `tracking.save_weights=true` as its artifact model/weights.pt,
and read back as the network it was.

    from vgsweep.saved import load_run
    run = load_run("mnist-d5-relu-gna-s0")     # a run name (the newest FINISHED run of it) or a run id;
                                               # tracking_uri="sqlite:///..." for another store than the project's
    data = run.data(root="../shared/data")     # its data set as it trained on it: data.test.x (N, C, H, W), .y
    logits = run.forward(data.test.x)          # (N, classes)
    run.parameters()                           # {"W0": (784, 512) tensor, "b0": ..., "bn1.gamma": ...}

The network is rebuilt by the run's own model family from the run's config.yaml, as a pack of one, so
its forward pass is the one that computed the run's test metrics (on the CPU the same numbers, bit for
bit). The file itself is plain tensors and lists, read with `torch.load(..., weights_only=True)`:
{"format", "config_hash", "epochs", "parameters": {name: tensor}, "buffers": {name: tensor} (batch
norm's running statistics), "layout": [[name, shape, role, layer], ...]} (a layer as the diagnostics
name it: dense1, s1.b2.conv1, fc).
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf

WEIGHTS_ARTIFACT = "model/weights.pt"
FORMAT = 1
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as results.reader: no bar per file


def weights_file(weights: dict, config_hash: str, epochs: int) -> bytes:
    """The artifact's bytes: `weights` as trainer.Pack.weights gives them, with the run's config hash and
    the epochs it trained."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "config_hash": config_hash, "epochs": epochs, **weights}, buf)
    return buf.getvalue()


@dataclass
class SavedRun:
    run_id: str
    cfg: DictConfig  # the run's resolved config (config.yaml)
    model: object  # its family's PackedModel, K = 1
    epochs: int  # epochs it trained (fewer than train.epochs if it diverged)
    name: str = ""  # its run name
    trained_on: dict = field(default_factory=dict)  # per split, the digest of the data it recorded (data_digests)

    def __repr__(self) -> str:  # the dataclass's own printed the whole config and a model object: a screenful
        m = self.cfg.model
        net = f"mlp {'-'.join(map(str, m.hidden))}" if m.family == "mlp" else str(m.name)
        return (f"SavedRun({self.name!r}, run_id={self.run_id!r}, {net}, {self.cfg.activation.name}, "
                f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}, on {self.model.device})")

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes) of inputs x (B, C, H, W), as vgsweep's loader gives them (`data()`), in
        evaluation mode (batch norm with its running statistics)."""
        return self.model.forward(x.to(self.model.device), train=False)[0]

    def parameters(self) -> dict[str, torch.Tensor]:
        """Its trained parameters by the family's names, each of its own shape (views of the model's)."""
        return {name: p[0].detach() for name, p in self.model.params(self.model.theta).items()}

    def data(self, root: Optional[str] = None, download: bool = False):
        """Its data set (vgsweep.data.loader.Dataset: train, test and a validation split as it trained on
        them, test inputs clean), from `root` (default: the run's data.root) on the model's device."""
        from vgsweep.data.loader import load

        d = OmegaConf.merge(self.cfg.data, {"download": download, **({"root": root} if root is not None else {})})
        ds = load(d, self.model.device)
        differ = [f"its {c} set's digest {was}, here {ds.digests[c]}" for c, was in self.trained_on.items()
                  if c in ds.digests and ds.digests[c] not in was.split("+")]
        if differ:  # a smoke test's small set, another copy: its accuracy on these is not the recorded one
            warnings.warn(f"{ds.source} does not hold the data run {self.name or self.run_id} trained on "
                          f"({'; '.join(differ)}): its predictions on them will not give its recorded metrics",
                          stacklevel=2)
        return ds


def _same_value(given: str, param: Optional[str]) -> bool:
    """Whether a setting as a name gives it is the param's value: as written, as names show it (0.01568
    for 0.01567667719550607), as the same number written another way (5e-2, 0.050 for 0.05), or a
    YAML bool in either case (true for True)."""
    from vgsweep.jobs import shown

    if param is None:
        return False
    if given in (param, shown(param)) or (param in ("True", "False") and given.lower() == param.lower()):
        return True
    try:
        return float(given) == float(param)
    except ValueError:
        return False


def find_run(client, run: str, experiment: Optional[str] = None) -> str:
    """The id of `run`: a run id, or a run name as the report, `vgsweep status` and the UI show it
    (`mnist-d5-relu-gna-s0`; where configs share that name, with the settings that tell them apart, as the
    report writes it: `mnist-d2-relu-baseline-s42 optimizer.lr=0.01`): the newest FINISHED run of that
    name and those settings (in `experiment` only, if given). LookupError where none is, or where the
    name is that of runs of several configs: the error names each as the report does."""
    import pandas as pd

    from vgsweep import tracking
    from vgsweep.results.reader import fill_neutral, told_apart

    try:
        return tracking.retry(client.get_run, run).info.run_id
    except tracking.TrackingUnavailable:
        raise
    except Exception:  # noqa: BLE001 - not a run id: a name
        pass
    name, *said = run.split()
    settings = dict(x.split("=", 1) for x in said if "=" in x)
    exps = tracking.retry(client.search_experiments)
    if experiment is not None:
        exps = [e for e in exps if e.name == experiment]
    q = '"' if "'" in name else "'"
    # a sweep's run names hold its swept settings already (`... optimizer.lr=0.01`): the runs whose name
    # starts so, then the one named `run` exactly, else those whose settings are the ones `run` gives
    found = tracking.retry(client.search_runs, [e.experiment_id for e in exps],
                           f"attributes.run_name LIKE {q}{name}%{q} and attributes.status = 'FINISHED'",
                           order_by=["attributes.start_time DESC"]) if exps else []
    exact = [r for r in found if r.info.run_name == run]
    found = exact or [r for r in found if (r.info.run_name or "").split(" ")[0] == name and len(settings) == len(said)
                      and all(_same_value(v, r.data.params.get(k)) for k, v in settings.items())]
    names = {e.experiment_id: e.name for e in exps}
    newest: dict[tuple, object] = {}  # each config's newest run
    for r in found:
        newest.setdefault((r.info.experiment_id, r.data.tags.get(tracking.TAG_HASH)), r)
    if not found:
        raise LookupError(f"no FINISHED run with the id or name {run!r}"
                          + (f" in experiment {experiment!r}" if experiment else ""))
    if len(newest) > 1:
        rs = list(newest.values())
        labels = told_apart(fill_neutral(pd.DataFrame([{**r.data.params, "run_name": r.info.run_name} for r in rs])))
        raise LookupError(f"{run!r} names the runs of {len(rs)} configs: "
                          + ", ".join(f"{label!r} (run {r.info.run_id}, experiment {names[r.info.experiment_id]})"
                                      for r, label in zip(rs, labels))
                          + ": pass one of these names, a run id, or experiment=")
    return found[0].info.run_id


def load_run(run: str, tracking_uri: Optional[str] = None, device: str = "cpu",
             experiment: Optional[str] = None) -> SavedRun:
    """The trained model of `run` (a run id, or a run name: `find_run`) in the store at `tracking_uri`
    (default: MLFLOW_TRACKING_URI's, else the project's mlflow.db), on `device`. FileNotFoundError where the
    store or the run's weights are missing (a run trained without tracking.save_weights=true: train it again
    with it and rerun=true); LookupError where no run, or more than one config, has that name."""
    from vgsweep import tracking
    from vgsweep.config import MODEL_SCHEMAS, Config
    from vgsweep.data.sets import DATASETS
    from vgsweep.families import family_of
    from vgsweep.packing import input_shape
    from vgsweep.seeding import generator

    uri = tracking_uri or tracking.default_uri()
    p = tracking.sqlite_path(uri)
    if p is not None and not p.is_file():
        raise FileNotFoundError(f"no store at {p}")
    client = tracking.client_for(uri)
    run_id = find_run(client, run, experiment)
    found = tracking.retry(client.get_run, run_id)
    info, saved = found.info, found.data.params.get("tracking.save_weights") == "True"
    # where its files are: as recorded, or beside a store that was moved or copied with them
    recorded_root = tracking.retry(client.get_experiment, info.experiment_id).artifact_location
    where = tracking.relocated(info.artifact_uri, tracking.moved_artifacts(uri, recorded_root))

    def download(path: str, tmp: str) -> Path:
        return Path(tracking.retry(tracking.download_artifact, where, path, tmp, uri))

    with tempfile.TemporaryDirectory() as tmp:
        try:
            weights = download(WEIGHTS_ARTIFACT, tmp)
        except Exception as e:  # noqa: BLE001 - MLflow's error for a missing artifact differs by store
            if saved:  # its files are not where the store says (a store moved without them, a file deleted)
                raise FileNotFoundError(f"run {run_id} was trained with tracking.save_weights=true, but its "
                                        f"{WEIGHTS_ARTIFACT} cannot be read from {where} ({type(e).__name__}: "
                                        f"{(str(e).strip().splitlines() or [''])[-1]})") from None
            raise FileNotFoundError(f"run {run_id} has no {WEIGHTS_ARTIFACT} in {tracking.hide_passwords(uri)}: it "
                                    "was trained without tracking.save_weights=true (train it again with "
                                    f"tracking.save_weights=true rerun=true) ({type(e).__name__}: {e})") from None
        state = torch.load(weights, map_location="cpu", weights_only=True)
        raw = OmegaConf.load(download("config.yaml", tmp))
    if state.get("format") != FORMAT:
        raise ValueError(f"run {run_id}: {WEIGHTS_ARTIFACT} is of format {state.get('format')!r}; this vgsweep "
                         f"reads format {FORMAT}")
    schema = OmegaConf.structured(Config)
    schema.model = OmegaConf.structured(MODEL_SCHEMAS[raw.model.family])
    cfg = OmegaConf.merge(schema, raw)
    model = family_of(cfg).build([cfg], input_shape(cfg.data), DATASETS[cfg.data.name].classes,
                                 [generator(int(cfg.seed), "init")], torch.device(device))
    mine = [[e.name, list(e.shape)] for e in model.layout]
    if mine != [row[:2] for row in state["layout"]]:
        raise ValueError(f"run {run_id}: {WEIGHTS_ARTIFACT} does not fit the network its config builds "
                         f"({state['layout']} against {mine})")
    with torch.no_grad():
        for e in model.layout:
            model.theta[0, e.offset:e.offset + e.numel] = state["parameters"][e.name].reshape(-1)
    model.restore_buffers(0, state["buffers"])
    return SavedRun(run_id, cfg, model, int(state["epochs"]), info.run_name or "", tracking.data_digests(found))
