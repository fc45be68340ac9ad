"""Mirror a source table (and its parts) as local tables, from the source's own DDL.

The local table is the source's ``SHOW CREATE TABLE`` replayed on the local
server, so attributes, types, defaults (``CURRENT_TIMESTAMP`` included),
nullability, secondary and unique indexes and the table comment carry over as
they are. Only references are rewritten:

* an external column ``:blob@src:`` / ``:attach@src:`` / ``:filepath@src:`` gets
  its destination store, and its foreign key points at the local
  ``~external_<destination store>``;
* a part's key to its master points at the local master;
* any other foreign key (a parent table) is kept when a table of the same name
  exists in the local schema (the parent was linked there first) and is
  otherwise dropped; its columns and index stay. The source rows stay protected
  by the outbound table's foreign key on the source server.

    from djbridge.link.mirror import read_source
    source = read_source(db, "lab", "Recording")
    ddl = source.master.local_ddl("lab_copy", "recording", stores, existing)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from djbridge.errors import LinkError
from djbridge.layout import STORE_TOKEN
from djbridge.mysql import Database, quote

TIER_PREFIXES = ("", "#", "_", "__")
EXTERNAL_COMMENT = re.compile(rf"^:(blob|attach|filepath)@({STORE_TOKEN}):")
_IDENT = r"`(?:[^`]|``)+`"
_FK = re.compile(
    rf"^\s*(?:CONSTRAINT {_IDENT} )?FOREIGN KEY \((?P<cols>[^)]*)\) REFERENCES "
    rf"(?P<ref>(?:{_IDENT}\.)?{_IDENT}) \((?P<refcols>[^)]*)\)(?P<rest>.*?),?$"
)
_COMMENT = re.compile(r"COMMENT '((?:[^'\\]|\\.|'')*)'")


def unquote(identifier: str) -> str:
    """Turn ```a``b``` into ``a`b``."""
    return identifier[1:-1].replace("``", "`")


@dataclass(frozen=True)
class Column:
    """One source column, with its external store if it has one."""

    name: str
    is_key: bool
    kind: str | None = None  # "blob", "attach" or "filepath" for external columns
    store: str | None = None


@dataclass
class SourceTable:
    """One table on the source server: its name, DDL and columns."""

    schema: str
    name: str
    ddl: str
    columns: list[Column] = field(default_factory=list)

    @property
    def primary_key(self) -> list[str]:
        """Primary key column names, in table order."""
        return [c.name for c in self.columns if c.is_key]

    @property
    def external(self) -> list[Column]:
        """Columns kept in external stores."""
        return [c for c in self.columns if c.kind is not None]

    def local_ddl(
        self,
        local_schema: str,
        local_name: str,
        stores: Mapping[str, str],
        resolve: Callable[[str | None, str], str | None],
    ) -> str:
        """Return the CREATE TABLE statement for the local copy.

        ``resolve(schema_or_None, table)`` maps a referenced source table to a
        quoted local table, or None to drop that foreign key.
        """
        lines = self.ddl.splitlines()
        body: list[str] = []
        for line in lines[1:-1]:
            text = line.strip().rstrip(",")
            if text.startswith("CONSTRAINT") or text.startswith("FOREIGN KEY"):
                rewritten = _rewrite_fk(text, stores, resolve)
                if rewritten:
                    body.append("  " + rewritten)
                continue
            if text.startswith("`"):
                text = _rewrite_column(text, stores)
            body.append("  " + text)
        options = re.sub(r"\s*AUTO_INCREMENT=\d+", "", lines[-1].lstrip(")").strip())
        head = f"CREATE TABLE IF NOT EXISTS {quote(local_schema, local_name)} (\n"
        return head + ",\n".join(body) + f"\n) {options}"


def _rewrite_column(text: str, stores: Mapping[str, str]) -> str:
    text = re.sub(r"(?i)current_timestamp\(\)", "CURRENT_TIMESTAMP", text)
    match = _COMMENT.search(text)
    if match is None:
        return text
    external = EXTERNAL_COMMENT.match(match.group(1))
    if external is None:
        return text
    kind, store = external.groups()
    comment = f":{kind}@{stores[store]}:" + match.group(1)[external.end() :]
    return text[: match.start(1)] + comment + text[match.end(1) :]


