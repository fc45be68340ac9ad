"""One cleaning run: list a schema folder, classify every object, delete the orphans.

A run compares two things: the objects under ``<location>/<schema>/`` in a store,
and the hashes that the schema's tracking tables list. An object may be deleted
only when all of these hold:

1. its name has exactly DataJoint's managed shape for the run's subfolding:
   ``ab/cd/<32 hex>`` (a blob) or ``ab/cd/<32 hex>.<name>`` (an attachment), with
   the fold directories equal to the hash's prefixes. Anything else (filepath
   files, user files, ``.saving``/``.copying`` leftovers, 0.11 names) is *foreign*
   and kept;
2. no tracking row lists its hash, neither when the run loads the hashes nor in
   the fresh re-check right before its delete batch;
3. it is older than the minimum age;
4. the listing finished, and the configuration looks right: if the tracking table
   lists objects but none of them is in the folder, the bucket, location or
   subfolding is wrong and the run refuses.

Memory does not grow with the store or the tables: the listing and the tracking
rows are two streams sorted by hash, merged side by side
(:mod:`djbridge.cleaner.ranges`), and candidates are spooled to temporary files.
With ``jobs`` above 1 the folder is split into key ranges that list, merge and
delete in parallel (:mod:`djbridge.cleaner.lanes`); every range finishes its
listing before any range deletes, and a failed range means the run deletes
nothing. The counts are the same for every number of ranges.

    from djbridge.cleaner.scan import Target, clean_target
    report = clean_target(Target(run, store, tracking), CleanOptions(dry_run=True))
    report.orphaned, report.to_delete
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import Any

from djbridge.cleaner.lanes import (
    Batches,
    Hook,
    Lane,
    SharedBar,
    Tally,
    Target,
    delete_batches,
    delete_unused_rows,
    list_lane,
    open_lanes,
    run_lanes,
)
from djbridge.cleaner.quarantine import Manifest
from djbridge.cleaner.ranges import split
from djbridge.cleaner.settings import CleaningRun, CleanOptions, RunIdentity
from djbridge.errors import DjBridgeError, StoreError, UnsafeToDelete
from djbridge.progress import Progress
from djbridge.stores import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunReport(RunIdentity):
    """The outcome of one run; :meth:`to_dict` gives the JSON report's object.

    The first sixteen fields are the contract's report keys. ``scanned`` equals
    ``referenced + orphaned + kept_foreign``; ``orphaned`` splits into
    ``kept_young``, ``kept_rechecked``, ``to_delete`` minus failures, and so on.
    ``to_delete`` is what a dry run would delete (before the re-check).
    """

    dry_run: bool
    scanned: int = 0
    referenced: int = 0
    orphaned: int = 0
    deleted: int = 0
    bytes_deleted: int = 0
    kept_young: int = 0
    kept_foreign: int = 0
    missing: int = 0
    errors: tuple[str, ...] = ()
    status: str = "ok"
    tracked: int = 0
    to_delete: int = 0
    bytes_to_delete: int = 0
    kept_rechecked: int = 0
    delete_failed: int = 0
    unused_rows: int = 0
    unused_rows_deleted: int = 0
    min_age_seconds: float = 0.0
    seconds: float = 0.0
    jobs: int = 1
    quarantined: int = 0
    bytes_quarantined: int = 0
    quarantine_id: str = ""

    @property
    def ok(self) -> bool:
        """Whether the run finished without any error."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        out = asdict(self)
        out["errors"] = list(self.errors)
        return out


def clean_target(target: Target, options: CleanOptions, hook: Hook | None = None) -> RunReport:
    """Run one cleaning run and return its report; errors end up in the report.

    Parameters
    ----------
    target
        The run with its store and tracking tables, as the preflight opened them.
    options
        Dry run, minimum age, cap and the other flags.
    hook
        Called as ``hook(event, run)`` at ``"listed"`` (after the listing and the
        safety checks, before any deletion) and ``"batch"`` (before each delete
        batch's re-check). Tests use it to act between the phases.

    Returns
    -------
    RunReport
        Counts, bytes and errors. A run that refuses or fails has ``status``
        ``"failed"`` and at least one error.
    """
    run = target.run
    tally = Tally()
    started = time.monotonic()
    try:
        _clean(target, options, hook or (lambda event, run: None), tally)
    except DjBridgeError as err:
        tally.errors.append(str(err))
        log.error("%s: %s", run.label, err)
    except OSError as err:  # the spool file, e.g. a full temporary directory
        tally.errors.append(f"local I/O error: {err}")
        log.error("%s: local I/O error: %s", run.label, err)
    return RunReport(**report_fields(run, options, tally, started))


