"""The MLflow store: where it is, creating it safely, reaching it, and reading its runs.

The embedded default store is `sqlite:///<project root>/mlflow.db` with artifacts beside it in
`mlartifacts/`; `tracking.uri` points anywhere else (another SQLite file, an `mlflow server`), and
so does MLflow's `MLFLOW_TRACKING_URI` where tracking.uri is left unset.

- A new SQLite store is built in a file beside it and renamed into place, under a file lock: a
  process killed while creating it leaves no half-built store. A half-built store left by an older
  version (tables missing, no runs) is moved aside to `<name>.broken-<time>` and built again; a
  store that holds runs is never rewritten.
- Every MLflow call goes through `retry`: a locked SQLite database, a server that does not answer, a
  store whose disk is full or whose file system fails (SQLite's "disk I/O error") is retried with
  backoff for `tracking.retry_s` seconds; then
  `TrackingUnavailable` stops the sweep, and later calls that meet the store so raise at once.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sqlite3
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)
# With a server store MLflow's client prints two lines each time a run ends ("View run <name> at: <url>",
# "View experiment at: <url>"): 300 lines on stdout for a 150-run grid, through the sweep's progress line.
# vgsweep names the experiment's address once at the end instead (web_address). The environment decides.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

SEARCH_PAGE = 5000  # runs per search call; training_runs reads page after page
SQLITE_BUSY_MS = 60_000  # a writer waits this long for another process's lock before failing
EXPERIMENT_KIND = "custom_model_development"  # MLflow 3's UI opens such an experiment on its runs table

TAG_HASH = "vgsweep.config_hash"
TAG_OVERRIDES = "vgsweep.overrides"
TAG_HOST, TAG_PID = "vgsweep.host", "vgsweep.pid"
TAG_HEARTBEAT = "vgsweep.heartbeat"  # unix seconds of the training process's last sign of life
TAG_PROCESS = "vgsweep.process"  # "<boot id>:<start time>" of the training process (process_stamp)
TAG_FAILURE = "vgsweep.failure"
TAG_RESUMED_AT = "vgsweep.resumed_at"  # unix seconds: the run was continued from a checkpoint then
TAG_CONFIRM = "vgsweep.confirm"  # a search's best trial's run: the command that confirms it over seeds (confirm.py)

_RETRY_S = 300.0  # tracking.retry_s of the sweep in progress (configure)
_GIVEN_UP: "TrackingUnavailable | None" = None  # raised once after waiting tracking.retry_s (retry)
# What an unreachable server looks like in the errors of MLflow's REST client and of requests.
_UNREACHABLE = ("Max retries exceeded", "Connection refused", "Failed to establish a new connection",
                "Read timed out", "RemoteDisconnected", "Connection aborted", "Connection reset",
                "ConnectionError", "ConnectTimeout", "failed with error code 502", "failed with error code 503",
                "failed with error code 504", "Name or service not known")
# What a store that cannot write for want of space looks like (SQLite, PostgreSQL, the OS): retried as a
# server that does not answer is, since freeing space lets the sweep go on; then the sweep stops saying so.
_FULL = ("database or disk is full", "No space left on device", "could not extend file", "Disk quota exceeded")
# What a SQLite store whose file system fails a read or write looks like (SQLITE_IOERR): a network file
# system's hiccup (a store on NFS or Lustre for a SLURM sweep), a file-size limit (EFBIG), a failing disk.
# Retried as a store that does not answer: it may pass; if not, the sweep stops with its checkpoints kept,
# where failing the pack would mark runs FAILED in a store that cannot take the mark.
_IOERR = ("disk I/O error",)


class _QuietWhileRetried(logging.Filter):
    """MLflow's SQL store logs every database error with its traceback before raising it: a full disk
    retried for tracking.retry_s seconds printed some sixty tracebacks. retry says it once instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        e = record.exc_info[1] if record.exc_info else None
        return e is None or not (full_error(str(e)) or io_error(str(e)) or "locked" in str(e))


logging.getLogger("mlflow.store.db.utils").addFilter(_QuietWhileRetried())


class TrackingError(RuntimeError):
    """A store that cannot be used as it is; the message says why and what to do."""


class TrackingUnavailable(TrackingError):
    """The store stopped answering and kept silent for tracking.retry_s seconds."""

    def __init__(self, since: float, seconds: float, error: str):
        self.since, self.seconds, self.error = since, seconds, error
        super().__init__(f"no answer since {time.strftime('%H:%M:%S', time.localtime(since))} "
                         f"({seconds:.0f} s, tracking.retry_s): {error}")


def configure(retry_s: float) -> None:
    """The retry budget of this process's MLflow calls; MLflow's own HTTP retries are turned off
    (unless set in the environment) so that the budget, not urllib3, decides when to give up."""
    global _RETRY_S
    _RETRY_S = float(retry_s)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(min(max(retry_s, 5), 60))))


def retry_budget() -> float:
    return _RETRY_S


def _unreachable(e: BaseException) -> bool:
    text = f"{type(e).__name__}: {e}"
    return any(m in text for m in _UNREACHABLE)


def full_error(text: str) -> bool:
    """Whether an error says the store's disk is full."""
    return any(m in text for m in _FULL)


def io_error(text: str) -> bool:
    """Whether an error says the file system under the store failed a read or write (SQLITE_IOERR)."""
    return any(m in text for m in _IOERR)


