"""Read a DataJoint 0.14 schema from its MariaDB or MySQL server, with SQL only.

dj-migrate runs beside DataJoint 2.x, which cannot read 0.14 schemas, so the source is
read from ``information_schema``: every table DataJoint declared (hidden ``~`` tables
apart), its tier from the name's prefix, its master if it is a part, its columns with
their SQL type and DataJoint type (0.14 keeps ``uuid``, ``attach``, ``blob@store`` and
the like in the column comment, ``:attach:`` or ``:blob@raw:``), its primary key, its
foreign keys (also into other schemas), its secondary indexes and its comment.

:func:`dependency_order` sorts the tables so that every parent comes before its
children, masters before their parts, which is the order rows must arrive in.

    from djbridge.migrate.catalog import read_schema, dependency_order
    tables = dependency_order(read_schema(db, "lab_ephys"))
    tables[0].name, tables[0].tier, tables[0].columns[0].dj_type
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field, replace

from djbridge.dialect import server_kind
from djbridge.errors import ConfigError
from djbridge.mysql import Database

TIERS = (("__", "computed"), ("_", "imported"), ("#", "lookup"), ("", "manual"))
"""Table-name prefixes of DataJoint's tiers, longest first."""
_DJ_TYPE = re.compile(r"^:([a-z0-9_]+(?:@[A-Za-z0-9_]*)?):")


@dataclass(frozen=True)
class Column:
    """One source column as DataJoint 0.14 declared it."""

    name: str
    sql_type: str  # e.g. "int(10) unsigned", "varchar(40)", "binary(16)"
    nullable: bool
    default: str | None  # as information_schema spells it; None when there is none
    comment: str  # the user's comment, without DataJoint's ":type:" prefix
    dj_type: str  # "" for a plain SQL type, else e.g. "uuid", "attach", "blob@raw"
    in_key: bool
    auto_increment: bool = False
    charset: str | None = None
    collation: str | None = None

    @property
    def placeholder(self) -> str:
        """A query parameter for this column, in the column's own character set and collation.

        A parameter arrives in the connection's ``utf8mb4``. MariaDB 10.11 then misses
        rows of a ``latin1`` column in a multi-row ``(a, b) IN ((...), (...))`` whose
        values are not ASCII (``'zoë'``), though ``a = ... AND b = ...`` finds them;
        converted first, the parameter compares as the column's own values do.
        """
        if not self.charset or not self.collation:
            return "%s"
        return f"CONVERT(%s USING {self.charset}) COLLATE {self.collation}"

    @property
    def store(self) -> str | None:
        """The external store of a ``blob@``, ``attach@`` or ``filepath@`` column."""
        return self.dj_type.partition("@")[2] or None if "@" in self.dj_type else None

    @property
    def external_kind(self) -> str | None:
        """``"blob"``, ``"attach"`` or ``"filepath"`` for an external column, else None."""
        return self.dj_type.partition("@")[0] if "@" in self.dj_type else None


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key: ``columns`` here reference ``ref_columns`` of ``schema.table``."""

    columns: tuple[str, ...]
    schema: str
    table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class Index:
    """A secondary index (not the primary key, not a foreign key's own index)."""

    columns: tuple[str, ...]
    unique: bool


@dataclass
class Table:
    """One DataJoint table of the source schema."""

    schema: str
    name: str  # as in the database: "#subject", "session", "_rec", "__spikes", "rec__part"
    comment: str
    columns: list[Column] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)
    auto_increment: int | None = None

    @property
    def tier(self) -> str:
        """``lookup``, ``manual``, ``imported``, ``computed`` or ``part``."""
        if self.master is not None:
            return "part"
        return next(tier for prefix, tier in TIERS if self.name.startswith(prefix))

    @property
    def master(self) -> str | None:
        """The master table's name for a part table (``rec__chan`` -> ``rec``), else None."""
        bare = self.name.lstrip("_#")
        if "__" not in bare:
            return None
        return self.name[: len(self.name) - len(bare)] + bare.split("__", 1)[0]

    @property
    def primary_key(self) -> list[str]:
        """Key column names in table order."""
        return [c.name for c in self.columns if c.in_key]

    @property
    def external(self) -> list[Column]:
        """Columns whose values live in external stores."""
        return [c for c in self.columns if c.external_kind]


def _split_comment(comment: str) -> tuple[str, str]:
    match = _DJ_TYPE.match(comment or "")
    if match is None:
        return "", comment or ""
    return match.group(1), comment[match.end() :]


