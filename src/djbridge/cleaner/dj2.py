"""One cleaning run on a DataJoint 2.x store: two areas, one ordered merge each.

DataJoint 2.x keeps a schema's objects in two *areas* of a store, relative to its
location (:func:`areas`; the naming rules live in :mod:`djbridge.layout`):

* **hash-addressed** (``<blob@>``, ``<attach@>``, ``<hash@>``):
  ``{hash_prefix}/{schema}/[folds/]{hash}``, the hash being 26 characters of
  lowercase base32 (``[a-z2-7]``), the folds its own leading characters;
* **schema-addressed** (``<object@>``, ``<npy@>``):
  ``{schema_prefix}/{schema}/{table}/{key=value}/.../{field}_{token}[.ext]``; a
  folder object is a directory of files plus a ``.manifest.json`` sidecar.

``<filepath@>`` files lie elsewhere and are never listed. A stored file is
*covered* by a referenced path ``p`` when it is ``p``, lies under ``p/``, or is
``p.manifest.json``. An object may be deleted only when all of these hold:

1. it lies in one of the areas and has the shape DataJoint writes there: in the
   hash area ``[folds/]{hash}``, in the schema area
   ``{table}/{attr=value}/.../{field}_{token}[.ext]`` (with at least one key
   folder), a folder object's file or its manifest. Anything else is *foreign*
   and kept: DataJoint never writes it, whoever did may still need it;
2. no codec column of any schema covers it, neither in the reference scan
   (:mod:`djbridge.cleaner.catalogue`) nor in the fresh re-check right before its
   delete batch, which also finds columns declared in the meantime;
3. it is older than the minimum age;
4. both areas were listed and scanned in full, every codec column was readable,
   the store settings put objects in the areas (no ``partition_pattern``, no
   empty prefix), and where rows reference an area, some of their objects are in it.

Both areas are listed *before* the references are read: an object that appears
after the listing is not a candidate, and a row committed after the listing is
seen by the scan. Listings are spooled to disk in byte order, in parallel key
ranges with ``--jobs`` (:mod:`djbridge.cleaner.arealist`), the catalogue returns
paths in that order, and the two streams are merged (:class:`Coverage`), so memory
does not grow with the store or the rows. The deletions, each batch re-checked,
or moved into quarantine, are :mod:`djbridge.cleaner.areadelete`'s.

    from djbridge.cleaner.catalogue import Dj2Target
    from djbridge.cleaner.dj2 import clean_dj2
    report = clean_dj2(Dj2Target(run, store, catalogue), CleanOptions(dry_run=True))
    report.areas["hash"]["orphaned"]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any

from djbridge.cleaner.areadelete import delete_candidates, open_quarantine
from djbridge.cleaner.arealist import AreaListing, Bounds, hash_ranges, run_listings, temporary
from djbridge.cleaner.catalogue import CodecColumn, Dj2Target, readable_columns
from djbridge.cleaner.lanes import Hook, Tally
from djbridge.cleaner.scan import RunReport, choose_jobs, report_fields
from djbridge.cleaner.settings import CleaningRun, CleanOptions
from djbridge.errors import DjBridgeError, StoreError, UnsafeToDelete
from djbridge.layout import dj2_covers, is_dj2_hash_name, is_dj2_schema_name

log = logging.getLogger(__name__)

AREA_COUNTS = ("scanned", "referenced", "orphaned", "deleted", "bytes_deleted")


@dataclass(frozen=True)
class Area:
    """One area of a schema in a store: ``"hash"`` or ``"schema"``, and its key prefix."""

    name: str
    prefix: str


def areas(run: CleaningRun) -> tuple[Area, Area]:
    """Return the run's hash and schema areas, or refuse settings that put objects elsewhere.

    Raises
    ------
    UnsafeToDelete
        If the store has a ``partition_pattern`` (objects lie outside the schema's
        folder), a prefix is empty (the schema area would be the store root, where
        filepath files live), or one area lies inside the other.
    """
    where = f"cleaning_runs[{run.index}]"
    if run.partition_pattern:
        raise UnsafeToDelete(
            f"refusing to clean: {where}.partition_pattern is set, so DataJoint writes "
            "schema-addressed objects outside {schema_prefix}/{schema}/; nothing was deleted"
        )
    prefixes = {}
    for key in ("hash_prefix", "schema_prefix"):
        value = str(getattr(run, key)).strip("/")
        if not value:
            raise UnsafeToDelete(
                f"refusing to clean: {where}.{key} is empty, so the area would be the store "
                "root, shared with filepath and other files; nothing was deleted"
            )
        prefixes[key] = value
    hash_area = Area("hash", f"{prefixes['hash_prefix']}/{run.schema}/")
    schema_area = Area("schema", f"{prefixes['schema_prefix']}/{run.schema}/")
    if hash_area.prefix.startswith(schema_area.prefix) or schema_area.prefix.startswith(
        hash_area.prefix
    ):
        raise UnsafeToDelete(
            f"refusing to clean: {where}: hash_prefix and schema_prefix overlap; "
            "nothing was deleted"
        )
    return hash_area, schema_area


@dataclass(frozen=True)
class Dj2Report(RunReport):
    """A 2.x run's report: the usual counts, summed, plus ``areas`` (per-area counts)."""

    areas: dict[str, dict[str, int]] = field(default_factory=dict)


