"""dj-cleaner while inserts and a long ``populate`` transaction are in flight.

Two safeguards keep live objects whose ``~external`` row the cleaner cannot see yet:

* the **grace period** (``--min-age``, default ``1d``): an object uploaded inside a
  ``populate`` transaction has no visible ``~external`` row until the commit (InnoDB
  MVCC), so to every other session it looks exactly like an orphan. Only its age tells
  it apart;
* the **re-check**: right before each delete batch, a fresh autocommit ``SELECT`` of the
  batch's hashes keeps every object whose row was committed after the listing.

What ``--min-age 0`` cannot protect, stated here because the tests pin it: with the
grace period off, an object whose row is still uncommitted (a ``make()`` that has
uploaded and not yet returned, or any insert between its upload and its commit) is
indistinguishable from an orphan, to the listing and to the re-check alike, and it
is deleted; the row then commits and points at a missing object.
``test_min_age_0_cannot_see_an_uncommitted_upload`` shows that loss happening. The
re-check also cannot close the gap between its own ``SELECT`` and the delete that
follows: identical content re-inserted in those milliseconds (on file stores, where
DataJoint does not rewrite an existing file, in any window) can still lose its object.
That is why the default is ``1d``: keep ``--min-age`` longer than the longest
``populate``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datajoint.errors import MissingExternalFile

from djbridge.cleaner import CleanOptions, clean, load_config
from djbridge.stores import Store, open_store
from tests.reliability.cleaner_helpers import (
    BlockingPopulate,
    Inserter,
    Lab,
    PausingStore,
    all_keys,
    backdate,
    build_lab,
    cli,
    insert_recs,
    orphan,
    visible_hashes,
)


@pytest.fixture(params=["file", "s3"])
def lab(request: pytest.FixtureRequest) -> Lab:
    return build_lab(request)


def _start_in_flight_populate(lab: Lab, tmp_path: Path) -> tuple[BlockingPopulate, set[str]]:
    """Leave two old orphans, then open a populate that uploads two objects and blocks."""
    insert_recs(lab, range(3))
    orphans = orphan(lab, [0])
    if lab.backend == "file":
        backdate(lab, all_keys(lab))
    before = all_keys(lab)
    blocker = BlockingPopulate(lab, tmp_path)
    blocker.start({"rec": 1})
    blocker.wait_inside()
    in_flight = all_keys(lab) - before
    assert len(in_flight) == 2  # the blob and the attachment are in the store...
    hashes = {key.rsplit("/", 1)[1].split(".")[0] for key in in_flight}
    assert not hashes & visible_hashes(lab)  # ...and their ~external rows are not visible
    assert len(orphans) == 2
    return blocker, in_flight


def test_grace_period_keeps_an_object_uploaded_inside_an_open_populate(
    lab: Lab, tmp_path: Path
) -> None:
    """The in-flight objects are kept as too young; after the commit the row fetches intact.

    File store: the default ``--min-age 1d`` (old orphans backdated, so they go).
    S3 (moto cannot backdate): ``--min-age 15m`` keeps the in-flight objects and the
    fresh orphans alike.
    """
    blocker, in_flight = _start_in_flight_populate(lab, tmp_path)
    try:
        flags = [] if lab.backend == "file" else ["--min-age", "15m"]
        status, [report] = cli(lab.config(tmp_path / "c.toml"), *flags)
    finally:
        blocker.release()
    blocker.join()

    assert status == 0, report
    assert report["orphaned"] == 4  # two real orphans and the two in-flight objects
    if lab.backend == "file":
        assert report["kept_young"] == 2 and report["deleted"] == 2
    else:
        assert report["kept_young"] == 4 and report["deleted"] == 0
    assert in_flight <= all_keys(lab)
    assert set(lab.tracked()) <= all_keys(lab)
    blocker.check_fetch({"rec": 1}, tmp_path / "dl")


@pytest.mark.parametrize("lab", ["file"], indirect=True)  # one store kind shows the limit
def test_min_age_0_cannot_see_an_uncommitted_upload(lab: Lab, tmp_path: Path) -> None:
    """The documented limit: with the grace period off, the in-flight objects are deleted.

    This is the same scenario as the grace-period test with ``--min-age 0``; it shows
    that the scenario is real (the objects are listed and look orphaned), and what the
    default ``1d`` is for. The row commits anyway and then points at missing objects.
    """
    blocker, in_flight = _start_in_flight_populate(lab, tmp_path)
    try:
        status, [report] = cli(lab.config(tmp_path / "c.toml"), "--min-age", "0")
    finally:
        blocker.release()
    blocker.join()

    assert status == 0 and report["deleted"] == 4 and report["kept_rechecked"] == 0
    assert not in_flight & all_keys(lab)
    with pytest.raises(MissingExternalFile):
        blocker.check_fetch({"rec": 1}, tmp_path / "dl")


def test_recheck_keeps_an_orphan_a_concurrent_insert_re_references(
    lab: Lab, tmp_path: Path
) -> None:
    """With ``--min-age 0``, the re-check keeps an orphan that a concurrent insert re-references.

    Identical content is inserted (and committed) by another thread after the listing and
    before the delete batch; its objects are kept, and the new row fetches intact.
    """
    insert_recs(lab, range(3))
    orphans = orphan(lab, [0, 2])
    note0 = lab.stage.parent / "notes" / "note0.txt"  # rec 0's attachment, same name and bytes
    same_as_rec0 = {"rec": 100, "trace": np.arange(10, dtype="float64"), "notes": str(note0)}
    config = load_config(lab.config(tmp_path / "c.toml"))
    inserted: list[BaseException | None] = []

    def insert() -> None:
        try:
            lab.tables["Rec"].insert1(same_as_rec0)
            inserted.append(None)
        except BaseException as err:  # reported below
            inserted.append(err)

    def hook(event: str, run: Any) -> None:
        if event == "listed":  # the listing is done: rec 0's objects are candidates
            thread = threading.Thread(target=insert)
            thread.start()
            thread.join(60)

    [report] = clean(config, CleanOptions(min_age=0, progress=False), hook=hook)

    assert inserted == [None]
    assert report.ok, report.errors
    assert report.to_delete == 4 and report.kept_rechecked == 2 and report.deleted == 2
    rec0 = set(orphans) & set(lab.tracked())  # tracked again, through rec 100
    assert len(rec0) == 2 and any(k.endswith(".note0.txt") for k in rec0)
    assert rec0 <= all_keys(lab)
    assert not (set(orphans) - rec0) & all_keys(lab)
    row = (lab.tables["Rec"] & {"rec": 100}).fetch1(download_path=str(tmp_path / "dl"))
    assert np.array_equal(row["trace"], same_as_rec0["trace"])
    assert Path(row["notes"]).read_bytes() == note0.read_bytes()
    assert set(lab.tracked()) <= all_keys(lab)


@pytest.mark.parametrize("lab", ["file", pytest.param("s3", marks=pytest.mark.slow)], indirect=True)
def test_inserts_during_a_cleaning_run_keep_every_live_object(lab: Lab, tmp_path: Path) -> None:
    """Inserts during a cleaning run: every new row fetches intact, only old orphans go.

    Rows keep arriving before the hash load, between it and the listing, during the
    listing and before the delete batch.

    File store: default ``--min-age 1d`` with the orphans backdated. S3: the orphans
    are left to age 3 s and ``--min-age 3s``, so that new uploads are young.
    """
    insert_recs(lab, range(4))
    orphans = orphan(lab, [0, 1])
    if lab.backend == "file":
        backdate(lab, all_keys(lab))
        min_age = 86400.0
    else:
        time.sleep(3.5)
        min_age = 3.0
    inserter = Inserter(lab)
    phases: list[str] = []

    def pause(phase: str) -> None:
        phases.append(phase)
        inserter.wait_for_more(2)

    def opener(run: Any) -> Store:
        inner = open_store(run.storage, bucket=run.bucket, location=run.location)
        return PausingStore(inner, pause)  # type: ignore[return-value]

    def hook(event: str, run: Any) -> None:
        if event in ("start", "batch"):
            pause(event)

    config = load_config(lab.config(tmp_path / "c.toml"))
    try:
        [report] = clean(
            config, CleanOptions(min_age=min_age, progress=False), hook=hook, open_run=opener
        )
    finally:
        live = inserter.stop()

    assert phases == ["start", "before listing", "during listing", "batch"]
    assert report.ok, report.errors
    assert report.deleted == len(orphans) == 4
    assert not set(orphans) & all_keys(lab)
    tracked = lab.tracked()
    assert set(tracked) <= all_keys(lab)
    rows = lab.tables["Rec"].fetch(as_dict=True, download_path=str(tmp_path / "dl"))
    assert sorted(r["rec"] for r in rows) == [2, 3, *live]
    notes = lab.stage.parent / "notes"
    for row in rows:
        salt = "live" if row["rec"] in live else ""
        expected = np.arange(10 + row["rec"], dtype="float64") + len(salt)
        assert np.array_equal(row["trace"], expected)
        assert (
            Path(row["notes"]).read_bytes() == (notes / f"note{row['rec']}{salt}.txt").read_bytes()
        )
