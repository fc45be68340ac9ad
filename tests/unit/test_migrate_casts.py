"""The cast table row by row, and the 2.x definitions built from it (pure, no server)."""

from __future__ import annotations

import datetime
import uuid

import pytest

from djbridge.migrate.casts import cast_for, default_literal
from djbridge.migrate.catalog import Column, ForeignKey, Index, Table, dependency_order
from djbridge.migrate.definitions import definition, plan_table

STORES = {"raw": "raw2"}


def col(sql: str, dj: str = "", **kw: object) -> Column:
    fields: dict[str, object] = {"name": "c", "sql_type": sql, "nullable": False, "default": None,
                                 "comment": "", "dj_type": dj, "in_key": False}  # fmt: skip
    fields.update(kw)
    return Column(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sql", "dj", "mysql", "postgresql", "converted_on_pg"),
    [
        ("tinyint(3) unsigned", "", "int16", "int16", True),
        ("tinyint(4)", "", "int8", "int8", False),
        ("smallint(5) unsigned", "", "int32", "int32", True),
        ("smallint", "", "int16", "int16", False),
        ("mediumint", "", "int32", "int32", True),
        ("int(10) unsigned", "", "int64", "int64", True),
        ("int(11)", "", "int32", "int32", False),
        ("int", "", "int32", "int32", False),
        ("bigint(20) unsigned", "", "bigint unsigned", "decimal(20,0)", True),
        ("bigint", "", "int64", "int64", False),
        ("float", "", "float32", "float32", False),
        ("double", "", "float64", "float64", False),
        ("decimal(8,3)", "", "decimal(8,3)", "decimal(8,3)", False),
        ("decimal(5,2) unsigned", "", "decimal(5,2)", "decimal(5,2)", True),
        ("char(3)", "", "char(3)", "varchar(3)", True),
        ("varchar(64)", "", "varchar(64)", "varchar(64)", False),
        (
            "enum('M','F','unknown')",
            "",
            "enum('M','F','unknown')",
            "enum('M','F','unknown')",
            False,
        ),
        ("date", "", "date", "date", False),
        ("datetime(3)", "", "datetime(3)", "datetime(3)", False),
        ("timestamp", "", "datetime", "datetime", True),
        ("time", "", "time", "float64", True),
        ("binary(16)", "uuid", "uuid", "varchar(36)", True),
        ("json", "", "json", "json", False),
        ("longtext", "json", "json", "json", True),
        ("longblob", "", "<blob>", "<blob>", False),
        ("binary(16)", "blob@raw", "<blob@raw2>", "<blob@raw2>", False),
        ("binary(16)", "attach@raw", "<attach@raw2>", "<attach@raw2>", False),
        ("binary(16)", "filepath@raw", "<filepath@raw2>", "<filepath@raw2>", False),
    ],
)
def test_each_cast(sql: str, dj: str, mysql: str, postgresql: str, converted_on_pg: bool) -> None:
    assert cast_for(col(sql, dj), "mysql", STORES).declared == mysql
    on_pg = cast_for(col(sql, dj), "postgresql", STORES)
    assert on_pg.declared == postgresql
    assert (on_pg.conversion is not None) == converted_on_pg
    if on_pg.conversion:
        assert on_pg.conversion["why"] and on_pg.conversion["column"] == "c"


def test_in_table_attach_blocks_on_postgresql_only() -> None:
    assert cast_for(col("longblob", "attach"), "mysql", STORES).declared == "<attach>"
    blocked = cast_for(col("longblob", "attach"), "postgresql", STORES)
    assert blocked.declared is None and blocked.blocker and "attach" in blocked.blocker


def test_an_unknown_type_is_a_blocker_that_names_it() -> None:
    cast = cast_for(col("geometry"), "mysql", STORES)
    assert cast.blocker == "no cast for the SQL type 'geometry'"