def clean_dj2(target: Dj2Target, options: CleanOptions, hook: Hook | None = None) -> Dj2Report:
    """Run one 2.x cleaning run and return its report; errors end up in the report.

    Parameters
    ----------
    target
        The run with its store and catalogue, as the preflight opened them.
    options
        Dry run, minimum age, cap and progress bars.
    hook
        Called as ``hook(event, run)`` at ``"scan"`` (both areas listed, before the
        reference scan), ``"listed"`` (after the scan and the safety checks, before
        any deletion) and ``"batch"`` (before each delete batch's re-check).

    Returns
    -------
    Dj2Report
        Counts summed over both areas, and per area in ``areas``.
    """
    run = target.run
    tally = Tally()
    per_area: dict[str, Tally] = {"hash": Tally(), "schema": Tally()}
    started = time.monotonic()
    try:
        _clean(target, options, hook or (lambda event, run: None), tally, per_area)
    except DjBridgeError as err:
        tally.errors.append(str(err))
        log.error("%s: %s", run.label, err)
    except OSError as err:  # the spool files, e.g. a full temporary directory
        tally.errors.append(f"local I/O error: {err}")
        log.error("%s: local I/O error: %s", run.label, err)
    for area in per_area.values():
        for name, count in area.counts.items():
            tally.add(name, count)
    counts = {
        name: {key: area.counts.get(key, 0) for key in AREA_COUNTS}
        for name, area in per_area.items()
    }
    return Dj2Report(areas=counts, **report_fields(run, options, tally, started))


def _clean(
    target: Dj2Target,
    options: CleanOptions,
    hook: Hook,
    tally: Tally,
    per_area: dict[str, Tally],
) -> None:
    run = target.run
    hash_area, schema_area = areas(run)
    jobs = choose_jobs(run, target.store, options)
    tally.ranges = len(hash_ranges("", jobs))
    with ExitStack() as stack:
        store = target.store
        listings = [
            AreaListing(
                store, "hash", hash_area.prefix, hash_ranges(hash_area.prefix, jobs), stack
            ),
            AreaListing(store, "schema", schema_area.prefix, [Bounds()], stack),
        ]
        run_listings(listings, jobs, options.progress, run.label)  # all before any reference
        hook("scan", run)
        columns = readable_columns(target.catalogue, run)
        candidates = {}
        for listing in listings:
            spool = candidates[listing.name] = temporary(stack, "candidates")
            _merge(target, columns, listing, options, spool, per_area[listing.name])
        _refuse_if_unsure(target, (hash_area, schema_area), options, per_area)
        hook("listed", run)
        if options.dry_run:
            return
        total = sum(area.counts.get("to_delete", 0) for area in per_area.values())
        manifest = open_quarantine(target, candidates) if options.quarantine and total else None
        tally.errors += delete_candidates(
            target, candidates, per_area, options, hook, jobs=jobs, manifest=manifest
        )
        if manifest is not None and manifest.objects:
            tally.quarantine_id = manifest.id


