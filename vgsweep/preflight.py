"""Everything that can be checked before anything trains or is written, without torch or MLflow.

Each failure is a ConfigError naming the key, the value and what is accepted; the command prints it
as one line and exits with status 2. Nothing is created: no job folder, no store, no checkpoint.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from vgsweep import tracking
from vgsweep.config import ConfigError, validate
from vgsweep.jobs import Job

log = logging.getLogger(__name__)

DB_SCHEMES = ("postgresql", "mysql", "mssql")  # SQLAlchemy database URIs MLflow accepts as stores


def not_creatable(p: Path) -> str | None:
    """Why folder p cannot be made (or used, if it exists), or None."""
    while True:  # the nearest folder at or above p that exists; another process may remove it meanwhile
        q = p
        while not q.exists():
            q = q.parent
        if not q.is_dir():
            if not q.exists():
                continue
            return f"{q} is a file, not a folder" if q == p else f"{q} is a file, so no folder can be made inside it"
        # q may be gone by the time it is tried: a sweep refused at once tidies its empty multirun/<date>/
        # away, and a folder another sweep made for itself a moment ago may be one of those; look again then
        if os.access(q, os.W_OK):
            why = _cannot_make_in(q)
            if why is _GONE:
                continue
            return why
        if q.exists():
            return f"{q} is not writable"


_GONE = "gone"


def _cannot_make_in(q: Path) -> str | None:
    """Why no folder can be made in the existing folder q, found by making one and removing it: for
    root os.access says yes to every folder, /proc and /sys included, where mkdir then fails. _GONE
    if q itself no longer exists."""
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".vgsweep-probe-", dir=q))
    except OSError as e:
        if isinstance(e, FileNotFoundError) and not q.exists():
            return _GONE
        return f"no folder can be made in {q} ({e.strerror or e})"
    return None


def check_dir(key: str, p: Path | str, where: str = "") -> None:
    """A folder the command will write in; given as written (a str), a blank one is refused too: Path('') is
    the current folder, where `hydra.sweep.dir=$OUT` with OUT unset put the jobs' folders."""
    if isinstance(p, str) and not p.strip():
        raise ConfigError(key, p, "a folder", "a blank one would be the folder the command runs in", where)
    why = not_creatable(Path(p))
    if why:
        raise ConfigError(key, str(p), "a folder that exists or can be created", why, where)


def _store_hint(uri: str) -> str:
    """Why a tracking URI of no scheme vgsweep knows is refused, and for a database file's path (`m.db`,
    as `mlflow ui --backend-store-uri` users may write it) the URI that names it."""
    p = Path(os.path.expanduser(uri))
    if ":" not in uri and (p.is_file() or p.suffix in (".db", ".sqlite", ".sqlite3")):
        return f"a database file is named by a sqlite URI: sqlite:///{p.resolve()}"
    if uri.startswith("sqlite:"):  # sqlite://m.db, sqlite:m.db: SQLAlchemy reads a host, or nothing, before the path
        path = uri[len("sqlite:"):].lstrip("/")
        if not path:
            return "sqlite:// alone is a database in memory, lost when the command ends; name a file: sqlite:///mlflow.db"
        return (f"a sqlite URI has three slashes before the file's path: sqlite:///{path} (from the folder the "
                f"command runs in) or sqlite:////{path} (from /)")
    return "MLflow 3 keeps runs in a database; a folder store (file:) is not supported"


def check_store(uri: str, key: str = "tracking.uri") -> None:
    """The tracking URI names a store vgsweep can use, and it answers (a server) or is sound (a file);
    else a ConfigError naming `key`, what set it (MLFLOW_TRACKING_URI said so: tracking.ENV_URI)."""
    shown = tracking.hide_passwords(uri)
    also = " (MLflow's environment variable, which vgsweep takes where tracking.uri is left unset)" if (
        key == tracking.ENV_URI) else ""
    scheme = uri.split(":", 1)[0].split("+", 1)[0] if ":" in uri else ""
    try:
        if uri.startswith("sqlite:///"):
            tracking.check_sqlite_store(uri)
        elif uri.startswith(("http://", "https://")):
            tracking.check_server(uri)
        elif scheme in DB_SCHEMES:
            tracking.check_database(uri)
        else:
            raise ConfigError(key, shown, "sqlite:///<path of a database file>, http(s)://<mlflow server>, "
                              "or a postgresql / mysql / mssql database URI" + also, _store_hint(uri))
    except tracking.TrackingError as e:
        raise ConfigError(key, shown, "an MLflow store vgsweep can use" + also,
                          str(e).removeprefix(f"tracking.uri={shown!r}: ")) from None


def check_not_moved(uri: str, experiment: str) -> None:
    """A SQLite store moved from its folder with its artifact folder (tracking.moved_artifacts): MLflow
    would write the experiment's new runs' files at the recorded, old path (making it again), apart from
    the others: refused, with the link that makes the old path the moved folder. A copy whose original
    folder is still there: said (a warning), as the new runs' files go into the original's folder."""
    p = tracking.sqlite_path(uri)
    if p is None or not p.is_file():
        return
    try:
        con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT artifact_location FROM experiments WHERE name = ?", (experiment,)).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return  # an empty file, a store not built yet: nothing recorded elsewhere
    moved = tracking.moved_artifacts(uri, row[0]) if row else None
    if moved is None:
        return
    old, new = moved
    if Path(old).exists():  # a copy, its original still there: not refused (extending that may be the point)
        if Path(old).resolve() != Path(new).resolve():
            log.warning("experiment %r keeps its runs' files in %s, not in %s beside the store (a copy of a store "
                        "that is still there? MLflow records absolute paths): the new runs' files go there too, "
                        "and this store's folder alone will not hold them", experiment, old, new)
        return
    raise ConfigError("tracking.uri", uri, "a store whose experiments' artifact folders are where it records them",
                      f"experiment {experiment!r} keeps its runs' files in {old}, which is gone (was the store moved "
                      f"or copied from there with {new}? MLflow records absolute paths): MLflow would write the new "
                      f"runs' files at that path, apart from the others. Make the old path the moved folder "
                      f"({tracking.link_hint(moved)}), or train into another experiment "
                      "(tracking.experiment=...)")


