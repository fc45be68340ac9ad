"""Declare a link under DataJoint 2.x: the same four phases as for 0.14, 2.x's way.

:func:`decorate` is what ``link(...)`` runs where DataJoint 2.x is installed. As
for 0.14 (:mod:`djbridge.link.declare`), only the last phase writes:

1. **validate** the names, ``LINK_USER``/``LINK_PASS`` and the local account of
   DataJoint 2.x's own configuration (``dj.config``: ``datajoint.json``,
   ``.secrets/``, ``DJ_*``);
2. **connect** to both servers: djbridge's own connections for the batch engine,
   and a ``dj.Instance`` for the source, so DataJoint 2.x reads the source
   table's heading and the user browses ``Table().source``;
3. **read the source**: the table of any tier, its parts, each attribute's
   declared type (a foreign-key column's type is its origin's, found through
   ``~lineage``), defaults, comments and indexes; every store is resolved to a
   destination store, and a value the local backend cannot hold is refused;
4. **write**: the outbound table on the source, declared by DataJoint 2.x in the
   helper schema with a foreign key to the source table, then the local table
   and its parts, declared by DataJoint 2.x from definitions built here (2.x's
   ``describe()`` cannot be declared again on PostgreSQL), so ``~lineage`` and
   joins work as for any 2.x table.

The batch engine, the states and the copy engine are the 0.14 link's
(:mod:`djbridge.link.sync`); what differs is the SQL dialect of each connection
(:mod:`djbridge.sqldialect`) and where references live
(:mod:`djbridge.link.jsonrefs`).

    request = LinkRequest("db:5432", "lab", "lab_out", "Outbound", "lab_copy", {"raw": "copy"},
                          backend="postgresql", database="lab")
    Recording = decorate(type("Recording", (), {}), request)
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from djbridge.config import BACKENDS, DatabaseServer, split_host
from djbridge.errors import ConfigError, DatabaseError, LinkError
from djbridge.link.declare import (
    OUTBOUND_COLUMNS,
    LinkRequest,
    check_request_names,
    credential,
)
from djbridge.link.jsonrefs import Dj2Store, JsonReferences, Sides, value_kinds
from djbridge.link.mirror import Column, SourceTable
from djbridge.link.sync import Key, Linked
from djbridge.link.tables import LinkCore, LocalTable
from djbridge.link.transfer import kept_parents, pool_size
from djbridge.sqldialect import DIALECTS, Connection, ForeignKey
from djbridge.stores import DjStoreSpec

log = logging.getLogger(__name__)
T = TypeVar("T")

TIERS = (("__", "Computed"), ("_", "Imported"), ("#", "Lookup"), ("", "Manual"))
"""Table-name prefix -> DataJoint tier class, longest prefix first."""
NATIVE_TYPES: list[tuple[str, str]] = [
    # (SQL type as a heading shows it, the 2.x core type that declares it)
    (r"integer|int", "int32"),
    (r"smallint", "int16"),
    (r"bigint", "int64"),
    (r"tinyint\(1\)|boolean", "bool"),
    (r"tinyint", "int8"),
    (r"real|float", "float32"),
    (r"double precision|double", "float64"),
    (r"jsonb|json", "json"),
    (r"bytea|longblob", "bytes"),
    (r"binary\(16\)|uuid", "uuid"),
    (r"timestamp without time zone|datetime", "datetime"),
    (r"character varying\((\d+)\)", r"varchar(\1)"),
    (r"character\((\d+)\)", r"char(\1)"),
    (r"numeric\((\d+),\s*(\d+)\)", r"decimal(\1,\2)"),
]
"""How a foreign-key column without a type comment (2.x on PostgreSQL writes none) is
declared when its origin cannot be read: rules as data, first match wins."""
UNHOLDABLE: dict[str, list[tuple[str, str]]] = {
    "postgresql": [
        (r"uuid", "DataJoint 2.3.5 cannot insert or fetch a uuid column on PostgreSQL"),
        (r"<attach>", "DataJoint 2.3.5 cannot fetch an in-table <attach> on PostgreSQL"),
        (r".*\bunsigned", "PostgreSQL has no unsigned integers"),
        (
            r"(tiny|medium)int(\(\d+\))?|double|year(\(\d+\))?",
            "not a PostgreSQL type; declare it with a 2.x core type (int8, float64, ...)",
        ),
        (r"(tiny|medium|long)(blob|text)|blob", "a MySQL storage type PostgreSQL does not have"),
        (r"time(\(\d\))?", "PostgreSQL's time stops at 24:00, where MySQL's runs to 838 hours"),
    ],
    "mysql": [],
}
"""Declared types a destination backend cannot hold when the source is the other backend,
with the reason: refused before anything is written."""


@dataclass
class TablePlan:
    """One source table (master or part) and the local definition the link declares."""

    full_name: str  # the quoted source table
    name: str  # the table name, tier prefix included
    table: SourceTable
    definition: str
    kinds: dict[str, str] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)  # alias in definition -> local table


# ---- phase 1: validate ----------------------------------------------------------------------
def dj2_local_server() -> DatabaseServer:
    """Return the local account from DataJoint 2.x's configuration.

    Raises
    ------
    ConfigError
        If ``database.host`` or ``database.user`` is not set, or a PostgreSQL
        backend has no ``database.name``.
    """
    import datajoint as dj

    db = dj.config.database
    if not db.host or not db.user:
        missing = "host" if not db.host else "user"
        raise ConfigError(
            f"dj.config database.{missing} is not set (the local account; DataJoint 2.x reads "
            "it from datajoint.json, .secrets/ or DJ_HOST/DJ_USER/DJ_PASS)"
        )
    backend = str(db.backend)
    password = db.password.get_secret_value() if db.password is not None else ""
    host, port = split_host(str(db.host), db.port, "dj.config database", BACKENDS[backend])
    name = str(db.name or "") if backend == "postgresql" else ""
    if backend == "postgresql" and not name:
        raise ConfigError("dj.config database.name is not set (the local PostgreSQL database)")
    return DatabaseServer(
        name="local", host=host, port=port, user=str(db.user), password=password,
        use_tls=db.use_tls, backend=backend, database=name,
    )  # fmt: skip


@dataclass(frozen=True)
class Validated:
    """Phase 1's result."""

    request: LinkRequest
    cls: type
    snake: str
    source: DatabaseServer
    local: DatabaseServer


