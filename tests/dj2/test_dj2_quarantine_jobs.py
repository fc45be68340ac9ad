"""2.x runs with --quarantine, restore and purge (cases 1 and 2 recovered), and with --jobs.

Every test runs on PostgreSQL 15 and on MySQL 9.7.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from djbridge.cleaner.cli import main
from tests.dj2.world import BACKENDS, Lab2

pytestmark = BACKENDS
BOTH = pytest.mark.parametrize("lab2", ["file", "s3"], indirect=True)


def lost_ids(lab2: Lab2) -> set[str]:
    return {failure["key"]["rec_id"] for failure in lab2.lost()}


def command(lab2: Lab2, *args: str) -> tuple[int, list[dict[str, Any]]]:
    report = lab2.tmp / "command.json"
    report.unlink(missing_ok=True)
    config = str(lab2.config())
    status = main([*args, "--config-file", config, "--no-progress", "--report", str(report)])
    return status, json.loads(report.read_text()) if report.exists() else []


def contents(lab2: Lab2) -> dict[str, bytes]:
    store = lab2.store()
    return {key: store.get(key) for key in lab2.stored() if not key.startswith(".dj-quarantine/")}


@BOTH
def test_case1_open_transaction_is_recovered_by_quarantine_and_purge(lab2: Lab2) -> None:
    lab2.declare()
    lab2.insert([lab2.rec(1)])
    writer = lab2.connect()
    lab2.begin(writer)
    lab2.insert([lab2.rec(2)], conn=writer)  # objects uploaded, the row not committed
    status, [report] = lab2.clean("--min-age", "0", "--quarantine")
    assert status == 0 and report["quarantined"] == 5 and report["deleted"] == 0
    assert report["quarantine_id"]
    lab2.commit(writer)
    assert lost_ids(lab2) == {"2"}  # live now, its objects in quarantine
    status, [outcome] = command(lab2, "purge", "--older-than", "0")
    assert status == 0 and outcome["restored_at_purge"] == 5 and outcome["purged"] == 0
    assert lost_ids(lab2) == set()
    assert not any(key.startswith(".dj-quarantine/") for key in lab2.stored())


@BOTH
def test_case2_old_orphan_revived_uncommitted_is_recovered_by_purge(lab2: Lab2) -> None:
    lab2.declare()
    lab2.insert([lab2.rec(1), lab2.rec(2)])
    lab2.delete("rec_id = 2")
    age = ["--min-age", "0"]
    if lab2.kind == "file":
        lab2.backdate()  # an old orphan: the default --min-age lets it go
        age = []
    writer = lab2.connect()
    lab2.begin(writer)
    lab2.insert([lab2.rec(2, columns="bah")], conn=writer)  # same content: uploads skipped
    status, [report] = lab2.clean(*age, "--quarantine")
    assert status == 0 and report["quarantined"] >= 3
    lab2.commit(writer)
    assert lost_ids(lab2) == {"2"}
    status, [outcome] = command(lab2, "purge", "--older-than", "0")
    assert status == 0 and outcome["restored_at_purge"] == 3
    assert outcome["purged"] == report["quarantined"] - 3  # the orphans nobody revived
    assert lost_ids(lab2) == set()


@BOTH
def test_quarantine_then_restore_is_byte_identical(lab2: Lab2) -> None:
    lab2.declare()
    lab2.insert([lab2.rec(1), lab2.rec(2, folder=True)])
    lab2.delete("rec_id = 2")
    before = contents(lab2)
    status, [report] = lab2.clean("--min-age", "0", "--quarantine")
    assert status == 0 and report["quarantined"] == 3 + 4
    assert report["areas"]["schema"]["scanned"] == 2 + 4
    assert lab2.lost() == []
    status, [outcome] = command(lab2, "restore", report["quarantine_id"])
    assert status == 0 and outcome["restored"] == 7
    assert contents(lab2) == before
    assert lab2.stored() == set(before)  # the batch and its manifest are gone


@BOTH
def test_jobs_give_the_same_counts_and_a_second_clean_leaves_quarantine_alone(
    lab2: Lab2,
) -> None:
    lab2.declare()
    lab2.insert([lab2.rec(n) for n in range(1, 41)])
    lab2.delete("rec_id > 20")
    reports = []
    for jobs in ("1", "3", "8"):
        status, [report] = lab2.clean("--min-age", "0", "--dry-run", "--jobs", jobs)
        assert status == 0, report["errors"]
        reports.append(report)
    counts = [
        {k: r[k] for k in ("scanned", "referenced", "orphaned", "to_delete", "areas")}
        for r in reports
    ]
    assert counts[0] == counts[1] == counts[2]
    assert [r["jobs"] for r in reports] == [1, 3, 8]
    status, [report] = lab2.clean("--min-age", "0", "--jobs", "4", "--quarantine")
    assert status == 0 and report["quarantined"] == counts[0]["to_delete"] == 20 * 5
    status, [again] = lab2.clean("--min-age", "0", "--jobs", "4")
    assert status == 0 and again["scanned"] == report["scanned"] - report["quarantined"]
    assert again["deleted"] == 0
    assert lab2.lost() == []