def _what(e: BaseException) -> str:
    """What went wrong, in a few words: the full-disk or I/O-error words where the error says so (MLflow's
    first line may be SQLAlchemy's `(raised as a result of Query-invoked autoflush ...)`), else its first line."""
    return next((m for m in _FULL + _IOERR if m in str(e)), None) or _first_line(e)


def start_over() -> None:
    """A new sweep (or pack job) in this process waits for the store again."""
    global _GIVEN_UP
    _GIVEN_UP = None


def retry(fn, *args, **kwargs):
    """Call an MLflow function; while SQLite reports a lock, a server does not answer or the store's
    disk is full, retry with backoff for tracking.retry_s seconds. An unanswered (or full) store then
    raises TrackingUnavailable, and every later call that meets it again raises at once: the sweep is
    stopping, and what it still sends (the metrics queued for the writer thread, the runs it ends)
    does not wait tracking.retry_s once more for each."""
    global _GIVEN_UP
    first: tuple[float, float] | None = None  # (monotonic, wall) of the first failure
    wait = 0.05
    while True:
        try:
            return fn(*args, **kwargs)
        except TrackingUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 - only lock, connection and full-disk errors are retried
            full, ioerr = full_error(str(e)), io_error(str(e))
            locked, down = "locked" in str(e), _unreachable(e) or full or ioerr
            if not (locked or down):
                raise
            if down and _GIVEN_UP is not None:
                raise TrackingUnavailable(_GIVEN_UP.since, _GIVEN_UP.seconds, _what(e)) from None
            now = time.monotonic()
            if first is None:
                first = (now, time.time())
                if full:
                    log.warning("the tracking store cannot write: its disk is full (%s); retrying for %.0f s "
                                "(tracking.retry_s): free space there", _what(e), _RETRY_S)
                elif ioerr:
                    log.warning("the tracking store's file cannot be read or written (%s: its disk or file system "
                                "failed); retrying for %.0f s (tracking.retry_s)", _what(e), _RETRY_S)
                elif down:
                    log.warning("the tracking store does not answer (%s); retrying for %.0f s (tracking.retry_s)",
                                _what(e), _RETRY_S)
            if now - first[0] > _RETRY_S:
                if down:
                    _GIVEN_UP = TrackingUnavailable(first[1], now - first[0], _what(e))
                    raise _GIVEN_UP from None
                raise
            time.sleep(wait)
            wait = min(wait * 2, 5.0 if down else 2.0)


def _first_line(e: BaseException) -> str:
    """The error's first line, without MLflow's wrapping of an SQL error (`(sqlite3.OperationalError) ...`)."""
    line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return re.sub(r"^\(\w+(\.\w+)*\) ", "", line)[:300]


COMMIT_ENV = "VGSWEEP_GIT_COMMIT"  # the commit of a copy of vgsweep that has no .git (git_commit)


def checkout() -> Path | None:
    """The checkout vgsweep runs from (its conf/ beside the package: an editable install); None for a vgsweep
    installed from a wheel (pip install . or from git), whose configs are in the package."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "conf").is_dir() else None


def project_root() -> Path:
    """The checkout (checkout()), else the current directory."""
    return checkout() or Path.cwd()


ENV_URI = "MLFLOW_TRACKING_URI"  # MLflow's own setting of the store, which its commands and client read


def environment_uri() -> str | None:
    """The store MLFLOW_TRACKING_URI names, where it is set and not blank (its `~` the home folder's)."""
    from vgsweep.config import expand_home

    v = os.environ.get(ENV_URI, "").strip()
    return expand_home(v) if v else None


def default_uri() -> str:
    """The store of a command that names none (tracking.uri null, no --tracking-uri): MLFLOW_TRACKING_URI's,
    as MLflow's own commands take it, else the project's sqlite:///<project root>/mlflow.db."""
    return environment_uri() or f"sqlite:///{project_root() / 'mlflow.db'}"


def to_the_project_store() -> str:
    """How a command gets the project's own store (advice closing a line that refuses another)."""
    return "leave tracking.uri unset" if environment_uri() is None else f"unset {ENV_URI} and leave tracking.uri unset"


def resolve_uri(cfg) -> str:
    return cfg.tracking.uri or default_uri()


def uri_key(cfg) -> str:
    """What names a config's store, for a line that refuses it: tracking.uri, or the environment variable."""
    return "tracking.uri" if cfg.tracking.uri or environment_uri() is None else ENV_URI


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def local_path(uri: str) -> str | None:
    """The local path an artifact URI names (a path, or file://), else None (a server's, a bucket's)."""
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(uri).path)
    return None if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", uri) else uri


def moved_artifacts(uri: str, recorded_root: str | None) -> tuple[str, str] | None:
    """A SQLite store whose folder was moved or copied (from the GPU machine, a cluster) still names its
    artifacts by the absolute paths they had (MLflow records them so): (the experiment's recorded
    artifact root, the folder of that name beside the store now) where those differ and the second is
    there (relocated: per run, where the recorded path is gone); else None."""
    p = sqlite_path(uri)
    old = local_path(recorded_root).rstrip("/") if recorded_root and local_path(recorded_root) else None
    if p is None or not old or not Path(old).is_absolute():  # a relative one is read from wherever MLflow runs
        return None
    new = p.resolve().parent / Path(old).name
    return (old, str(new)) if str(new) != old and new.is_dir() else None