def validate(cls: type, request: LinkRequest) -> Validated:
    """Phase 1: names, credentials, the local account and the source's backend; no server."""
    from datajoint.utils import from_camel_case

    check_request_names(cls, request)
    user, password = credential("LINK_USER"), credential("LINK_PASS")
    local = dj2_local_server()
    backend = request.backend or local.backend
    if backend not in BACKENDS:
        raise ConfigError(f"link argument backend={backend!r}: use 'postgresql' or 'mysql'")
    database = ""
    if backend == "postgresql":
        database = request.database or (local.database if local.backend == backend else "")
        if not database:
            raise ConfigError(
                "link argument database= is not set: the source's PostgreSQL database "
                "(the default, the local database.name, exists only for a PostgreSQL local side)"
            )
    host, port = split_host(request.source_host, None, "source_host", BACKENDS[backend])
    source = DatabaseServer(
        "source", host, user, password, port, request.use_tls, backend=backend, database=database
    )
    return Validated(request, cls, from_camel_case(cls.__name__), source, local)


# ---- phase 2: connect -----------------------------------------------------------------------
def connect_any(server: DatabaseServer, role: str) -> Connection:
    """Connect djbridge to ``server`` (MySQL or PostgreSQL), naming it when that fails."""
    from djbridge.mysql import connect
    from djbridge.postgres import connect_pg

    try:
        return connect_pg(server) if server.backend == "postgresql" else connect(server)
    except DatabaseError as err:
        raise LinkError(f"cannot reach the {role} server {server.address}: {err}") from err


def source_instance(server: DatabaseServer) -> Any:
    """Return a ``dj.Instance`` on the source server, with the link account."""
    import datajoint as dj

    extra = {"database__name": server.database} if server.backend == "postgresql" else {}
    try:
        return dj.Instance(
            host=server.host, user=server.user, password=server.password, port=server.port,
            use_tls=server.use_tls, backend=server.backend, **extra,
        )  # fmt: skip
    except Exception as err:  # noqa: BLE001 - DataJoint's error, reported with the server
        raise LinkError(
            f"DataJoint 2.x cannot connect to the source server {server.address}: {err}"
        ) from err