def read_schema(db: Database, schema: str) -> list[Table]:
    """Read every DataJoint table of ``schema`` (hidden ``~`` tables apart).

    Raises
    ------
    ConfigError
        If the schema does not exist or this account cannot see it.
    """
    if not db.schema_exists(schema):
        raise ConfigError(
            f"schema {schema!r} does not exist on the source server {db.server.address} "
            "(or the account cannot see it)"
        )
    tables: dict[str, Table] = {}
    for name, comment, auto in db.query(
        "SELECT table_name, table_comment, auto_increment FROM information_schema.tables "
        "WHERE table_schema=%s AND table_type='BASE TABLE' AND table_name NOT LIKE '~%%' "
        "ORDER BY table_name",
        (schema,),
    ):
        tables[name] = Table(schema, name, comment or "", auto_increment=auto)
    for table, name, ctype, nullable, default, comment, key, extra, charset, coll in db.query(
        "SELECT table_name, column_name, column_type, is_nullable, column_default, "
        "column_comment, column_key, extra, character_set_name, collation_name "
        "FROM information_schema.columns "
        "WHERE table_schema=%s ORDER BY table_name, ordinal_position",
        (schema,),
    ):
        if table not in tables:
            continue
        dj_type, user_comment = _split_comment(comment)
        tables[table].columns.append(
            Column(
                name=name,
                sql_type=str(ctype),
                nullable=nullable == "YES",
                default=None if default is None else str(default),
                comment=user_comment,
                dj_type=dj_type,
                in_key=key == "PRI",
                auto_increment="auto_increment" in (extra or "").lower(),
                charset=charset,
                collation=coll,
            )
        )
    _mark_mariadb_json(db, schema, tables)
    _read_keys(db, schema, tables)
    return list(tables.values())


_JSON_CHECK = re.compile(r"^json_valid\(`((?:[^`]|``)+)`\)$")


def _mark_mariadb_json(db: Database, schema: str, tables: dict[str, Table]) -> None:
    """Give MariaDB's ``json`` columns (a ``longtext`` with a ``json_valid`` check) the type."""
    if server_kind(db) != "mariadb":
        return  # MySQL has a json type of its own, and names it in column_type
    for table, clause in db.query(
        "SELECT table_name, check_clause FROM information_schema.check_constraints "
        "WHERE constraint_schema=%s",
        (schema,),
    ):
        match = _JSON_CHECK.match(str(clause).strip())
        if match is None or table not in tables:
            continue
        name = match.group(1).replace("``", "`")
        columns = tables[table].columns
        for i, column in enumerate(columns):
            if column.name == name and not column.dj_type:
                columns[i] = replace(column, dj_type="json")


def _read_keys(db: Database, schema: str, tables: dict[str, Table]) -> None:
    groups: dict[tuple[str, str], list[tuple[str, str, str, str]]] = defaultdict(list)
    for table, constraint, column, ref_schema, ref_table, ref_column in db.query(
        "SELECT table_name, constraint_name, column_name, referenced_table_schema, "
        "referenced_table_name, referenced_column_name FROM information_schema.key_column_usage "
        "WHERE table_schema=%s AND referenced_table_name IS NOT NULL "
        "ORDER BY table_name, constraint_name, ordinal_position",
        (schema,),
    ):
        groups[(table, constraint)].append((column, ref_schema, ref_table, ref_column))
    fk_columns: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for (table, _), rows in groups.items():
        if table not in tables or str(rows[0][2]).startswith("~"):
            continue  # ~external references are what dj_type says already
        fk = ForeignKey(
            tuple(r[0] for r in rows), str(rows[0][1]), str(rows[0][2]), tuple(r[3] for r in rows)
        )
        tables[table].foreign_keys.append(fk)
        fk_columns[table].add(fk.columns)
    for table in tables.values():  # parents in column order, as a definition lists them
        order = {c.name: i for i, c in enumerate(table.columns)}
        table.foreign_keys.sort(key=lambda fk: order[fk.columns[0]])
    indexes: dict[tuple[str, str], list[tuple[int, str, int]]] = defaultdict(list)
    for table, index, column, seq, non_unique in db.query(
        "SELECT table_name, index_name, column_name, seq_in_index, non_unique "
        "FROM information_schema.statistics WHERE table_schema=%s AND index_name <> 'PRIMARY' "
        "ORDER BY table_name, index_name, seq_in_index",
        (schema,),
    ):
        indexes[(table, index)].append((int(seq), str(column), int(non_unique)))
    for (table, _), parts in indexes.items():
        if table not in tables:
            continue
        columns = tuple(c for _, c, _ in sorted(parts))
        unique = parts[0][2] == 0
        references = {c for c in tables[table].columns if c.external_kind and c.name in columns}
        if references or (not unique and columns in fk_columns[table]):
            continue  # the index a foreign key needs; 2.x makes its own
        tables[table].indexes.append(Index(columns, unique))


def dependency_order(tables: list[Table]) -> list[Table]:
    """Return ``tables`` with every parent (and master) before the tables that need it.

    Tables of several schemas may be given together: a parent in another of them comes
    first too.
    """
    by_name = {(t.schema, t.name): t for t in tables}
    done: dict[tuple[str, str], Table] = {}

    def visit(table: Table, path: tuple[tuple[str, str], ...]) -> None:
        me = (table.schema, table.name)
        if me in done or me in path:
            return
        parents = [(fk.schema, fk.table) for fk in table.foreign_keys]
        if table.master:
            parents.append((table.schema, table.master))
        for parent in parents:
            if parent in by_name:
                visit(by_name[parent], (*path, me))
        done[me] = table

    for table in tables:
        visit(table, ())
    return list(done.values())