def _how_many(refused: list[tuple[Job, ConfigError]], jobs: list[Job]) -> str:
    """How much of a sweep its checks refuse, each refused job by the settings the sweep varies:
    ` (2 of the sweep's 9 jobs are refused: init=zero regime=wn; init=zero regime=wn_data)`, so that a
    grid with a few invalid cells is mended in one go. '' for a job alone."""
    from vgsweep.jobs import override_values

    if len(jobs) < 2:
        return ""
    if len(refused) == len(jobs):
        return f" (all {len(jobs)} jobs of the sweep are refused)"
    given = {id(j): override_values(j.overrides) for j in jobs}
    varying = [k for k in dict.fromkeys(k for g in given.values() for k in g)
               if len({g.get(k) for g in given.values()}) > 1]
    named = [" ".join(f"{k}={given[id(j)][k]}" for k in varying if k in given[id(j)]) for j, _ in refused]
    shown = "; ".join(named[:6]) + (f"; and {len(named) - 6} more" if len(named) > 6 else "")
    return (f" ({len(refused)} of the sweep's {len(jobs)} jobs {'is' if len(refused) == 1 else 'are'} refused"
            + (f": {shown}" if any(named) else "") + ")")


def check_jobs(jobs: list[Job], dry: list[str] | None = None, devices_here: bool = True) -> None:
    """Raise ConfigError for the first job that cannot run. dry: a dry run's notes; a data set it would
    download is noted there, not downloaded (its sizes are then the data set's published ones).
    devices_here: false where the packs train on other machines (config.validate)."""
    refused: list[tuple[Job, ConfigError]] = []
    for j in jobs:
        try:
            validate(j.cfg, devices_here)
        except ConfigError as e:
            refused.append((j, e))
    if refused:
        j, e = refused[0]
        raise ConfigError(e.key, e.value, e.accepted, (e.hint + _how_many(refused, jobs)).strip(), j.where) from None
    for uri, key in sorted({(tracking.resolve_uri(j.cfg), tracking.uri_key(j.cfg)) for j in jobs}):
        check_store(uri, key)
        if key == tracking.ENV_URI:  # not this command's own setting: said, as runs going elsewhere than usual
            log.info("tracking.uri is unset: the runs go to %s, the store %s names", tracking.hide_passwords(uri), key)
    for uri, name in sorted({(tracking.resolve_uri(j.cfg), str(j.cfg.tracking.experiment)) for j in jobs}):
        check_not_moved(uri, name)
    folders: dict[tuple[str, str], str] = {}  # each folder once (its check makes and removes a folder in it)
    for j in jobs:
        root = tracking.artifact_root(tracking.resolve_uri(j.cfg), j.cfg)
        if root is not None:
            folders.setdefault(("tracking.artifact_root", root), j.where)
        if j.cfg.checkpoint.dir:
            folders.setdefault(("checkpoint.dir", str(j.cfg.checkpoint.dir)), j.where)
    for (key, path), where in folders.items():
        check_dir(key, Path(path), where)
    check_data(jobs, dry)


def check_data(jobs: list[Job], dry: list[str] | None = None) -> None:
    """Raise ConfigError for the first job whose data cannot be had or does not hold its settings: files
    missing, damaged, not downloadable; a limit, a validation split or a batch larger than the data.
    (check_jobs's last part; vgsweep profile, which reaches no store, checks its pack with it alone.)"""
    from vgsweep.data.errors import DataError
    from vgsweep.data.files import folder, missing, read_checked
    from vgsweep.data.sets import DATASETS

    seen: dict[tuple, dict] = {}
    for j in jobs:
        d = j.cfg.data
        key = (d.name, str(d.root), bool(d.download), bool(d.verify))
        if key not in seen and dry is not None and d.download and missing(DATASETS[d.name], d.root):
            dry.append(f"{d.name} is not in {folder(DATASETS[d.name], d.root)}: the sweep would download it there")
            seen[key] = {"train_y": range(DATASETS[d.name].n_train), "test_y": range(DATASETS[d.name].n_test)}
        if key not in seen:
            try:
                seen[key] = read_checked(d.name, d.root, d.download, d.verify)
            except DataError as e:
                raise ConfigError("data.root", str(d.root), f"a folder with intact {d.name} files", str(e)) from None
        for split, limit in (("train", d.limit_train), ("test", d.limit_test)):
            have = len(seen[key][f"{split}_y"])  # a limit past the files used them all, recorded as a smaller set
            if limit is not None and limit > have:
                words = "training" if split == "train" else "test"
                raise ConfigError(f"data.limit_{split}", limit, f"at most {have}, the {d.name} {words} images in "
                                  f"{folder(DATASETS[d.name], d.root)}", "Or null for all of them", j.where)
        n = len(seen[key]["train_y"]) if d.limit_train is None else d.limit_train
        if d.val_size >= n:
            raise ConfigError("data.val_size", d.val_size, f"fewer than the {n} training examples", where=j.where)
        n -= d.val_size
        if j.cfg.train.drop_last and j.cfg.train.batch_size > n:
            raise ConfigError("train.batch_size", j.cfg.train.batch_size, f"at most {n}, the training examples used",
                              "Or set train.drop_last=false", j.where)
