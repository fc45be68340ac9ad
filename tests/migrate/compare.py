"""Read a migrated lab on both sides and compare it by the rules of issue 19.

* :func:`fetch_source` reads every source table with DataJoint 0.14 in this
  interpreter; :func:`fetch_destination` asks DataJoint 2.3.5 (the driver's ``dump``)
  for the same schemas. Both give ``{schema role: {table name: table}}``, a table
  being ``{"tier", "primary_key", "attributes", "parents", "indexes", "rows"}`` with
  values in the tagged JSON of :mod:`tests.dj2.tagged`; attachments and filepaths
  are ``(name, bytes)``.
* :func:`assert_same` compares every row by primary key, each value by its kind:
  numbers by value (a ``float`` column at single precision), text character for
  character, arrays by dtype, shape and bytes, other blob values by equality,
  datetimes as the same instant, files by name and bytes. A value whose kind differs
  between the sides (a ``time`` read back as seconds, a ``uuid`` as text) must belong
  to a column the plan names as converted, and is compared through that conversion.
* :func:`assert_structure` checks the tables as 2.x knows them: tier, primary key,
  attributes, nullability, comments, defaults, foreign keys, indexes and lineage.

    source, dest = fetch_source(world), fetch_destination(world)
    assert_same(source, dest, conversions(plan_report))
"""

from __future__ import annotations

import datetime
import decimal
import json
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from tests.dj2.tagged import encode, file_value, unb64
from tests.migrate.world import JSON_COLUMNS, MigrationWorld

Tables = dict[str, dict[str, dict[str, Any]]]
"""``{schema role: {table name: {"tier", "primary_key", "attributes", ..., "rows"}}}``."""

TIERS = (("__", "computed"), ("_", "imported"), ("#", "lookup"))


def tier_of(table_name: str) -> str:
    """Return the tier a DataJoint table name says (the same rule in 0.14 and 2.x)."""
    if "__" in table_name.lstrip("_#"):
        return "part"
    return next((tier for prefix, tier in TIERS if table_name.startswith(prefix)), "manual")


# ---- the source, read by DataJoint 0.14 ---------------------------------------------------
def _source_value(attr: Any, value: Any, world: MigrationWorld) -> Any:
    if value is None:
        return None
    if attr.is_attachment:
        path = Path(value)
        return file_value(path.name, path.read_bytes())
    if attr.is_filepath:
        path = Path(value)
        return file_value(path.relative_to(world.stage).as_posix(), path.read_bytes())
    if attr.name in JSON_COLUMNS and not attr.json and isinstance(value, str):
        return encode(json.loads(value))
    return encode(value)


def _source_table(world: MigrationWorld, dj: Any, table: Any, download: Path) -> dict[str, Any]:
    heading = table.heading
    rows = []
    keys = sorted(table.fetch("KEY"), key=lambda k: json.dumps(encode(k)))
    for n, key in enumerate(keys):
        folder = download / table.table_name.strip("#_") / str(n)
        folder.mkdir(parents=True, exist_ok=True)
        row = (table & key).fetch1(download_path=str(folder))
        rows.append({k: _source_value(heading.attributes[k], v, world) for k, v in row.items()})
    attributes = [
        {
            "name": a.name,
            "type": a.type,
            "in_key": a.in_key,
            "nullable": a.nullable,
            "default": None if a.default is None else str(a.default),
            "comment": a.comment,
            "autoincrement": a.autoincrement,
            "store": a.store,
        }  # fmt: skip
        for a in heading.attributes.values()
    ]
    return {
        "table": table.table_name,
        "tier": tier_of(table.table_name),
        "comment": (heading.table_status or {}).get("comment"),
        "primary_key": list(heading.primary_key),
        "attributes": attributes,
        "parents": [[n, dict(p["attr_map"])] for n, p in table.parents(foreign_key_info=True)],
        "indexes": [
            {"columns": list(cols), "unique": bool(info["unique"])}
            for cols, info in (heading.indexes or {}).items()
        ],
        "rows": rows,
    }


