"""The quarantine subcommands of ``dj-cleaner``: ``quarantine``, ``restore ID`` and ``purge``.

They work on the quarantine areas of the stores that the configuration's runs
clean (:mod:`djbridge.cleaner.quarantine`), and like the clean itself they only
parse, call and print. Exit status: 0 when every object ended where it should,
1 when some did not (an object kept in quarantine, a failed delete), 2 for a usage
or configuration error, including an unknown batch id.

    dj-cleaner quarantine --json                  # every batch: id, created, objects, bytes
    dj-cleaner restore 20261201T203015Z-3f9a1c    # undo one batch
    dj-cleaner purge --older-than 7d --report purge.json
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from djbridge.cleaner import folder_key, open_database, open_run_store
from djbridge.cleaner.catalogue import CATALOGUES, live_keys
from djbridge.cleaner.quarantine import (
    Manifest,
    Outcome,
    Recheck,
    batches,
    find,
    purge,
    restore,
)
from djbridge.cleaner.settings import DEFAULT_CONFIG, CleanerConfig, CleaningRun, parse_duration
from djbridge.cleaner.tracking import Tracking
from djbridge.errors import ConfigError, DjBridgeError
from djbridge.layout import key_digest
from djbridge.mysql import Database
from djbridge.progress import human_bytes
from djbridge.stores import Store

COMMANDS = ("quarantine", "restore", "purge")
EXIT_OK, EXIT_FAILED = 0, 1
if TYPE_CHECKING:
    from djbridge.postgres import PgDatabase

log = logging.getLogger(__name__)


def build_parser(command: str, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Return the parser of one subcommand; ``common`` holds the logging flags."""
    parser = argparse.ArgumentParser(prog=f"dj-cleaner {command}", parents=[common])
    parser.add_argument("-c", "--config-file", default=DEFAULT_CONFIG, help="the TOML file")
    if command == "quarantine":
        parser.description = "List the quarantine batches of every store in the configuration."
        parser.add_argument("--json", action="store_true", help="print a JSON list")
        return parser
    parser.add_argument("--report", metavar="PATH", help="write a JSON report to PATH")
    if command == "restore":
        parser.description = "Move every object of batch ID back to its original key."
        parser.add_argument("id", metavar="ID", help="the batch id, as `quarantine` lists it")
    else:
        parser.description = (
            "Delete the batches older than DURATION, after asking the database again."
        )
        parser.add_argument("--older-than", default="7d", metavar="DURATION", help="default 7d")
        parser.add_argument("--dry-run", action="store_true", help="report only, change nothing")
    return parser


def stores_of(config: CleanerConfig, stack: ExitStack) -> dict[tuple[str, ...], Store]:
    """Open each distinct store root of the configuration's runs once."""
    roots: dict[tuple[str, ...], Store] = {}
    for run in config.runs:
        root = folder_key(run)[:-1]  # the folder without the schema: the store root
        if root not in roots:
            try:
                roots[root] = open_run_store(run)
            except DjBridgeError as err:
                raise ConfigError(f"cleaning_runs[{run.index}]: {err}") from err
    return roots


def list_batches(config: CleanerConfig, as_json: bool) -> int:
    """Print every batch of every store: id, created, schema, store, objects, bytes."""
    with ExitStack() as stack:
        rows: list[dict[str, Any]] = [
            {"id": m.id, "created": m.created, "schema": m.schema, "store": m.store,
             "objects": len(m.objects), "bytes": m.bytes}
            for store in stores_of(config, stack).values()
            for m in batches(store)
        ]  # fmt: skip
    if as_json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no quarantine batches")
    for row in rows:
        print(
            f"{row['id']}  {row['created']}  schema {row['schema']}, store {row['store']}: "
            f"{row['objects']} objects ({human_bytes(int(row['bytes']))})"
        )
    return EXIT_OK


