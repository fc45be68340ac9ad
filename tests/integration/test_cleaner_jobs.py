"""--jobs N splits each schema folder into key ranges; the outcome is that of a serial run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from djbridge.cleaner import CleanOptions, clean, load_config
from tests.integration.test_cleaner_rules import (
    Lab,
    age_flags,
    all_keys,
    cli,
    flaky,
    insert_doc,
    insert_recs,
    orphan,
    plant_foreign,
)

TIMING = ("seconds", "jobs")


def counts(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in TIMING}


def test_reports_are_the_same_for_every_number_of_jobs(lab: Lab, tmp_path: Path) -> None:
    insert_recs(lab, range(40))
    insert_doc(lab, 1, f"{lab.schema}/docs/protocol.md")
    orphans = orphan(lab, range(0, 40, 3))
    foreign = plant_foreign(lab)
    referenced = lab.tracked()
    flags = age_flags(lab, all_keys(lab))
    config = lab.config(tmp_path / "c.toml")

    dry = {jobs: cli(config, *flags, "--dry-run", "--jobs", str(jobs))[1][0] for jobs in (1, 3, 8)}
    status, [real] = cli(config, *flags, "--jobs", "8")

    assert dry[1]["to_delete"] == len(orphans) == 28
    assert counts(dry[3]) == counts(dry[8]) == counts(dry[1])
    assert (dry[1]["jobs"], dry[3]["jobs"], dry[8]["jobs"]) == (1, 3, 8)
    assert status == 0 and real["deleted"] == len(orphans) and real["jobs"] == 8
    serial = {k: v for k, v in counts(dry[1]).items() if k not in ("dry_run", "deleted")}
    assert {k: v for k, v in counts(real).items() if k in serial and k != "bytes_deleted"} == {
        k: v for k, v in serial.items() if k != "bytes_deleted"
    }
    remaining = all_keys(lab)
    assert not set(orphans) & remaining
    assert set(referenced) | set(foreign) <= remaining


def test_a_failed_range_means_nothing_is_deleted_and_names_the_range(lab: Lab) -> None:
    insert_recs(lab, range(30))
    orphans = orphan(lab, range(0, 30, 2))
    config = load_config(lab.config(Path(lab.stage.parent, "c.toml")))

    [report] = clean(
        config, CleanOptions(min_age=0, progress=False, jobs=4), open_run=flaky(list_after=25)
    )

    assert report.status == "failed" and report.deleted == 0
    assert "connection reset" in report.errors[0]
    assert " range " in report.errors[0] and "/4 (hashes " in report.errors[0]
    assert "nothing was deleted" in report.errors[-1]
    assert set(orphans) <= lab.objects()


def test_jobs_out_of_range_is_a_usage_error(lab: Lab, tmp_path: Path) -> None:
    status, reports = cli(lab.config(tmp_path / "c.toml"), "--jobs", "0")
    assert status == 2 and reports == []