def link_hint(moved: tuple[str, str]) -> str:
    """The command that makes a moved store's recorded artifact root (moved_artifacts) its moved folder."""
    old, new = moved
    return f"mkdir -p {Path(old).parent} && ln -s {new} {old}"


def relocated(artifact_uri: str, moved: tuple[str, str] | None) -> str:
    """Where a run's artifacts are: as recorded, or under the moved store's folder (moved_artifacts)
    where the recorded path is gone and that one is there."""
    path = local_path(artifact_uri)
    if moved is None or path is None or not (path == moved[0] or path.startswith(moved[0] + "/")):
        return artifact_uri
    there = moved[1] + path[len(moved[0]):]
    return there if not Path(path).exists() and Path(there).exists() else artifact_uri


def download_artifact(where: str, path: str, dst: str | None, tracking_uri: str) -> str:
    """The file `path` of the artifacts at `where` (a run's artifact_uri, or tracking.relocated's),
    downloaded into dst: MLflow's download by a run's id looks the run up and asks whether it logged a
    model first. The tracking URI resolves a server's proxied artifacts (mlflow-artifacts:/...)."""
    import mlflow.artifacts

    return mlflow.artifacts.download_artifacts(artifact_uri=f"{where.rstrip('/')}/{path}", dst_path=dst,
                                               tracking_uri=tracking_uri)


def artifact_root(uri: str, cfg) -> str | None:
    """Where a new experiment keeps its artifacts: tracking.artifact_root; else mlartifacts/ beside a
    SQLite file, or in the project root for a database store (MLflow's own default there is mlruns/ in
    whatever folder the command ran from); a server decides for itself."""
    if cfg.tracking.artifact_root:
        return str(Path(cfg.tracking.artifact_root).resolve())
    p = sqlite_path(uri)
    if p is not None:
        return str(p.resolve().parent / "mlartifacts")
    if not uri.startswith(("http://", "https://")):
        return str(project_root() / "mlartifacts")
    return None


# user:password@ in a URI, also as Hydra writes an override (`postgresql\://user\:pw@host`)
_PASSWORD = re.compile(r"(://[^:@\s/\\]+\\?:)([^@\s/]+)@")


def hide_passwords(text: str) -> str:
    """Text with the password of every URI in it written as *** (what is logged to the store)."""
    return _PASSWORD.sub(r"\1***@", text)


# The module a SQLAlchemy dialect imports -> the package that holds it
DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "pymysql": "pymysql",
                   "MySQLdb": "mysqlclient", "mysql": "mysql-connector-python", "pyodbc": "pyodbc", "pymssql": "pymssql"}


def check_database(uri: str, timeout: int = 5) -> None:
    """A database store (postgresql://, mysql://, mssql://) can be used: its driver is installed and a
    connection opens within `timeout` seconds; else TrackingError, its password hidden. (MLflow would
    retry creating its engine for minutes, printing each attempt.)"""
    import sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError

    shown = hide_passwords(uri)
    args = {"connect_timeout": timeout} if uri.startswith(("postgresql", "mysql")) else {}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=args, poolclass=sqlalchemy.pool.NullPool)
    except ModuleNotFoundError as e:
        raise TrackingError(f"tracking.uri={shown!r}: its database driver is not installed (no module {e.name!r}): "
                            f"pip install '{DRIVER_PACKAGES.get(e.name or '', e.name)}'") from None
    except (SQLAlchemyError, ValueError) as e:  # an unknown dialect or driver, a malformed URI
        raise TrackingError(f"tracking.uri={shown!r}: {hide_passwords(str(e).splitlines()[0])}") from None
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as e:
        why = " ".join(str(getattr(e, "orig", None) or e).split())[:300]
        raise TrackingError(f"tracking.uri={shown!r}: the database does not answer ({hide_passwords(why)})") from None
    finally:
        engine.dispose()


@functools.lru_cache(maxsize=None)
def system_tags(source: str = "vgsweep") -> dict[str, str]:
    """MLflow's own tags of who made a run, from what and at which commit (mlflow.user, mlflow.source.name,
    .type, .git.commit), which its fluent API sets and MlflowClient.create_run does not: MLflow's UI shows
    them (the runs' User and Source, the commit), and the user is the run's user_id. Written here rather
    than through MLflow's context registry, which takes seconds (its plug-ins, Databricks's checks) and
    names the script sys.argv[0]. The commit is vgsweep's (git_commit), where known, without its -dirty."""
    import getpass

    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

    tags = {MLFLOW_SOURCE_NAME: source, MLFLOW_SOURCE_TYPE: "LOCAL"}
    try:
        tags[MLFLOW_USER] = getpass.getuser()
    except (KeyError, OSError):  # no login name in the environment and none in the password database (a container)
        pass
    commit = git_commit().removesuffix("-dirty")
    if re.fullmatch(r"[0-9a-f]{40}", commit):
        tags[MLFLOW_GIT_COMMIT] = commit
    return tags