class Rechecker:
    """Asks the database again, for a batch, which of its objects are referenced now.

    For a 0.14 run: every server whose runs share the batch's folder, whether a
    tracking row lists the hash. For a DataJoint 2.x run: whether a codec column of
    the run's database covers the path.
    """

    def __init__(self, config: CleanerConfig, stack: ExitStack) -> None:
        self.config = config
        self.stack = stack
        self.databases: dict[str, Database | PgDatabase] = {}

    def _db(self, run: CleaningRun) -> Database | PgDatabase:
        name = run.database.name
        if name not in self.databases:
            db = self.databases[name] = open_database(run.database)
            self.stack.callback(db.close)
        return self.databases[name]

    def recheck(self, manifest: Manifest) -> Recheck | None:
        """Return the batch's re-check, or ``None`` when no run of the file made it."""
        own = [
            r for r in self.config.runs
            if (r.database.name, r.schema, r.store)
            == (manifest.database_server, manifest.schema, manifest.store)
        ]  # fmt: skip
        if not own:
            return None
        first = own[0]
        db = self._db(first)
        if first.datajoint == "2":
            catalogue = CATALOGUES[first.database.backend](db)
            return lambda keys: live_keys(catalogue, first, keys)
        folders = {folder_key(r) for r in own}
        runs = [r for r in self.config.runs if folder_key(r) in folders and r.datajoint != "2"]
        trackers = []
        for run in runs:
            peer = self._db(run)
            if isinstance(peer, Database):
                trackers.append(Tracking(peer, run.schema, run.store))

        def live(keys: Sequence[str]) -> set[str]:
            digests = {key: key_digest(key) for key in keys}
            tracked = _tracked_now(trackers, list(digests.values()))
            return {key for key, digest in digests.items() if digest in tracked}

        return live


def _tracked_now(trackers: list[Tracking], digests: Sequence[bytes]) -> set[bytes]:
    """Return the digests that any of ``trackers`` lists right now."""
    return set().union(*(t.still_tracked(digests) for t in trackers))


def restore_batch(config: CleanerConfig, batch_id: str, progress: bool | None) -> list[Outcome]:
    """Restore one batch; a batch id no store holds is a configuration error."""
    with ExitStack() as stack:
        store, manifest = find(list(stores_of(config, stack).values()), batch_id)
        return [restore(store, manifest, progress=progress)]


def purge_batches(
    config: CleanerConfig, older_than: float, dry_run: bool, progress: bool | None
) -> list[Outcome]:
    """Purge every batch older than ``older_than`` seconds, re-checking every hash first."""
    now = datetime.now(timezone.utc)
    outcomes = []
    with ExitStack() as stack:
        recheck = Rechecker(config, stack)
        for store in stores_of(config, stack).values():
            for manifest in list(batches(store)):
                if (now - manifest.created_at).total_seconds() <= older_than and older_than:
                    continue
                live = recheck.recheck(manifest)
                if live is None:
                    outcome = Outcome(manifest.id)
                    outcome.errors.append(
                        f"no cleaning run for server {manifest.database_server!r}, schema "
                        f"{manifest.schema!r}, store {manifest.store!r}: not purged"
                    )
                    outcomes.append(outcome)
                    continue
                outcomes.append(purge(store, manifest, live, dry_run=dry_run, progress=progress))
    return outcomes


def run(command: str, args: argparse.Namespace, config: CleanerConfig) -> int:
    """Run one subcommand and return its exit status."""
    progress = False if args.no_progress else None
    if command == "quarantine":
        return list_batches(config, args.json)
    if command == "restore":
        outcomes = restore_batch(config, args.id, progress)
    else:
        try:
            older_than = parse_duration(args.older_than)
        except ConfigError as err:
            raise ConfigError(f"--older-than: {err}") from None
        outcomes = purge_batches(config, older_than, args.dry_run, progress)
    for outcome in outcomes:
        print(
            f"batch {outcome.id}: restored {outcome.restored}, kept {len(outcome.kept)}, "
            f"purged {outcome.purged} ({human_bytes(outcome.bytes_purged)}), "
            f"restored at purge {outcome.restored_at_purge}"
        )
        for key in outcome.kept:
            print(f"  kept in quarantine (its original key is taken): {key}")
        for error in outcome.errors:
            print(f"  error: {error}")
    if args.report:
        body = json.dumps([o.to_dict() for o in outcomes], indent=2)
        Path(args.report).write_text(body + "\n", encoding="utf-8")
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAILED
