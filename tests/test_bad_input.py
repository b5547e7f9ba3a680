"""Bad input through the real CLI: one clear message, non-zero exit, and the store untouched."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import SMALL, make_idx_dataset, run_cli
from vgsweep.jobs import Job
from vgsweep.sweep import run_jobs

# (overrides, fragments vgsweep's one line must hold). {tiny}, {empty}, {corrupt}, {short}, {store},
# {tmp}, {afile}, {notsqlite}, {foreign}, {userconf} are filled in.
CASES = [
    # Hydra's composition refuses these (unknown options and keys, wrong types); vgsweep says it in one line
    # (a few through the CLI here; every kind of refusal in test_config's test of bad_input_message)
    (["activation=sigmoidd"], ["activation=sigmoidd is not accepted", "one of elu, gelu, identity, leaky_relu, logistic"]),
    (["experiment=bn_mode,noise_scale"], ["experiment='bn_mode,noise_scale'", "one study per command",
                                          "vgsweep experiment=bn_mode; vgsweep experiment=noise_scale"]),
    # a list selects several options, merged into one config (one tanh net trained); here as a sweep's value
    (["activation=[relu,tanh],gelu"], ["activation=[relu,tanh] is not accepted; expected one option of activation",
                                       "to train each, sweep them: vgsweep -m activation=relu,tanh"]),
    # ... in a sweep's list, found when Hydra's sweeper composes each of the 8 jobs
    (["activation=relu,tanh,swish,sigmoidd"], ["activation=sigmoidd is not accepted", "logistic"]),
    (["model.double_softmax=false,3"], ["model.double_softmax=3 is not accepted; expected true or false"]),
    # ... and in a config file of the user's (as an override would be: 1 is not read as true)
    (["hydra.searchpath=[file://{userconf}]", "experiment=mine"],
     ["invalid config ({userconf}/experiment/mine.yaml): model.double_softmax=1 is not accepted; expected true or false"]),
    (["hydra.searchpath=[file://{userconf}]", "experiment=typo"],
     ["invalid config ({userconf}/experiment/typo.yaml): train.epoch=3 is not accepted", "did you mean train.epochs?"]),
    (["train.epoch=3"], ["train.epoch=3 is not accepted", "a key of train:", "did you mean train.epochs?"]),
    (["train.epochs=abc"], ["train.epochs='abc' is not accepted", "an int"]),
    (["regime.grad_noise.unit=minute"], ["regime.grad_noise.unit='minute'", "one of epoch, step"]),
    (["+train.epoch=3"], ["train.epoch=3 is not accepted", "did you mean train.epochs?"]),
    (["optimizer.lr=interval(0.1,0.2)"], ["interval(...) and other sampled sweeps need a sweeper that samples"]),
    # sweeps the sweeper could not expand (tracebacks), or expanded into no job (an IndexError in the launcher)
    (["seed=range(0,3,0)"], ["seed=range(0,3,0) is not accepted; expected range(start, stop, step) with a step that is "
                             "not 0", "range() arg 3 must not be zero"]),
    (["seed=range(5,0)"], ["seed=range(5,0) is not accepted; expected a sweep of at least one value",
                           "range(5,0,-1) counts down"]),
    (["activation=glob(zzz*)"], ["activation=glob(zzz*) is not accepted; expected a sweep of at least one value. It "
                                 "matches no option of activation: elu, gelu, identity"]),
    (["hydra/sweeper=optuna", "hydra.sweeper.direction=maximize", "optimizer.lr=interval(0.1,0.001)"],
     ["optimizer.lr=interval(0.1,0.001) is not accepted; expected interval(low, high) with low <= high",
      "The `low` value must be smaller than or equal to the `high` value (low=0.1, high=0.001)"]),
    (["hydra.sweeper.max_batch_size=0"], ["hydra.sweeper.max_batch_size=0 is not accepted; expected a positive int"]),
    (["hydra/sweeper=optuna", "hydra.sweeper.direction=maximize", "activation=glob(*)"],
     ["activation=glob(*) is not accepted; expected a list of options (a,b,c) with Optuna's sweeper"]),
    # Optuna's sweeper took these and failed with a traceback, after the search or in it
    (["hydra.sweeper.n_trials=0", "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
      "optimizer.lr=interval(0.001,0.1)"], ["hydra.sweeper.n_trials=0 is not accepted; expected an int >= 1"]),
    (["hydra.sweeper.n_jobs=-1", "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
      "optimizer.lr=interval(0.001,0.1)"], ["hydra.sweeper.n_jobs=-1 is not accepted; expected an int >= 1"]),
    # ... and this one as its AssertionError, in one line without the key
    (["hydra.sweeper.max_failure_rate=2", "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
      "optimizer.lr=interval(0.001,0.1)"], ["hydra.sweeper.max_failure_rate=2 is not accepted; expected a number "
                                            "from 0 to 1"]),
    # a sweep given as Hydra's sweeper config: OmegaConf failed to merge it (AttributeError: a traceback)
    (['hydra.sweeper.params={{activation: "relu,tanh"}}'],
     ['hydra.sweeper.params={{activation: "relu,tanh"}} is not accepted',
      "a sweep's keys are overrides (activation=relu,tanh)"]),
    (["hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "hydra.sweeper.direction=maximize",
      "optimizer.lr=tag(log,interval(1e-4,1))"],
     ["optimizer.lr=tag(log,interval(1e-4,1)) is not accepted", "a list of values (a,b,c) or an interval of ints"]),
    (["model=vgg08", "depth=5"], ["model.depth=5 is not accepted", "depth=... sets the MLP's widths"]),
    (["hydra.launcher.progress=sometimes"], ["hydra.launcher.progress='sometimes'", "one of"]),
    (["hydra.launcher.progress=false"], ["hydra.launcher.progress=false is not accepted; expected one of auto, bar, log. "
                                         "log writes a line every few seconds instead of the live one"]),
    # values out of range (every rule of validate(): tests/test_config.py, in its process; here one of each kind)
    (["train.epochs=0"], ["train.epochs=0 is not accepted", "a positive int"]),
    # a grid's invalid cells, all named at once by the settings the sweep varies (with its seed=1,2)
    (["init=zero,xavier,he", "regime=baseline,wn"],
     ["init.name='zero' is not accepted", "(2 of the sweep's 12 jobs are refused: seed=1 init=zero regime=wn; seed=2 "
                                          "init=zero regime=wn)"]),
    (["model.hidden=[64,64,64]"], ["model.depth=2", "len(model.hidden) = 3"]),
    # ints that no tensor or store holds (it failed inside the first run with torch's overflow traceback)
    (["model.hidden=[100000000000000000000,512]"], ["model.hidden[0]=100000000000000000000 is not accepted",
                                                    "a positive int of at most 9223372036854775807 in size"]),
    (["data.val_size=100000"], ["data.val_size=100000", "fewer than the"]),
    # a limit past the files' examples trained on all of them, its run recording the limit as the set's size
    (["data.limit_train=385"], ["data.limit_train=385 is not accepted; expected at most 384, the mnist training "
                                "images in", "MNIST/raw. Or null for all of them"]),
    (["data.limit_test=129"], ["data.limit_test=129 is not accepted; expected at most 128, the mnist test images"]),
    # NaN and inf (each key: tests/test_config.py); 1e400 is read as inf
    (["optimizer.lr=nan"], ["optimizer.lr=nan is not accepted", "NaN and inf are not"]),
    (["optimizer.lr=1e400"], ["optimizer.lr=inf is not accepted"]),
    # an interpolation that does not resolve (it was a traceback, from the first use of the key)
    (["optimizer.lr=${{nope}}"], ["optimizer.lr=${{nope}} is not accepted; expected an interpolation that resolves. "
                                  "Interpolation key 'nope' not found"]),
    (["model.hidden=[${{oc.env:VGSWEEP_NO_SUCH_VAR}},16]"],
     ["model.hidden=['${{oc.env:VGSWEEP_NO_SUCH_VAR}}', 16] is not accepted",
      "Environment variable 'VGSWEEP_NO_SUCH_VAR' not found"]),
    # the launcher's own options
    (["hydra.launcher.max_pack=-1"], ["hydra.launcher.max_pack=-1", "an int >= 0"]),
    (["hydra.launcher.memory_budget_gb=nan"], ["hydra.launcher.memory_budget_gb=nan", "a positive float (NaN and inf are not)"]),
    (["hydra.launcher.memory_budget_gb=-2"], ["hydra.launcher.memory_budget_gb=-2.0"]),
    (["hydra.launcher.executor=pbs"], ["hydra.launcher.executor='pbs'", "local, slurm, submitit_local"]),
    (["hydra.launcher.executor=slurm"], ["tracking.uri=", "an mlflow server", "sqlite_is_shared=true"]),
    (["hydra.launcher.timeout_min=0"], ["hydra.launcher.timeout_min=0", "a positive int"]),
    # blank, as `account=$ACCOUNT` gives where it is not set: sbatch took it as the default account
    (["hydra.launcher.account="], ["hydra.launcher.account='' is not accepted; expected a name, or null for SLURM's"]),
    (["hydra.launcher.submitit_folder=' '"], ["hydra.launcher.submitit_folder=' ' is not accepted; expected a folder"]),
    (["hydra.launcher.result_grace_s=nan"], ["hydra.launcher.result_grace_s=nan", "a float >= 0 (NaN and inf are not)"]),
    # the device
    (["device=cuda"], ["device='cuda'", "no CUDA device"]),
    (["device=tpu"], ["device='tpu'", "auto, cpu, cuda or cuda:N"]),
    (["precision=bf16"], ["precision='bf16'", "GPU options"]),
    # the data
    (["data.root={empty}"], ["data.root=", "not found", "data.download=true"]),
    (["data.root={corrupt}"], ["data.root=", "damaged"]),
    (["data.root={tiny}", "data.verify=true"], ["checksum mismatch", "data.verify=false"]),
    (["data.root={short}"], ["truncated"]),
    (["train.batch_size=100000"], ["train.batch_size=100000 is not accepted", "at most 384"]),
    # the store and the folders
    (["tracking.uri=http://127.0.0.1:9"], ["tracking.uri='http://127.0.0.1:9'", "no MLflow server answers"]),
    (["tracking.uri=sqlite:///{tmp}/no/such/dir/m.db"], ["does not exist"]),
    (["tracking.uri=ftp://example.org/x"], ["tracking.uri='ftp://example.org/x'", "sqlite:///", "a folder store"]),
    (["tracking.uri=sqlite:///{notsqlite}"], ["is not a SQLite database"]),
    # two slashes, or none: SQLAlchemy reads a host before the path (it was said to be "a folder store")
    (["tracking.uri=sqlite://runs/m.db"], ["tracking.uri='sqlite://runs/m.db' is not accepted", "a sqlite URI has "
                                          "three slashes before the file's path: sqlite:///runs/m.db (from the folder "
                                          "the command runs in) or sqlite:////runs/m.db (from /)"]),
    (["tracking.uri=sqlite://"], ["sqlite:// alone is a database in memory, lost when the command ends"]),
    (["tracking.uri=sqlite:///{tmp}"], ["is a folder, not a database file"]),
    (["tracking.uri=sqlite:///{foreign}"], ["another application's SQLite database", "songs"]),
    (["study=''"], ["study=''", "a non-empty name"]),
    (["tracking.artifact_root={afile}/art"], ["tracking.artifact_root=", "is a file"]),
    (["checkpoint.dir={afile}/ck"], ["checkpoint.dir=", "is a file"]),
    (["hydra.sweep.dir={afile}/mr"], ["hydra.sweep.dir=", "is a file"]),
    # blank, as `hydra.sweep.dir=$OUT` gives where OUT is not set: the jobs' folders went into the current folder
    (["hydra.sweep.dir="], ["hydra.sweep.dir='' is not accepted; expected a folder"]),
    # /proc, where mkdir fails though access() allows it for root ("no folder can be made in /proc (No such
    # file or directory)"; others read "/proc is not writable"): "/proc " is in the reason, not in the value
    (["hydra.sweep.dir=/proc/vgsweep-mr"], ["hydra.sweep.dir='/proc/vgsweep-mr' is not accepted", "/proc "]),
    (["checkpoint.dir=/proc/vgsweep-ck"], ["checkpoint.dir='/proc/vgsweep-ck' is not accepted", "/proc "]),
]
# Also tried as a single job (no -m): the checks before Hydra makes the job's output folder.
SINGLE = [c for c in CASES if not c[0][0].startswith(("hydra.", "hydra/", "tracking.retry")) and "," not in c[0][0]
          and "glob(" not in c[0][0]][::3]  # a sweep's refusal is the sweep's: as a single job, Hydra asks for -m
SINGLE += [c for c in CASES if "${{" in c[0][0] and c not in SINGLE]  # a single run resolves them elsewhere


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_root):
    import sqlite3

    from vgsweep.data.idx import write_idx

    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "empty").mkdir()
    corrupt = make_idx_dataset(tmp / "corrupt")
    f = corrupt / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])  # a download cut off half way
    short = make_idx_dataset(tmp / "short")
    (short / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").unlink()
    (short / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3, 0]))  # 5 bytes
    (tmp / "afile").write_text("a file, not a folder")
    (tmp / "userconf" / "experiment").mkdir(parents=True)
    (tmp / "userconf" / "experiment" / "mine.yaml").write_text("# @package _global_\nmodel:\n  double_softmax: 1\n")
    (tmp / "userconf" / "experiment" / "typo.yaml").write_text("# @package _global_\ntrain:\n  epoch: 3\n")
    (tmp / "notsqlite.db").write_text("hello")
    con = sqlite3.connect(tmp / "foreign.db")
    con.execute("CREATE TABLE songs (title TEXT)")
    con.commit()
    con.close()
    store = tmp / "store"
    store.mkdir()
    # A store that already holds a finished run: nothing below may change it.
    from tests.conftest import compose_cfg

    cfg = compose_cfg([*SMALL, f"data.root={tiny_root}", f"tracking.uri=sqlite:///{store / 'mlflow.db'}"])
    assert run_jobs([Job(cfg)])[0].status == "FINISHED"
    del write_idx
    return {"tiny": tiny_root, "empty": tmp / "empty", "corrupt": corrupt, "short": short, "store": store,
            "tmp": tmp, "afile": tmp / "afile", "userconf": tmp / "userconf", "notsqlite": tmp / "notsqlite.db", "foreign": tmp / "foreign.db"}


def _snapshot(*roots: Path) -> dict:
    return {p: p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def _check(case, proc, made: Path) -> None:
    overrides, fragments = case
    assert proc.returncode == 2, (overrides, proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr, (overrides, proc.stderr[-2000:])
    lines = [x for x in proc.stderr.splitlines() if x.startswith("vgsweep: ")]
    assert len(lines) == 1, (overrides, proc.stderr[-2000:])
    text = lines[0]
    for frag in fragments:
        assert frag in text, (overrides, frag, text[-2000:])
    assert "epoch 1" not in proc.stdout + proc.stderr  # nothing trained
    assert not made.exists(), (overrides, "an output folder was made")


@pytest.mark.e2e
def test_every_bad_input_fails_before_training_with_a_clear_message(world):
    """Each bad input, as a sweep and (a third of them) as a single job: exit 2, one line naming the
    key, the value and what is accepted (also for what Hydra refuses while composing), no traceback,
    no output folder, and the store and every other file byte for byte as they were."""
    uri = f"sqlite:///{world['store'] / 'mlflow.db'}"
    before = _snapshot(world["store"], world["tiny"], world["short"])
    runs = [(c, True) for c in CASES] + [(c, False) for c in SINGLE]

    def one(item):
        (overrides, _), sweep = item
        filled = [o.format(**world) for o in overrides]
        made = world["tmp"] / ("mr" if sweep else "run") / str(abs(hash(tuple(filled))))
        key = "hydra.sweep.dir" if sweep else "hydra.run.dir"
        small = [a for a in SMALL if not (a.startswith("model.") and any(o.startswith("model=vgg") for o in filled))]
        args = [*(["-m", "seed=1,2"] if sweep else []), *small, f"data.root={world['tiny']}", f"tracking.uri={uri}",
                *filled, *([] if any(o.startswith(key) for o in filled) else [f"{key}={made}"])]
        return run_cli(args, cwd=world["tmp"], timeout=300), made

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, runs))
    assert len(CASES) >= 40
    for ((overrides, fragments), _), (proc, made) in zip(runs, results):
        _check((overrides, [f.format(**world) for f in fragments]), proc, made)
    assert _snapshot(world["store"], world["tiny"], world["short"]) == before
    assert not (world["tmp"] / "checkpoints").exists() and not (world["tmp"] / "outputs").exists()


@pytest.mark.e2e
def test_the_results_commands_refuse_bad_arguments_in_one_line_and_create_nothing(world):
    """vgsweep table / figures / report read a store: a URI that names no store, a file that is not one,
    a server that does not answer, an output folder that cannot be made, an unknown activation: one
    line and exit 2 before anything is read or written; a store that does not exist yet is exit 1,
    saying to run a sweep first, and is not created (it used to be, empty, by reading it)."""
    tmp, store = world["tmp"], world["store"] / "mlflow.db"
    good = f"sqlite:///{store}"
    before = _snapshot(world["store"])
    cases = [
        (["table", "--tracking-uri", str(store)], 2, ["--tracking-uri=", "sqlite:///<path of a database file>",
                                                       f"a database file is named by a sqlite URI: {good}"]),
        (["table", "--tracking-uri", f"sqlite:///{world['notsqlite']}"], 2, ["is not a SQLite database"]),
        (["report", "--tracking-uri", "http://127.0.0.1:9"], 2, ["--tracking-uri='http://127.0.0.1:9'",
                                                                  "no MLflow server answers"]),
        (["figures", "--tracking-uri", good, "--out", f"{world['afile']}/figs"], 2,
         ["--out=", "is a file, so no folder can be made inside it"]),
        (["table", "--tracking-uri", f"sqlite:///{tmp / 'none.db'}"], 1, ["no store at", "run a sweep first"]),
        (["table", "--tracking-uri", good, "--experiment", "nope", "--out", str(tmp / "t")], 1,
         ["no experiment 'nope'", "its experiments with training runs are 'agarap2019' (--experiment)"]),
    ]
    # what argparse itself refuses, and vgsweep profile's own arguments (checked before it trains): the
    # same one line, no usage printed first (argparse's way)
    parsed = [(["table", "--bogus"], 2, ["unrecognized arguments: --bogus", "(vgsweep table --help lists"]),
              (["ui", "--port", "x"], 2, ["argument --port: invalid int value: 'x'"]),
              (["ui", "--workers", "0"], 2, ["--workers=0 is not accepted; expected an int >= 1"]),
              (["status", "--tracking-uri"], 2, ["argument --tracking-uri: expected one argument"]),
              (["profile", "--top", "0"], 2, ["--top=0 is not accepted; expected an int >= 1"])]
    for args, code, fragments in cases[:3] + cases[4:5] + parsed:  # through the CLI: its one line, its exit status
        proc = run_cli(args, cwd=tmp, timeout=120)
        lines = [x for x in proc.stderr.splitlines() if x.startswith("vgsweep: ")]
        assert proc.returncode == code and len(lines) == 1 and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert (args, code, fragments) not in parsed or proc.stderr.count("\n") == 1, (args, proc.stderr)
        for frag in fragments:
            assert frag in lines[0], (args, frag, lines[0])
    from vgsweep.config import ArgumentError
    from vgsweep.results import figures, table

    for args, code, fragments in [cases[3], cases[5]]:  # the same checks, in this process
        with pytest.raises((ArgumentError, SystemExit)) as e:
            (figures if args[0] == "figures" else table).main(args[1:])
        assert isinstance(e.value, ArgumentError) == (code == 2)
        for frag in fragments:
            assert frag in str(e.value), (args, frag, str(e.value))
    with pytest.raises(SystemExit) as e:
        figures.main(["--tracking-uri", good, "--activation", "sigmoidd"])
    assert e.value.code == 2  # argparse: invalid choice
    from vgsweep import profile  # where its files go, checked before it composes or trains anything

    for args, said in [(["--trace", f"{world['afile']}/t.json"], "afile is a file, not a folder"),
                       (["--json", str(tmp)], f"{tmp} is a folder"), (["--trace", "/proc/t.json"], "/proc")]:
        with pytest.raises(ArgumentError, match="a file that can be written") as e:
            profile.main(["model.depth=7", *args])  # a bad config too: the arguments are refused first
        assert str(e.value).startswith(f"invalid argument: {args[0]}=") and said in str(e.value), str(e.value)
    assert not (tmp / "none.db").exists() and not (tmp / "t").exists() and not (tmp / "results").exists()
    assert _snapshot(world["store"]) == before


@pytest.mark.parametrize("command,args", [("table", ["--experiment", ""]), ("table", ["--out", ""]),
                                          ("figures", ["--out", " "]), ("status", ["--tracking-uri", ""]),
                                          ("ui", ["--host", ""]), ("profile", ["--json", ""])])
def test_a_results_commands_blank_argument_is_refused_not_taken_for_its_default(command, args, tmp_path, monkeypatch,
                                                                               capsys):
    """`--out ''` wrote into the current folder, `--experiment ''` read every experiment, `ui --host ''`
    listened on every address of the machine: a blank value is one line, exit 2, nothing made or read."""
    import importlib

    from vgsweep.app import SUBCOMMANDS

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        importlib.import_module(SUBCOMMANDS[command]).main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"vgsweep: argument {args[0]}: {args[1]!r} is not accepted; "
                                                     "expected a value (leave the option out for its default)"), err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("defect,fragment", [("labels", "label 12, but mnist has 10 classes"),
                                             ("count", "expected images (N, H, W) and as many labels")])
def test_malformed_data_is_a_data_error_naming_the_file(tmp_path, defect, fragment):
    """Files in the right format but with wrong contents (checksums off) fail with a DataError."""
    import re

    import numpy as np

    from vgsweep.data import DataError
    from vgsweep.data.files import read_checked
    from vgsweep.data.idx import write_idx

    root = make_idx_dataset(tmp_path)
    raw = root / "MNIST" / "raw"
    if defect == "labels":
        write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.full(128, 12))
    else:
        write_idx(raw / "train-labels-idx1-ubyte.gz", np.zeros(100))
    with pytest.raises(DataError, match=re.escape(fragment)) as e:
        read_checked("mnist", root, download=False, verify=False)
    assert "-ubyte.gz" in str(e.value)


def test_fashion_mnist_files_are_checked_against_the_published_gzip_md5(tmp_path):
    """Fashion-MNIST's published checksums are of the .gz files: a .gz that is not theirs is refused."""
    from vgsweep.data import DataError
    from vgsweep.data.files import read_checked

    root = make_idx_dataset(tmp_path, folder="FashionMNIST")
    with pytest.raises(DataError, match="checksum mismatch") as e:
        read_checked("fashion_mnist", root, download=False, verify=True)
    assert "train-images-idx3-ubyte.gz" in str(e.value) and "8d4fb7e6c68d591d4c3dfef9ec88bf0d" in str(e.value)
    assert len(read_checked("fashion_mnist", root, download=False, verify=False)["train_y"]) == 384


@pytest.mark.parametrize("host, said", [("256.1.1.1", "Name or service not known"),
                                        ("192.0.2.1", "It is not one of this machine's (Cannot assign requested")])
def test_ui_host_that_is_not_this_machines_is_said_of_the_host(host, said):
    """`vgsweep ui --host 256.1.1.1` was refused as `--port=5000 is not accepted; expected a free port`."""
    from vgsweep.config import ArgumentError
    from vgsweep.ui import check_port

    with pytest.raises(ArgumentError) as e:
        check_port(host, 5000)
    assert str(e.value).startswith(f"invalid argument: --host='{host}' is not accepted; expected an address or name "
                                   "of this machine") and said in str(e.value), str(e.value)