def report_fields(
    run: CleaningRun, options: CleanOptions, tally: Tally, started: float
) -> dict[str, Any]:
    """Return what every run's report holds: identity, status, timing, ranges and counts."""
    return {
        "dry_run": options.dry_run,
        "errors": tuple(tally.errors),
        "status": "failed" if tally.errors else "ok",
        "min_age_seconds": options.min_age,
        "seconds": round(time.monotonic() - started, 3),
        "jobs": tally.ranges,
        "quarantine_id": tally.quarantine_id,
        **run.identity(),
        **tally.counts,
    }


RANGES_BY_ROUND_TRIP: tuple[tuple[float, int], ...] = (
    (0.050, 1),  # a file store, or a near endpoint: one range, as few list pages as can be
    (0.100, 4),
    (float("inf"), 8),  # a distant endpoint: round trips dominate, overlap them
)
"""Key ranges a run lists and deletes in parallel without ``--jobs``, by the store's round
trip: each row is ``(at most this many seconds, ranges)``. More ranges overlap more round
trips, but each costs a connection per server and a list page that runs past its end
(which an endpoint such as moto answers by scanning the whole bucket), so they pay only
where the round trip is long: measured with ``python -m bench.cleaner``, ``--jobs 8``
lost 10-20 % to ``--jobs 1`` at 0-20 ms and won at 200 ms."""


def default_jobs(run: CleaningRun, round_trip: float | None = None) -> int:
    """Return the parallel key ranges a run uses without ``--jobs``.

    ``round_trip`` is the store's measured round trip in seconds
    (:meth:`~djbridge.stores.Store.round_trip`); without it, one range.
    """
    if round_trip is None:
        round_trip = 0.0  # unknown: what suits a file store and a near endpoint
    return next(ranges for bound, ranges in RANGES_BY_ROUND_TRIP if round_trip <= bound)


def choose_jobs(run: CleaningRun, store: Store, options: CleanOptions) -> int:
    """Return ``--jobs`` if given, else the default for the store's measured round trip."""
    if options.jobs:
        return options.jobs
    try:
        round_trip = store.round_trip()
    except StoreError as err:  # the listing will meet it too, and say so in its own words
        log.warning("%s: the store did not answer a probe: %s", run.label, err)
        return default_jobs(run)
    jobs = default_jobs(run, round_trip)
    log.info("%s: round trip %.1f ms: %d key ranges", run.label, 1000 * round_trip, jobs)
    return jobs


def _clean(target: Target, options: CleanOptions, hook: Hook, tally: Tally) -> None:
    run = target.run
    for tracking in target.trackers():
        tracking.check()
    if options.include_unused and not options.dry_run:
        target.tracking.check_can_delete()  # before any deletion, objects included
    ranges = split(run.schema, run.subfolding, choose_jobs(run, target.store, options))
    tally.ranges = len(ranges)
    with ExitStack() as stack:
        lanes = open_lanes(target, ranges, stack)
        with Progress(f"listing {run.label}", unit="obj", enabled=options.progress) as bar:
            shared = SharedBar(bar)
            failed = run_lanes(lambda lane: list_lane(target, lane, options, shared), lanes)
        for lane in lanes:
            tally.absorb(lane.tally)
            lane.tally = Tally()
        found = tally.counts.pop("found", 0)
        if failed:
            tally.errors.extend(f"{lane.label(run)}: {error}" for lane, error in failed)
            raise UnsafeToDelete(
                f"{len(failed)} of {len(lanes)} key ranges failed to list; nothing was deleted"
            )
        tally.add("missing", tally.counts.get("tracked", 0) - found)
        _log_listing(run, tally, len(lanes))
        _refuse_if_unsure(target, options, tally.counts.get("tracked", 0), found, tally)
        hook("listed", run)
        if options.dry_run:
            return
        _delete(target, lanes, options, hook, tally)


