"""The DataJoint 2.x definition of each migrated table, and its declaration by DataJoint 2.x.

A definition is built from the source table as 0.14 declared it (:mod:`.catalog`) and the
casts (:mod:`.casts`): the table comment, foreign keys as ``-> Parent`` lines where the
parent's columns stand (``-> Parent.proj(new="old")`` when the names differ, ``[nullable]``
below the line), every other attribute with its 2.x type, default and comment, then the
secondary and unique indexes. Declaring goes through DataJoint 2.x itself (dj-migrate runs
beside it), so every table gets exactly the DDL and the ``~lineage`` rows 2.x writes,
on PostgreSQL and on MySQL alike. A part table is declared inside its master's class.

    plans = plan_schema(tables, move, backend)           # TablePlan per table
    declare_missing(plans, instance, existing)           # what the destination lacks
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from djbridge.migrate.casts import Cast, cast_for, default_literal
from djbridge.migrate.catalog import Table

log = logging.getLogger(__name__)

TIER_CLASSES = {
    "lookup": "Lookup",
    "manual": "Manual",
    "imported": "Imported",
    "computed": "Computed",
    "part": "Part",
}


@dataclass
class TablePlan:
    """One table's move: its casts, its 2.x definition, and what stops it."""

    source: Table
    destination_schema: str
    casts: dict[str, Cast]
    definition: str = ""
    blockers: list[dict[str, Any]] = field(default_factory=list)
    conversions: list[dict[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The table's name in the database (the same on both sides)."""
        return self.source.name


def class_name(table_name: str) -> str:
    """Return the CamelCase class name DataJoint maps to ``table_name`` (its last part)."""
    bare = table_name.lstrip("_#").split("__")[-1]
    return "".join(word[:1].upper() + word[1:] for word in bare.split("_"))


def reference(schema: str, table: str) -> str:
    """Return the name a definition uses for another table: unique across schemas."""
    return "T_" + re.sub(r"\W", "_", f"{schema}__{table}")


def plan_table(
    table: Table,
    destination_schema: str,
    backend: str,
    store_map: Mapping[str, str],
    schema_map: Mapping[str, str],
    known_tables: set[tuple[str, str]],
) -> TablePlan:
    """Cast every column and write the 2.x definition; note conversions and blockers.

    ``schema_map`` maps each migrated source schema to its destination name;
    ``known_tables`` holds ``(schema, table)`` of every table that will exist there.
    """
    casts = {c.name: cast_for(c, backend, store_map) for c in table.columns}
    plan = TablePlan(table, destination_schema, casts)
    for cast in casts.values():
        if cast.blocker:
            plan.blockers.append({"column": cast.column.name, "why": cast.blocker})
        elif cast.conversion:
            plan.conversions.append(cast.conversion)
        if cast.column.store and cast.column.store not in store_map:
            plan.blockers.append(
                {
                    "column": cast.column.name,
                    "why": (f"store {cast.column.store!r} is not among [source_stores]"),
                }
            )
    for fk in table.foreign_keys:
        if fk.schema not in schema_map:
            plan.blockers.append(
                {
                    "column": None,
                    "why": (
                        f"its parent {fk.schema}.{fk.table} is in a schema the file does not list; "
                        "add that schema to [[schemas]]"
                    ),
                }
            )
        elif (fk.schema, fk.table) not in known_tables:
            plan.blockers.append(
                {"column": None, "why": f"its parent {fk.schema}.{fk.table} cannot be migrated"}
            )
    auto = [c for c in table.columns if c.auto_increment]
    if auto and backend == "postgresql":
        plan.conversions.append(
            {
                "column": auto[0].name,
                "from": "auto_increment",
                "to": "no counter",
                "why": "DataJoint 2.x cannot declare a counter on PostgreSQL; "
                "every value is kept, and new rows must give their key",
            }
        )
    plan.definition = definition(table, casts, schema_map, backend)
    return plan


def definition(
    table: Table, casts: Mapping[str, Cast], schema_map: Mapping[str, str], backend: str
) -> str:
    """Return the 2.x definition of ``table`` (foreign keys by :func:`reference` names)."""
    lines = [f"# {table.comment}"] if table.comment else []
    by_first = {fk.columns[0]: fk for fk in table.foreign_keys}
    covered: set[str] = set()
    divider_done = False
    for column in table.columns:
        if not column.in_key and not divider_done:
            lines.append("---")
            divider_done = True
        if column.name in covered:
            continue
        fk = by_first.get(column.name)
        if fk is not None:
            covered.update(fk.columns)
            lines.append(_fk_line(table, fk, column.nullable and not column.in_key))
            continue
        cast = casts[column.name]
        default = default_literal(cast)
        declared = cast.declared or "BLOCKED"
        if column.auto_increment and backend == "mysql":
            # 2.x takes a counter on a native type only: the source's, without a display width
            declared = re.sub(r"\(\d+\)", "", column.sql_type) + " auto_increment"
        head = f"{column.name} = {default}" if default is not None else column.name
        comment = f"  # {column.comment}" if column.comment else ""
        lines.append(f"{head} : {declared}{comment}")
    if not divider_done:
        lines.append("---")
    for index in table.indexes:
        word = "unique index" if index.unique else "index"
        lines.append(f"{word}({', '.join(index.columns)})")
    return "\n".join(lines) + "\n"


def _fk_line(table: Table, fk: Any, nullable: bool) -> str:
    if fk.table == table.master and fk.schema == table.schema:
        target = "master"
    else:
        target = reference(fk.schema, fk.table)
    renames = [(c, r) for c, r in zip(fk.columns, fk.ref_columns, strict=True) if c != r]
    if renames:
        target += ".proj(" + ", ".join(f'{c}="{r}"' for c, r in renames) + ")"
    return f"-> [nullable] {target}" if nullable else f"-> {target}"


def declare(
    plans: Iterable[TablePlan],
    module: Any,
    context: dict[str, Any],
    schemas: Mapping[str, Any],
    existing: set[tuple[str, str]],
) -> tuple[list[str], dict[tuple[str, str], str]]:
    """Declare (or bind, when they exist) every table of ``plans`` with DataJoint 2.x.

    ``module`` is the imported ``datajoint``; ``schemas`` maps a destination schema name
    to its ``dj.Schema``; ``context`` collects each class under :func:`reference` so later
    definitions can name it; ``existing`` holds ``(schema, table)`` of the destination's
    tables. Parts are declared inside their master. Returns the tables declared now, and
    ``{table: reason}`` for each that DataJoint refused (with its parts and children).
    """
    ordered = list(plans)
    parts: dict[tuple[str, str], list[TablePlan]] = {}
    for plan in ordered:
        if plan.source.master:
            parts.setdefault((plan.destination_schema, plan.source.master), []).append(plan)
    made: list[str] = []
    failed: dict[tuple[str, str], str] = {}
    for plan in ordered:
        if plan.source.master:
            continue
        me = (plan.source.schema, plan.name)
        lost = [fk for fk in plan.source.foreign_keys if (fk.schema, fk.table) in failed]
        if lost:
            failed[me] = f"its parent {lost[0].schema}.{lost[0].table} could not be declared"
            continue
        schema = schemas[plan.destination_schema]
        body: dict[str, Any] = {"definition": plan.definition}
        for part in parts.get((plan.destination_schema, plan.name), []):
            body[class_name(part.name)] = type(
                class_name(part.name), (module.Part,), {"definition": part.definition}
            )
        tier = TIER_CLASSES[plan.source.tier]
        existed = (plan.destination_schema, plan.name) in existing
        cls = type(class_name(plan.name), (getattr(module, tier),), body)
        try:
            cls = schema(cls, context=context)
        except Exception as err:  # noqa: BLE001 - DataJoint's refusal, reported per table
            failed[me] = f"DataJoint 2.x could not declare it: {type(err).__name__}: {err}"
            for part in parts.get((plan.destination_schema, plan.name), []):
                failed[(part.source.schema, part.name)] = failed[me]
            continue
        context[reference(plan.source.schema, plan.name)] = cls
        for part in parts.get((plan.destination_schema, plan.name), []):
            context[reference(part.source.schema, part.name)] = getattr(cls, class_name(part.name))
        if not existed:
            made.append(plan.name)
            log.info("declared %s.%s", plan.destination_schema, plan.name)
    return made, failed
