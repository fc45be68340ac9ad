"""What the link cannot carry is refused clearly, and leaves nothing half done.

A PostgreSQL ``datetime`` keeps microseconds; a MySQL ``datetime`` cannot: the pull
refuses before it writes anything. A source table that gained a column since the
local table was declared cannot be copied into it: the decorator refuses. Either way
the user gets a djbridge error that names the value or the column, the row is not
copied, and no entity is left mid-pull (``process = 'PULL'`` in the
outbound table, *Activated*), where it would block the source from deleting it
and fail again on every pull.
"""

from __future__ import annotations

import pytest

from tests.link2.conftest import SAME_BACKEND
from tests.link2.twolabs import TRY_PULL, TwoLabs


def mid_pull(labs: TwoLabs) -> list[int]:
    """Return the keys left mid-pull in the outbound table."""
    return sorted(k for k, (process, _, _) in labs.outbound().items() if process == "PULL")


@pytest.mark.parametrize("pair", ["postgresql-to-mysql"], indirect=True)
def test_a_datetime_with_fractions_for_mysql_is_refused_and_left_untouched(
    labs: TwoLabs,
) -> None:
    labs.ready(range(4))
    table = labs.source.name(labs.src_schema, "recording")
    labs.source.sql(
        f"UPDATE {table} SET started = started + interval '0.25 second' WHERE rec_id = 1"
    )

    run = labs.run(TRY_PULL)

    assert run.code == 0, run
    told = run.result.get("message") or " ".join(run.result.get("failed", []))
    assert "fractions" in told or "fractions" in run.stderr, run
    assert 1 not in run.result["ids"], run
    assert (run.result["stuck"], mid_pull(labs)) == ([], []), run.result


@pytest.mark.parametrize("pair", SAME_BACKEND, indirect=True)
def test_a_column_added_at_the_source_is_named_before_anything_is_written(
    labs: TwoLabs,
) -> None:
    labs.ready(range(2))
    assert labs.run(TRY_PULL).result["ids"] == [0, 1]
    table = labs.source.name(labs.src_schema, "recording")
    if labs.source.backend == "postgresql":
        labs.source.sql(
            f"ALTER TABLE {table} ADD COLUMN extra integer NULL",
            f"COMMENT ON COLUMN {table}.extra IS ':int32:added later'",
        )
    else:
        labs.source.sql(
            f"ALTER TABLE {table} ADD COLUMN extra int NULL COMMENT ':int32:added later'"
        )
    labs.more([2])

    before = labs.outbound()

    run = labs.run(TRY_PULL)

    # The decorator's check of the existing local table refuses, naming the column.
    assert run.code != 0, run
    assert "LinkError" in run.stderr and "no column extra" in run.stderr, run
    assert labs.local_ids() == [0, 1]
    assert labs.outbound() == before, "nothing was written on the source"
    assert mid_pull(labs) == []
