"""Declare a link: everything ``link(...)`` does before it hands back a table class.

:func:`decorate` runs four phases, and only the last one writes:

1. **validate**: the names (schemas, class, stores), ``LINK_USER``/``LINK_PASS`` and
   the local account in ``dj.config``; no server is contacted yet;
2. **connect** to the source and the local server;
3. **read the source**: the master and part tables and the stores they use; every
   store is resolved to a placement in the local ``dj.config["stores"]``, and an
   existing local table is checked against what the link would write;
4. **write**: the outbound table on the source, the local schema with its
   ``~external_<store>`` tables, the local tables, and the class.

The invariant: an error in phases 1 to 3 leaves both servers as they were, and
names what is wrong (the argument, the store, the table).

    from djbridge.link.declare import LinkRequest, decorate
    request = LinkRequest("db:3306", "lab", "lab_out", "Outbound", "lab_copy", {"raw": "copy"})
    Recording = decorate(type("Recording", (), {}), request)
    Recording().source.pull()
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from djbridge.config import DatabaseServer, split_host
from djbridge.dialect import adapt_collations, local_collations
from djbridge.errors import ConfigError, DatabaseError, LinkError, MissingCredentials
from djbridge.layout import SCHEMA_NAME, STORE_NAME, part_table
from djbridge.link.mirror import SourceLayout, complete_stores, read_source, read_table
from djbridge.link.sync import Key, Linked
from djbridge.link.tables import LinkCore, LocalTable
from djbridge.link.transfer import Placement, kept_parents, pool_size
from djbridge.mysql import Database, connect, quote
from djbridge.stores import DjStoreSpec

log = logging.getLogger(__name__)

CLASS_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{0,62}$")
OUTBOUND_COLUMNS = {
    "process": "enum('PULL','DELETE','NONE')",
    "is_flagged": "enum('TRUE','FALSE')",
    "is_deprecated": "enum('TRUE','FALSE')",
}


@dataclass(frozen=True)
class LinkRequest:
    """The arguments of one ``link(...)`` call."""

    source_host: str
    source_schema: str
    outbound_schema: str
    outbound_table: str
    local_schema: str
    stores: Mapping[str, str]
    use_tls: bool | None = None
    batch_size: int = 500
    batch_bytes: int = 16 << 20
    backend: str | None = None  # DataJoint 2.x: the source's backend (default: the local one)
    database: str | None = None  # DataJoint 2.x: the source's PostgreSQL database


@dataclass(frozen=True)
class Validated:
    """Phase 1's result: the checked request and the two accounts."""

    request: LinkRequest
    cls: type
    snake: str  # the source table's name, from the class name
    source: DatabaseServer
    local: DatabaseServer


@dataclass(frozen=True)
class SourcePlan:
    """Phase 3's result: the source tables and where each store's objects go."""

    layout: SourceLayout
    stores: dict[str, str]  # every source store -> its destination store
    placements: dict[str, tuple[Placement, Placement, str]]


def decorate(cls: type, request: LinkRequest) -> Any:
    """Check everything, then create the link's tables; return the local table class.

    Raises
    ------
    MissingCredentials, ConfigError, LinkError
        From the phase that found the problem, before anything is written.
    """
    checked = validate(cls, request)
    source_db = connect_server(checked.source, "source")
    local_db = connect_server(checked.local, "local")
    plan = read_source_side(checked, source_db, local_db)
    return write(checked, plan, source_db, local_db)


# ---- phase 1: validate ----------------------------------------------------------------------
def check_names(arguments: Mapping[str, tuple[str, re.Pattern[str]]]) -> None:
    """Refuse names DataJoint cannot hold (quotes, backticks, semicolons, spaces...).

    Raises
    ------
    ConfigError
        Naming the argument and showing the rejected value.
    """
    for argument, (value, pattern) in arguments.items():
        if not isinstance(value, str) or not pattern.match(value):
            raise ConfigError(
                f"link argument {argument}={value!r} is not a valid DataJoint name "
                f"(allowed: {pattern.pattern})"
            )


def credential(name: str) -> str:
    """Return the environment variable ``name``; raise :class:`MissingCredentials` if unset."""
    value = os.environ.get(name)
    if not value:
        raise MissingCredentials(
            f"environment variable {name} is not set; the link needs LINK_USER and LINK_PASS "
            "for its account on the source server"
        )
    return value