@functools.lru_cache(maxsize=None)
def git_commit() -> str:
    """The commit of vgsweep's source: its checkout's (with -dirty for changes not committed), or for an installed
    vgsweep the one pip installed it from (pip install git+URL@REV records it: PEP 610's direct_url.json); not
    that of the folder the command runs in, which may be another project's repository. Where neither says (a
    copy without .git: a container image, a folder rsync'd to a cluster or a GPU machine), $VGSWEEP_GIT_COMMIT
    as its maker gave it; "unknown" otherwise."""
    given = os.environ.get(COMMIT_ENV, "").strip() or "unknown"
    where = checkout()
    if where is None:
        try:
            from importlib.metadata import distribution

            url = json.loads(distribution("vgsweep").read_text("direct_url.json") or "{}")
            return str(url.get("vcs_info", {}).get("commit_id") or given)
        except Exception:  # noqa: BLE001 - no metadata, or not JSON: nothing says which commit
            return given
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            return given
        # changes to the checkout's results/ (make report writes there) are not changes to the code
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"],
                               cwd=where, capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return given


def short_commit(commit: str) -> str:
    """A commit as `vgsweep --version` names it: 12 digits, and -dirty where there were changes not committed."""
    return commit[:12] + "-dirty" * commit.endswith("-dirty")


# --- the SQLite file -----------------------------------------------------------------------------
SQLITE_MAGIC = b"SQLite format 3\x00"
MLFLOW_CORE_TABLES = {"experiments", "runs", "metrics", "params", "tags"}


def sqlite_tables(p: Path) -> set[str] | None:
    """The tables of an existing SQLite file, read without writing to it; None if it is not SQLite."""
    if p.stat().st_size == 0:
        return set()
    with p.open("rb") as f:
        if f.read(16) != SQLITE_MAGIC:
            return None
    try:
        return _tables(sqlite3.connect(f"file:{p}?mode=ro", uri=True))
    except sqlite3.OperationalError as e:
        journal = p.with_name(p.name + "-journal")
        if "readonly" not in str(e) or not journal.exists():
            raise  # e.g. "database is locked": a store in use, not a file that is not SQLite
        # A process killed while it wrote (kill -9, a node lost) left a hot journal: SQLite rolls it back
        # at the next connection that may write, which restores the last committed state (what MLflow's
        # own connection would do at its first read); a read-only one cannot, and fails.
        try:
            return _tables(sqlite3.connect(str(p)))
        except sqlite3.OperationalError as again:
            raise sqlite3.OperationalError(
                f"{again}: {journal.name}, left by a process killed while it wrote, must be rolled back, "
                f"which needs write access to {p} and its folder") from None


def _tables(con: sqlite3.Connection) -> set[str] | None:
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError:
        return None
    finally:
        con.close()


def _not_sqlite(uri: str, p: Path) -> TrackingError:
    return TrackingError(f"tracking.uri={uri!r}: {p} is not a SQLite database; point tracking.uri at "
                         "an MLflow store or a new file")


def check_sqlite_store(uri: str) -> None:
    """What can be said of a SQLite store without MLflow and without touching it (preflight)."""
    p = sqlite_path(uri)
    assert p is not None
    if not p.parent.is_dir():
        raise TrackingError(f"tracking.uri={uri!r}: folder {p.parent} does not exist "
                            f"(create it, or {to_the_project_store()} for the project's mlflow.db)")
    if p.is_dir():
        raise TrackingError(f"tracking.uri={uri!r}: {p} is a folder, not a database file "
                            f"(use e.g. sqlite:///{p / 'mlflow.db'})")
    if not p.exists():
        if not os.access(p.parent, os.W_OK):
            raise TrackingError(f"tracking.uri={uri!r}: folder {p.parent} is not writable")
        return
    try:
        tables = sqlite_tables(p)
    except sqlite3.OperationalError as e:
        if "locked" in str(e):
            return  # in use by another sweep this moment: ensure_sqlite_store waits for it
        raise TrackingError(f"tracking.uri={uri!r}: {p} cannot be read as SQLite ({e})") from None
    except OSError as e:
        raise TrackingError(f"tracking.uri={uri!r}: {p} cannot be read ({e.strerror or e})") from None
    if tables is None:
        raise _not_sqlite(uri, p)
    if tables and not tables & MLFLOW_CORE_TABLES:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise TrackingError(f"tracking.uri={uri!r}: {p} is another application's SQLite database (tables {shown}), "
                            "not an MLflow store; point tracking.uri at an MLflow store or a new file")


def _store_complete(p: Path) -> tuple[bool, int]:
    """(schema complete at MLflow's current revision, number of runs) of an existing MLflow SQLite file."""
    import sqlalchemy
    from mlflow.store.db import utils as db_utils
    from mlflow.store.tracking.dbmodels import models

    engine = sqlalchemy.create_engine(f"sqlite:///{p}")
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
        runs = 0
        if "runs" in tables:
            with engine.connect() as c:
                runs = c.execute(sqlalchemy.text("SELECT COUNT(*) FROM runs")).scalar() or 0
        # Every table of MLflow's tracking ORM, others allowed: not MLflow's _all_tables_exist, which in
        # MLflow 3.0 wanted exactly a list without its own logged_models tables, so that every store it
        # built looked half-built to vgsweep (moved aside and built again, under a live connection).
        complete = set(models.Base.metadata.tables) <= tables and "alembic_version" in tables
        if complete:
            current, newest = _schema_revisions(engine, db_utils)
            complete = current == newest
        return complete, int(runs)
    finally:
        engine.dispose()