def _rewrite_fk(
    text: str, stores: Mapping[str, str], resolve: Callable[[str | None, str], str | None]
) -> str | None:
    match = _FK.match(text)
    if match is None:
        raise LinkError(f"cannot parse foreign key clause: {text}")
    ref = match.group("ref")
    parts = re.findall(_IDENT, ref)
    ref_schema = unquote(parts[0]) if len(parts) == 2 else None
    ref_table = unquote(parts[-1])
    if ref_schema is None and ref_table.startswith("~external_"):
        target: str | None = "`~external_" + stores[ref_table[len("~external_") :]] + "`"
    else:
        target = resolve(ref_schema, ref_table)
    if target is None:
        return None
    rest = match.group("rest").rstrip(",")
    return (
        f"FOREIGN KEY ({match.group('cols')}) REFERENCES {target} ({match.group('refcols')}){rest}"
    )


@dataclass
class SourceLayout:
    """The master table and its part tables on the source server."""

    master: SourceTable
    parts: dict[str, SourceTable]  # part suffix (after "__") -> table

    def tables(self) -> list[SourceTable]:
        """Master first, then parts."""
        return [self.master, *self.parts.values()]

    def stores(self) -> set[str]:
        """Every external store any of the tables uses."""
        return {c.store for t in self.tables() for c in t.external if c.store}


def read_table(db: Database, schema: str, name: str) -> SourceTable:
    """Read one table's DDL and columns (external store names from the column comments)."""
    rows = db.query(f"SHOW CREATE TABLE {quote(schema, name)}")
    ddl = rows[0][1]
    columns = []
    for col, key, comment in db.query(
        "SELECT column_name, column_key, column_comment FROM information_schema.columns "
        "WHERE table_schema=%s AND table_name=%s ORDER BY ordinal_position",
        (schema, name),
    ):
        external = EXTERNAL_COMMENT.match(comment or "")
        kind, store = external.groups() if external else (None, None)
        columns.append(Column(col, key == "PRI", kind, store))
    return SourceTable(schema, name, ddl, columns)


def find_table(db: Database, schema: str, snake: str) -> str | None:
    """Return the name of the DataJoint table ``snake`` of any tier in ``schema``."""
    names = [prefix + snake for prefix in TIER_PREFIXES]
    rows = db.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema=%s "
        f"AND table_name IN ({', '.join(['%s'] * len(names))})",
        (schema, *names),
    )
    found = {r[0] for r in rows}
    return next((n for n in names if n in found), None)


def read_source(db: Database, schema: str, snake: str) -> SourceLayout:
    """Read the master table ``snake`` (any tier) and its parts from the source server.

    Raises
    ------
    LinkError
        If the schema or table does not exist or is not visible to the link account.
    """
    if not db.schema_exists(schema):
        raise LinkError(
            f"source schema {schema!r} does not exist on {db.server.address} "
            "(or the link account cannot see it)"
        )
    name = find_table(db, schema, snake)
    if name is None:
        raise LinkError(
            f"source table {schema}.{snake} does not exist on {db.server.address} "
            "(or the link account has no SELECT on it)"
        )
    like = name.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "\\_\\_%"
    part_names = [
        r[0]
        for r in db.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema=%s AND table_name LIKE %s ORDER BY table_name",
            (schema, like),
        )
    ]
    parts = {p[len(name) + 2 :]: read_table(db, schema, p) for p in part_names}
    return SourceLayout(read_table(db, schema, name), parts)


def complete_stores(layout: SourceLayout, stores: Mapping[str, str]) -> dict[str, str]:
    """Return ``stores`` with every source store it leaves out mapped to its own name.

    As in datajoint-link 0.11, a store missing from ``stores=`` keeps its name: the
    pulled objects go to the local ``dj.config["stores"]`` entry of that name.
    """
    complete = dict(stores)
    for name in sorted(layout.stores() - set(stores)):
        complete[name] = name
    return complete