def _log_listing(run: CleaningRun, tally: Tally, ranges: int) -> None:
    counts = tally.counts
    log.info(
        "%s: listed %d objects in %d key ranges: %d referenced, %d orphaned (%d to delete), "
        "%d too young, %d foreign, %d tracked objects missing",
        *(run.label, counts.get("scanned", 0), ranges, counts.get("referenced", 0)),
        *(counts.get("orphaned", 0), counts.get("to_delete", 0)),
        *(counts.get("kept_young", 0), counts.get("kept_foreign", 0), counts.get("missing", 0)),
    )


def _delete(
    target: Target, lanes: list[Lane], options: CleanOptions, hook: Hook, tally: Tally
) -> None:
    """Delete the unused rows, then the candidates; every lane works, each batch re-checked."""
    run = target.run
    if options.include_unused:
        failed = run_lanes(lambda lane: delete_unused_rows(lane, options), lanes)
        tally.errors.extend(f"{lane.label(run)}: {error}" for lane, error in failed)
        deleted = sum(lane.tally.counts.get("unused_rows_deleted", 0) for lane in lanes)
        log.info("%s: deleted %d unused tracking rows", run.label, deleted)
        if failed:
            raise DjBridgeError("deleting unused tracking rows failed; no object was deleted")
    total = tally.counts.get("to_delete", 0)
    manifest = _open_quarantine(target, lanes) if options.quarantine and total else None
    batch_id = manifest.id if manifest else ""
    batches = Batches(lanes)
    with Progress(
        f"{'quarantining' if batch_id else 'deleting'} {run.label}",
        total=total,
        unit="obj",
        enabled=options.progress,
    ) as bar:
        shared = SharedBar(bar)
        failed = run_lanes(
            lambda lane: delete_batches(target, lane, batches, hook, shared, batch_id), lanes
        )
    for lane in lanes:
        tally.absorb(lane.tally)
    tally.errors.extend(f"{lane.label(run)}: {error}" for lane, error in failed)
    if manifest is not None:
        _close_quarantine(target, lanes, manifest, tally)


def _open_quarantine(target: Target, lanes: list[Lane]) -> Manifest:
    """Write the batch's manifest, listing every candidate, before the first move."""
    run = target.run
    manifest = Manifest.for_run(run)
    for lane in lanes:
        for line in lane.candidates:
            size, _, key = line.rstrip("\n").partition("\t")
            manifest.objects.append({"key": key, "size": int(size)})
        lane.candidates.seek(0)
    manifest.write(target.store)
    log.info("%s: quarantine batch %s opened", run.label, manifest.id)
    return manifest


def _close_quarantine(target: Target, lanes: list[Lane], manifest: Manifest, tally: Tally) -> None:
    """Rewrite the manifest with the objects that moved, or remove it if none did."""
    unmoved = {key for lane in lanes for key in lane.unmoved}
    manifest.objects[:] = [o for o in manifest.objects if o["key"] not in unmoved]
    if manifest.objects:
        manifest.write(target.store)
        tally.quarantine_id = manifest.id
    else:
        failures = target.store.delete_many([manifest.key])
        tally.errors.extend(f"cannot delete {f.key}: {f.reason}" for f in failures)


def _refuse_if_unsure(
    target: Target, options: CleanOptions, tracked: int, found: int, tally: Tally
) -> None:
    """Raise :class:`UnsafeToDelete` when the configuration looks wrong or the cap is hit."""
    run = target.run
    if tracked and not found:
        raise UnsafeToDelete(
            f"refusing to delete: {run.table} lists {tracked} objects but none of them is "
            f"in {target.store.description}/{run.schema}/ with subfolding "
            f"{list(run.subfolding)}; check the bucket, location and subfolding"
        )
    to_delete = tally.counts.get("to_delete", 0)
    if options.max_delete is not None and to_delete > options.max_delete:
        raise UnsafeToDelete(
            f"refusing to delete: the run would delete {to_delete} objects, "
            f"more than --max-delete {options.max_delete}; nothing was deleted"
        )