def _schema_revisions(engine, db_utils) -> tuple[str | None, str]:
    """(the store's schema revision, this MLflow's newest): MLflow's own private helpers where it has them,
    else the same read through Alembic's public API from MLflow's migration scripts (a later MLflow may
    rename its helpers; the CI installs the newest)."""
    try:
        return db_utils._get_schema_version(engine), db_utils._get_latest_schema_revision()
    except AttributeError:
        import mlflow
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        with engine.connect() as c:
            current = MigrationContext.configure(c).get_current_revision()
        scripts = ScriptDirectory(str(Path(mlflow.__file__).parent / "store" / "db_migrations"))
        return current, scripts.get_current_head()


def _build_sqlite(p: Path, artifact_location: str | None) -> None:
    """Create the schema in a file beside p, then rename it into place (all or nothing): a copy of
    this MLflow version's empty store where one is cached (`_empty_store`), else MLflow's own build."""
    tmp = p.with_name(f"{p.name}.building-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    root = artifact_location or str(p.parent / "mlartifacts")
    if not _from_empty_store(tmp, root):
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        tmp.unlink(missing_ok=True)
        SqlAlchemyStore(f"sqlite:///{tmp}", root).engine.dispose()
    os.replace(tmp, p)


# MLflow builds a store by running every migration of its schema's history: a second or more on the
# way to a sweep's first run, for every new store (each study's, each benchmark row's, each test's).
# vgsweep has MLflow build one empty store per MLflow version in the user's cache and copies it. An
# empty store holds its schema, the schema's version, the "default" workspace and the Default
# experiment (id 0), whose artifact location names the store's artifact root and whose times are its
# creation: the copy gets its own, as MLflow would set them. A version whose empty store holds anything
# else, a root that is not a plain absolute path, or no cache folder: MLflow builds the store.
_TEMPLATE_ROOT = "/vgsweep-empty-store-artifacts"


def cache_dir() -> Path | None:
    """vgsweep's cache folder: $XDG_CACHE_HOME/vgsweep (default ~/.cache/vgsweep); VGSWEEP_CACHE=0: none.
    What it keeps is made again when missing: MLflow's empty store, the tables' composed settings."""
    if os.environ.get("VGSWEEP_CACHE", "1") == "0":
        return None
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vgsweep"


def _empty_store() -> Path | None:
    """This MLflow version's empty store, built once by MLflow (None: not to be used, see above)."""
    import mlflow  # its version: the package may be mlflow or mlflow-skinny

    base = cache_dir()
    if base is None:
        return None
    path = base / f"mlflow-{mlflow.__version__}-empty.db"
    if path.exists():
        return path
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        base.mkdir(parents=True, exist_ok=True)
        tmp = base / f"{path.name}.building-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        SqlAlchemyStore(f"sqlite:///{tmp}", _TEMPLATE_ROOT).engine.dispose()
        c = sqlite3.connect(tmp)
        try:
            tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            filled = {t for t in tables if c.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone()}
            default = c.execute("SELECT experiment_id, artifact_location FROM experiments").fetchall()
        finally:
            c.close()
        if filled - {"alembic_version", "experiments", "workspaces"} or default != [(0, _TEMPLATE_ROOT + "/0")]:
            tmp.unlink()
            return None
        os.replace(tmp, path)
        return path
    except (OSError, sqlite3.Error):
        return None


def _from_empty_store(dest: Path, root: str) -> bool:
    """Copy the empty store to dest and make it this store's (see _empty_store); False: not done."""
    import shutil

    if not os.path.isabs(root) or "://" in root:
        return False
    template = _empty_store()
    if template is None:
        return False
    try:
        shutil.copyfile(template, dest)
        now = int(time.time() * 1000)
        c = sqlite3.connect(dest)
        try:
            with c:
                c.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                          "WHERE experiment_id = 0", (root.rstrip("/") + "/0", now, now))
        finally:
            c.close()
    except (OSError, sqlite3.Error):
        return False
    return True