def local_server() -> DatabaseServer:
    """Return the local account from ``dj.config``, as DataJoint reads it."""
    import datajoint as dj

    values = {k: dj.config.get(f"database.{k}") for k in ("host", "user", "password")}
    for key, value in values.items():
        if not value and key != "password":
            raise ConfigError(f'dj.config["database.{key}"] is not set (the local account)')
    # As in DataJoint, a port in the host name overrides database.port.
    host, port = split_host(str(values["host"]), None, 'dj.config["database.host"]')
    if ":" not in str(values["host"]) and dj.config.get("database.port"):
        port = int(dj.config["database.port"])
    return DatabaseServer(
        name="local", host=host, port=port, user=str(values["user"]),
        password=str(values["password"] or ""), use_tls=dj.config.get("database.use_tls"),
    )  # fmt: skip


def check_request_names(cls: type, request: LinkRequest) -> None:
    """Check every name of a ``link(...)`` call and of the decorated class.

    Raises
    ------
    ConfigError
        Naming the argument and showing the rejected value.
    """
    names = {
        "source_schema": (request.source_schema, SCHEMA_NAME),
        "outbound_schema": (request.outbound_schema, SCHEMA_NAME),
        "local_schema": (request.local_schema, SCHEMA_NAME),
        "outbound_table": (request.outbound_table, CLASS_NAME),
        "class name": (cls.__name__, CLASS_NAME),
    }
    for source_store, destination_store in request.stores.items():
        names[f"stores key {source_store!r}"] = (source_store, STORE_NAME)
        names[f"stores value {destination_store!r}"] = (destination_store, STORE_NAME)
    check_names(names)


def validate(cls: type, request: LinkRequest) -> Validated:
    """Phase 1: check names, credentials and the local account; contact no server."""
    from datajoint.utils import from_camel_case

    check_request_names(cls, request)
    user, password = credential("LINK_USER"), credential("LINK_PASS")
    local = local_server()
    host, port = split_host(request.source_host, None, "source_host")
    source = DatabaseServer("source", host, user, password, port, request.use_tls)
    return Validated(request, cls, from_camel_case(cls.__name__), source, local)


# ---- phase 2: connect -----------------------------------------------------------------------
def connect_server(server: DatabaseServer, role: str) -> Database:
    """Connect to the ``role`` ("source" or "local") server, naming it when that fails."""
    try:
        return connect(server)
    except DatabaseError as err:
        raise LinkError(f"cannot reach the {role} server {server.address}: {err}") from err


# ---- phase 3: read the source ---------------------------------------------------------------
def store_spec(name: str) -> DjStoreSpec:
    """Return the parsed ``dj.config["stores"][name]``; a missing entry names the store."""
    import datajoint as dj

    stores = dj.config.get("stores") or {}
    if name not in stores:
        raise ConfigError(f"store {name!r} is not configured in dj.config['stores']")
    return DjStoreSpec.parse(name, stores[name])


def placements(
    layout: SourceLayout, stores: Mapping[str, str], source_schema: str, local_schema: str
) -> dict[str, tuple[Placement, Placement, str]]:
    """Resolve each source store to (source placement, destination placement, its name)."""
    for named in sorted({*stores, *stores.values()}):
        store_spec(named)  # a store named in the mapping must be configured, used or not
    out = {}
    for src_name in sorted(layout.stores()):
        dst_name = stores[src_name]
        src_spec, dst_spec = store_spec(src_name), store_spec(dst_name)
        src = Placement(src_spec.open(), source_schema, src_spec.subfolding)
        dst = Placement(dst_spec.open(), local_schema, dst_spec.subfolding)
        if src.store.root_id == dst.store.root_id and source_schema == local_schema:
            raise ConfigError(
                f"store {src_name!r} -> {dst_name!r}: both name {dst.store.description}, and the "
                f"local schema {local_schema!r} has the source schema's name, so pulled objects "
                "would share the source's folder; map the store to another one with stores= "
                "or choose another local schema name"
            )
        out[src_name] = (src, dst, dst_name)
    return out


def check_existing_local(
    layout: SourceLayout, stores: Mapping[str, str], local_db: Database, schema: str, name: str
) -> None:
    """Refuse an existing local table whose keys or stores differ from what the link writes.

    A local table made by datajoint-link 0.11 may keep ``blob@`` columns in the
    *source* store's name; pulling into it would write into the source store.
    """
    tables = [(layout.master, name)]
    tables += [(part, part_table(name, suffix)) for suffix, part in layout.parts.items()]
    for source, table in tables:
        if not local_db.table_exists(schema, table):
            continue
        local = {c.name: c for c in read_table(local_db, schema, table).columns}
        if [c for c in local if local[c].is_key] != source.primary_key:
            raise LinkError(
                f"local table {schema}.{table} exists with a different primary key "
                f"than the source table {source.schema}.{source.name}"
            )
        missing = [c.name for c in source.columns if c.name not in local]
        if missing:
            raise LinkError(
                f"local table {schema}.{table} has no column {', '.join(missing)}, which the "
                f"source table {source.schema}.{source.name} has (added there since the link "
                "declared it?); add the column locally, or link into a new local schema"
            )
        for column in source.external:
            have = local.get(column.name)
            wanted = stores[str(column.store)]
            if have is None or have.store != wanted:
                raise LinkError(
                    f"local column {schema}.{table}.{column.name} is stored in "
                    f"{have.store if have else None!r}, not in the destination store {wanted!r}; "
                    "pulling would write there (a table made by datajoint-link 0.11 keeps "
                    "blob@ columns in the source store's name). Migrate or drop that table first."
                )