class Coverage:
    """Walk an ordered stream of referenced paths alongside ordered keys.

    :meth:`covered` is called with keys in ascending order and says whether a
    referenced path covers the key. The paths that can cover a key sort at or
    before it and are prefixes of it, and all keys a path is a prefix of sort in
    one block after it, so a stack of open paths, each a prefix of the next, is
    all the state needed. :attr:`tracked` and :attr:`missing` count the distinct
    paths and those that covered nothing.
    """

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = iter(paths)
        self.pending = next(self.paths, None)
        self.open: list[list[Any]] = []  # [path, covered anything]
        self.tracked = 0
        self.missing = 0
        self.last: str | None = None

    def _close(self) -> None:
        _, found = self.open.pop()
        self.tracked += 1
        self.missing += 0 if found else 1

    def covered(self, key: str) -> bool:
        """Return whether a referenced path covers ``key`` (keys must ascend)."""
        if self.last is not None and key <= self.last:
            raise StoreError(f"listing is not in byte order at {key!r}")
        self.last = key
        while self.pending is not None and self.pending <= key:
            while self.open and not self.pending.startswith(self.open[-1][0]):
                self._close()
            self.open.append([self.pending, False])
            self.pending = next(self.paths, None)
        while self.open and not key.startswith(self.open[-1][0]):
            self._close()
        hit = False
        for entry in self.open:
            if dj2_covers(entry[0], key):
                entry[1] = hit = True
        return hit

    def finish(self) -> None:
        """Count the paths still open or never reached."""
        while self.open:
            self._close()
        while self.pending is not None:
            self.tracked += 1
            self.missing += 1
            self.pending = next(self.paths, None)


def _managed(area: str, rest: str, run: CleaningRun) -> bool:
    """Return whether a key below an area's prefix has the shape DataJoint writes there."""
    if area == "hash":
        return is_dj2_hash_name(rest, run.subfolding)
    return is_dj2_schema_name(rest)


def _merge(
    target: Dj2Target,
    columns: list[CodecColumn],
    listing: AreaListing,
    options: CleanOptions,
    spool: IO[str],
    tally: Tally,
) -> None:
    """Merge an area's ordered listing with its ordered references; spool the candidates."""
    run = target.run
    coverage = Coverage(target.catalogue.paths(columns, listing.prefix))
    counts = dict.fromkeys(("referenced", "orphaned", "kept_young", "kept_foreign"), 0)
    counts.update(to_delete=0, bytes_to_delete=0)
    cutoff = time.time() - options.min_age
    for obj in listing:
        if coverage.covered(obj.key):
            counts["referenced"] += 1
        elif not _managed(listing.name, obj.key[len(listing.prefix) :], run):
            counts["kept_foreign"] += 1
        else:
            counts["orphaned"] += 1
            if obj.mtime > cutoff:
                counts["kept_young"] += 1
            else:
                spool.write(f"{obj.size}\t{obj.key}\n")
                counts["to_delete"] += 1
                counts["bytes_to_delete"] += obj.size
    coverage.finish()
    counts.update(tracked=coverage.tracked, missing=coverage.missing)
    tally.add("scanned", listing.count)
    tally.add("kept_foreign", listing.odd)
    for name, count in counts.items():
        tally.add(name, count)
    log.info(
        "%s: %s area %s: %d objects, %d referenced, %d orphaned (%d to delete), "
        "%d too young, %d foreign; %d of %d referenced paths missing",
        *(run.label, listing.name, listing.prefix, listing.count, counts["referenced"]),
        *(counts["orphaned"], counts["to_delete"], counts["kept_young"]),
        *(counts["kept_foreign"] + listing.odd, counts["missing"], counts["tracked"]),
    )


def _refuse_if_unsure(
    target: Dj2Target,
    chosen: Iterable[Area],
    options: CleanOptions,
    per_area: dict[str, Tally],
) -> None:
    """Refuse when an area's references point nowhere, or when the cap is exceeded."""
    for area in chosen:
        counts = per_area[area.name].counts
        tracked, missing = counts.get("tracked", 0), counts.get("missing", 0)
        if tracked and missing == tracked:
            raise UnsafeToDelete(
                f"refusing to delete: rows reference {tracked} objects in the {area.name} area "
                f"but none of them is in {target.store.description}/{area.prefix}; check the "
                "bucket, location, prefixes and subfolding. Nothing was deleted"
            )
    to_delete = sum(tally.counts.get("to_delete", 0) for tally in per_area.values())
    if options.max_delete is not None and to_delete > options.max_delete:
        raise UnsafeToDelete(
            f"refusing to delete: the run would delete {to_delete} objects, "
            f"more than --max-delete {options.max_delete}; nothing was deleted"
        )