def ensure_sqlite_store(uri: str, artifact_location: str | None = None) -> None:
    """Under the store's lock: build a missing store atomically; rebuild one left half-built (no runs)."""
    p = sqlite_path(uri)
    assert p is not None
    check_sqlite_store(uri)
    with store_lock(uri):
        for stale in p.parent.glob(p.name + ".building-*"):  # a builder killed before its rename
            stale.unlink(missing_ok=True)
        tables = retry(sqlite_tables, p) if p.exists() else set()
        if tables is None:  # it became something else since check_sqlite_store looked: never deleted
            raise _not_sqlite(uri, p)
        if p.exists() and tables:
            complete, runs = _store_complete(p)
            if complete:
                return
            if runs:  # a store that holds runs is never rewritten
                raise TrackingError(f"{p} holds {runs} runs but its MLflow schema is incomplete or of another MLflow "
                                    "version; vgsweep does not rewrite a store that holds runs: back it up and run "
                                    f"`mlflow db upgrade sqlite:///{p}`, or point tracking.uri at another file")
            aside = p.with_name(f"{p.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(p, aside)
            log.warning("%s held a half-built MLflow schema and no runs (a process was killed while creating "
                        "it): moved to %s and built again", p, aside.name)
        elif p.exists():
            p.unlink()  # an empty file: nothing to keep
        log.info("creating MLflow store %s", p)
        _build_sqlite(p, artifact_location)


_LOCKS: dict[str, object] = {}


def store_lock(uri: str):
    """A file lock for what is not atomic in a store: creating the schema or an experiment, and a
    pack's claim on its configs (sweep.run_pack). Beside a SQLite file; for a server, a lock of this
    host's (in the temporary folder, per user, named after the URI), so the sweeps of one machine
    take turns and only sweeps on different hosts can still race; where that folder refuses locks, a
    warning and no lock. One lock object per file, so that it may be taken again inside itself."""
    import hashlib
    import tempfile

    from filelock import FileLock

    p = sqlite_path(uri)
    if p is not None:
        path = str(p) + ".lock"
    else:
        folder = Path(tempfile.gettempdir()) / f"vgsweep-{os.getuid()}" / "locks"
        path = str(folder / (hashlib.sha1(uri.rstrip("/").encode()).hexdigest()[:16] + ".lock"))
    if path not in _LOCKS:
        _LOCKS[path] = FileLock(path) if p is not None else _HostLock(FileLock(path), uri)
    lock = _LOCKS[path]
    (lock.lock if isinstance(lock, _HostLock) else lock).timeout = max(_RETRY_S, 60)
    return lock


class _HostLock:
    """A server store's lock of this host: best effort, as before there was one (a folder that
    refuses file locks costs a warning, not the sweep); re-entrant as FileLock is."""

    def __init__(self, lock, uri: str):
        self.lock, self.uri, self._held, self._warned = lock, uri, [], False

    def __enter__(self):
        from filelock import Timeout

        try:
            Path(self.lock.lock_file).parent.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()
            self._held.append(True)
        except Timeout:
            raise
        except (OSError, NotImplementedError) as e:
            self._held.append(False)
            if not self._warned:
                log.warning("no lock for the store %s (%s): overlapping sweeps on this host may train a config "
                            "twice", self.uri, e)
                self._warned = True
        return self

    def __exit__(self, *exc) -> None:
        if self._held.pop():
            self.lock.release()


def _install_sqlite_busy_timeout() -> None:
    """Every SQLite connection SQLAlchemy opens in this process waits for locks instead of failing
    at once with "database is locked" (Python's default is 5 s)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if getattr(_install_sqlite_busy_timeout, "done", False):
        return

    @event.listens_for(Engine, "connect")
    def _busy(dbapi_conn, _record):  # noqa: ANN001
        if type(dbapi_conn).__module__.startswith("sqlite3"):
            dbapi_conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")

    _install_sqlite_busy_timeout.done = True  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=None)
def client_for(uri: str, artifact_location: str | None = None):
    """An MlflowClient whose store exists and answers."""
    from mlflow.tracking import MlflowClient

    _install_sqlite_busy_timeout()
    if sqlite_path(uri) is not None:
        ensure_sqlite_store(uri, artifact_location)
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri)
    try:
        retry(client.search_experiments, max_results=1)
    except MlflowException as e:
        raise TrackingError(f"tracking.uri={uri!r}: {str(e).splitlines()[0]}") from None
    return client


def check_server(uri: str, timeout: float = 5.0) -> None:
    """An MLflow server answers at uri (preflight), or TrackingError, its password hidden. Asked as MLflow's
    client asks (requests): a user and password in the URI (http://user:pw@host:5000) are its basic auth (the
    health check needs none, but urllib took `user:pw@host` for the host's name and refused a server MLflow
    reaches), and MLflow's MLFLOW_TRACKING_INSECURE_TLS and MLFLOW_TRACKING_SERVER_CERT_PATH check its TLS."""
    import requests
    from mlflow.environment_variables import MLFLOW_TRACKING_INSECURE_TLS, MLFLOW_TRACKING_SERVER_CERT_PATH

    verify = False if MLFLOW_TRACKING_INSECURE_TLS.get() else (MLFLOW_TRACKING_SERVER_CERT_PATH.get() or True)
    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout, verify=verify).raise_for_status()
    except (requests.RequestException, ValueError) as e:
        errno = re.search(r"\[Errno -?\d+\] [^'\")(]+", str(e))  # a refused connection: not requests' whole chain
        why = errno.group(0).strip() if errno else f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        raise TrackingError(f"tracking.uri={hide_passwords(uri)!r}: no MLflow server answers there "
                            f"({hide_passwords(why)}); start one (mlflow server --host 127.0.0.1 --port 5000) or "
                            f"{to_the_project_store()} for the embedded SQLite store") from None


def web_address(uri: str, experiment: str, run_id: str | None = None) -> str | None:
    """Where MLflow's UI on the server `uri` shows the experiment's training runs (or one run of it);
    None for a store with no UI of its own (a SQLite file, a database: `make ui` serves those)."""
    if not uri.startswith(("http://", "https://")):
        return None
    from vgsweep.ui import experiment_url, run_url

    exp = retry(client_for(uri).get_experiment_by_name, experiment)
    if exp is None:
        return None
    base = browser_address(uri)
    return run_url(base, exp.experiment_id, run_id) if run_id else experiment_url(base, exp.experiment_id)


def browser_address(uri: str) -> str:
    """A server's address for a browser: without the user and password of http://user:pw@host:5000 (a
    browser asks for them; `user:***@` would be sent as they are)."""
    return re.sub(r"^([a-z]+://)[^/@]*@", r"\1", uri.rstrip("/"))


NOTE = "mlflow.note.content"  # an experiment's (or run's) description in MLflow's UI


