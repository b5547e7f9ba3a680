"""vgsweep installed as a package (pip install ., or from git), not run from its checkout: the wheel holds conf/,
and the command finds it from any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import vgsweep
from tests.conftest import ROOT, SMALL, git

if os.environ.get("CI") != "true":  # under CI it must run: torch's wheels depend on setuptools
    pytest.importorskip("setuptools", minversion="64", reason="building vgsweep's wheel without the network needs "
                        "setuptools >= 64 in this environment (torch brings it)")


def _source(dest: Path) -> str:
    """The checkout's packaged files (pyproject.toml, README, the packages, conf/ and the vgsweep/conf link)
    copied into a git repository of one commit, as a user's clone of vgsweep; its commit."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for name in ("vgsweep", "hydra_plugins", "conf"):
        shutil.copytree(ROOT / name, dest / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "vgsweep")
    return git(dest, "rev-parse", "HEAD")


def _pip(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "-q", *args, "--no-deps", "--no-build-isolation",
                           "--no-index", "--disable-pip-version-check"], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.e2e
def test_the_wheel_holds_every_module_and_config(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _source(src)
    _pip("wheel", "-w", str(tmp_path / "wheel"), str(src), cwd=tmp_path)
    (wheel,) = (tmp_path / "wheel").glob("vgsweep-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {f"vgsweep/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    want |= {p.relative_to(ROOT).as_posix() for d in ("vgsweep", "hydra_plugins") for p in (ROOT / d).rglob("*.py")
             if "conf" not in p.relative_to(ROOT).parts}
    assert len(want) > 90 and want <= names, sorted(want - names)


@pytest.mark.e2e
def test_vgsweep_installed_from_git_trains_and_tables_from_another_folder(tiny_root, tmp_path):
    """pip install git+URL: the command, run in a folder of the user's own (a git repository of another project),
    composes the packaged conf/, writes its store there and records vgsweep's commit, not that folder's."""
    src = tmp_path / "src"
    src.mkdir()
    commit = _source(src)
    site = tmp_path / "site"
    _pip("install", "--target", str(site), f"git+file://{src}", cwd=tmp_path)
    assert (site / "vgsweep" / "conf" / "experiment" / "paper_table1.yaml").is_file()
    work = tmp_path / "project"
    work.mkdir()
    (work / "notes.txt").write_text("a researcher's own project")
    git(work, "init", "-q")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "mine")
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONUNBUFFERED": "1"}
    where = subprocess.run([sys.executable, "-c", "import vgsweep.config as c; print(c.__file__); print(c.CONF_DIR)"],
                           cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert where.stdout.split() == [str(site / "vgsweep" / "config.py"), str(site / "vgsweep" / "conf")], where.stderr
    args = [*SMALL, "train.epochs=1", f"data.root={tiny_root}", "-m", "activation=relu,tanh"]
    proc = subprocess.run([str(site / "bin" / "vgsweep"), *args], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")  # the default store: in the folder it runs in
    runs = client.search_runs([client.get_experiment_by_name("agarap2019").experiment_id])
    assert sorted(r.data.params["activation.name"] for r in runs) == ["relu", "tanh"]
    assert {r.data.tags["vgsweep.git_commit"] for r in runs} == {commit}
    version = subprocess.run([str(site / "bin" / "vgsweep"), "--version"], cwd=work, env=env, capture_output=True,
                             text=True, timeout=120)
    assert version.stdout.startswith(f"vgsweep {vgsweep.__version__} at commit {commit[:12]} (Hydra "), version.stdout
    table = subprocess.run([str(site / "bin" / "vgsweep"), "table"], cwd=work, env=env, capture_output=True,
                           text=True, timeout=300)
    assert table.returncode == 0, table.stderr[-3000:]
    rows = [line for line in (work / "results" / "table.md").read_text().splitlines() if line.startswith("| baseline")]
    assert sorted(r.split("|")[2].strip() for r in rows) == ["relu", "tanh"], rows


def test_a_copy_without_git_records_the_commit_its_maker_gives(tmp_path):
    """A copy of the checkout without .git (a container image, a folder rsync'd to a cluster or a GPU machine):
    git cannot say its commit, so $VGSWEEP_GIT_COMMIT does, as --version and each run's tag read it (they said
    `unknown`, and the report's line "made with vgsweep commit unknown")."""
    for name in ("vgsweep", "hydra_plugins", "conf"):
        shutil.copytree(ROOT / name, tmp_path / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    script = "from vgsweep import tracking; print(tracking.checkout()); print(tracking.git_commit())"
    env = {k: v for k, v in os.environ.items() if k != "VGSWEEP_GIT_COMMIT"}
    for given, want in ((None, "unknown"), ("0123456789abcdef0123456789abcdef01234567", None), ("  ", "unknown")):
        e = {**env, "PYTHONPATH": str(tmp_path), **({"VGSWEEP_GIT_COMMIT": given} if given else {})}
        proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=e, capture_output=True, text=True,
                              timeout=120)
        assert proc.stdout.split() == [str(tmp_path), want or given], proc.stderr[-2000:]
    e = {**env, "PYTHONPATH": str(tmp_path), "VGSWEEP_GIT_COMMIT": "0123456789abcdef0123456789abcdef01234567"}
    version = subprocess.run([sys.executable, "-m", "vgsweep", "--version"], cwd=tmp_path, env=e, capture_output=True,
                             text=True, timeout=120)
    assert version.stdout.startswith(f"vgsweep {vgsweep.__version__} at commit 0123456789ab (Hydra "), version.stdout
    # in a checkout git answers: the variable does not speak over it
    here = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**e, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert here.stdout.split()[1].startswith(git(ROOT, "rev-parse", "HEAD")), here.stdout
