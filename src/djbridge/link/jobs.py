"""Links run as jobs: the ``dj-link.toml`` file, parsed once, and one operation per link.

``dj-link`` (:mod:`djbridge.link.cli`) reads a TOML file whose ``[[links]]``
entries each hold the five positional arguments of ``link(...)``, the source
``table`` (its DataJoint class name), and optionally ``stores``, ``name``,
``use_tls`` and ``batch_size``. :func:`load_jobs` turns it into frozen
:class:`LinkJob` values and rejects anything else with a
:class:`~djbridge.errors.ConfigError` that names the entry and the key;
:func:`check_environment` then checks what the links will read from the
environment (``LINK_USER``/``LINK_PASS``, the local account and the named stores in
DataJoint's configuration). Both run before any link is touched.

:func:`run_job` declares one link and runs one operation on it, and returns the
report entry (``name``, ``command``, ``ok``, ``error`` and what the operation adds).
It never raises for a failing link, so one link failing does not stop the others.

    jobs = load_jobs("dj-link.toml")
    check_environment(jobs)
    entries = [run_job(job, "verify", Options(repair=True)) for job in jobs]
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from djbridge.config import Section
from djbridge.errors import ConfigError
from djbridge.layout import SCHEMA_NAME, STORE_NAME
from djbridge.link.declare import CLASS_NAME, credential, local_server, store_spec
from djbridge.link.verify import VerifyReport

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "dj-link.toml"
COMMANDS = ("status", "pull", "verify", "delete-flagged")
NAMES = {
    "source_host": None,
    "source_schema": SCHEMA_NAME,
    "outbound_schema": SCHEMA_NAME,
    "outbound_table": CLASS_NAME,
    "local_schema": SCHEMA_NAME,
    "table": CLASS_NAME,
}
"""The required string keys of a ``[[links]]`` entry, with the pattern each must match."""
OPTIONAL = {"name", "stores", "use_tls", "batch_size", "backend", "database"}


@dataclass(frozen=True)
class LinkJob:
    """One ``[[links]]`` entry: a link's arguments and the table it links."""

    name: str
    source_host: str
    source_schema: str
    outbound_schema: str
    outbound_table: str
    local_schema: str
    table: str
    stores: tuple[tuple[str, str], ...] = ()
    use_tls: bool | None = None
    batch_size: int = 500
    backend: str | None = None  # DataJoint 2.x: the source's backend
    database: str | None = None  # DataJoint 2.x: the source's PostgreSQL database


@dataclass(frozen=True)
class Options:
    """How to run a command: pull's ``where``/``all_rows``, verify's ``repair``, the bar.

    ``confirm(question)`` decides a ``delete-flagged`` without ``--yes``; None means yes.
    """

    where: str | None = None
    all_rows: bool = False
    repair: bool = False
    progress: bool = False
    confirm: Callable[[str], bool] | None = field(default=None, compare=False)


# ---- the configuration file -------------------------------------------------------------------
def parse_job(index: int, raw: Any) -> LinkJob:
    """Parse ``links[index]``; every error names the entry and the key."""
    section = Section(raw, f"links[{index}]")
    section.check_keys({*NAMES, *OPTIONAL})
    values = {key: section.string(key) for key in NAMES}
    name = section.string("name", required=False) or values["table"]
    section.where = f"links[{index}] ({name})"
    for key, pattern in NAMES.items():
        if not values[key] or (pattern is not None and not pattern.match(values[key])):
            raise ConfigError(f"{section.where}.{key}: {values[key]!r} is not a valid name")
    stores = Section(raw.get("stores", {}), f"{section.where}.stores")
    for src, dst in stores.raw.items():
        if not (isinstance(dst, str) and STORE_NAME.match(src) and STORE_NAME.match(dst)):
            raise ConfigError(f"{stores.where}.{src}: {dst!r} is not a store name")
    batch_size = section.integer("batch_size", low=1, high=100_000)
    backend = section.string("backend", required=False) or None
    if backend not in (None, "mysql", "postgresql"):
        raise ConfigError(f"{section.where}.backend: {backend!r} is not 'postgresql' or 'mysql'")
    return LinkJob(
        name=name, stores=tuple(sorted(stores.raw.items())),
        use_tls=section.boolean("use_tls"), batch_size=batch_size or 500, backend=backend,
        database=section.string("database", required=False) or None, **values,
    )  # fmt: skip


def load_jobs(path: str | Path) -> list[LinkJob]:
    """Read and check the whole TOML file.

    Raises
    ------
    ConfigError
        If the file is missing or unreadable, is not TOML, has no ``[[links]]``, an
        entry lacks a key or has an unknown or invalid one, or two entries share a name.
    """
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the configuration file: {err.strerror}") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not a valid TOML file: {err}") from err
    top = Section(raw, str(path))
    top.check_keys({"links"})
    entries = raw.get("links")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: no [[links]] entries")
    jobs = [parse_job(i, entry) for i, entry in enumerate(entries)]
    seen: set[str] = set()
    for i, job in enumerate(jobs):
        if job.name in seen:
            raise ConfigError(f"links[{i}].name: {job.name!r} is used by an earlier link")
        seen.add(job.name)
    return jobs