def experiment_id(client, uri: str, name: str, artifact_location: str | None) -> str:
    """Get or create the experiment (a concurrent creator is not an error), marked as a training one
    so that MLflow 3's UI opens it on its runs; a built-in study's experiment has the study's title as its
    description (MLflow's mlflow.note.content, shown above its runs), where it has none (one a user wrote
    stays)."""
    from mlflow.exceptions import MlflowException

    from vgsweep.results.studies import STUDIES

    wanted = {"mlflow.experimentKind": EXPERIMENT_KIND}
    if name in STUDIES:
        wanted[NOTE] = STUDIES[name].title
    exp = retry(client.get_experiment_by_name, name)
    if exp is None:
        with store_lock(uri):
            try:
                exp_id = retry(client.create_experiment, name, artifact_location=artifact_location, tags=wanted)
                return exp_id
            except MlflowException:
                exp = retry(client.get_experiment_by_name, name)
                if exp is None:
                    raise
    for key, value in wanted.items():  # an experiment made by an older version: tagged once
        if key not in exp.tags:
            retry(client.set_experiment_tag, exp.experiment_id, key, value)
    return exp.experiment_id


def training_runs(client, exp_id: str, filter_string: str = ""):
    """Every training run (one that carries a config hash) of the experiment matching the filter,
    newest first, page by page: no experiment is too large to be read whole."""
    token = None
    while True:
        page = retry(client.search_runs, [exp_id], filter_string, max_results=SEARCH_PAGE, page_token=token,
                     order_by=["attributes.start_time DESC"])
        yield from (r for r in page if TAG_HASH in r.data.tags)  # not e.g. the `figures` run
        token = page.token
        if not token:
            return


def has_training_runs(client, exp_id: str) -> bool:
    """Whether the experiment holds a training run: one query for one row (reading its runs to find one
    costs a few ms per run)."""
    return bool(retry(client.search_runs, [exp_id], f"tags.`{TAG_HASH}` LIKE '%'", max_results=1))


PROBE_RUNS, PROBE_PER_HASH = 50, 4  # runs_by_hash reads an experiment of up to max(50, 4 per hash) runs whole


def runs_by_hash(client, experiment: str, hashes: set[str] | None = None) -> dict[str, list]:
    """The training runs of the experiment named `experiment` (none if there is no such experiment),
    grouped by config hash, newest first: every one, or those of `hashes` only. Asked for a few
    hashes in a store that holds many runs, it searches hash by hash (one indexed query each, about
    20 ms) instead of reading the whole experiment (a few ms per run: seconds for thousands)."""
    exp = retry(client.get_experiment_by_name, experiment)
    if exp is None:
        return {}
    found = None
    if hashes is not None:
        first = max(PROBE_RUNS, PROBE_PER_HASH * len(hashes))
        page = retry(client.search_runs, [exp.experiment_id], "", max_results=first,
                     order_by=["attributes.start_time DESC"])
        if not page.token:  # the whole experiment came in this one page
            found = [r for r in page if r.data.tags.get(TAG_HASH) in hashes]
        else:
            found = [r for h in sorted(hashes) for r in training_runs(client, exp.experiment_id,
                                                                      f"tags.`{TAG_HASH}` = '{h}'")]
            found.sort(key=lambda r: r.info.start_time, reverse=True)
    out: dict[str, list] = {}
    for r in (found if found is not None else training_runs(client, exp.experiment_id)):
        out.setdefault(r.data.tags[TAG_HASH], []).append(r)
    return out


def process_state(host: str | None, pid: str | None, stamp: str | None) -> str | None:
    """Whether the process `pid` of `host` (with its process_stamp) lives, where this host can tell:
    ALIVE (that very process), or why it is gone; None where it cannot (another host, no stamp or no
    /proc to compare it with, a process of another user)."""
    import socket

    if host != socket.gethostname() or not (pid or "").isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return f"process {pid} on this host is gone"
    except PermissionError:
        return None
    if _proc_stat(int(pid)).startswith("Z"):  # ended, not yet reaped (a container's init may never reap it)
        return f"process {pid} on this host has ended"
    live = process_stamp(int(pid)) if stamp else None
    if live is None:
        return None
    if live != stamp:  # after a reboot, or pids wrapped round
        return f"process {pid} on this host has ended (the pid is another process's now)"
    return ALIVE


ALIVE = "alive"


def orphan_reason(run, stale_after_s: float = 0.0, now: float | None = None) -> str | None:
    """Why a RUNNING run's process is gone, or None if it may be alive: on this host, its pid no
    longer exists (or is another process's now); on any host, its heartbeat is older than
    `stale_after_s` (0: never judged so), except a run whose very process (pid and stamp) this host
    sees alive. Runs recorded before heartbeats existed are judged by their pid only."""
    if run.info.status != "RUNNING":
        return None
    host = run.data.tags.get(TAG_HOST)
    state = process_state(host, run.data.tags.get(TAG_PID), run.data.tags.get(TAG_PROCESS))
    if state == ALIVE:
        # that very process is alive: it holds the run, whatever the heartbeat's age says (a
        # clock stepped forward, a process stopped for a while); marking it KILLED would train
        # the config twice and let both runs end FINISHED
        return None
    if state is not None:
        return state
    age = heartbeat_age(run, now)
    if stale_after_s > 0 and age is not None and age > stale_after_s:
        return f"no heartbeat from {host} for {age:.0f} s (tracking.stale_after_s={stale_after_s:g})"
    return None


def made_here(run) -> bool:
    """Whether this very process made the run (its host and pid, not just a pid another host shares)."""
    import socket

    return run.data.tags.get(TAG_PID) == str(os.getpid()) and run.data.tags.get(TAG_HOST) == socket.gethostname()


