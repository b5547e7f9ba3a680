"""The first ten minutes: what a newcomer meets on a fresh clone, from the command line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, SMALL, compose_cfg, git, run_cli


@pytest.mark.e2e
def test_a_data_set_that_cannot_be_downloaded_is_one_line_before_any_folder(tmp_path):
    """No network (a proxy that refuses): one line saying where the files are expected and the two
    ways out, exit 2, no job folder and no empty data folder left behind."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": ""}
    args = ["-m", "train.epochs=5", "data.limit_train=6000", "activation=relu,tanh", f"data.root={tmp_path / 'data'}",
            f"tracking.uri=sqlite:///{tmp_path / 'm.db'}", f"hydra.sweep.dir={tmp_path / 'mr'}"]
    proc = subprocess.run([sys.executable, "-m", "vgsweep", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [x for x in proc.stderr.splitlines() if x.startswith("vgsweep: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    msg = lines[0]
    assert "downloading it failed" in msg and str(tmp_path / "data" / "MNIST" / "raw") in msg
    assert "copy the folder MNIST/" in msg and "data.download=false" in msg
    assert not (tmp_path / "mr").exists() and not (tmp_path / "data").exists() and not (tmp_path / "m.db").exists()


def test_help_describes_vgsweep_its_groups_and_studies():
    proc = run_cli(["--help"], cwd=Path.cwd())
    assert proc.returncode == 0
    out = proc.stdout
    assert out.startswith("vgsweep: ") and "powered by Hydra" not in out
    assert "experiment=vgg_cifar100 seed=0,1,2" in out and "paper_table1" in out
    depth = next(line for line in out.splitlines() if line.strip().startswith("depth "))
    assert re.search(r"2 \(default\), 5, 10, 20, 30$", depth), depth  # numbers in numeric order
    groups = {line.split()[0] for line in out.split("Config groups")[1].splitlines()[1:] if line.startswith("  ")}
    assert {"activation", "dataset", "depth", "experiment", "init", "model", "optimizer", "regime", "vgg_row"} <= groups
    studies = " ".join(out.split("Studies:")[1].split("Examples:")[0].split())
    experiments = next(ln for ln in out.splitlines() if ln.strip().startswith("experiment ")).split()[1:]
    missing = [e.strip(",") for e in experiments if not re.search(rf"\b{e.strip(',')}\b", studies)]
    assert not missing, f"studies --help does not describe: {missing}"  # init_scale was left out
    from vgsweep.app import SUBCOMMANDS

    said = [c for c in SUBCOMMANDS if re.search(rf"^  vgsweep (\S+ \| )*{c}\b", out, re.M)]
    assert said == list(SUBCOMMANDS), f"--help leaves out the commands {set(SUBCOMMANDS) - set(said)}"  # profile was


def test_help_computes_only_the_fields_its_template_names_and_says_what_hydras_would(monkeypatch):
    """Hydra's get_help listed every config group twice (its own and the app's, a config repository copied
    per group: 2 of `vgsweep --help`'s 2.5 s) for templates that show neither. vgsweep's computes a field
    only where the template names it: for its --help none of those lists, and the text is Hydra's, for
    its template, Hydra's --hydra-help one, and one that names every field."""
    from hydra import initialize_config_dir
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    import vgsweep.hydra_compat as compat

    theirs = compat._hydras_get_help
    assert Hydra.get_help is compat._get_help and theirs is not compat._get_help
    calls = []
    listing = Hydra.format_config_groups
    monkeypatch.setattr(Hydra, "format_config_groups", lambda self, *a, **k: calls.append(a) or listing(self, *a, **k))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        cfg = hydra.compose_config("config", ["activation=relu"], run_mode=RunMode.RUN)
        parser = get_args_parser()
        every = OmegaConf.create({"template": "$FLAGS_HELP|$HYDRA_CONFIG_GROUPS|$APP_CONFIG_GROUPS|$CONFIG"})
        for help_cfg in (cfg.hydra.help, cfg.hydra.hydra_help, every):
            calls.clear()
            ours = compat._get_help(hydra, help_cfg, cfg, parser, False)
            said = [help_cfg.template.count("CONFIG_GROUPS"), len(calls)]
            assert ours == theirs(hydra, help_cfg, cfg, parser, False), help_cfg.template[:80]
            assert said[1] == said[0], said  # each list computed only where the template names it
        assert "activation: " in ours and "hydra/launcher: " in ours and "--multirun" in ours
        assert "Config groups (group=option):" in compat._get_help(hydra, cfg.hydra.help, cfg, parser, False)


def test_version_gives_vgsweeps_and_the_releases_it_runs_on():
    """`vgsweep --version` (Hydra's own said `Hydra 1.3.8` alone), anywhere among the overrides."""
    import platform

    import hydra
    import mlflow
    import torch

    import vgsweep

    for args in (["--version"], ["activation=relu", "--version"]):
        proc = run_cli(args, cwd=Path.cwd())
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
        head = git(ROOT, "rev-parse", "HEAD")
        assert re.match(rf"vgsweep {re.escape(vgsweep.__version__)} at commit {head[:12]}(-dirty)? \(Hydra "
                        rf"{hydra.__version__}, PyTorch {re.escape(torch.__version__.split('+')[0])}", proc.stdout), \
            proc.stdout
        assert f", MLflow {mlflow.__version__}, " in proc.stdout
        assert proc.stdout.endswith(f"Python {platform.python_version()})\n"), proc.stdout


def test_the_recorded_commit_is_dirty_for_changed_code_not_for_regenerated_results(tmp_path, monkeypatch):
    """vgsweep.git_commit: a checkout whose results/ make report has rewritten is not -dirty (every sweep after a
    report would have said its runs were made by other code); a changed source file is."""
    from vgsweep import tracking

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "c"]):
        git(tmp_path, *args)
    head = git(tmp_path, "rev-parse", "HEAD")
    monkeypatch.setattr(tracking, "checkout", lambda: tmp_path)
    seen = []
    for path, text in (("results/table.md", "new\n"), ("code.py", "x = 2\n")):
        (tmp_path / path).write_text(text)
        tracking.git_commit.cache_clear()
        seen.append(tracking.git_commit())
    tracking.git_commit.cache_clear()
    assert seen == [head, head + "-dirty"]


def test_tab_completion_as_the_readme_installs_it_lists_options_and_keys():
    """Hydra's bash completion through vgsweep's command line (its options may come anywhere among the overrides):
    the script it installs completes `vgsweep`, and the query it runs on each Tab lists a group's options and a
    node's keys."""
    command = str(Path(sys.executable).parent / "vgsweep")  # the console script (under python -m Hydra names python)
    script = subprocess.run([command, "--shell-completion", "install=bash"],
                            capture_output=True, text=True, timeout=120)
    assert script.returncode == 0 and script.stdout.rstrip().endswith("-F hydra_bash_completion vgsweep"), script
    for line, want in (("vgsweep activation=", {f"activation={a}" for a in ("logistic", "relu", "swish", "tanh")}),
                       ("vgsweep -m depth=2,5 train.", {"train.epochs=", "train.batch_size="})):
        env = {**os.environ, "COMP_LINE": line, "COMP_POINT": str(len(line))}
        proc = subprocess.run([command, "-sc", "query=bash"], capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0 and want <= set(proc.stdout.split()), (line, proc.stdout, proc.stderr[-2000:])


@pytest.mark.parametrize("command", ["table", "figures", "report", "status", "profile", "ui"])
def test_each_commands_help_says_what_it_does_in_whole_sentences_and_every_option(command, capsys):
    """`vgsweep <command> --help`: its description ends a sentence (ui's stopped at "MLflow's UI over the
    store,": the first line of a paragraph), and every option has a line of help (ui's --host and --port
    had none)."""
    import importlib

    from vgsweep.app import SUBCOMMANDS

    with pytest.raises(SystemExit) as e:
        importlib.import_module(SUBCOMMANDS[command]).main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    description = " ".join(out.split("\n\n")[1].split())
    assert description.endswith((".", ")")) and not description.endswith(",)"), description
    lines = out.split("options:")[1].splitlines()  # an option's help: on its line after 2+ spaces, or below it
    bare = [ln.split()[0] for i, ln in enumerate(lines) if ln.startswith("  -") and "  " not in ln.strip()
            and not (i + 1 < len(lines) and lines[i + 1].startswith(" " * 10))]
    assert not bare, f"options without help: {bare}"


def test_the_console_script_is_the_same_command():
    script = Path(sys.executable).parent / "vgsweep"
    if not script.exists():
        pytest.skip(f"{script} not installed (pip install -e . makes it)")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("vgsweep: ")
    bad = subprocess.run([str(script), "train.epoch=3"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr  # Hydra's refusal, in vgsweep's one line
    assert "train.epoch=3 is not accepted" in bad.stderr and "did you mean train.epochs?" in bad.stderr


def test_hydras_options_may_come_among_the_overrides_and_what_it_refuses_is_one_line(tmp_path):
    """`vgsweep train.epochs=1 --cfg job activation=tanh`: plain argparse (Hydra's) reads only the overrides
    before the first option and refuses the rest as 'unrecognized arguments'; vgsweep reads them all, and
    `--info` before an override takes no value (argparse's nargs='?' took the override as one and refused
    it). An unknown option or a wrong choice is one line naming it, exit 2, and so is an override `--info`
    cannot compose."""
    proc = run_cli(["train.epochs=1", "--cfg", "job", "activation=tanh", "seed=7"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"^seed: 7$", proc.stdout, re.M) and re.search(r"^  epochs: 1$", proc.stdout, re.M)
    assert re.search(r"^activation:\n  name: tanh$", proc.stdout, re.M), proc.stdout[:2000]
    info = run_cli(["--info", "config", "seed=8"], cwd=tmp_path)
    bare = run_cli(["--info", "seed=8"], cwd=tmp_path)
    for p in (info, bare):
        assert p.returncode == 0 and re.search(r"^seed: 8$", p.stdout, re.M), p.stderr[-2000:]
    for args, said in [(["seed=1", "--cfg", "jobs", "train.epochs=1"], "argument --cfg/-c: invalid choice: 'jobs'"),
                       (["seed=1", "--bogus", "train.epochs=1"], "unrecognized arguments: --bogus"),
                       # Hydra runs --info outside its report of refusals: they were its traceback, exit 1
                       (["--info", "config", "activation=nope"], "invalid config: activation=nope is not accepted"),
                       (["--info", "plan"], "invalid config: cannot parse the override 'plan'"),
                       # Hydra's own refusal of two modes was a traceback (a ValueError), exit 1
                       (["--cfg", "job", "activation=relu,tanh", "-m"], "--multirun (-m) and --cfg cannot be given "
                                                                        "together"),
                       # as was --resolve's of an interpolation a job's Hydra config would set
                       (["--cfg", "job", "--resolve", "seed=${hydra:job.num}"],
                        "invalid config: seed=${hydra:job.num} is not accepted; expected an interpolation that "
                        "resolves"),
                       (["--cfg", "job", "optimizer.lr=${nope}"],
                        "invalid config: optimizer.lr=${nope} is not accepted"),
                       (["--experimental-rerun", "gone.pickle"], "--experimental-rerun='gone.pickle' is not accepted"),
                       (["--cfg", "job", "--package", "train.nope"], "--package='train.nope' is not accepted; expected "
                                                                     "a key of the job config (one of study, seed"),
                       # a mapping that takes new keys: Hydra's grammar adds one with + (it said "not in struct")
                       (["--cfg", "hydra", "hydra.job.env_set.FOO=1"],
                        "invalid config: hydra.job.env_set.FOO=1 is not accepted; expected a key the config has. "
                        "+hydra.job.env_set.FOO=1 adds a new one")]:
        bad = run_cli(args, cwd=tmp_path)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith(f"vgsweep: {said}"), \
            (args, bad.stderr)
    # --cfg job prints a config the run would refuse, then says so: it printed it and exited 0
    shown = run_cli(["--cfg", "job", "train.epochs=0", "seed=3"], cwd=tmp_path)
    assert re.search(r"^  epochs: 0$", shown.stdout, re.M) and re.search(r"^seed: 3$", shown.stdout, re.M)
    assert shown.returncode == 2 and shown.stderr == ("vgsweep: invalid config: train.epochs=0 is not accepted; "
                                                      "expected a positive int\n"), shown.stderr
    assert list(tmp_path.iterdir()) == []  # nothing ran, no outputs/ folder


@pytest.mark.e2e
def test_a_path_setting_may_start_with_the_home_folder(tiny_root, tmp_path, monkeypatch):
    """`data.root="~/d"`, a store and checkpoints under ~: the home folder's, as a shell would have it
    (zsh does not expand `key=~/x`, and a YAML file never does); the results commands take `~` in
    --tracking-uri and --out too. Unquoted, Hydra's grammar refuses `~`: the line says to quote it."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "d").symlink_to(tiny_root, target_is_directory=True)
    monkeypatch.setenv("HOME", str(home))
    paths = ['data.root="~/d"', 'tracking.uri="sqlite:///~/m.db"', 'checkpoint.dir="~/ck"', 'tracking.artifact_root="~/a"']
    sweep = run_cli(["-m", "seed=1,2", *SMALL, *paths, f"hydra.sweep.dir={tmp_path / 'mr'}"], cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    runs = MlflowClient(f"sqlite:///{home / 'm.db'}").search_runs(["1"])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        assert run.data.params["data.root"] == str(home / "d") and run.data.params["checkpoint.dir"] == str(home / "ck")
        assert run.info.artifact_uri.startswith(str(home / "a"))
    assert not (tmp_path / "~").exists() and (home / "a").is_dir()
    status = run_cli(["status", "--tracking-uri", "sqlite:///~/m.db"], cwd=tmp_path)
    assert status.returncode == 0 and "2 configs: 2 finished" in status.stdout, status.stderr
    bare = run_cli([*SMALL, "data.root=~/d", f"hydra.run.dir={tmp_path / 'run2'}"], cwd=tmp_path)
    assert bare.returncode == 2 and bare.stderr.count("\n") == 1, bare.stderr
    assert "a value with ~ goes in quotes: 'data.root=\"~/d\"'" in bare.stderr
    # `--out=~/res`: a shell leaves that `~` as it is (not at a word's start); it made a folder named `~` here
    from vgsweep.results import table

    monkeypatch.chdir(tmp_path)
    assert table.main(["--tracking-uri=sqlite:///~/m.db", "--out=~/res"]) == 0
    assert (home / "res" / "table.md").is_file() and not (tmp_path / "~").exists()


@pytest.mark.e2e
def test_hydra_job_env_set_is_in_the_environment_where_a_single_run_is_checked_and_printed(tiny_root, tmp_path):
    """Hydra's run_job sets hydra.job.env_set around the task; vgsweep resolved a single run's config (its
    check) and --cfg's before that: `${oc.env:NAME}` of a variable env_set gives did not resolve. (The
    packed sweep's case: test_e2e's shared sweep.)"""
    env = ["+hydra.job.env_set.VGSWEEP_TEST_EXPERIMENT=mine", "tracking.experiment=${oc.env:VGSWEEP_TEST_EXPERIMENT}"]
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    one = run_cli([*SMALL, *env, f"data.root={tiny_root}", f"tracking.uri={uri}", f"hydra.run.dir={tmp_path / 'one'}"],
                  cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    [run] = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("mine").experiment_id])
    assert run.info.status == "FINISHED"
    shown = run_cli(["--cfg", "job", "--resolve", *env], cwd=tmp_path)
    assert shown.returncode == 0 and re.search(r"^  experiment: mine$", shown.stdout, re.M), shown.stderr[-3000:]


@pytest.mark.e2e
def test_the_live_progress_line_ends_before_anything_else_is_written(tiny_root, tmp_path):
    args = ["-m", "regime=baseline,wn", *SMALL, f"data.root={tiny_root}", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}",
            f"hydra.sweep.dir={tmp_path / 'mr'}", "hydra.launcher.progress=bar"]
    proc = subprocess.run([sys.executable, "-m", "vgsweep", *args], cwd=tmp_path, capture_output=True, timeout=300)
    err = proc.stderr.decode()  # bytes: "\r" kept as it is
    assert proc.returncode == 0, err[-3000:]
    bars = [seg for seg in err.split("\r") if seg.startswith("pack ")]
    assert len(bars) == 4, err  # 2 packs x 2 epochs, each rewriting the line
    # each pack's last rewrite of the line is ended by a newline, so what follows starts on its own line
    assert [seg.rstrip(" ").endswith("\n") for seg in bars] == [False, True, False, True] and err.endswith("\n")
    # a pack's last epoch counts its runs as trained (it said "runs finished 0/2" at the end of the first)
    assert [re.search(r"runs trained (\d/\d)", seg).group(1) for seg in bars] == ["0/2", "1/2", "1/2", "2/2"], bars
    # the ETA is not known until a second epoch is timed (the first also pays for the start-up)
    assert [bool(re.search(r"\| elapsed \d+ s \| ETA (\d+ s|\?) ", seg)) for seg in bars] == [True] * 4, bars
    assert "ETA ?" in bars[0] and all("ETA ?" not in seg for seg in bars[1:]), bars


def test_elapsed_and_eta_read_as_durations():
    """A CPU grid takes hours: `ETA 3 h 20 min`, not `ETA 12000 s`; nothing done yet: `ETA ?`."""
    from vgsweep.progress import Progress, duration

    assert [duration(s) for s in (0, 41.6, 60, 725, 3599.6, 12_000, 86_399, 187_200, float("nan"))] == [
        "0 s", "42 s", "1 min 00 s", "12 min 05 s", "1 h 00 min", "3 h 20 min", "23 h 59 min", "2 d 04 h", "?"]
    assert Progress([(2, 3)], "log").line(0).endswith("| ETA ?")


def test_the_eta_does_not_take_a_packs_start_up_for_its_pace(monkeypatch):
    """On a GPU a pack's first epoch may cost a hundred of its epochs (data, first kernels, a CUDA graph's
    capture, compile=true): the ETA is not known until a second epoch is timed, then the epochs left at
    their own pace plus each pack to come at the pace per run-epoch and the start-up a pack took. A resumed
    pack counts only the epochs it has left; a pack of one epoch has no other pace than its start-up."""
    from vgsweep import progress

    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    p = progress.Progress([(15, 100), (15, 100, 60)], "log")  # the second resumes at epoch 61
    clock[0] += 30.1  # start-up 30 s, then 0.1 s an epoch
    p.epoch_done(0, 15)
    assert p.line(0).endswith("| ETA ?")
    clock[0] += 0.1
    p.epoch_done(1, 15)
    assert p.eta_s() == pytest.approx(98 * 0.1 + (40 * 0.1 + 30))
    assert p.line(1).endswith("| ETA 44 s")
    for epoch in range(2, 100):
        clock[0] += 0.1
        p.epoch_done(epoch, 15)
    clock[0] += 1.0  # the pack's close
    p.pack_done()
    clock[0] += 20.1
    p.epoch_done(60, 15)  # its start-up, shorter
    assert p.eta_s() == pytest.approx(39 * 0.1 + 1.0)

    q = progress.Progress([(2, 1), (2, 1), (2, 1)], "log")  # one epoch each: start-up is all there is
    clock[0] += 5
    q.epoch_done(0, 2)
    assert q.eta_s() == pytest.approx(2 * 5.0)

    # packs of two kinds (depth 2, depth 5), each split in two: a pack to come goes at its own kind's pace
    # per run-epoch once a pack of that kind has been timed, else at the pace of all so far
    k = progress.Progress([(10, 3, 0, "d2"), (10, 3, 0, "d5"), (10, 3, 0, "d2"), (10, 3, 0, "d5")], "log")
    for pace in (1.0, 3.0):  # seconds per epoch of a 10-run pack: 0.1 s per run-epoch at depth 2, 0.3 at depth 5
        clock[0] += 2.0  # start-up
        for epoch in range(3):
            clock[0] += pace
            k.epoch_done(epoch, 10)
        if pace == 1.0:  # the depth-5 kind is not timed yet: the packs to come at depth 2's pace
            assert k.eta_s() == pytest.approx(3 * (30 * 0.1 + 2.0))
        clock[0] += 0.5
        k.pack_done()
    clock[0] += 2.0 + 1.0
    k.epoch_done(0, 10)
    clock[0] += 1.0
    k.epoch_done(1, 10)  # the third pack (depth 2): its last epoch, then one depth-5 pack at 0.3 s a run-epoch
    setup, close = 2.0, 0.5
    assert k.eta_s() == pytest.approx(1.0 + close + (30 * 0.3 + setup + close))


def test_the_eta_of_a_kind_not_timed_yet_goes_by_its_work(monkeypatch):
    """A 30-layer pack after a 2-layer one (the depth study) does about three times a 2-layer pack's
    arithmetic per run-epoch: until a pack of its kind has timed an epoch after its first, its epochs
    count at the pace so far per unit of work (packing.work_per_run_epoch), not per run-epoch. On a real
    sweep (depth_study, 3 epochs of 4,000 images, 2 cores) the ETA at the second pack's first epoch said
    4 min 22 s where 9 min 34 s were left; by work, replaying its timings, 7 min 52 s."""
    from vgsweep import progress
    from vgsweep.packing import work_per_run_epoch

    d2, d30 = (work_per_run_epoch(compose_cfg([f"depth={d}", "device=cpu"])) for d in (2, 30))
    params = lambda sizes: sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))  # noqa: E731  weights, biases
    assert d30 / d2 == pytest.approx(params((784, *[256] * 30, 10)) / params((784, 512, 512, 10)))  # 3.15
    held = compose_cfg(["data.val_size=10000", "device=cpu"])  # images moved from training to evaluation: less work
    assert work_per_run_epoch(held) == pytest.approx(d2 * (3 * 50_000 + 20_000) / (3 * 60_000 + 10_000))

    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    k = progress.Progress([(10, 3, 0, "d2", 1.0), (10, 3, 0, "d30", 3.0)], "log")
    clock[0] += 2.0  # start-up, then 1 s an epoch: 0.1 s per run-epoch, per unit of work
    for epoch in range(3):
        clock[0] += 1.0
        k.epoch_done(epoch, 10)
    clock[0] += 0.5
    k.pack_done()
    assert k.eta_s() == pytest.approx(30 * 0.1 * 3.0 + 2.0 + 0.5)  # the 30-layer pack at three times the pace
    clock[0] += 2.0 + 3.0
    k.epoch_done(0, 10)  # its first epoch: two left at 10 runs x 0.3 s, until its own pace is timed
    assert k.eta_s() == pytest.approx(2 * 10 * 0.3 + 0.5)
    clock[0] += 2.5
    k.epoch_done(1, 10)  # now its own pace
    assert k.eta_s() == pytest.approx(2.5 + 0.5)


def test_curves_say_one_seed_when_there_is_one(monkeypatch):
    import pandas as pd

    from vgsweep.results import figures, reader
    from vgsweep.results.studies import AGARAP

    monkeypatch.setattr(reader, "history", lambda client, run_id, key: [1.0, 0.5, 0.25])
    spec = AGARAP.figures[0]
    one = pd.DataFrame({"run_id": ["a", "b"], "activation": ["relu", "relu"], "regime": ["baseline", "gna"],
                        "depth": ["2", "2"], "seed": [0, 0]})
    fig = figures.fig_curves(SimpleNamespace(), one, AGARAP, spec, "2-layer networks")
    assert "one seed per line" in fig._suptitle.get_text() and "band" not in fig._suptitle.get_text()
    two = pd.concat([one, one.assign(run_id=["c", "d"], seed=[1, 1])])
    fig = figures.fig_curves(SimpleNamespace(), two, AGARAP, spec, "2-layer networks")
    assert "band ±1 std" in fig._suptitle.get_text()
    assert fig.legends and all(ax.get_legend() is None for ax in fig.axes)  # one legend, outside the panels


def test_curves_of_one_epoch_show_points_without_an_offset_axis(monkeypatch):
    """A one-epoch sweep (a quick check) gives one point per line: drawn as a marker, not an invisible
    line, and the y axis reads in plain values, not as an offset ("1e-6+2.30268")."""
    import pandas as pd

    from vgsweep.results import figures, reader
    from vgsweep.results.studies import AGARAP

    spec = AGARAP.figures[0]
    runs = pd.DataFrame({"run_id": ["a", "b"], "activation": ["relu", "relu"], "regime": ["baseline", "gna"],
                         "depth": ["2", "2"], "seed": [0, 0]})
    for hist, marker in (([2.3026812], "o"), ([2.3026812, 2.3026815], "None")):
        monkeypatch.setattr(reader, "history", lambda client, run_id, key, h=hist: list(h))
        fig = figures.fig_curves(SimpleNamespace(), runs, AGARAP, spec, "2-layer networks")
        fig.canvas.draw()
        assert {ln.get_marker() for ax in fig.axes for ln in ax.get_lines()} == {marker}
        assert all(ax.yaxis.get_major_formatter().get_offset() == "" for ax in fig.axes)
        if len(hist) == 1:  # its one epoch is the x axis's one tick
            assert all(list(ax.get_xticks()) == [1] for ax in fig.axes)


def test_a_net_stuck_at_chance_is_drawn_against_a_dotted_chance_line(monkeypatch):
    """A net at chance (loss ln 10, accuracy 10% on MNIST) gets a zoomed axis on which its noise reads
    as learning: a dotted line at chance is drawn in each panel whose axis spans it (ln C and 100/C % for
    the data set's C classes), and the title says so; a panel whose curves are far from chance is not
    stretched to show it, and runs of an unknown data set get none."""
    import math

    import pandas as pd

    from vgsweep.results import figures, reader
    from vgsweep.results.studies import AGARAP

    def history(client, run_id, key):
        stuck = {"train_loss": [2.3027, 2.3025, 2.3026], "train_acc": [0.104, 0.099, 0.102]}
        learning = {"train_loss": [1.0, 0.5, 0.3], "train_acc": [0.6, 0.8, 0.9]}
        return (stuck if run_id in "ab" else learning)[key]

    def chance_lines(ax):
        return [ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_color() == "0.35" and list(ln.get_xdata()) == [0, 1]]

    monkeypatch.setattr(reader, "history", history)
    runs = pd.DataFrame({"run_id": ["a", "b", "c", "d"], "activation": ["relu", "relu", "tanh", "tanh"],
                         "regime": ["baseline", "gna"] * 2, "depth": ["10"] * 4, "seed": [0] * 4,
                         "data.name": ["mnist"] * 4})
    mixed = ["mnist", "cifar100", "mnist", "mnist"]  # relu's two lines: chance at 10% and at 1%, so neither drawn
    apart = ["mnist", "mnist", "cifar100", "cifar100"]  # relu on MNIST (drawn), tanh on CIFAR-100 (not its line)
    for data, title in (("mnist", " (loss ln 10 = 2.30, accuracy 10%)"), ("cifar100", None), (None, None),
                        (mixed, None), (apart, " for 10 classes (loss ln 10 = 2.30, accuracy 10%)")):
        fig = figures.fig_curves(SimpleNamespace(), runs.assign(**{"data.name": data}), AGARAP, AGARAP.figures[0],
                                 "10-layer networks")
        tanh_loss, relu_loss, tanh_acc, relu_acc = fig.axes  # (metric, activation), row-major, the study's order
        assert tanh_loss.get_title() == "tanh" and relu_acc.get_ylabel() == ""
        if data in ("mnist", apart):
            assert chance_lines(relu_loss) == [pytest.approx(math.log(10))] and chance_lines(relu_acc) == [10.0]
        else:  # CIFAR-100's chance (ln 100, 1%) lies outside these axes; an unknown data set has none
            assert chance_lines(relu_loss) == chance_lines(relu_acc) == []
        assert chance_lines(tanh_loss) == chance_lines(tanh_acc) == []
        assert tanh_loss.get_ylim()[1] < 1.1 and tanh_acc.get_ylim()[0] > 55  # not stretched to chance
        assert (f"dotted: chance{title}" in fig._suptitle.get_text()) if title else (
            "chance" not in fig._suptitle.get_text())
        figures.plt.close(fig)


def test_a_loss_that_spans_decades_is_drawn_on_a_log_axis_for_its_whole_row(monkeypatch):
    """One inflated first epoch (27, then 0.01) flattens every other loss curve on a linear axis: that
    loss row goes to a log axis (a panel per metric: that panel), its ticks written as plain numbers
    (0.1, not 1e-01); accuracy and losses within a factor of ten stay linear."""
    import pandas as pd

    from vgsweep.results import figures, reader
    from vgsweep.results.studies import AGARAP, VGG

    def history(wide):
        def read(client, run_id, key):
            if key.endswith("_acc"):
                return [0.1, 0.5, 0.9]
            return list(wide) if run_id == "c" and key == "train_loss" else [2.3, 2.2, 2.1]
        return read

    def labels(ax):
        return {t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)} - {""}

    runs = pd.DataFrame({"run_id": ["a", "b", "c", "d"], "activation": ["relu", "relu", "swish", "swish"],
                         "regime": ["baseline", "gna"] * 2, "depth": ["5"] * 4, "seed": [0] * 4})
    for wide, log in (((27.0, 1.0, 0.01), True), ((3.2, 1.0, 0.4), False)):
        monkeypatch.setattr(reader, "history", history(wide))
        fig = figures.fig_curves(SimpleNamespace(), runs, AGARAP, AGARAP.figures[0], "5-layer networks")
        fig.canvas.draw()
        loss_row, acc_row = fig.axes[:2], fig.axes[2:]  # (metric, activation), row-major
        assert loss_row[0].get_ylabel() == "training loss" and acc_row[0].get_ylabel().startswith("training acc")
        assert [ax.get_yscale() for ax in loss_row] == ["log" if log else "linear"] * 2  # relu's narrow panel too
        assert [ax.get_yscale() for ax in acc_row] == ["linear"] * 2
        if log:
            shown = labels(loss_row[1])
            # every decade in view (matplotlib 3.7 took every other one), 0.1 not 0.09999999999999999
            assert {"0.01", "0.1", "1", "10"} <= shown and not any("e" in t or len(t) > 7 for t in shown), shown
        figures.plt.close(fig)

    spec = next(f for f in VGG.figures if f.kind == "curves")
    runs = pd.DataFrame({"run_id": ["a", "c"], "model": ["vgg08", "vgg38"], "lr": ["0.001", "0.001"],
                         "dataset": ["cifar100"] * 2, "seed": [0, 0]})
    monkeypatch.setattr(reader, "history", history((27.0, 1.0, 0.01)))
    fig = figures.fig_curves(SimpleNamespace(), runs, VGG, spec, "VGG")
    scales = {ax.get_title(): ax.get_yscale() for ax in fig.axes if ax.get_visible()}
    assert scales == {"training loss": "log", "validation loss": "linear", "training accuracy (%)": "linear",
                      "validation accuracy (%)": "linear"}
    figures.plt.close(fig)