def test_a_time_keeps_its_days_on_postgresql() -> None:
    cast = cast_for(col("time"), "postgresql", STORES)
    assert cast.write(datetime.timedelta(days=1, seconds=3784, microseconds=5)) == 90184.000005
    assert cast.write(-datetime.timedelta(seconds=1)) == -1
    assert datetime.timedelta(seconds=cast.write(datetime.timedelta(hours=838))) == (
        datetime.timedelta(hours=838)
    )


def test_a_uuid_round_trips_through_its_text() -> None:
    cast = cast_for(col("binary(16)", "uuid"), "postgresql", STORES)
    value = uuid.uuid4()
    assert cast.write(value.bytes) == str(value)
    assert cast.read_back(str(value)) == value.bytes


@pytest.mark.parametrize(
    ("sql", "default", "nullable", "literal"),
    [
        ("int(11)", "5", False, "5"),
        ("varchar(8)", "'it''s'", False, '"it\'s"'),
        ("varchar(8)", "plain", False, '"plain"'),
        ("float", "NULL", True, "null"),
        ("float", None, True, "null"),
        ("timestamp", "current_timestamp()", False, "CURRENT_TIMESTAMP"),
        ("timestamp", "CURRENT_TIMESTAMP", False, "CURRENT_TIMESTAMP"),
        ("int(11)", None, False, None),
    ],
)
def test_defaults(sql: str, default: str | None, nullable: bool, literal: str | None) -> None:
    cast = cast_for(col(sql, default=default, nullable=nullable), "postgresql", STORES)
    assert default_literal(cast) == literal


def test_a_time_default_is_written_in_seconds_on_postgresql() -> None:
    cast = cast_for(col("time", default="'25:00:01'"), "postgresql", STORES)
    assert default_literal(cast) == "90001.0"


def _tables() -> list[Table]:
    subject = Table("lab", "#subject", "", [col("int(11)", name="subject_id", in_key=True)])
    session = Table(
        "lab", "session", "a session",
        [col("int(11)", name="subject_id", in_key=True), col("smallint", name="sess", in_key=True),
         col("int(11)", name="reviewer", nullable=True),
         col("varchar(8)", name="tag", comment="t")],
        [ForeignKey(("subject_id",), "lab", "#subject", ("subject_id",)),
         ForeignKey(("reviewer",), "lab", "#subject", ("subject_id",))],
        [Index(("tag",), True)],
    )  # fmt: skip
    part = Table(
        "lab", "session__chan", "",
        [col("int(11)", name="subject_id", in_key=True), col("smallint", name="sess", in_key=True),
         col("tinyint", name="ch", in_key=True)],
        [ForeignKey(("subject_id", "sess"), "lab", "session", ("subject_id", "sess"))],
    )  # fmt: skip
    return [part, session, subject]


def test_parents_come_first_and_masters_before_parts() -> None:
    order = [t.name for t in dependency_order(_tables())]
    assert order.index("#subject") < order.index("session") < order.index("session__chan")


def test_a_definition_names_parents_renames_and_indexes() -> None:
    part, session, _ = _tables()
    plan = plan_table(session, "lab2", "postgresql", STORES, {"lab": "lab2"}, {("lab", "#subject")})
    assert plan.blockers == []
    assert plan.definition == (
        "# a session\n-> T_lab___subject\nsess : int16\n---\n"
        '-> [nullable] T_lab___subject.proj(reviewer="subject_id")\n'
        "tag : varchar(8)  # t\nunique index(tag)\n"
    )
    casts = plan_table(part, "lab2", "mysql", STORES, {"lab": "lab2"}, set()).casts
    assert definition(part, casts, {"lab": "lab2"}, "mysql") == "-> master\nch : int8\n---\n"


def test_a_parent_in_an_unlisted_schema_blocks_the_table_and_is_named() -> None:
    _, session, _ = _tables()
    plan = plan_table(session, "lab2", "mysql", STORES, {}, set())
    assert plan.blockers[0] == {
        "column": None,
        "why": "its parent lab.#subject is in a schema the file does not list; "
        "add that schema to [[schemas]]",
    }