# ---- phase 3: read the source ---------------------------------------------------------------
def table_names(db: Connection, schema: str) -> list[str]:
    """Return every table of ``schema`` the account can see."""
    if db.dialect.name == "postgresql":
        sql = (
            "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p')"
        )
    else:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
    return sorted(str(r[0]) for r in db.query(sql, (schema,)))


def find_tables(db: Connection, schema: str, snake: str) -> tuple[str, list[str]]:
    """Return the master table of class ``snake`` (any tier) and its parts in ``schema``.

    Raises
    ------
    LinkError
        If the schema or the table does not exist or is invisible to the account.
    """
    if not db.schema_exists(schema):
        raise LinkError(
            f"source schema {schema!r} does not exist on {db.server.address} "
            "(or the link account cannot see it)"
        )
    names = table_names(db, schema)
    master = next((p + snake for p, _ in TIERS if p + snake in names), None)
    if master is None:
        raise LinkError(
            f"source table {schema}.{snake} does not exist on {db.server.address} "
            "(or the link account has no SELECT on it)"
        )
    return master, [n for n in names if n.startswith(master + "__")]


def tier_of(name: str) -> str:
    """Return the DataJoint tier class name of a table name."""
    return next(tier for prefix, tier in TIERS if name.startswith(prefix))


def native_to_core(sql_type: str) -> str:
    """Return the 2.x core type of a SQL type by :data:`NATIVE_TYPES`, or the type itself."""
    for pattern, core in NATIVE_TYPES:
        if re.fullmatch(pattern, sql_type, re.IGNORECASE):
            return re.sub(pattern, core, sql_type, flags=re.IGNORECASE)
    return sql_type


def clean_default(default: str | None) -> str | None:
    """Return a heading's default as a definition spells it (PostgreSQL's casts removed)."""
    if default is None:
        return None
    text = default.strip()
    if len(text) > 1 and text[0] == text[-1] == '"':
        text = text[1:-1]
    cast = re.fullmatch(r"\(?('(?:[^']|'')*')\)?::[\w\s\".]+(\[\])?", text)
    return cast.group(1) if cast else text


