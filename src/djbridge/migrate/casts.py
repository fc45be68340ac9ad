"""How each DataJoint 0.14 column becomes a DataJoint 2.x column: the type casts, as data.

Like pgloader's cast rules, every row of :data:`RULES` says, for one kind of source
column, what the destination declares on each backend, and why whenever that is not the
same type under another name. A plan prints these reasons; a test checks them row by row.

A rule's target is one of:

* a 2.x type (a core type such as ``int64``, a codec such as ``<blob@raw2>``, or a native
  SQL type that DataJoint passes through), with an optional *conversion*: a lossless
  change of representation, e.g. ``time`` as ``float64`` seconds on PostgreSQL, where a
  ``time`` cannot exceed 24 hours; the value is converted as it is written;
* a *blocker*: no column there gives every value back exactly, and the table is not
  migrated (the reason says what to do).

Nothing is changed silently: whatever a plan does not list arrives as it was.

    from djbridge.migrate.casts import cast_for
    cast = cast_for(column, "postgresql", store_map={"raw": "raw2"})
    cast.declared, cast.conversion, cast.blocker, cast.write(value)
"""

from __future__ import annotations

import datetime
import decimal
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from djbridge.migrate.catalog import Column

Writer = Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _seconds(value: Any) -> Any:
    """Return a MySQL ``time`` (a timedelta) as float seconds, exact to the microsecond."""
    if value is None or not isinstance(value, datetime.timedelta):
        return value
    return value.days * 86400 + value.seconds + value.microseconds / 1_000_000


def _uuid_text(value: Any) -> Any:
    return str(uuid.UUID(bytes=bytes(value))) if isinstance(value, bytes | bytearray) else value


def _uuid_bytes(value: Any) -> Any:
    return uuid.UUID(str(value)).bytes if isinstance(value, str | uuid.UUID) else value


READ_BACK: dict[Writer, Writer] = {_uuid_text: _uuid_bytes}
"""The inverse of each value converter that can stand in a primary key."""


@dataclass(frozen=True)
class Rule:
    """One row of the cast table: a source pattern and its target on each backend.

    A target is ``(type, why)``; ``why`` is empty when the 2.x type holds the same
    values under another name, and says what changes otherwise. A type of ``None``
    is a blocker whose reason is ``why``.
    """

    pattern: str  # a regular expression on "<dj_type>|<sql type>", e.g. "|int(10) unsigned"
    mysql: tuple[str | None, str]
    postgresql: tuple[str | None, str]
    write: Mapping[str, Writer] | None = None  # backend -> value converter


_MARIADB_JSON = "MariaDB keeps json as longtext, and DataJoint 0.14 returns its text; 2.x parses it"
_NO_UNSIGNED = "2.x has no unsigned core types; the next wider one holds every value"
RULES: tuple[Rule, ...] = (
    Rule(
        r"^uuid\|",
        ("uuid", ""),
        (
            "varchar(36)",
            "DataJoint 2.3.5 can neither insert nor "
            "read a uuid column on PostgreSQL; the value is kept as its 36-character text",
        ),
        {"postgresql": _uuid_text},
    ),
    Rule(r"^json\|longtext", ("json", _MARIADB_JSON), ("json", _MARIADB_JSON)),
    Rule(r"^(json)?\|json$", ("json", ""), ("json", "")),
    Rule(
        r"^attach\|",
        ("<attach>", ""),
        (
            None,
            "DataJoint 2.3.5 cannot fetch an in-table "
            "<attach> on PostgreSQL; make the column attach@store in 0.14 first, or migrate to "
            "MySQL",
        ),
    ),
    Rule(r"^(blob|attach|filepath)@", ("<{kind}@{store}>", ""), ("<{kind}@{store}>", "")),
    Rule(r"^\|tinyint(\(\d+\))? unsigned", ("int16", _NO_UNSIGNED), ("int16", _NO_UNSIGNED)),
    Rule(r"^\|tinyint", ("int8", ""), ("int8", "")),
    Rule(r"^\|smallint(\(\d+\))? unsigned", ("int32", _NO_UNSIGNED), ("int32", _NO_UNSIGNED)),
    Rule(r"^\|smallint", ("int16", ""), ("int16", "")),
    Rule(r"^\|mediumint(\(\d+\))? unsigned", ("int32", _NO_UNSIGNED), ("int32", _NO_UNSIGNED)),
    Rule(
        r"^\|mediumint",
        ("int32", "2.x has no 24-bit integer; int32 holds every value"),
        ("int32", "2.x has no 24-bit integer; int32 holds every value"),
    ),
    Rule(r"^\|int(\(\d+\))? unsigned", ("int64", _NO_UNSIGNED), ("int64", _NO_UNSIGNED)),
    Rule(r"^\|int(\(\d+\))?$", ("int32", ""), ("int32", "")),
    Rule(
        r"^\|bigint(\(\d+\))? unsigned",
        ("bigint unsigned", ""),
        (
            "decimal(20,0)",
            "PostgreSQL has no unsigned 64-bit integer; decimal(20,0) holds every value "
            "(DataJoint 2.x returns it as a Decimal)",
        ),
    ),
    Rule(r"^\|bigint", ("int64", ""), ("int64", "")),
    Rule(r"^\|float", ("float32", ""), ("float32", "")),
    Rule(r"^\|double", ("float64", ""), ("float64", "")),
    Rule(
        r"^\|decimal\((\d+),(\d+)\) unsigned",
        ("decimal({1},{2})", "the unsigned constraint is dropped; every value is kept"),
        ("decimal({1},{2})", "the unsigned constraint is dropped; every value is kept"),
    ),
    Rule(r"^\|decimal\((\d+),(\d+)\)", ("decimal({1},{2})", ""), ("decimal({1},{2})", "")),
    Rule(
        r"^\|char\((\d+)\)",
        ("char({1})", ""),
        (
            "varchar({1})",
            "PostgreSQL pads char(n) with spaces on read; varchar(n) gives the text back as stored",
        ),
    ),
    Rule(r"^\|varchar\((\d+)\)", ("varchar({1})", ""), ("varchar({1})", "")),
    Rule(r"^\|(enum\(.*\))$", ("{1}", ""), ("{1}", "")),
    Rule(r"^\|(tinytext|text|mediumtext|longtext)$", ("{1}", ""), ("text", "")),
    Rule(r"^\|date$", ("date", ""), ("date", "")),
    Rule(r"^\|datetime(\(\d\))?$", ("datetime{1}", ""), ("datetime{1}", "")),
    Rule(
        r"^\|timestamp(\(\d\))?$",
        ("datetime{1}", "2.x has no timestamp type; the values are read and written in UTC"),
        ("datetime{1}", "2.x has no timestamp type; the values are read and written in UTC"),
    ),
    Rule(
        r"^\|time(\(\d\))?$",
        ("time{1}", ""),
        (
            "float64",
            "a MySQL time spans -838 to +838 "
            "hours, a PostgreSQL time 0 to 24; stored as seconds (float64), exact to the "
            "microsecond, so no time loses its days",
        ),
        {"postgresql": _seconds},
    ),
    Rule(r"^\|year(\(\d\))?$", ("year", ""), ("int16", "PostgreSQL has no year type")),
    Rule(r"^\|(tiny|medium|long)?blob$", ("<blob>", ""), ("<blob>", "")),
)
"""The cast table, searched top to bottom; the first matching pattern wins."""