_HOLDER = (TAG_HOST, TAG_PID, TAG_PROCESS, TAG_HEARTBEAT)


def confirmed_orphan(client, run, stale_after_s: float = 0.0, rounds: int = 3) -> tuple[str | None, object]:
    """orphan_reason for a run read a moment ago, safe against the run ending meanwhile: (why its
    process is gone, or None; the run as last read).

    A run is read, then its process judged. A process that ends its run FINISHED and exits between
    the two looks gone while the run read is still RUNNING: marking that run KILLED would overwrite a
    finished run, and a sweep would train its config again (seen as a rare failure of two overlapping
    sweeps, the second planning as the first exited). So a run judged gone is read again: its process
    was gone before this read, so what the read says is final. Still RUNNING, held by the same process
    with the same heartbeat: gone. Ended meanwhile: that status. Taken by another process, or a newer
    heartbeat: judged again (`rounds` times at most, then taken as alive)."""
    for _ in range(rounds):
        why = orphan_reason(run, stale_after_s)
        if not why:
            return None, run
        fresh = retry(client.get_run, run.info.run_id)
        if fresh.info.status != "RUNNING":
            return None, fresh
        if all(fresh.data.tags.get(t) == run.data.tags.get(t) for t in _HOLDER):
            return why, fresh
        run = fresh
    return None, run


# A process's claim to resume a run: a tag of its own, `vgsweep.claim.<token>` = the claimant's host,
# pid, process stamp and the time, as JSON. Two claims never overwrite each other (tags with two keys),
# so of two processes that each set theirs and then read the run, at least the later reader sees the
# other's: the property the claim protocol needs (sweep._stake_resumes), which a single tag lacks.
TAG_CLAIM = "vgsweep.claim."


def stake_claim(client, run_id: str) -> str:
    """Set this process's claim on run `run_id`; returns its tag's key."""
    import json
    import socket
    import uuid

    me = {TAG_HOST: socket.gethostname(), TAG_PID: str(os.getpid()), TAG_HEARTBEAT: f"{time.time():.0f}",
          **({TAG_PROCESS: stamp} if (stamp := process_stamp(os.getpid())) else {})}
    key = TAG_CLAIM + uuid.uuid4().hex
    retry(client.set_tag, run_id, key, json.dumps(me))
    return key


def claims(run, stale_after_s: float) -> dict[str, tuple[dict, str | None]]:
    """The claims on `run`: key -> (the claimant's host/pid tags, why it is gone or None while it may
    be alive). A claimant is judged as a run's process is (orphan_reason), its claim's time standing for
    a heartbeat: on another host a claim counts for `stale_after_s` (600 s where that is 0: a claim
    that outlives its process must not block the run for ever)."""
    import json
    from types import SimpleNamespace

    out = {}
    for key, value in run.data.tags.items():
        if not key.startswith(TAG_CLAIM):
            continue
        try:
            tags = {k: str(v) for k, v in json.loads(value).items()}
        except (ValueError, AttributeError):
            tags = {}
        view = SimpleNamespace(info=SimpleNamespace(status="RUNNING"), data=SimpleNamespace(tags=tags))
        out[key] = (tags, orphan_reason(view, stale_after_s or 600.0) if tags else "unreadable")
    return out


def drop_claim(client, run_id: str, key: str) -> None:
    """Remove a claim from a run; one already removed (a dead claimant's, dropped by two sweeps) is fine."""
    from mlflow.exceptions import MlflowException

    try:
        retry(client.delete_tag, run_id, key)
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise


def _proc_stat(pid: int) -> str:
    """The fields of /proc/<pid>/stat after the command's name, from the state on ('' off Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2:]


def process_stamp(pid: int) -> str | None:
    """What tells process `pid` apart from a later one with the same pid: this boot's id and the
    process's start time (clock ticks since boot); None where /proc does not say."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = _proc_stat(pid).split()
    return f"{boot}:{fields[19]}" if len(fields) > 19 else None


def heartbeat_age(run, now: float | None = None) -> float | None:
    """Seconds since the run's last heartbeat, or None for runs recorded before heartbeats existed."""
    beat = run.data.tags.get(TAG_HEARTBEAT, "")
    if not beat.replace(".", "", 1).isdigit():
        return None
    return (time.time() if now is None else now) - float(beat)


SPLITS = ("train", "validation", "test")  # the contexts of the dataset inputs a run records (runs.dataset_inputs)
DATA_CONTEXT = "mlflow.data.context"  # MLflow's input tag of a dataset's context (mlflow_tags.MLFLOW_DATASET_CONTEXT)


def data_digests(run) -> dict[str, str]:
    """The digests of the data set's splits a run recorded it trained on (its MLflow dataset inputs, by their
    context), as `{"train": "e8c78536", "test": "9295b4d5"}`; {} for a run recorded before vgsweep kept them.
    A run resumed on other files has two of a split: both, joined by `+`."""
    seen: dict[str, list[str]] = {}
    for i in run.inputs.dataset_inputs if run.inputs else []:
        context = next((t.value for t in i.tags if t.key == DATA_CONTEXT), None)
        if context in SPLITS and i.dataset.digest not in seen.get(context, []):
            seen.setdefault(context, []).append(i.dataset.digest)
    return {c: "+".join(seen[c]) for c in SPLITS if c in seen}