class SourceReader:
    """Reads source tables through DataJoint 2.x on the source ``dj.Instance``."""

    def __init__(self, instance: Any, db: Connection, stores: Mapping[str, str]) -> None:
        self.instance = instance
        self.db = db
        self.stores = stores  # source store -> destination store (complete)
        self._headings: dict[str, Any] = {}

    def heading(self, schema: str, table: str) -> Any:
        """Return the 2.x heading of ``schema.table``."""
        full = self.db.dialect.quote(schema, table)
        if full not in self._headings:
            try:
                self._headings[full] = self.instance.FreeTable(full).heading
                self._headings[full].attributes  # noqa: B018 - loads it now, errors here
            except Exception as err:  # noqa: BLE001 - named with the table
                raise LinkError(
                    f"DataJoint 2.x cannot read the source table {schema}.{table}: {err}"
                ) from err
        return self._headings[full]

    def declared_type(self, attr: Any) -> str:
        """Return how ``attr`` is declared: its codec (store mapped), core or origin type."""
        if attr.codec is not None:
            if attr.store is None:
                return f"<{attr.codec.name}>"
            return f"<{attr.codec.name}@{self.stores.get(attr.store, attr.store)}>"
        if attr.original_type:
            return str(attr.original_type)
        if attr.lineage and attr.lineage.count(".") == 2:
            schema, table, name = attr.lineage.split(".")
            try:
                origin = self.heading(schema, table).attributes[name]
            except (LinkError, KeyError):
                origin = None
            if origin is not None and origin.original_type:
                return str(origin.original_type)
        return native_to_core(str(attr.type))

    def indexes(self, schema: str, table: str) -> list[tuple[bool, list[str]]]:
        """Return ``(unique, columns)`` of each secondary index."""
        if self.db.dialect.name == "postgresql":
            rows = self.db.query(
                "SELECT i.relname, ix.indisunique, a.attname FROM pg_catalog.pg_index ix "
                "JOIN pg_catalog.pg_class t ON t.oid = ix.indrelid "
                "JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace "
                "JOIN pg_catalog.pg_class i ON i.oid = ix.indexrelid "
                "CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord) "
                "JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum "
                "WHERE n.nspname = %s AND t.relname = %s AND NOT ix.indisprimary "
                "ORDER BY i.relname, k.ord",
                (schema, table),
            )
        else:
            rows = self.db.query(
                "SELECT index_name, non_unique = 0, column_name FROM information_schema.statistics "
                "WHERE table_schema = %s AND table_name = %s AND index_name <> 'PRIMARY' "
                "ORDER BY index_name, seq_in_index",
                (schema, table),
            )
        found: dict[str, tuple[bool, list[str]]] = {}
        for name, unique, column in rows:
            found.setdefault(str(name), (bool(unique), []))[1].append(str(column))
        return list(found.values())

    def plan(
        self,
        schema: str,
        name: str,
        master: SourceTable | None,
        local_parent: Callable[[ForeignKey], str | None] = lambda key: None,
    ) -> TablePlan:
        """Read one source table and build its local definition.

        A part's definition starts with ``-> master``. Another foreign key to a table
        of the source schema is kept when ``local_parent`` names the local table it
        should reference (the parent was linked into the local schema first): its
        ``-> Parent`` line stands where its first column stood. Every other foreign
        key is dropped and its columns kept, as the 0.14 link does.
        """
        heading = self.heading(schema, name)
        attributes = [a for a in heading.attributes.values() if not a.is_hidden]
        master_key = set(master.primary_key) if master is not None else set()
        kept: dict[str, tuple[str, ForeignKey]] = {}  # first column -> (alias, key)
        parents: dict[str, str] = {}  # alias -> the local parent
        for key in self.db.dialect.foreign_keys(self.db, schema, name):
            is_master = master is not None and key.table == master.name
            local = None if is_master or key.schema != schema else local_parent(key)
            if local is None:
                if not is_master:
                    log.info("foreign key to %s.%s is not kept locally (no local table)",
                             key.schema, key.table)  # fmt: skip
                continue
            alias = "Local_" + re.sub(r"\W", "_", key.table)
            parents[alias] = local
            kept[next(iter(key.columns))] = (alias, key)
        covered = {c for _, key in kept.values() for c in key.columns}
        lines = []
        comment = str(heading.table_status.get("comment") or "").strip()
        if comment:
            lines.append(f"# {comment}")
        if master is not None:
            lines.append("-> master")
        divider_done = False
        for attr in attributes:
            if not attr.in_key and not divider_done:
                lines.append("---")
                divider_done = True
            if attr.name in kept:
                lines.append(reference_line(*kept[attr.name], nullable=attr.nullable))
            if attr.name in master_key or attr.name in covered:
                continue
            default = None if attr.in_key else clean_default(attr.default)
            if attr.nullable and default is None:
                default = "null"
            text = attr.name + (f" = {default}" if default is not None else "")
            text += f" : {self.declared_type(attr)}"
            if attr.comment:
                text += f"  # {attr.comment}"
            lines.append(text)
        keyed = {a.name for a in attributes if a.in_key}
        own = [list(key.columns) for _, key in kept.values()]  # indexed by the foreign key
        for unique, columns in self.indexes(schema, name):
            if set(columns) <= keyed and len(columns) >= len(keyed):
                continue
            if not unique and columns in own:
                continue
            lines.append(f"{'unique ' if unique else ''}index({', '.join(columns)})")
        table = SourceTable(schema, name, "", [
            Column(a.name, a.in_key, a.codec.name if a.store is not None else None, a.store)
            for a in attributes
        ])  # fmt: skip
        return TablePlan(self.db.dialect.quote(schema, name), name, table, "\n".join(lines),
                         value_kinds(attributes), parents)  # fmt: skip