@dataclass(frozen=True)
class Cast:
    """What one source column becomes on one backend."""

    column: Column
    declared: str | None  # the 2.x type in the definition; None for a blocker
    why: str  # the conversion's or the blocker's reason ("" when nothing changes)
    write: Writer = _same

    def read_back(self, value: Any) -> Any:
        """Return a destination value as the source spells it (for keys)."""
        return READ_BACK.get(self.write, _same)(value)

    @property
    def blocker(self) -> str | None:
        """The reason the column cannot move, or None."""
        return self.why if self.declared is None else None

    @property
    def conversion(self) -> dict[str, str] | None:
        """``{"column", "from", "to", "why"}`` when the value changes type, else None."""
        if self.declared is None or not self.why:
            return None
        source = self.column.dj_type or self.column.sql_type
        return {"column": self.column.name, "from": source, "to": self.declared, "why": self.why}


def cast_for(column: Column, backend: str, store_map: Mapping[str, str]) -> Cast:
    """Return the cast of ``column`` for ``backend`` (``"mysql"`` or ``"postgresql"``).

    ``store_map`` maps each 0.14 store to the 2.x store that receives its objects.
    """
    subject = f"{column.dj_type}|{column.sql_type}"
    for rule in RULES:
        match = re.match(rule.pattern, subject, re.IGNORECASE)  # enum values keep their case
        if match is None:
            continue
        target, why = rule.mysql if backend == "mysql" else rule.postgresql
        if target is None:
            return Cast(column, None, why)
        groups = [match.group(0), *(g or "" for g in match.groups())]
        kind, store = column.external_kind, column.store
        declared = target.format(*groups, kind=kind, store=store_map.get(store or "", store))
        writer = (rule.write or {}).get(backend, _same)
        return Cast(column, declared, why, writer)
    return Cast(column, None, f"no cast for the SQL type {column.sql_type!r}")


def default_literal(cast: Cast) -> str | None:
    """Return the ``= ...`` part of a definition line for the column's default, or None."""
    column = cast.column
    default = column.default
    if default is None or default.upper() == "NULL":
        return "null" if column.nullable else None
    if default.lower().startswith("current_timestamp"):
        return "CURRENT_TIMESTAMP"
    text = default[1:-1].replace("''", "'") if default.startswith("'") else default
    value = cast.write(_parse_default(text, column))
    if isinstance(value, int | float | decimal.Decimal):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_default(text: str, column: Column) -> Any:
    sql = column.sql_type.lower()
    if sql.startswith("time"):
        sign = -1 if text.startswith("-") else 1
        hours, minutes, seconds = text.lstrip("-").split(":")
        return sign * datetime.timedelta(
            hours=int(hours), minutes=int(minutes), seconds=float(seconds)
        )
    if re.match(r"(tiny|small|medium|big)?int|decimal|float|double", sql):
        try:
            return int(text) if re.fullmatch(r"-?\d+", text) else decimal.Decimal(text)
        except decimal.InvalidOperation:
            return text
    return text