def read_source_side(checked: Validated, source_db: Database, local_db: Database) -> SourcePlan:
    """Phase 3: read the source tables, resolve every store, check existing local tables."""
    request = checked.request
    layout = read_source(source_db, request.source_schema, checked.snake)
    known = local_collations(local_db)
    for table in layout.tables():  # a MySQL source's collations, as a MariaDB side spells them
        table.ddl = adapt_collations(table.ddl, f"{table.schema}.{table.name}", known)
    unmapped = sorted(layout.stores() - set(request.stores))
    stores = complete_stores(layout, request.stores)
    placed = placements(layout, stores, request.source_schema, request.local_schema)
    for name in unmapped:
        log.warning(
            "store %r is not in the link's stores mapping: pulled objects go to the local "
            "store of the same name, at %s/%s/", name, placed[name][1].store.description,
            request.local_schema,
        )  # fmt: skip
    check_existing_local(layout, stores, local_db, request.local_schema, checked.snake)
    return SourcePlan(layout, stores, placed)


# ---- phase 4: write -------------------------------------------------------------------------
def write(checked: Validated, plan: SourcePlan, source_db: Database, local_db: Database) -> Any:
    """Phase 4: create the outbound and local tables; return the local table class."""
    import datajoint as dj
    from datajoint.utils import from_camel_case

    request, layout = checked.request, plan.layout
    if any(c.kind == "filepath" for t in layout.tables() for c in t.external):
        os.environ.setdefault("DJ_SUPPORT_FILEPATH_MANAGEMENT", "TRUE")
    outbound_name = from_camel_case(request.outbound_table)
    outbound = ensure_outbound(source_db, request.outbound_schema, outbound_name, layout)
    if not local_db.schema_exists(request.local_schema):
        # DataJoint checks, then creates without IF NOT EXISTS: two processes
        # decorating a new link at once would race on that.
        local_db.execute(f"CREATE DATABASE IF NOT EXISTS {quote(request.local_schema)}")
    schema = dj.Schema(request.local_schema, connection=dj.conn(use_tls=local_db.uses_tls()))
    for dst in sorted({p[2] for p in plan.placements.values()}):
        schema.external[dst]  # creates ~external_<dst> if missing
    part_names = declare_local(layout, plan.stores, local_db, request.local_schema, checked.snake)
    origin = f"{request.source_host}/{request.source_schema}.{layout.master.name}"
    local_cls = schema(build_class(checked.cls, origin, part_names))
    linked = Linked(
        source_db=source_db, local_db=local_db, master=layout.master, parts=layout.parts,
        outbound=outbound, local_master=quote(request.local_schema, checked.snake),
        local_parts={s: quote(request.local_schema, n) for s, n in part_names.items()},
        placements=plan.placements, local_schema=request.local_schema,
        batch_size=request.batch_size, batch_bytes=request.batch_bytes,
        remove_local=remover(local_cls, layout.master.primary_key),
        copy_threads=pool_size([(s, d) for s, d, _ in plan.placements.values()]),
        local_parents=kept_parents(local_db, request.local_schema, [
            (layout.master, checked.snake),
            *((layout.parts[s], n) for s, n in part_names.items()),
        ]),
    )  # fmt: skip
    source = DatabaseServer(
        "source", checked.source.host, checked.source.user, checked.source.password,
        checked.source.port, source_db.uses_tls(),
    )  # fmt: skip
    local_cls._core = LinkCore(linked, source)
    return local_cls


def pk_definitions(db: Database, layout: SourceLayout) -> list[str]:
    """Return the master's primary-key column definitions, as the outbound table repeats them."""
    rows = db.query(
        "SELECT column_name, column_type, column_comment FROM information_schema.columns "
        "WHERE table_schema=%s AND table_name=%s AND column_key='PRI' ORDER BY ordinal_position",
        (layout.master.schema, layout.master.name),
    )
    return [f"{quote(n)} {t} NOT NULL COMMENT %s" % db.conn.escape(c) for n, t, c in rows]