def fetch_source(world: MigrationWorld, roles: tuple[str, ...] = ("main", "latin")) -> Tables:
    """Read every table of the source schemas with DataJoint 0.14 (writing nothing there)."""
    from tests.conftest import dj_connection

    out: Tables = {}
    download = world.tmp / f"download14-{len(list(world.tmp.glob('download14-*')))}"
    with world.dj014() as dj:
        conn = dj_connection(world.source)
        for role in roles:
            name = world.schemas[role]
            schema = dj.Schema(name, connection=conn, create_schema=False, create_tables=False)
            tables = [t for t in schema.list_tables() if not t.startswith("~")]
            out[role] = {
                t: _source_table(world, dj, dj.FreeTable(conn, f"`{name}`.`{t}`"), download)
                for t in tables
            }
    return out


# ---- the destination, read by DataJoint 2.3.5 ----------------------------------------------
def fetch_destination(world: MigrationWorld, roles: tuple[str, ...] = ("main", "latin")) -> Tables:
    """Read every destination table with plain DataJoint 2.x (the driver's ``dump``)."""
    conn = world.connect2()
    out: Tables = {}
    for role in roles:
        download = world.tmp / f"download2-{role}-{len(list(world.tmp.glob('download2-*')))}"
        dump = world.dj2.call(
            "dump", conn=conn, schema=world.dest_names[role], download_path=str(download)
        )
        out[role] = {t["table"]: t for t in dump["tables"]}
        out[role]["~lineage"] = {"rows": dump["lineage"]}
    return out


def join(world: MigrationWorld, left: tuple[str, str], right: tuple[str, str]) -> dict[str, int]:
    """Count a 2.x join and semijoin of two destination tables, each ``(role, table)``."""
    sides = {
        "left": [world.dest_names[left[0]], left[1]],
        "right": [world.dest_names[right[0]], right[1]],
    }
    answer: dict[str, int] = world.dj2.call("join", conn=world.connect2(), **sides)
    return answer


# ---- values -----------------------------------------------------------------------------
def comparable(tagged: Any) -> Any:
    """Turn a tagged value into a hashable Python value that compares by the issue's rules."""
    if not isinstance(tagged, dict):
        return tagged
    [(tag, inner)] = tagged.items()
    simple: dict[str, Any] = {
        "$decimal": decimal.Decimal,
        "$bytes": unb64,
        "$datetime": datetime.datetime.fromisoformat,
        "$date": datetime.date.fromisoformat,
        "$time": datetime.time.fromisoformat,
        "$timedelta": lambda s: datetime.timedelta(seconds=s),
        "$uuid": uuid.UUID,
    }
    if tag in simple:
        return simple[tag](inner)
    if tag == "$array":
        return ("array", inner[0], tuple(inner[1]), unb64(inner[2]))
    if tag == "$objects":
        return ("objects", inner[0], tuple(inner[1]), tuple(comparable(v) for v in inner[2]))
    if tag == "$scalar":
        return ("scalar", inner[0], unb64(inner[1]))
    if tag == "$file":
        return ("file", inner[0], unb64(inner[1]))
    if tag == "$dict":
        return ("dict", frozenset((comparable(k), comparable(v)) for k, v in inner))
    if tag in ("$list", "$tuple"):
        return (tag[1:], tuple(comparable(v) for v in inner))
    if tag == "$set":
        return ("set", frozenset(comparable(v) for v in inner))
    raise ValueError(f"unknown tag {tag}")


NUMBER = (int, float, decimal.Decimal)


def kind(value: Any) -> str:
    """Return the kind of a comparable value: what a conversion may change."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, NUMBER):
        return "number"
    if isinstance(value, tuple):
        return str(value[0])
    return type(value).__name__


def same_value(source: Any, dest: Any, source_type: str) -> bool:
    """Return whether two comparable values are equal by the issue's rules."""
    if source is None or dest is None:
        return source is None and dest is None
    if isinstance(source, NUMBER) and isinstance(dest, NUMBER) and not isinstance(dest, bool):
        return _same_number(source, dest, source_type)
    if isinstance(source, datetime.timedelta):
        return _same_duration(source, dest)
    if isinstance(source, datetime.datetime) and isinstance(dest, datetime.datetime):
        return _instant(source) == _instant(dest)
    if isinstance(source, uuid.UUID):
        return isinstance(dest, uuid.UUID | str) and str(source) == str(dest)
    return bool(kind(source) == kind(dest) and source == dest)


