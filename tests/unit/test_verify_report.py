"""A VerifyReport printed in a notebook: its summary and what to do about each problem."""

from __future__ import annotations

import json

from djbridge.link.verify import VerifyReport

GONE = {"store": "raw", "key": "lab/ab/cd/abcd", "size": 10, "found": None}
CUT = {"store": "raw", "key": "lab/ef/01/ef01", "size": 10, "found": 3}


def test_print_shows_the_summary_and_what_to_do_about_each_problem() -> None:
    report = VerifyReport(
        checked=5,
        rows_differ=[{"rec_id": 1}],
        missing_local=[{"rec_id": 2}],
        objects_missing=[GONE],
        objects_wrong_size=[CUT],
        table="Recording",
    )

    text = str(report)

    assert text == report.summary()
    head, *advice = text.splitlines()
    assert head == (
        "5 rows checked, 1 differ, 1 missing locally, 1 objects missing, 1 wrong size, 0 repaired"
    )
    assert len(advice) == 3  # one line per kind of problem, each naming the way out
    assert "(Recording() & report.rows_differ).delete()" in advice[0]
    assert "Recording().source.pull()" in advice[0] and "Recording().source.pull()" in advice[1]
    assert "verify(repair=True)" in advice[2] and "dj-link verify --repair" in advice[2]


def test_a_clean_or_repaired_report_prints_one_line_and_names_no_table_in_json() -> None:
    repaired = VerifyReport(checked=3, objects_missing=[GONE], repaired=[dict(GONE, found=10)])
    assert repaired.ok
    assert str(repaired) == (
        "3 rows checked, 0 differ, 0 missing locally, 1 objects missing, 0 wrong size, 1 repaired"
    )
    assert str(VerifyReport(checked=0)).count("\n") == 0
    # The table's name only phrases the advice: reports of two tables compare and serialise alike.
    named = VerifyReport(checked=3, table="Recording")
    assert named == VerifyReport(checked=3)
    assert "table" not in json.loads(json.dumps(named.to_dict()))
    assert "Session()" in VerifyReport(rows_differ=[{"a": 1}], table="Session").summary()
    assert "Other()" in VerifyReport(rows_differ=[{"a": 1}], table="Session").summary("Other")