def ensure_outbound(db: Database, schema: str, table: str, layout: SourceLayout) -> str:
    """Create the outbound table in the original's layout, or check an existing one."""
    full = quote(schema, table)
    if db.table_exists(schema, table):
        have = {r[0]: r[1] for r in db.query(
            "SELECT column_name, column_type FROM information_schema.columns "
            "WHERE table_schema=%s AND table_name=%s", (schema, table))}  # fmt: skip
        wanted = {*layout.master.primary_key, *OUTBOUND_COLUMNS}
        if set(have) != wanted:
            raise LinkError(
                f"outbound table {schema}.{table} exists but its columns {sorted(have)} are not "
                f"the link's layout {sorted(wanted)}"
            )
        return full
    pk_defs = pk_definitions(db, layout)
    cols = ",\n  ".join([*pk_defs, *(f"`{c}` {t} NOT NULL" for c, t in OUTBOUND_COLUMNS.items())])
    keys = ", ".join(quote(c) for c in layout.master.primary_key)
    if not db.schema_exists(schema):  # with table-level grants the schema already exists
        db.execute(f"CREATE DATABASE IF NOT EXISTS {quote(schema)}")
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {full} (\n  {cols},\n  PRIMARY KEY ({keys}),\n"
        f"  FOREIGN KEY ({keys}) REFERENCES {quote(layout.master.schema, layout.master.name)} "
        f"({keys}) ON UPDATE CASCADE ON DELETE RESTRICT\n) ENGINE=InnoDB COMMENT=''"
    )
    log.info("created outbound table %s on %s", full, db.server.address)
    return full


def declare_local(
    layout: SourceLayout, stores: Mapping[str, str], local_db: Database, schema: str, name: str
) -> dict[str, str]:
    """Create the local master and part tables from the source DDL; return part names."""

    def resolve(ref_schema: str | None, table: str) -> str | None:
        if ref_schema is None and table == layout.master.name:
            return quote(name)
        if ref_schema is None and local_db.table_exists(schema, table):
            return quote(table)
        log.info("foreign key to %s.%s is not kept locally (no local table)", ref_schema, table)
        return None

    statements = [layout.master.local_ddl(schema, name, stores, resolve)]
    part_names = {}
    for suffix, part in layout.parts.items():
        part_names[suffix] = part_table(name, suffix)
        statements.append(part.local_ddl(schema, part_names[suffix], stores, resolve))
    for ddl in statements:
        create_table(local_db, ddl)
    return part_names


CANNOT_CREATE = 1005
"""MariaDB's "Can't create table ... (errno: 150)": a referenced table is being created."""


def create_table(db: Database, ddl: str, attempts: int = 5) -> None:
    """Run one ``CREATE TABLE IF NOT EXISTS``, again if a concurrent declaration got in its way.

    Two processes decorating a new link at once both create the same tables. MariaDB
    can then refuse a foreign key to a table the other process is creating at that
    moment; a moment later the statement succeeds, or finds the table made.
    """
    for attempt in range(1, attempts + 1):
        try:
            db.execute(ddl)
            return
        except DatabaseError as err:
            code = getattr(err.__cause__, "args", (None,))[0]
            if code != CANNOT_CREATE or attempt == attempts:
                raise
            log.info("creating a local table met a concurrent declaration; trying again")
            time.sleep(0.2 * attempt)


def build_class(cls: type, origin: str, part_names: Mapping[str, str]) -> Any:
    """Return the local DataJoint class: ``LocalTable`` behaviour, the parts nested."""
    import datajoint as dj
    from datajoint.utils import from_camel_case, to_camel_case

    namespace: dict[str, Any] = {
        "definition": f"# linked from {origin}",
        "__doc__": cls.__doc__ or f"Local copy of {origin}.",
        "__module__": cls.__module__,
    }
    for suffix in part_names:
        part_cls = to_camel_case(suffix)
        if from_camel_case(part_cls) != suffix:
            raise LinkError(f"part table {suffix!r} has a name DataJoint cannot map to a class")
        namespace[part_cls] = type(part_cls, (dj.Part,), {"definition": "-> master"})
    return type(cls.__name__, (LocalTable, dj.Manual), namespace)


def remover(local_cls: Any, cols: Sequence[str]) -> Callable[[Sequence[Key]], int]:
    """Return a remover that uses DataJoint's cascading delete (for tables with children)."""
    import datajoint as dj

    def remove(keys: Sequence[Key]) -> int:
        restriction = [dict(zip(cols, k, strict=True)) for k in keys]
        return int(dj.Table.delete(local_cls() & restriction, transaction=True, safemode=False))

    return remove