def reference_line(alias: str, key: ForeignKey, *, nullable: bool) -> str:
    """Return the ``-> Parent`` line of a kept foreign key (renamed columns projected)."""
    renamed = [f"{column}='{parent}'" for column, parent in key.columns.items()
               if column != parent]  # fmt: skip
    target = f"{alias}.proj({', '.join(renamed)})" if renamed else alias
    return f"-> {'[nullable] ' if nullable else ''}{target}"


def refuse_unholdable(plans: Sequence[TablePlan], backend: str) -> None:
    """Refuse a definition the local backend cannot hold (:data:`UNHOLDABLE`).

    Raises
    ------
    LinkError
        Naming the table, the attribute and the reason, before anything is written.
    """
    for plan in plans:
        for line in plan.definition.splitlines():
            declared = line.split(":", 1)[1].split("#", 1)[0].strip() if ":" in line else ""
            for pattern, reason in UNHOLDABLE[backend]:
                if re.fullmatch(pattern, declared):
                    raise LinkError(
                        f"{plan.table.schema}.{plan.name}.{line.split('=')[0].split(':')[0].strip()}"
                        f" is {declared}, which the local {backend} server cannot hold: {reason}"
                    )


def dj2_store_spec(name: str) -> dict[str, Any]:
    """Return ``dj.config.stores[name]`` of DataJoint 2.x, checked as djbridge reads it.

    Raises
    ------
    ConfigError
        If the store is not configured, or its protocol or a required key is missing.
    """
    import datajoint as dj

    configured = dict(dj.config.stores)
    if name not in configured or not isinstance(configured[name], Mapping):
        raise ConfigError(f"store {name!r} is not configured in dj.config.stores")
    raw = {k: getattr(v, "get_secret_value", lambda v=v: v)() for k, v in configured[name].items()}
    if raw.get("protocol") == "s3":
        raw.setdefault("secure", True)  # DataJoint 2.x's default: HTTPS
    DjStoreSpec.parse(name, raw)
    return raw


def dj2_stores(sources: set[str], stores: Mapping[str, str], src_schema: str,
               local_schema: str) -> dict[str, Sides]:  # fmt: skip
    """Resolve each source store to its :class:`Sides` from ``dj.config.stores``.

    Raises
    ------
    ConfigError
        If a store is not configured, or a destination would be the source's own area.
    """

    def spec(name: str) -> Dj2Store:
        raw = dj2_store_spec(name)
        return Dj2Store.from_spec(name, raw, DjStoreSpec.parse(name, raw).open())

    for named in sorted({*stores, *stores.values()}):
        spec(named)  # a store named in the mapping must be configured, used or not
    out = {}
    for src_name in sorted(sources):
        src, dst = spec(src_name), spec(stores.get(src_name, src_name))
        if src.store.root_id == dst.store.root_id and src_schema == local_schema:
            raise ConfigError(
                f"store {src_name!r} -> {dst.name!r}: both name {dst.store.description}, and the "
                f"local schema {local_schema!r} has the source schema's name, so pulled objects "
                "would share the source's folder; map the store to another one with stores= "
                "or choose another local schema name"
            )
        out[src_name] = Sides(src, dst)
    return out


# ---- phase 4: write -------------------------------------------------------------------------
def ensure_outbound(instance: Any, request: LinkRequest, master: TablePlan) -> str:
    """Declare the outbound table with DataJoint 2.x on the source, or check the existing one."""
    import datajoint as dj
    from datajoint.utils import from_camel_case

    name = from_camel_case(request.outbound_table)
    body = "\n".join(f"{c} : {t}" for c, t in OUTBOUND_COLUMNS.items())
    cls = type(request.outbound_table, (dj.Manual,), {"definition": f"-> Source\n---\n{body}"})
    schema = instance.Schema(request.outbound_schema)
    schema(cls, context={"Source": instance.FreeTable(master.full_name)})
    quoted = DIALECTS[instance.config.database.backend].quote(request.outbound_schema, name)
    have = set(instance.FreeTable(quoted).heading.names)
    wanted = {*master.table.primary_key, *OUTBOUND_COLUMNS}
    if have != wanted:
        raise LinkError(
            f"outbound table {request.outbound_schema}.{name} exists but its columns "
            f"{sorted(have)} are not the link's layout {sorted(wanted)}"
        )
    return quoted


