"""Deleting a DataJoint 2.x run's candidates: batches, each re-checked, in parallel workers.

The candidates of both areas, spooled by the merge, are cut into batches of 1,000.
Each batch is re-checked right before it goes: the codec columns are read again
(a table declared since the scan counts, a revoked grant stops the run) and every
path that could cover a candidate is looked up (:func:`~djbridge.cleaner.catalogue.live_keys`).
What is still unreferenced is deleted with one bulk request (S3 ``DeleteObjects``),
or, with ``--quarantine``, moved to ``.dj-quarantine/<id>/<key>`` after the batch's
manifest has been written (:mod:`djbridge.cleaner.quarantine`).

With more than one job, workers take batches in turn, each on a database
connection of its own. A worker that fails stops the others after their current
batch, so a refusal is never followed by more deletions.

    manifest = open_quarantine(target, spools) if options.quarantine else None
    delete_candidates(target, spools, per_area, options, hook, jobs=8, manifest=manifest)
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO

from djbridge.cleaner.catalogue import Catalogue, Dj2Target, live_keys
from djbridge.cleaner.lanes import Hook, SharedBar, Tally
from djbridge.cleaner.quarantine import Manifest, quarantine_key
from djbridge.cleaner.settings import CleanOptions
from djbridge.errors import DjBridgeError
from djbridge.progress import Progress, human_bytes

log = logging.getLogger(__name__)

BATCH = 1000
Batch = list[tuple[int, str]]


def _lines(spools: dict[str, IO[str]]) -> Iterator[tuple[str, Batch]]:
    """Yield ``(area, batch)`` over every area's candidate spool, in area order."""
    for area, spool in spools.items():
        spool.seek(0)
        rows = (
            (int(size), key) for size, _, key in (ln.rstrip("\n").partition("\t") for ln in spool)
        )
        while batch := list(itertools.islice(rows, BATCH)):
            yield area, batch


def open_quarantine(target: Dj2Target, spools: dict[str, IO[str]]) -> Manifest:
    """Write a new quarantine batch's manifest, listing every candidate, before any move."""
    manifest = Manifest.for_run(target.run)
    for _, batch in _lines(spools):
        manifest.objects.extend({"key": key, "size": size} for size, key in batch)
    manifest.write(target.store)
    log.info("%s: quarantine batch %s opened", target.run.label, manifest.id)
    return manifest


class Worker:
    """One worker: its catalogue, its counters per area, and the keys it did not move."""

    def __init__(self, catalogue: Catalogue, own: bool) -> None:
        self.catalogue = catalogue
        self.own = own  # opened for this worker: closed when it is done
        self.per_area: dict[str, Tally] = {"hash": Tally(), "schema": Tally()}
        self.errors: list[str] = []
        self.unmoved: list[str] = []


def _one_batch(
    target: Dj2Target,
    worker: Worker,
    area: str,
    batch: Batch,
    number: int,
    manifest: Manifest | None,
) -> None:
    run, tally = target.run, worker.per_area[area]
    live = live_keys(worker.catalogue, run, [key for _, key in batch])
    doomed = [(size, key) for size, key in batch if key not in live]
    if manifest is not None:
        moves = [(key, quarantine_key(manifest.id, key)) for _, key in doomed]
        failures = target.store.move_many(moves)
    else:
        failures = target.store.delete_many([key for _, key in doomed])
    failed = {failure.key for failure in failures}
    verb, done = ("quarantine", "quarantined") if manifest else ("delete", "deleted")
    worker.errors.extend(f"cannot {verb} {f.key}: {f.reason}" for f in failures)
    gone = [(size, key) for size, key in doomed if key not in failed]
    if manifest is not None:
        moved = {key for _, key in gone}
        worker.unmoved.extend(key for _, key in batch if key not in moved)
    freed = sum(size for size, _ in gone)
    tally.add("kept_rechecked", len(batch) - len(doomed))
    tally.add("delete_failed", len(failed))
    tally.add(done, len(gone))
    tally.add(f"bytes_{done}", freed)
    log.info(
        "%s: %s area batch %d: %s %d objects (%s), %d kept by the re-check, %d failed",
        *(run.label, area, number, done, len(gone), human_bytes(freed)),
        *(len(batch) - len(doomed), len(failed)),
    )


def delete_candidates(
    target: Dj2Target,
    spools: dict[str, IO[str]],
    per_area: dict[str, Tally],
    options: CleanOptions,
    hook: Hook,
    *,
    jobs: int,
    manifest: Manifest | None = None,
) -> list[str]:
    """Delete (or quarantine) the spooled candidates; return the errors.

    Counters go to ``per_area``; with a ``manifest``, the keys that did not move
    are removed from it and it is rewritten (or removed, when nothing moved).
    """
    run = target.run
    total = sum(per_area[area].counts.get("to_delete", 0) for area in spools)
    batches = enumerate(_lines(spools), start=1)
    lock, stop = threading.Lock(), threading.Event()
    workers = [Worker(target.catalogue, own=False)]
    if target.open_catalogue is not None:
        workers += [Worker(target.open_catalogue(), own=True) for _ in range(max(1, jobs) - 1)]

    def work(worker: Worker, bar: SharedBar) -> None:
        try:
            while not stop.is_set():
                with lock:
                    number, (area, batch) = next(batches, (0, ("", [])))
                if not batch:
                    return
                hook("batch", run)
                _one_batch(target, worker, area, batch, number, manifest)
                bar.update(len(batch))
        except DjBridgeError as err:
            stop.set()
            worker.errors.append(str(err))
        finally:
            if worker.own:
                worker.catalogue.close()

    label = f"{'quarantining' if manifest else 'deleting'} {run.label}"
    with Progress(label, total=total, unit="obj", enabled=options.progress) as bar:
        shared = SharedBar(bar)
        with ThreadPoolExecutor(len(workers)) as pool:
            list(pool.map(lambda worker: work(worker, shared), workers))
    errors = []
    for worker in workers:
        errors += worker.errors
        for area, tally in worker.per_area.items():
            per_area[area].absorb(tally)
    if manifest is not None:
        unmoved = {key for worker in workers for key in worker.unmoved}
        manifest.objects[:] = [o for o in manifest.objects if o["key"] not in unmoved]
        if manifest.objects:
            manifest.write(target.store)
        else:
            failures = target.store.delete_many([manifest.key])
            errors += [f"cannot delete {f.key}: {f.reason}" for f in failures]
    return errors
