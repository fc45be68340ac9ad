"""dj-cleaner: reclaim orphaned objects from DataJoint external stores, never a live one.

:func:`clean` is the whole tool; the ``dj-cleaner`` command is a thin layer over
it. It works in two phases, and the order is the safety rule:

1. **Preflight, for every run at once.** The configuration is already validated
   (:func:`~djbridge.cleaner.settings.load_config`). Connect to every database server,
   open every store and list one page of each schema folder. Any failure raises
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

import logging
import os
from collections.abc import Callable
from contextlib import ExitStack

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
from djbridge.errors import ConfigError, DjBridgeError, redact
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


def _preflight(config: CleanerConfig, stack: ExitStack, open_run: StoreOpener) -> list[Target]:
    """Connect to every server and probe every store; raise ConfigError on any failure."""
    databases: dict[str, Database] = {}
    for run in config.runs:
        if run.database.name in databases:
            continue
        where = f"database_servers.{run.database.name}"
        try:
            db = connect(run.database)
        except DjBridgeError as err:
            raise ConfigError(f"{where}: {err}") from err
        stack.callback(db.close)
        databases[run.database.name] = db
    targets = []
    for run in config.runs:
        where = f"cleaning_runs[{run.index}]"
        try:
            store = open_run(run)
            for _ in store.iter_objects(f"{run.schema}/"):
                break  # one page proves the store is there and listable
        except DjBridgeError as err:
            raise ConfigError(f"{where} (storage_server {run.storage_ref}): {err}") from err
        tracking = Tracking(databases[run.database.name], run.schema, run.store)
        targets.append(Target(run, store, tracking))
    for target in targets:
        seen = {target.run.database.name}
        for other in config.runs:
            if folder_key(other) == folder_key(target.run) and other.database.name not in seen:
                seen.add(other.database.name)
                peer = Tracking(databases[other.database.name], other.schema, other.store)
                target.peers.append(peer)
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
        reports = []
        for target in targets:
            if hook is not None:
                hook("start", target.run)
            log.info("%s: cleaning %s", target.run.label, target.store.description)
            reports.append(clean_target(target, options, hook))
        return reports