def check_existing_local(plan: TablePlan, local_db: Connection, schema: str,
                         stores: Mapping[str, str]) -> None:  # fmt: skip
    """Refuse an existing local table whose key or stores differ from what the link writes."""
    import datajoint as dj

    if not local_db.table_exists(schema, plan.name):
        return
    heading = dj.FreeTable(dj.conn(), local_db.dialect.quote(schema, plan.name)).heading
    if list(heading.primary_key) != plan.table.primary_key:
        raise LinkError(
            f"local table {schema}.{plan.name} exists with a different primary key than the "
            f"source table {plan.table.schema}.{plan.name}"
        )
    missing = [c.name for c in plan.table.columns if c.name not in heading.attributes]
    if missing:
        raise LinkError(
            f"local table {schema}.{plan.name} has no column {', '.join(missing)}, which the "
            f"source table {plan.table.schema}.{plan.name} has (added there since the link "
            "declared it?); add the column locally, with DataJoint 2.x's alter() or SQL, or "
            "link into a new local schema"
        )
    for column in plan.table.external:
        have = heading.attributes.get(column.name)
        wanted = stores.get(str(column.store), column.store)
        if have is None or have.store != wanted:
            raise LinkError(
                f"local column {schema}.{plan.name}.{column.name} is stored in "
                f"{getattr(have, 'store', None)!r}, not in the destination store {wanted!r}"
            )


def build_class(checked: Validated, master: TablePlan, parts: Sequence[TablePlan]) -> Any:
    """Return the local DataJoint 2.x class: ``LocalTable`` behaviour, the parts nested.

    The local parents that the definitions reference are in :func:`parent_context`.
    """
    import datajoint as dj
    from datajoint.utils import to_camel_case

    namespace: dict[str, Any] = {
        "definition": master.definition,
        "__doc__": checked.cls.__doc__ or f"Local copy of {master.full_name}.",
        "__module__": checked.cls.__module__,
    }
    for part in parts:
        suffix = part.name[len(master.name) + 2 :]
        namespace[to_camel_case(suffix)] = type(
            to_camel_case(suffix), (dj.Part,), {"definition": part.definition}
        )
    tier = getattr(dj, tier_of(master.name))
    return type(checked.cls.__name__, (LocalTable, tier), namespace)


def parent_context(plans: Sequence[TablePlan]) -> dict[str, Any]:
    """Return the local parent tables that the definitions of ``plans`` reference, by alias."""
    import datajoint as dj

    return {alias: dj.FreeTable(dj.conn(), local) for plan in plans
            for alias, local in plan.parents.items()}  # fmt: skip


def local_parent_finder(local_db: Connection, schema: str) -> Callable[[ForeignKey], str | None]:
    """Return what finds the local table a source foreign key may reference.

    That is the table of the parent's name in the local schema (linked there first),
    when its primary key is the key's parent columns; otherwise None, and the key
    is dropped.
    """
    import datajoint as dj

    def find(key: ForeignKey) -> str | None:
        if not local_db.table_exists(schema, key.table):
            return None
        local = local_db.dialect.quote(schema, key.table)
        primary = dj.FreeTable(dj.conn(), local).heading.primary_key
        if set(primary) != set(key.columns.values()):
            log.info("foreign key to %s.%s is not kept: the local table's primary key is %s",
                     key.schema, key.table, primary)  # fmt: skip
            return None
        return local

    return find


def remover(local_cls: Any, cols: Sequence[str]) -> Any:
    """Return a remover using DataJoint 2.x's cascading delete (for tables with children)."""

    def remove(keys: Sequence[Key]) -> int:
        import datajoint as dj

        restriction = [dict(zip(cols, k, strict=True)) for k in keys]
        return int(dj.Table.delete(local_cls() & restriction, transaction=True, prompt=False))

    return remove