def _same_number(source: Any, dest: Any, source_type: str) -> bool:
    """A ``float`` column at single precision, a ``double`` exactly, the rest exactly too.

    An integer or decimal that came back as a binary float fails: above 2**53 a float
    cannot hold every integer, so such a column has lost its exactness.
    """
    if source_type.startswith("float"):
        return bool(np.float32(source) == np.float32(float(dest)))
    if isinstance(source, float):
        return isinstance(dest, float) and dest == source
    if isinstance(dest, float):
        return False
    return decimal.Decimal(source) == decimal.Decimal(dest)


def _instant(value: datetime.datetime) -> datetime.datetime:
    """A naive datetime is UTC (both servers run in UTC); an aware one is converted."""
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


def _same_duration(source: datetime.timedelta, dest: Any) -> bool:
    if isinstance(dest, datetime.timedelta):
        return source == dest
    if isinstance(dest, NUMBER) and not isinstance(dest, bool):
        return decimal.Decimal(str(source.total_seconds())) == decimal.Decimal(str(dest))
    if isinstance(dest, datetime.time):
        seconds = dest.hour * 3600 + dest.minute * 60 + dest.second + dest.microsecond / 1e6
        return datetime.timedelta(0) <= source < datetime.timedelta(days=1) and (
            source.total_seconds() == seconds
        )
    return False


# ---- the comparison ----------------------------------------------------------------------
def conversions(plan: dict[str, Any] | None) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Return the plan's conversions by ``(source schema, table, column)``."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for schema in (plan or {}).get("schemas", []):
        for entry in schema["tables"]:
            for conv in entry.get("conversions") or []:
                out[(schema["source"], entry["table"], conv["column"])] = conv
    return out


def _key(row: dict[str, Any], primary_key: list[str]) -> str:
    return json.dumps([row[k] for k in primary_key], sort_keys=True)


def compare(
    world: MigrationWorld,
    source: Tables,
    dest: Tables,
    converted: dict[tuple[str, str, str], dict[str, Any]],
) -> list[str]:
    """Return every difference between the two sides, one line each (empty when equal)."""
    problems: list[str] = []
    for role, tables in source.items():
        schema = world.schemas[role]
        if set(tables) != set(dest.get(role, {})) - {"~lineage"}:
            problems.append(f"{role}: tables {sorted(tables)} != {sorted(dest.get(role, {}))}")
        for name, table in tables.items():
            other = dest.get(role, {}).get(name)
            if other is None:
                continue
            types = {a["name"]: a["type"] for a in table["attributes"]}
            pk = table["primary_key"]
            theirs = {_key(r, pk): r for r in other["rows"]}
            ours = {_key(r, pk): r for r in table["rows"]}
            for key in sorted(set(ours) ^ set(theirs)):
                side = "missing at the destination" if key in ours else "extra at the destination"
                problems.append(f"{role}.{name} {key}: {side}")
            for key in sorted(set(ours) & set(theirs)):
                if "$error" in theirs[key]:
                    problems.append(f"{role}.{name} {key}: 2.x cannot read it: {theirs[key]}")
                    continue
                for column, value in ours[key].items():
                    if column not in theirs[key]:
                        problems.append(f"{role}.{name} {key}: column {column} missing")
                        continue
                    a, b = comparable(value), comparable(theirs[key][column])
                    where = f"{role}.{name}.{column} {key}"
                    changed = a is not None and b is not None and kind(a) != kind(b)
                    if changed and (schema, name, column) not in converted:
                        problems.append(f"{where}: {kind(a)} became {kind(b)} silently")
                    if not same_value(a, b, types[column]):
                        problems.append(f"{where}: {_show(value)} != {_show(theirs[key][column])}")
    return problems


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) < 160 else text[:160] + "..."


