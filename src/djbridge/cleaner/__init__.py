"""dj-cleaner: reclaim orphaned objects from DataJoint external stores, never a live one.

:func:`clean` is the whole tool; the ``dj-cleaner`` command is a thin layer over
it. It works in two phases, and the order is the safety rule:

1. **Preflight, for every run at once.** The configuration is already validated
   (:func:`~djbridge.cleaner.settings.load_config`). Connect to every database server,
   check that every run's schema is there (in the run's database, on PostgreSQL) and
   that a 2.x run's server can hold 2.x schemas (MariaDB cannot), open every store
   and list one page of each schema folder. Any failure raises
   :class:`~djbridge.errors.ConfigError` and nothing anywhere is deleted.
2. **The runs, one after another.** Each run lists, classifies, checks and deletes
   on its own (:mod:`djbridge.cleaner.scan`). A run that fails or refuses reports
   why and deletes nothing more; the other runs still go ahead.

Runs whose stores share a folder (same endpoint, bucket, location and schema) on
different database servers protect each other's hashes.

    from djbridge.cleaner import CleanOptions, clean, load_config
    reports = clean(load_config("datajoint-cleaner.toml"), CleanOptions(dry_run=True))
    for report in reports:
        print(report.schema, report.orphaned, report.to_delete, report.errors)
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING

from djbridge.cleaner.catalogue import CATALOGUES, Catalogue, Dj2Target
from djbridge.cleaner.dj2 import clean_dj2
from djbridge.cleaner.lanes import Hook, Target
from djbridge.cleaner.scan import RunReport, clean_target
from djbridge.cleaner.settings import (
    CleanerConfig,
    CleaningRun,
    CleanOptions,
    load_config,
    parse_config,
    parse_duration,
)
from djbridge.cleaner.tracking import Tracking
from djbridge.config import DatabaseServer
from djbridge.errors import ConfigError, DatabaseError, DjBridgeError, redact
from djbridge.layout import managed_hash
from djbridge.mysql import Database, connect
from djbridge.stores import Store, open_store

__all__ = [
    "CleanOptions",
    "CleanerConfig",
    "CleaningRun",
    "RunReport",
    "clean",
    "load_config",
    "managed_hash",
    "parse_config",
    "parse_duration",
    "redact",
]

if TYPE_CHECKING:
    from djbridge.postgres import PgDatabase

log = logging.getLogger(__name__)

StoreOpener = Callable[[CleaningRun], Store]


def open_run_store(run: CleaningRun) -> Store:
    """Open the store a run cleans (its bucket and location, or its directory)."""
    return open_store(run.storage, bucket=run.bucket, location=run.location)


def folder_key(run: CleaningRun) -> tuple[str, ...]:
    """Identify the physical folder a run cleans, whatever the store name or server."""
    if run.storage.kind == "file":
        return ("file", os.path.realpath(run.location), run.schema)
    return ("s3", run.storage.endpoint, run.bucket, run.location.strip("/"), run.schema)


def _connect_pg(server: DatabaseServer) -> PgDatabase:
    from djbridge.postgres import connect_pg  # psycopg is imported for 2.x runs only

    return connect_pg(server)


CONNECTORS: dict[str, Callable[[DatabaseServer], Database | PgDatabase]] = {
    "mysql": connect,
    "postgresql": _connect_pg,
}
"""The driver of each ``backend`` of a database server."""


def open_database(server: DatabaseServer) -> Database | PgDatabase:
    """Connect to a database server with the driver of its backend.

    Raises
    ------
    ConfigError
        Naming ``database_servers.<name>``, if the server cannot be reached.
    """
    try:
        return CONNECTORS[server.backend](server)
    except DjBridgeError as err:
        raise ConfigError(f"database_servers.{server.name}: {err}") from err


def open_catalogue(server: DatabaseServer) -> Catalogue:
    """Open a catalogue on a new connection to ``server`` (a worker's own)."""
    return CATALOGUES[server.backend](CONNECTORS[server.backend](server))


def check_schema(run: CleaningRun, db: Database | PgDatabase) -> None:
    """Make sure the run's schema is on its server (in its database, on PostgreSQL).

    Raises
    ------
    ConfigError
        Naming the run, the schema, the server and, on PostgreSQL, the database.
    """
    server = run.database
    try:
        if db.schema_exists(run.schema):
            return
    except DatabaseError as err:
        raise ConfigError(f"database_servers.{server.name}: {err}") from err
    where = f" in database {server.database!r}" if server.database else ""
    hidden = "" if server.database else " (or this account cannot see it)"
    raise ConfigError(
        f"cleaning_runs[{run.index}].schema: schema {run.schema!r} does not exist{where} on "
        f"database server {server.name!r}{hidden}"
    )


def _dj2_target(run: CleaningRun, db: Database | PgDatabase, store: Store) -> Dj2Target:
    """Return a 2.x run's target, or raise ConfigError if its server cannot hold 2.x."""
    catalogue = CATALOGUES[run.database.backend](db)
    try:
        problem = catalogue.server_problem()
    except DatabaseError as err:
        raise ConfigError(f"database_servers.{run.database.name}: {err}") from err
    if problem:
        raise ConfigError(
            f"cleaning_runs[{run.index}].datajoint: database server {run.database.name!r} "
            f"cannot hold a DataJoint 2.x schema: {problem}"
        )
    return Dj2Target(run, store, catalogue, functools.partial(open_catalogue, run.database))


def _preflight(
    config: CleanerConfig, stack: ExitStack, open_run: StoreOpener
) -> list[Target | Dj2Target]:
    """Connect to every server and probe every store; raise ConfigError on any failure."""
    databases: dict[str, Database | PgDatabase] = {}
    for run in config.runs:
        if run.database.name in databases:
            continue
        db = open_database(run.database)
        stack.callback(db.close)
        databases[run.database.name] = db
    for run in config.runs:
        check_schema(run, databases[run.database.name])
    targets: list[Target | Dj2Target] = []
    for run in config.runs:
        where = f"cleaning_runs[{run.index}]"
        try:
            store = open_run(run)
            # One small request proves the store is there: a HEAD of the bucket, not a list
            # page, which some endpoints answer by scanning the whole bucket.
            store.round_trip()
        except DjBridgeError as err:
            raise ConfigError(f"{where} (storage_server {run.storage_ref}): {err}") from err
        db = databases[run.database.name]
        if run.datajoint == "2":
            targets.append(_dj2_target(run, db, store))
        else:
            assert isinstance(db, Database)  # settings put 0.14 runs on MySQL-family servers
            targets.append(Target(run, store, Tracking(db, run.schema, run.store)))
    for target in targets:
        if isinstance(target, Dj2Target):
            continue
        seen = {target.run.database.name}
        for other in config.runs:
            if (
                other.datajoint != "2"
                and folder_key(other) == folder_key(target.run)
                and other.database.name not in seen
            ):
                seen.add(other.database.name)
                peer_db = databases[other.database.name]
                if isinstance(peer_db, Database):
                    target.peers.append(Tracking(peer_db, other.schema, other.store))
    return targets


def clean(
    config: CleanerConfig,
    options: CleanOptions,
    *,
    hook: Hook | None = None,
    open_run: StoreOpener = open_run_store,
) -> list[RunReport]:
    """Run every cleaning run of ``config`` and return one report per run.

    Parameters
    ----------
    config
        The validated configuration.
    options
        Dry run, minimum age, include-unused, cap and progress bars.
    hook
        Optional ``hook(event, run)``, called at ``"start"`` (each run, after the
        preflight of all runs), ``"listed"`` and ``"batch"``; see
        :func:`~djbridge.cleaner.scan.clean_target`.
    open_run
        Opens a run's store; tests pass a wrapper around the real stores.

    Returns
    -------
    list of RunReport
        In the order of the runs. A failed run has errors; credentials never
        appear in them (library text is masked where it enters djbridge).

    Raises
    ------
    ConfigError
        If a server cannot be reached or a store folder cannot be listed during
        the preflight. Nothing has been deleted then.
    """
    with ExitStack() as stack:
        targets = _preflight(config, stack, open_run)
        reports: list[RunReport] = []
        for target in targets:
            if hook is not None:
                hook("start", target.run)
            log.info("%s: cleaning %s", target.run.label, target.store.description)
            if isinstance(target, Dj2Target):
                reports.append(clean_dj2(target, options, hook))
            else:
                reports.append(clean_target(target, options, hook))
        return reports