def select(jobs: list[LinkJob], names: list[str] | None) -> list[LinkJob]:
    """Return the jobs named (all when ``names`` is empty), in the file's order.

    Raises
    ------
    ConfigError
        If a name is not in the file.
    """
    known = {job.name for job in jobs}
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise ConfigError(
            f"--link: unknown link {', '.join(map(repr, unknown))}; "
            f"the file has {', '.join(map(repr, sorted(known)))}"
        )
    return [job for job in jobs if not names or job.name in names]


def check_environment(jobs: list[LinkJob]) -> None:
    """Check ``LINK_USER``/``LINK_PASS``, the local account and every named store.

    Raises
    ------
    ConfigError
        Naming the variable, the ``dj.config`` key or the store; no server is contacted.
    """
    from djbridge.link import require_datajoint

    credential("LINK_USER")
    credential("LINK_PASS")
    try:
        import datajoint  # noqa: F401 - loads DataJoint's configuration file
    except (ValueError, OSError) as err:  # a malformed file: DataJoint's own JSON error
        raise ConfigError(f"DataJoint's configuration file cannot be loaded: {err}") from err
    if require_datajoint() == "2":
        from djbridge.link.declare2 import dj2_local_server, dj2_store_spec

        dj2_local_server()
        check_store: Callable[[str], object] = dj2_store_spec
    else:
        local_server()
        check_store = store_spec
    for job in jobs:
        for src, dst in job.stores:
            for store in (src, dst):
                try:
                    check_store(store)
                except ConfigError as err:
                    raise ConfigError(f"link {job.name!r}: {err}") from None


# ---- running one link -------------------------------------------------------------------------
def open_link(job: LinkJob) -> Any:
    """Declare the link of ``job`` (as ``@link(...)`` does) and return its local table class."""
    from djbridge.link import link

    cls = type(job.table, (), {"__doc__": f"{job.table}, linked by dj-link ({job.name})."})
    decorator = link(
        job.source_host, job.source_schema, job.outbound_schema, job.outbound_table,
        job.local_schema, stores=dict(job.stores), use_tls=job.use_tls,
        batch_size=job.batch_size, backend=job.backend, database=job.database,
    )  # fmt: skip
    return decorator(cls)


def shared_or_leaving(table: Any, source: Any) -> Any:
    """Return the outbound rows past their pull (shared, flagged or mid-delete), as DataJoint."""
    from datajoint.table import FreeTable  # the class, in 0.14 and 2.x alike

    outbound = table._core.linked.outbound
    return (FreeTable(source.connection, outbound) & "process <> 'PULL'").proj()


def do_status(job: LinkJob, table: Any, options: Options) -> dict[str, Any]:
    """Count the link's entities per state; list the stuck ones."""
    status = table().source.status()
    counts = {state.value: n for state, n in sorted(status.counts.items())}
    return {"ok": True, "counts": counts, "stuck": status.stuck}


def do_pull(job: LinkJob, table: Any, options: Options) -> dict[str, Any]:
    """Pull the source rows ``options.where`` selects: new ones only, or all of them."""
    source = table().source
    if options.where:
        source = source & options.where
    if not options.all_rows:  # new rows: no outbound row yet, or stuck mid-pull
        source = source - shared_or_leaving(table, source)
    result = source.pull(display_progress=options.progress)
    return {"ok": True, "pulled": result.rows_copied}


def do_verify(job: LinkJob, table: Any, options: Options) -> dict[str, Any]:
    """Verify the link (and repair objects with ``options.repair``)."""
    report: VerifyReport = table().verify(repair=options.repair, display_progress=options.progress)
    entry = report.to_dict()
    entry["summary"] = report.summary(job.table)
    if not report.ok:
        entry["error"] = "verify found differences: " + "; ".join(report.advice(job.table))
    return entry


def do_delete_flagged(job: LinkJob, table: Any, options: Options) -> dict[str, Any]:
    """Delete the local rows the source flagged, after ``options.confirm`` agrees."""
    flagged = table() & table().source.flagged
    count = len(flagged)
    question = f"Delete {count} flagged rows from {job.local_schema}.{job.table} ({job.name})?"
    if count and options.confirm is not None and not options.confirm(question):
        return {"ok": True, "deleted": 0, "cancelled": True}
    deleted = flagged.delete(safemode=False) if count else 0
    return {"ok": True, "deleted": deleted}


OPERATIONS: Mapping[str, Callable[[LinkJob, Any, Options], dict[str, Any]]] = {
    "status": do_status,
    "pull": do_pull,
    "verify": do_verify,
    "delete-flagged": do_delete_flagged,
}


def run_job(job: LinkJob, command: str, options: Options) -> dict[str, Any]:
    """Declare ``job``'s link and run ``command``; return its report entry, never raise.

    The entry holds ``name``, ``command``, ``ok`` and ``error`` (None, or the
    failure's type and message) and the keys the command adds.
    """
    entry: dict[str, Any] = {"name": job.name, "command": command, "ok": False, "error": None}
    try:
        entry.update(OPERATIONS[command](job, open_link(job), options))
    except KeyboardInterrupt:
        raise
    except Exception as err:  # one link failing must not stop the others
        log.debug("link %s: %s failed", job.name, command, exc_info=True)
        entry["ok"], entry["error"] = False, f"{type(err).__name__}: {err}"
    return entry