def assert_same(
    world: MigrationWorld,
    source: Tables,
    dest: Tables,
    converted: dict[tuple[str, str, str], dict[str, Any]],
) -> None:
    """Fail with every difference listed unless each migrated value arrived exactly."""
    problems = compare(world, source, dest, converted)
    assert not problems, "\n".join(problems[:60])


# ---- the structure -------------------------------------------------------------------------
def _unquote(name: str) -> tuple[str, str]:
    schema, _, table = re.sub(r'[`"]', "", name).partition(".")
    return schema, table


def structure_problems(world: MigrationWorld, source: Tables, dest: Tables) -> list[str]:
    """Return every way the 2.x tables differ from what the 0.14 tables declare."""
    problems: list[str] = []
    dest_of = {name: world.dest_names[role] for role, name in world.schemas.items()}
    for role, tables in source.items():
        for name, table in tables.items():
            other = dest.get(role, {}).get(name)
            if other is None:
                problems.append(f"{role}.{name}: not at the destination")
                continue
            where = f"{role}.{name}"
            for field in ("tier", "primary_key"):
                if table[field] != other[field]:
                    problems.append(f"{where}: {field} {table[field]} != {other[field]}")
            if (table["comment"] or "") != (other["comment"] or ""):
                problems.append(f"{where}: comment {table['comment']!r} != {other['comment']!r}")
            inherited: set[str] = set()
            if world.backend == "postgresql":  # 2.x declares no comment on a foreign key there
                inherited = {a for n, m in table["parents"] if "~" not in n for a in m}
            problems += _attribute_problems(where, table, other, inherited)
            ours = {(dest_of.get(s, s), t, json.dumps(m, sort_keys=True))
                    for s, t, m in ((*_unquote(n), m) for n, m in table["parents"])
                    if not t.startswith("~")}  # fmt: skip
            theirs = {(*_unquote(n), json.dumps(m, sort_keys=True)) for n, m in other["parents"]}
            if ours != theirs:
                problems.append(f"{where}: foreign keys {sorted(ours)} != {sorted(theirs)}")
            indexes = {(tuple(i["columns"]), i["unique"]) for i in other["indexes"]}
            tracked = {a["name"] for a in table["attributes"] if a.get("store")}
            for index in table["indexes"]:
                if set(index["columns"]) <= tracked:
                    continue  # MySQL's index for the foreign key into ~external_<store>
                if (tuple(index["columns"]), index["unique"]) not in indexes:
                    problems.append(f"{where}: index {index} missing ({sorted(indexes)})")
    return problems


def _attribute_problems(
    where: str, table: dict[str, Any], other: dict[str, Any], inherited: set[str]
) -> list[str]:
    problems: list[str] = []
    theirs = {a["name"]: a for a in other["attributes"]}
    if [a["name"] for a in table["attributes"]] != list(theirs):
        names = [a["name"] for a in table["attributes"]]
        problems.append(f"{where}: attributes {names} != {list(theirs)}")
    for attr in table["attributes"]:
        them = theirs.get(attr["name"])
        if them is None:
            continue
        if bool(attr["nullable"]) != bool(them["nullable"]):
            problems.append(f"{where}.{attr['name']}: nullable {attr['nullable']}")
        if attr["name"] not in inherited and (attr["comment"] or "") != (them["comment"] or ""):
            problems.append(f"{where}.{attr['name']}: comment {attr['comment']!r} != {them!r}")
        if (attr["default"] is None) != (them["default"] is None):
            problems.append(f"{where}.{attr['name']}: default {attr['default']!r} != {them!r}")
    return problems


def assert_structure(world: MigrationWorld, source: Tables, dest: Tables) -> None:
    """Fail unless every table arrived with its tier, keys, attributes and indexes."""
    problems = structure_problems(world, source, dest)
    assert not problems, "\n".join(problems[:60])