def declared(what: str, declare: Callable[[], T], attempts: int = 4) -> T:
    """Run a DataJoint declaration, again if a concurrent one got in its way.

    Two processes decorating a new link at once both declare the same tables (and,
    on PostgreSQL, the same enum types); the second may fail while the first
    commits. A moment later the declaration finds everything made and succeeds.

    Raises
    ------
    LinkError
        Naming ``what``, when the declaration still fails after ``attempts``.
    """
    for attempt in range(1, attempts + 1):
        try:
            return declare()
        except LinkError:
            raise
        except Exception as err:  # noqa: BLE001 - DataJoint's error, named with the table
            if attempt == attempts:
                raise LinkError(f"DataJoint 2.x could not declare {what}: {err}") from err
            log.info("declaring %s met a concurrent declaration; trying again", what)
            time.sleep(0.3 * attempt)
    raise AssertionError("unreachable")


def decorate(cls: type, request: LinkRequest) -> Any:
    """Check everything, then declare the link's tables; return the local table class.

    Raises
    ------
    MissingCredentials, ConfigError, LinkError
        From the phase that found the problem, before anything is written.
    """
    import datajoint as dj

    checked = validate(cls, request)
    source_db = connect_any(checked.source, "source")
    local_db = connect_any(checked.local, "local")
    # DataJoint connects the way djbridge's own connection did (TLS or plain), so it
    # neither tries TLS again nor warns about falling back.
    instance = source_instance(replace(checked.source, use_tls=source_db.uses_tls()))
    master_name, part_names = find_tables(source_db, request.source_schema, checked.snake)
    reader = SourceReader(instance, source_db, {})
    master_heading = reader.heading(request.source_schema, master_name)
    used = {a.store for a in master_heading.attributes.values() if a.store is not None}
    for part in part_names:
        heading = reader.heading(request.source_schema, part)
        used |= {a.store for a in heading.attributes.values() if a.store is not None}
    stores = {name: request.stores.get(name, name) for name in used}
    reader.stores = stores
    sides = dj2_stores(used, {**request.stores, **stores}, request.source_schema,
                       request.local_schema)  # fmt: skip
    for name in sorted(used - set(request.stores)):
        log.warning("store %r is not in the link's stores mapping: pulled objects go to the "
                    "local store of the same name", name)  # fmt: skip
    parent = local_parent_finder(local_db, request.local_schema)
    master = reader.plan(request.source_schema, master_name, None, parent)
    parts = [reader.plan(request.source_schema, p, master.table, parent) for p in part_names]
    if checked.source.backend != checked.local.backend:
        refuse_unholdable([master, *parts], checked.local.backend)
    for plan in (master, *parts):
        check_existing_local(plan, local_db, request.local_schema, stores)
    # phase 4: write; the local table first, so a refusal there leaves the source untouched
    if any(c.kind == "filepath" for p in (master, *parts) for c in p.table.external):
        os.environ.setdefault("DJ_SUPPORT_FILEPATH_MANAGEMENT", "TRUE")
    local_cls = declared(
        f"the local table {request.local_schema}.{master.name}",
        lambda: dj.Schema(request.local_schema)(
            build_class(checked, master, parts), context=parent_context([master, *parts])
        ),
    )
    outbound = declared(f"the outbound table in {request.outbound_schema}",
                        lambda: ensure_outbound(instance, request, master))  # fmt: skip
    q = local_db.dialect
    linked = Linked(
        source_db=source_db, local_db=local_db, master=master.table,
        parts={p.name[len(master.name) + 2 :]: p.table for p in parts},
        outbound=outbound, local_master=q.quote(request.local_schema, master.name),
        local_parts={p.name[len(master.name) + 2 :]: q.quote(request.local_schema, p.name)
                     for p in parts},
        placements={}, local_schema=request.local_schema,
        batch_size=request.batch_size, batch_bytes=request.batch_bytes,
        remove_local=remover(local_cls, master.table.primary_key),
        copy_threads=pool_size([(s.src.store, s.dst.store) for s in sides.values()]),
        references=JsonReferences(request.source_schema, request.local_schema, sides,
                                  {p.name: p.kinds for p in (master, *parts)}),
        local_parents=kept_parents(local_db, request.local_schema,
                                   [(p.table, p.name) for p in (master, *parts)]),
    )  # fmt: skip
    local_cls._core = LinkCore(linked, checked.source, source_connection=instance.connection)
    return local_cls
