"""Quarantine: deletions that can be undone, and a purge that asks the database again.

``dj-cleaner --quarantine`` moves each object it would delete to
``.dj-quarantine/<id>/<original key>`` under the run's store root (the bucket and
location on S3, the location directory on a file store), beside and never inside
a schema folder, so no run ever scans it. One run is one *batch*: its ``<id>`` is
the UTC time and six hex digits (``20261201T203015Z-3f9a1c``), and its
``manifest.json`` names the run and every object with its size.

Invariants kept here:

* the manifest is written before the first move, so a run killed at any moment can
  be restored;
* nothing ever replaces an object: a restore keeps in quarantine any object whose
  original key is taken, unless the object there has identical bytes (then the
  quarantined copy is dropped, as after an S3 move killed before its delete);
* a purge deletes a quarantined object only after the database, asked right then,
  references it nowhere (no tracking row lists its hash; for a DataJoint 2.x run,
  no codec column covers its path); an object referenced again is restored.

    from djbridge.cleaner.quarantine import batches, restore, purge
    for manifest in batches(store):
        print(manifest.id, manifest.created, len(manifest.objects))
    outcome = restore(store, manifest)          # outcome.restored, outcome.kept
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from djbridge.cleaner.settings import CleaningRun, RunIdentity
from djbridge.errors import ConfigError, ObjectNotFound, StoreError
from djbridge.mysql import CHUNK_SIZE, chunks
from djbridge.progress import Progress
from djbridge.stores import Store

log = logging.getLogger(__name__)

AREA = ".dj-quarantine"
MANIFEST = "manifest.json"
HEADER = tuple(f.name for f in fields(RunIdentity))
Recheck = Callable[[Sequence[str]], set[str]]
"""``recheck(keys)`` returns those original keys whose objects are referenced right now."""


def new_id(now: datetime | None = None) -> str:
    """Return a fresh batch id: ``YYYYMMDDTHHMMSSZ-`` and six lowercase hex digits."""
    moment = now or datetime.now(timezone.utc)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def quarantine_key(batch_id: str, key: str) -> str:
    """Return where ``key`` lives while it is in batch ``batch_id``."""
    return f"{AREA}/{batch_id}/{key}"


@dataclass(frozen=True)
class Manifest(RunIdentity):
    """One batch's ``manifest.json``: the run it came from (its identity) and its objects."""

    id: str
    created: str
    objects: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def for_run(cls, run: CleaningRun) -> Manifest:
        """Start a new batch for ``run``: a fresh id, created now, no objects yet."""
        return cls(
            id=new_id(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            **run.identity(),
        )

    @property
    def key(self) -> str:
        """The manifest's own key under the store root."""
        return f"{AREA}/{self.id}/{MANIFEST}"

    @property
    def created_at(self) -> datetime:
        """The creation time, timezone-aware."""
        return datetime.fromisoformat(self.created.replace("Z", "+00:00"))

    @property
    def bytes(self) -> int:
        """The total size of the batch's objects."""
        return sum(int(o["size"]) for o in self.objects)

    def write(self, store: Store) -> None:
        """Store the manifest (one object per line, so it reads well and diffs well)."""
        head = {k: v for k, v in asdict(self).items() if k != "objects"}
        lines = [json.dumps(o, sort_keys=True) for o in self.objects]
        body = json.dumps(head, indent=2)[:-2] + ',\n  "objects": [\n    '
        body += ",\n    ".join(lines) + "\n  ]\n}\n"
        store.put(self.key, body.encode())

    @classmethod
    def read(cls, store: Store, batch_id: str) -> Manifest:
        """Read batch ``batch_id``'s manifest.

        Raises
        ------
        ObjectNotFound
            If the batch has no manifest.
        StoreError
            If the manifest is not valid.
        """
        raw = store.get(f"{AREA}/{batch_id}/{MANIFEST}")
        try:
            data = json.loads(raw)
            return cls(**{k: data[k] for k in ("id", "created", *HEADER, "objects")})
        except (ValueError, KeyError, TypeError) as err:
            raise StoreError(f"{store.description}: batch {batch_id}: bad manifest: {err}") from err


def batches(store: Store) -> Iterator[Manifest]:
    """Yield every batch in the store's quarantine area, oldest first."""
    for obj in store.iter_objects(f"{AREA}/"):
        parts = obj.key.split("/")
        if len(parts) == 3 and parts[2] == MANIFEST:
            yield Manifest.read(store, parts[1])


def find(stores: Sequence[Store], batch_id: str) -> tuple[Store, Manifest]:
    """Return the store holding batch ``batch_id`` and its manifest.

    Raises
    ------
    ConfigError
        If no store of the configuration holds that batch.
    """
    for store in stores:
        try:
            return store, Manifest.read(store, batch_id)
        except ObjectNotFound:
            continue
    raise ConfigError(f"no quarantine batch {batch_id!r} in the stores of the configuration")


@dataclass
class Outcome:
    """What a restore or a purge did to one batch; :meth:`to_dict` is its report entry."""

    id: str
    restored: int = 0
    kept: list[str] = field(default_factory=list)
    purged: int = 0
    bytes_purged: int = 0
    restored_at_purge: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every object ended where it should."""
        return not self.kept and not self.errors

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON report's object for this batch."""
        return asdict(self)


def _present(store: Store, manifest: Manifest) -> dict[str, int]:
    """Return ``{original key: size}`` of the objects still in the batch."""
    prefix = f"{AREA}/{manifest.id}/"
    return {
        obj.key[len(prefix) :]: obj.size
        for obj in store.iter_objects(prefix)
        if obj.key != manifest.key
    }


def _same_bytes(store: Store, key: str, other: str) -> bool:
    try:
        return store.stat(key).size == store.stat(other).size and store.get(key) == store.get(other)
    except ObjectNotFound:
        return False


def _put_back(store: Store, manifest: Manifest, keys: list[str], outcome: Outcome) -> int:
    """Move ``keys`` back from quarantine; return how many are back (or were there already)."""
    failures = store.move_many([(quarantine_key(manifest.id, k), k) for k in keys])
    back = len(keys) - len(failures)
    for failure in failures:
        key = failure.key[len(quarantine_key(manifest.id, "")) :]
        if _same_bytes(store, key, failure.key):
            outcome.errors.extend(
                f"cannot drop {f.key}: {f.reason}" for f in store.delete_many([failure.key])
            )
            back += 1
        else:
            outcome.kept.append(key)
    return back


def _finish(store: Store, manifest: Manifest, outcome: Outcome) -> None:
    """Remove the manifest once the batch holds no object any more."""
    if not _present(store, manifest):
        failures = store.delete_many([manifest.key])
        outcome.errors.extend(f"cannot delete {f.key}: {f.reason}" for f in failures)
        log.info("batch %s is empty; its manifest is removed", manifest.id)


def restore(store: Store, manifest: Manifest, *, progress: bool | None = None) -> Outcome:
    """Move every object of the batch back to its original key, never replacing one.

    Returns
    -------
    Outcome
        ``restored`` (including objects already back with identical bytes) and
        ``kept``: original keys taken by different bytes, whose objects stay in
        quarantine.
    """
    outcome = Outcome(manifest.id)
    present = _present(store, manifest)
    with Progress(f"restoring {manifest.id}", total=len(present), enabled=progress) as bar:
        for part in chunks(sorted(present), CHUNK_SIZE):
            outcome.restored += _put_back(store, manifest, list(part), outcome)
            bar.update(len(part))
    _finish(store, manifest, outcome)
    log.info(
        "batch %s: restored %d objects, %d kept in quarantine",
        manifest.id, outcome.restored, len(outcome.kept),
    )  # fmt: skip
    return outcome


def purge(
    store: Store,
    manifest: Manifest,
    recheck: Recheck,
    *,
    dry_run: bool = False,
    progress: bool | None = None,
) -> Outcome:
    """Delete the batch's objects that nothing references now; restore the others.

    ``recheck(keys)`` returns the original keys whose objects are referenced right
    now. An object whose original key was uploaded again meanwhile is dropped from
    quarantine (it counts as restored at purge).
    """
    outcome = Outcome(manifest.id)
    present = _present(store, manifest)
    with Progress(f"purging {manifest.id}", total=len(present), enabled=progress) as bar:
        for part in chunks(sorted(present), CHUNK_SIZE):
            live = recheck(list(part))
            again = [key for key in part if key in live]
            doomed = [key for key in part if key not in live]
            bar.update(len(part))
            if dry_run:
                outcome.purged += len(doomed)
                outcome.bytes_purged += sum(present[k] for k in doomed)
                outcome.restored_at_purge += len(again)
                continue
            outcome.restored_at_purge += _put_back(store, manifest, again, outcome)
            failures = store.delete_many([quarantine_key(manifest.id, k) for k in doomed])
            failed = {f.key for f in failures}
            outcome.errors.extend(f"cannot delete {f.key}: {f.reason}" for f in failures)
            gone = [k for k in doomed if quarantine_key(manifest.id, k) not in failed]
            outcome.purged += len(gone)
            outcome.bytes_purged += sum(present[k] for k in gone)
    if not dry_run:
        _finish(store, manifest, outcome)
    log.info(
        "batch %s: purged %d objects, %d restored because they are referenced again",
        manifest.id, outcome.purged, outcome.restored_at_purge,
    )  # fmt: skip
    return outcome
