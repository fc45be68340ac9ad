"""Two processes declaring one new link: a refused foreign key is tried again, others are not."""

from __future__ import annotations

from typing import Any

import pymysql
import pytest

from djbridge.errors import DatabaseError
from djbridge.link import declare


class RacingDb:
    """Refuses the first ``refusals`` statements as MariaDB does while a parent is created."""

    def __init__(self, refusals: int, code: int = declare.CANNOT_CREATE) -> None:
        self.refusals, self.code, self.ran = refusals, code, 0

    def execute(self, sql: str, params: Any = None) -> int:
        self.ran += 1
        if self.ran <= self.refusals:
            cause = pymysql.err.OperationalError(self.code, "Can't create table (errno: 150)")
            raise DatabaseError("local: Can't create table") from cause
        return 0


def test_a_foreign_key_refused_during_a_concurrent_declaration_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(declare.time, "sleep", lambda _: None)
    db = RacingDb(refusals=2)
    declare.create_table(db, "CREATE TABLE IF NOT EXISTS t (a int)")  # type: ignore[arg-type]
    assert db.ran == 3


def test_other_errors_and_a_lasting_refusal_are_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(declare.time, "sleep", lambda _: None)
    with pytest.raises(DatabaseError):
        declare.create_table(RacingDb(refusals=1, code=1064), "CREATE TABLE x")  # type: ignore[arg-type]
    lasting = RacingDb(refusals=99)
    with pytest.raises(DatabaseError):
        declare.create_table(lasting, "CREATE TABLE x")  # type: ignore[arg-type]
    assert lasting.ran == 5
