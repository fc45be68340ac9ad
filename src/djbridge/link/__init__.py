"""link: share table rows from one lab's DataJoint server with another's.

The decorator keeps the public interface of datajoint-link 0.11, so existing code
and existing links keep working: the same outbound (helper) table on the source
server, the same local table, pulls and deletes that carry on where a previous
run stopped. What differs is underneath:

* state is read for all requested keys at once and each step is applied to a
  whole batch, in one statement or transaction on one server
  (:mod:`djbridge.link.sync`, :mod:`djbridge.link.states`);
* rows are copied with their raw column values and external objects store to
  store, verified, into the **destination** stores only
  (:mod:`djbridge.link.transfer`);
* the local table mirrors the source's DDL, parts and indexes included
  (:mod:`djbridge.link.mirror`).

    from link import link

    @link("source-db:3306", "lab", "lab_outbound", "Outbound", "lab_copy",
          stores={"raw": "raw_local"})
    class Recording:
        pass

    Recording().source.pull(display_progress=True)
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from djbridge.config import DatabaseServer, split_host
from djbridge.errors import ConfigError, DatabaseError, LinkError
from djbridge.layout import SCHEMA_NAME, STORE_NAME, part_table
from djbridge.link.mirror import SourceLayout, complete_stores, read_source, read_table
from djbridge.link.states import Operation, State
from djbridge.link.sync import Linked, RunResult
from djbridge.link.tables import (
    LinkCore,
    LinkStatus,
    LocalTable,
    _ensure_outbound,
    _env,
    _local_server,
    _placements,
    _remover,
)
from djbridge.link.transfer import pool_size
from djbridge.mysql import Database, connect, quote

__all__ = ["LinkStatus", "Operation", "RunResult", "State", "link"]

log = logging.getLogger(__name__)


CLASS_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{0,62}$")


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


def _connect(server: DatabaseServer, role: str) -> Database:
    try:
        return connect(server)
    except DatabaseError as err:
        raise LinkError(f"cannot reach the {role} server {server.address}: {err}") from err


def _check_existing_local(
    layout: SourceLayout,
    stores: Mapping[str, str],
    local_db: Database,
    local_schema: str,
    local_name: str,
) -> None:
    """Refuse an existing local table whose keys or stores differ from what the link writes.

    A local table made by datajoint-link 0.11 may keep ``blob@`` columns in the
    *source* store's name; pulling into it would write into the source store.
    """
    tables = [(layout.master, local_name)]
    tables += [(part, part_table(local_name, suffix)) for suffix, part in layout.parts.items()]
    for source, name in tables:
        if not local_db.table_exists(local_schema, name):
            continue
        local = {c.name: c for c in read_table(local_db, local_schema, name).columns}
        if [c for c in local if local[c].is_key] != source.primary_key:
            raise LinkError(
                f"local table {local_schema}.{name} exists with a different primary key "
                f"than the source table {source.schema}.{source.name}"
            )
        for column in source.external:
            have = local.get(column.name)
            wanted = stores[str(column.store)]
            if have is None or have.store != wanted:
                raise LinkError(
                    f"local column {local_schema}.{name}.{column.name} is stored in "
                    f"{have.store if have else None!r}, not in the destination store {wanted!r}; "
                    "pulling would write there (a table made by datajoint-link 0.11 keeps "
                    "blob@ columns in the source store's name). Migrate or drop that table first."
                )


def _declare_local(
    layout: SourceLayout,
    stores: Mapping[str, str],
    local_db: Database,
    local_schema: str,
    local_name: str,
) -> dict[str, str]:
    """Create the local master and part tables from the source DDL; return part names."""

    def resolve(schema: str | None, table: str) -> str | None:
        if schema is None and table == layout.master.name:
            return quote(local_name)
        if schema is None and local_db.table_exists(local_schema, table):
            return quote(table)
        log.info("foreign key to %s.%s is not kept locally (no such local table)", schema, table)
        return None

    statements = [layout.master.local_ddl(local_schema, local_name, stores, resolve)]
    part_names = {}
    for suffix, part in layout.parts.items():
        part_names[suffix] = part_table(local_name, suffix)
        statements.append(part.local_ddl(local_schema, part_names[suffix], stores, resolve))
    for ddl in statements:
        local_db.execute(ddl)
    return part_names


def _build_class(cls: type, origin: str, part_names: Mapping[str, str]) -> Any:
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


def link(
    source_host: str,
    source_schema: str,
    outbound_schema: str,
    outbound_table: str,
    local_schema: str,
    *,
    stores: Mapping[str, str] | None = None,
    use_tls: bool | None = None,
    batch_size: int = 500,
) -> Any:
    """Link the source table named like the decorated class into ``local_schema``.

    Parameters
    ----------
    source_host
        The source database server, ``host`` or ``host:port``.
    source_schema
        The schema that holds the source table on that server.
    outbound_schema, outbound_table
        Where the link keeps its helper (outbound) table on the source server;
        ``outbound_table`` is a DataJoint class name, e.g. ``"Outbound"``.
    local_schema
        The schema on the local server (from ``dj.config``) for the local table.
    stores
        ``{"source_store": "destination_store"}`` for the external stores the
        source table uses (``blob@``, ``attach@`` and ``filepath@`` alike). A store
        left out keeps its name: its objects go to the local ``dj.config["stores"]``
        entry of the same name, under the local schema's folder.
    use_tls
        TLS for the source connection: True, False, or None for TLS where offered.
    batch_size
        Rows per transaction when copying.

    Returns
    -------
    Callable
        A class decorator returning the local DataJoint table class.

    Raises
    ------
    MissingCredentials
        If ``LINK_USER`` or ``LINK_PASS`` is not set.
    ConfigError
        If the local account or a used or named store is not configured, or a
        destination would share the source schema's folder.
    LinkError
        If a server is unreachable or the source table does not exist.
    """
    mapping = dict(stores or {})

    def decorate(cls: type) -> Any:
        import datajoint as dj
        from datajoint.utils import from_camel_case

        names = {
            "source_schema": (source_schema, SCHEMA_NAME),
            "outbound_schema": (outbound_schema, SCHEMA_NAME),
            "local_schema": (local_schema, SCHEMA_NAME),
            "outbound_table": (outbound_table, CLASS_NAME),
            "class name": (cls.__name__, CLASS_NAME),
        }
        for source_store, destination_store in mapping.items():
            names[f"stores key {source_store!r}"] = (source_store, STORE_NAME)
            names[f"stores value {destination_store!r}"] = (destination_store, STORE_NAME)
        check_names(names)
        user, password = _env("LINK_USER"), _env("LINK_PASS")
        local_server = _local_server()
        host, port = split_host(source_host, None, "source_host")
        source_server = DatabaseServer("source", host, user, password, port, use_tls)
        source_db = _connect(source_server, "source")
        snake = from_camel_case(cls.__name__)
        layout = read_source(source_db, source_schema, snake)
        unmapped = sorted(layout.stores() - set(mapping))
        full = complete_stores(layout, mapping)
        placements = _placements(layout, full, source_schema, local_schema)
        for name in unmapped:
            log.warning(
                "store %r is not in the link's stores mapping: pulled objects go to the local "
                "store of the same name, at %s/%s/", name, placements[name][1].store.description,
                local_schema,
            )  # fmt: skip
        local_db = _connect(local_server, "local")
        tls_in_use = source_db.uses_tls()
        source_server = DatabaseServer("source", host, user, password, port, tls_in_use)
        if any(c.kind == "filepath" for t in layout.tables() for c in t.external):
            os.environ.setdefault("DJ_SUPPORT_FILEPATH_MANAGEMENT", "TRUE")
        _check_existing_local(layout, full, local_db, local_schema, snake)
        # Everything is validated; from here on the link writes.
        outbound = _ensure_outbound(
            source_db, outbound_schema, from_camel_case(outbound_table), layout
        )
        local_tls = local_db.uses_tls()
        if not local_db.schema_exists(local_schema):
            # DataJoint checks, then creates without IF NOT EXISTS: two processes
            # decorating a new link at once would race on that.
            local_db.execute(f"CREATE DATABASE IF NOT EXISTS {quote(local_schema)}")
        schema = dj.Schema(local_schema, connection=dj.conn(use_tls=local_tls))
        for dst in sorted({p[2] for p in placements.values()}):
            schema.external[dst]  # creates ~external_<dst> if missing
        part_names = _declare_local(layout, full, local_db, local_schema, snake)
        origin = f"{source_host}/{source_schema}.{layout.master.name}"
        local_cls = schema(_build_class(cls, origin, part_names))
        linked = Linked(
            source_db=source_db, local_db=local_db, master=layout.master, parts=layout.parts,
            outbound=outbound, local_master=quote(local_schema, snake),
            local_parts={s: quote(local_schema, n) for s, n in part_names.items()},
            placements=placements, local_schema=local_schema, batch_size=batch_size,
            copy_threads=pool_size([(s, d) for s, d, _ in placements.values()]),
        )  # fmt: skip
        linked.remove_local = _remover(local_cls, layout.master.primary_key)
        local_cls._core = LinkCore(linked, source_server, outbound)
        return local_cls

    return decorate
