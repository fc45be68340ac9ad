"""The DataJoint face of a link: the ``link`` decorator, the local table, ``.source``.

``link(...)`` checks everything before it writes anything: the ``LINK_USER`` and
``LINK_PASS`` environment variables, the local account in ``dj.config``, the
source server, the source table, and the stores mapping. Only then does it
create the outbound table on the source server (the original's exact layout) and
the local tables on the local server, and return a DataJoint table class:

* ``Table()`` is the local table; parts are its nested classes;
* ``Table().source`` is the source table (restrict it with ``&``), with
  ``.pull(display_progress=...)``, ``.flagged`` and ``.status()``;
* ``(Table() & cond).delete()`` deletes through the link: one confirmation with
  DataJoint's safemode, then the outbound state follows.

    from link import link

    @link("db.lab.org", "lab", "lab_outbound", "Outbound", "my_copy",
          stores={"raw": "raw_copy"})
    class Recording:
        pass

    (Recording().source & "session_id < 10").pull(display_progress=True)
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from djbridge.config import DatabaseServer, split_host
from djbridge.errors import ConfigError, LinkError, MissingCredentials
from djbridge.link.mirror import SourceLayout
from djbridge.link.states import STUCK, Operation, State, classify
from djbridge.link.sync import Engine, Key, Linked, RunResult
from djbridge.link.transfer import Placement
from djbridge.mysql import Database, quote
from djbridge.progress import Progress
from djbridge.stores import store_from_dj_spec

log = logging.getLogger(__name__)

OUTBOUND_COLUMNS = {
    "process": "enum('PULL','DELETE','NONE')",
    "is_flagged": "enum('TRUE','FALSE')",
    "is_deprecated": "enum('TRUE','FALSE')",
}


@dataclass
class LinkStatus:
    """How many entities are in each state, and which ones are stuck mid-process."""

    counts: Counter[State] = field(default_factory=Counter)
    stuck: list[dict[str, Any]] = field(default_factory=list)


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise MissingCredentials(
            f"environment variable {name} is not set; the link needs LINK_USER and LINK_PASS "
            "for its account on the source server"
        )
    return value


def _local_server() -> DatabaseServer:
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


def _store_spec(name: str) -> dict[str, Any]:
    import datajoint as dj

    stores = dj.config.get("stores") or {}
    if name not in stores:
        raise ConfigError(f"store {name!r} is not configured in dj.config['stores']")
    return dict(stores[name])


def _placements(
    layout: SourceLayout, stores: Mapping[str, str], source_schema: str, local_schema: str
) -> dict[str, tuple[Placement, Placement, str]]:
    for named in sorted({*stores, *stores.values()}):
        _store_spec(named)  # a store named in the mapping must be configured, used or not
    out = {}
    for src_name in sorted(layout.stores()):
        dst_name = stores[src_name]
        src_spec, dst_spec = _store_spec(src_name), _store_spec(dst_name)
        src = Placement(store_from_dj_spec(src_name, src_spec), source_schema,
                        tuple(src_spec.get("subfolding") or ()) or (2, 2))  # fmt: skip
        dst = Placement(store_from_dj_spec(dst_name, dst_spec), local_schema,
                        tuple(dst_spec.get("subfolding") or ()) or (2, 2))  # fmt: skip
        if src.store.root_id == dst.store.root_id and source_schema == local_schema:
            raise ConfigError(
                f"store {src_name!r} -> {dst_name!r}: both name {dst.store.description}, and the "
                f"local schema {local_schema!r} has the source schema's name, so pulled objects "
                "would share the source's folder; map the store to another one with stores= "
                "or choose another local schema name"
            )
        out[src_name] = (src, dst, dst_name)
    return out


def _ensure_outbound(db: Database, schema: str, table: str, layout: SourceLayout) -> str:
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
    pk_defs = _pk_definitions(db, layout)
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


def _pk_definitions(db: Database, layout: SourceLayout) -> list[str]:
    rows = db.query(
        "SELECT column_name, column_type, column_comment FROM information_schema.columns "
        "WHERE table_schema=%s AND table_name=%s AND column_key='PRI' ORDER BY ordinal_position",
        (layout.master.schema, layout.master.name),
    )
    return [f"{quote(n)} {t} NOT NULL COMMENT %s" % db.conn.escape(c) for n, t, c in rows]


class SourceView:
    """Mixin for ``Table().source``: a DataJoint table on the source server plus link verbs."""

    _core: LinkCore

    def _keys(self) -> list[Key]:
        self._core.linked.ensure_connected()
        sql = self.proj().make_sql()  # type: ignore[attr-defined]
        return [tuple(r) for r in self._core.linked.source_db.query(sql)]

    def pull(self, *, display_progress: bool = False) -> RunResult:
        """Pull the rows of this (restricted) source table into the local table."""
        return self._core.run(self._keys(), Operation.PULL, display_progress)

    @property
    def flagged(self) -> list[dict[str, Any]]:
        """Primary keys of rows the source side flagged for deletion."""
        outbound = self._core.outbound_table()
        flagged = (outbound & 'is_flagged="TRUE"').proj() & self.proj()  # type: ignore[attr-defined]
        return list(flagged.fetch(as_dict=True))

    def status(self) -> LinkStatus:
        """Count entities of this (restricted) source table by state; list the stuck ones."""
        return self._core.status(self._keys())


class LocalTable:
    """Mixin for the local table class that :func:`link` returns."""

    _core: LinkCore

    @property
    def source(self) -> Any:
        """The source table on the source server, restrictable with ``&``."""
        return self._core.source_table()

    def delete(
        self,
        transaction: bool = True,
        safemode: bool | None = None,
        force_parts: bool = False,
        *,
        display_progress: bool = False,
    ) -> int:
        """Delete restricted rows locally through the link; return the entities deleted.

        With DataJoint's safemode on, one confirmation covers the whole deletion and
        cancelling changes nothing on either server. Part rows always go with their
        master, so ``force_parts`` changes nothing here, as in DataJoint for a master.

        Raises
        ------
        LinkError
            If ``transaction`` is False: a delete through the link commits step by
            step on two servers and cannot join a transaction of the caller's.
        """
        import datajoint as dj

        if not transaction:
            raise LinkError(
                "delete(transaction=False) is not supported through a link: the delete "
                "commits step by step on the local and the source server and cannot join "
                "a transaction of yours; call delete() with transaction=True (the default)"
            )
        del force_parts  # parts are deleted with their masters either way
        self._core.linked.ensure_connected()
        keys = [tuple(r) for r in self._core.linked.local_db.query(self.proj().make_sql())]  # type: ignore[attr-defined]
        # A delete interrupted after "remove from local" has no local row left for a
        # restriction to find; its source step is still owed, so every delete finishes it.
        unfinished = self._core.unfinished_deletes(exclude=keys)
        if not keys and not unfinished:
            log.info("delete: nothing to delete in %s", self._core.linked.local_master)
            return 0
        safemode = dj.config["safemode"] if safemode is None else safemode
        if safemode and keys:
            print(f"About to delete {len(keys)} entities (with their part rows) from "
                  f"{self._core.linked.local_master} through the link.")  # fmt: skip
            if dj.utils.user_choice("Commit deletes?", default="no") != "yes":
                print("Delete cancelled: nothing changed on either server.")
                return 0
        self._core.run([*keys, *unfinished], Operation.DELETE, display_progress)
        return len(keys)


class LinkCore:
    """One link: connections, layout and engine; builds the DataJoint classes."""

    def __init__(self, linked: Linked, source_server: DatabaseServer, outbound_name: str) -> None:
        self.linked = linked
        self.engine = Engine(linked)
        self.source_server = source_server
        self.outbound_name = outbound_name
        self._dj_source: Any = None

    def _source_connection(self) -> Any:
        import datajoint as dj

        if self._dj_source is None:
            s = self.source_server
            self._dj_source = dj.Connection(
                f"{s.host}:{s.port}", s.user, s.password, use_tls=bool(s.use_tls)
            )
        return self._dj_source

    def source_table(self) -> Any:
        """Return a fresh ``SourceView`` of the master table on the source server."""
        import datajoint as dj

        master = self.linked.master
        cls = type("Source", (SourceView, dj.FreeTable), {"_core": self})
        return cls(self._source_connection(), quote(master.schema, master.name))

    def outbound_table(self) -> Any:
        """Return the outbound table as a DataJoint FreeTable."""
        import datajoint as dj

        return dj.FreeTable(self._source_connection(), self.linked.outbound)

    def run(self, keys: Sequence[Key], op: Operation, display_progress: bool) -> RunResult:
        """Run ``op`` on ``keys`` with an optional progress bar."""
        with Progress(op.value.upper(), total=len(keys), unit="row",
                      enabled=display_progress) as bar:  # fmt: skip
            result = self.engine.run(keys, op, bar)
        log.info("%s of %d entities finished: %s", op.value, len(keys), dict(result.final_states))
        return result

    def unfinished_deletes(self, exclude: Sequence[Key] = ()) -> list[Key]:
        """Return keys mid-delete (outbound ``process='DELETE'``) whose local rows are gone."""
        cols = self.linked.key_columns
        names = ", ".join(quote(c) for c in cols)
        sql = f"SELECT {names} FROM {self.linked.outbound} WHERE process='DELETE'"
        skip = set(exclude)
        keys = [k for k in map(tuple, self.linked.source_db.query(sql)) if k not in skip]
        if not keys:
            return []
        states = self.engine.read_states(keys)
        unfinished = [k for k in keys if not states[k].local]
        if unfinished:
            log.info("delete: finishing %d deletes interrupted earlier", len(unfinished))
        return unfinished

    def status(self, keys: Sequence[Key]) -> LinkStatus:
        """Classify ``keys`` and report the counts and the stuck ones."""
        report = LinkStatus()
        cols = self.linked.key_columns
        for key, persisted in self.engine.read_states(keys).items():
            state = classify(persisted)
            report.counts[state] += 1
            if state in STUCK:
                report.stuck.append(dict(zip(cols, key, strict=True)))
        return report


def _remover(local_cls: Any, cols: Sequence[str]) -> Callable[[Sequence[Key]], int]:
    """Return a remover that uses DataJoint's cascading delete (for tables with children)."""
    import datajoint as dj

    def remove(keys: Sequence[Key]) -> int:
        restriction = [dict(zip(cols, k, strict=True)) for k in keys]
        return int(dj.Table.delete(local_cls() & restriction, transaction=True, safemode=False))

    return remove
