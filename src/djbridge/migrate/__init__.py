"""dj-migrate: move DataJoint 0.14 schemas into DataJoint 2.x, rows and objects, verified.

Three commands share one preflight and one copy engine:

* :func:`plan` writes nothing anywhere. Per table, in dependency order: the 2.x
  definition, the rows, the objects and bytes per store, every conversion with its reason
  and every blocker;
* :func:`run` declares what the destination lacks (through DataJoint 2.x, so ``~lineage``
  is right), then copies every row the destination lacks, parents before children, each
  batch's objects copied and verified before its rows commit (:mod:`.copier`). It can run
  again and again while 0.14 keeps working: a second run copies nothing;
* :func:`verify` compares every migrated row by key, and every object (:mod:`.check`).

The preflight reads the whole file, contacts every server and store, and reads every
source schema before anything is written; a problem there is a
:class:`~djbridge.errors.ConfigError` (exit 2). The source is only ever read, inside one
consistent snapshot.

    from djbridge.migrate import load, plan, run, verify
    settings = load(Path("dj-migrate.toml"))
    report, status = run(settings, delete_extra=False, progress=False)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from djbridge.errors import ConfigError, DatabaseError, DjBridgeError, StoreError
from djbridge.heap import settled
from djbridge.layout import tracking_table
from djbridge.link.transfer import Dj2Placement, Placement
from djbridge.migrate.catalog import Table, dependency_order, read_schema
from djbridge.migrate.check import TableChecker
from djbridge.migrate.copier import Moved, StorePair, TableMover, open_snapshot
from djbridge.migrate.definitions import TablePlan, declare, plan_table, reference
from djbridge.migrate.settings import SchemaMove, Settings, load_settings
from djbridge.migrate.target import Destination, open_destination
from djbridge.mysql import Database, connect, quote
from djbridge.progress import Progress, want_bar
from djbridge.stores import Store

log = logging.getLogger(__name__)

Report = dict[str, Any]


def load(path: Path, schemas: Sequence[str] = ()) -> Settings:
    """Read the configuration file, keeping only ``schemas`` (by source name) if given."""
    return load_settings(path).select(list(schemas))


@dataclass
class Session:
    """A preflight's result: open connections, stores, and every table's plan, in order."""

    settings: Settings
    source: Database
    dest: Destination
    plans: list[TablePlan]
    moves: dict[str, SchemaMove]  # by source schema
    source_stores: dict[str, Store]
    destination_stores: dict[str, Store]
    pool: ThreadPoolExecutor
    existing: set[tuple[str, str]] = field(default_factory=set)


def _probe(name: str, store: Store, where: str) -> None:
    try:
        store.round_trip()
        next(iter(store.iter_objects("")), None)
    except StoreError as err:
        raise ConfigError(f"{where}.{name}: {err}") from err


@contextmanager
def session(settings: Settings) -> Iterator[Session]:
    """Contact everything, read every source schema and plan every table; then yield.

    Raises
    ------
    ConfigError
        On any problem found before writing: an unreachable server or store, a missing
        schema, a store the file does not configure.
    """
    with ExitStack() as stack:
        try:
            source = connect(settings.source)
        except DatabaseError as err:
            raise ConfigError(f"[source]: {err}") from err
        stack.callback(source.close)
        open_snapshot(source)
        try:
            dest = open_destination(settings.destination)
        except DatabaseError as err:
            raise ConfigError(f"[destination]: {err}") from err
        stack.callback(dest.close)
        tables: list[Table] = []
        for move in settings.schemas:
            tables.extend(read_schema(source, move.source))
        source_stores = {}
        for name, spec in settings.source_stores.items():
            source_stores[name] = spec.open()
            _probe(name, source_stores[name], "source_stores")
        destination_stores = {}
        for name, dj2 in settings.destination_stores.items():
            destination_stores[name] = dj2.spec.open()
            if dj2.spec.protocol == "s3":
                _probe(name, destination_stores[name], "destination_stores")
        moves = {m.source: m for m in settings.schemas}
        plans = _plan_all(settings, source, dependency_order(tables), moves)
        existing = {
            (m.destination, t) for m in settings.schemas for t in dest.tables(m.destination)
        }
        pool = stack.enter_context(ThreadPoolExecutor(16, thread_name_prefix="dj-migrate"))
        yield Session(
            settings, source, dest, plans, moves, source_stores, destination_stores, pool, existing
        )


def _bare_json_strings(source: Database, table: Table, plan: TablePlan) -> list[dict[str, Any]]:
    """Blockers for json columns holding a bare string, which 2.3.5 cannot read on PostgreSQL."""
    found = []
    full = quote(table.schema, table.name)
    for name, cast in plan.casts.items():
        if cast.declared != "json":
            continue
        count = source.query(
            f"SELECT COUNT(*) FROM {full} WHERE JSON_TYPE({quote(name)}) = 'STRING'"
        )[0][0]
        if count:
            found.append({"column": name, "why": (
                f"{count} row(s) hold a bare JSON string, which DataJoint 2.3.5 cannot read "
                "back from PostgreSQL (it decodes the value twice); wrap such values in an "
                "object or a list in 0.14 first, or migrate to MySQL")})  # fmt: skip
    return found


def _plan_all(
    settings: Settings, source: Database, tables: list[Table], moves: dict[str, SchemaMove]
) -> list[TablePlan]:
    backend = settings.destination.backend
    schema_map = {m.source: m.destination for m in settings.schemas}
    known: set[tuple[str, str]] = set()
    plans = []
    for table in tables:
        move = moves[table.schema]
        store_map = {s: move.store_for(s) for s in settings.source_stores}
        for column in table.external:
            if column.store not in settings.source_stores:
                raise ConfigError(
                    f"schemas ({table.schema}): table {table.name} keeps {column.name} in store "
                    f"{column.store!r}, which [source_stores] does not configure"
                )
            if move.store_for(str(column.store)) not in settings.destination_stores:
                raise ConfigError(
                    f"schemas ({table.schema}).stores: store {column.store!r} maps to "
                    f"{move.store_for(str(column.store))!r}, which [destination_stores] lacks"
                )
        plan = plan_table(table, move.destination, backend, store_map, schema_map, known)
        if backend == "postgresql":
            plan.blockers.extend(_bare_json_strings(source, table, plan))
        if not plan.blockers:
            known.add((table.schema, table.name))
        plans.append(plan)
    return plans


def _mover(s: Session, plan: TablePlan, bar: Progress | None = None) -> TableMover:
    move = s.moves[plan.source.schema]
    stores = {}
    for column in plan.source.external:
        src_name = str(column.store)
        dst_name = move.store_for(src_name)
        spec, dj2 = s.settings.source_stores[src_name], s.settings.destination_stores[dst_name]
        stores[column.name] = StorePair(
            Placement(s.source_stores[src_name], plan.source.schema, spec.subfolding),
            Dj2Placement(
                s.destination_stores[dst_name],
                move.destination,
                dj2.subfolding,
                dj2.hash_prefix,
                filepath=column.external_kind == "filepath",
            ),
            dst_name,
        )
    return TableMover(
        plan,
        s.source,
        s.dest,
        stores,
        s.pool,
        on_rows=bar.update if bar else None,
        on_bytes=bar.add_bytes if bar else None,
    )


def _rows(s: Session, plan: TablePlan) -> int:
    table = plan.source
    return int(s.source.query(f"SELECT COUNT(*) FROM {quote(table.schema, table.name)}")[0][0])


def _count(s: Session, plan: TablePlan) -> tuple[int, dict[str, int], dict[str, int]]:
    table = plan.source
    full = quote(table.schema, table.name)
    rows = _rows(s, plan)
    objects: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for column in table.external:
        store = str(column.store)
        tracking = quote(table.schema, tracking_table(store))
        count, size = s.source.query(
            f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM {tracking} WHERE hash IN "
            f"(SELECT {quote(column.name)} FROM {full})"
        )[0]
        objects[store] = objects.get(store, 0) + int(count)
        sizes[store] = sizes.get(store, 0) + int(size)
    return rows, objects, sizes


def _report(command: str, s: Session, entries: dict[str, list[Report]], ok: bool) -> Report:
    return {
        "command": command,
        "ok": ok,
        "schemas": [
            {"source": m.source, "destination": m.destination, "tables": entries.get(m.source, [])}
            for m in s.settings.schemas
        ],
    }


def plan(settings: Settings) -> tuple[Report, int]:
    """Plan every schema; write nothing. Exit status 0 migratable, 1 blockers."""
    with session(settings) as s:
        entries: dict[str, list[Report]] = {}
        blocked = False
        for p in s.plans:
            rows, objects, sizes = _count(s, p)
            blocked |= bool(p.blockers)
            entries.setdefault(p.source.schema, []).append(
                {
                    "table": p.name,
                    "tier": p.source.tier,
                    "definition": p.definition,
                    "rows": rows,
                    "objects": objects,
                    "bytes": sizes,
                    "conversions": p.conversions,
                    "blockers": p.blockers,
                }
            )
        return _report("plan", s, entries, not blocked), 1 if blocked else 0


def _declare(s: Session) -> dict[tuple[str, str], str]:
    """Declare every unblocked table the destination lacks, with DataJoint 2.x.

    Returns ``{(source schema, table): reason}`` for each table that could not be declared.
    """
    wanted = [p for p in s.plans if not p.blockers]
    if all((p.destination_schema, p.name) in s.existing for p in wanted):
        return {}
    dj = require_dj2()
    server = s.settings.destination
    extra = {"database__name": server.database} if server.backend == "postgresql" else {}
    instance = dj.Instance(
        host=server.host,
        user=server.user,
        password=server.password,
        port=server.port,
        backend=server.backend,
        use_tls=bool(server.use_tls),
        **extra,
    )
    quiet_datajoint()  # an Instance may install DataJoint's handler again
    for name, dj2 in s.settings.destination_stores.items():
        instance.config.stores[name] = dj2_store_config(dj2)
    schemas = {p.destination_schema: instance.Schema(p.destination_schema) for p in wanted}
    context: dict[str, Any] = {}
    try:
        _, failed = declare(wanted, dj, context, schemas, s.existing)
    finally:
        instance.connection.close()
    s.existing |= {
        (p.destination_schema, p.name) for p in wanted if (p.source.schema, p.name) not in failed
    }
    return failed


def require_dj2() -> Any:
    """Import DataJoint 2.x, or say that dj-migrate runs beside it.

    Raises
    ------
    ConfigError
        If this environment has no DataJoint, or DataJoint 0.14.
    """
    warnings.filterwarnings("ignore", message="No datajoint.json found")
    try:
        import datajoint as dj
    except ImportError as err:
        raise ConfigError(
            "dj-migrate runs beside DataJoint 2.x, which is not installed here"
        ) from err
    quiet_datajoint()
    if not str(dj.__version__).startswith("2."):
        raise ConfigError(
            f"dj-migrate runs beside DataJoint 2.x; this environment has DataJoint {dj.__version__}"
        )
    return dj


def quiet_datajoint() -> None:
    """Send DataJoint's log records through dj-migrate's own handler, at its level or WARNING.

    DataJoint installs a handler of its own that prints to standard output; a report's
    output must stay the tool's.
    """
    logger = logging.getLogger("datajoint")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(max(logging.WARNING, log.getEffectiveLevel()))


def dj2_store_config(dj2: Any) -> dict[str, Any]:
    """Return the 2.x ``stores`` entry of a destination store."""
    spec = dj2.spec
    entry: dict[str, Any] = {
        "protocol": spec.protocol,
        "location": spec.location,
        "hash_prefix": dj2.hash_prefix,
        "schema_prefix": dj2.schema_prefix,
    }
    if dj2.subfolding:
        entry["subfolding"] = list(dj2.subfolding)
    if spec.protocol == "s3":
        entry.update(
            endpoint=spec.endpoint,
            bucket=spec.bucket,
            access_key=spec.access_key,
            secret_key=spec.secret_key,
            secure=spec.secure,
        )
    return entry


def run(
    settings: Settings, *, delete_extra: bool = False, progress: bool | None = None
) -> tuple[Report, int]:
    """Declare, copy, count (and with ``delete_extra`` delete) extra rows. Exit 0 or 1."""
    with session(settings) as s, settled():
        refused = _declare(s)
        entries: dict[str, list[Report]] = {}
        results: dict[tuple[str, str], Report] = {}
        failed = False
        fresh: set[tuple[str, str]] = set()  # tables empty at the destination: no extra rows
        with Progress("migrating rows", unit="row", enabled=progress) as bar:
            if want_bar(progress):
                bar.set_total(sum(_rows(s, p) for p in s.plans if not p.blockers))
            for p in s.plans:
                entry: Report = {
                    "table": p.name,
                    "rows_copied": 0,
                    "rows_present": 0,
                    "rows_extra": 0,
                    "objects_copied": 0,
                    "bytes_copied": 0,
                    "error": None,
                }
                results[(p.source.schema, p.name)] = entry
                entries.setdefault(p.source.schema, []).append(entry)
                if p.blockers:
                    entry["error"] = "blocked: " + "; ".join(b["why"] for b in p.blockers)
                    failed = True
                    continue
                if (p.source.schema, p.name) in refused:
                    entry["error"], failed = refused[(p.source.schema, p.name)], True
                    continue
                try:
                    moved: Moved = _mover(s, p, bar).copy()
                except DjBridgeError as err:
                    entry["error"], failed = str(err), True
                    log.error("%s.%s: %s", p.source.schema, p.name, err)
                    continue
                if moved.was_empty:
                    fresh.add((p.source.schema, p.name))
                entry.update(
                    rows_copied=moved.rows_copied,
                    rows_present=moved.rows_present,
                    objects_copied=moved.objects_copied,
                    bytes_copied=moved.bytes_copied,
                )
        for p in reversed(s.plans):  # children first
            entry = results[(p.source.schema, p.name)]
            if p.blockers or (p.destination_schema, p.name) not in s.existing:
                continue
            if (p.source.schema, p.name) in fresh:
                continue
            try:
                mover = _mover(s, p)
                for keys in mover.extra_keys():
                    entry["rows_extra"] += len(keys)
                    if delete_extra:
                        with s.dest.transaction():
                            s.dest.delete(p.destination_schema, p.name, mover.key_columns, keys)
            except DjBridgeError as err:
                entry["error"], failed = entry["error"] or str(err), True
        return _report("run", s, entries, not failed), 1 if failed else 0


def verify(settings: Settings, *, progress: bool | None = None) -> tuple[Report, int]:
    """Compare every migrated row and object. Exit 0 equal, 1 differences."""
    with session(settings) as s:
        entries: dict[str, list[Report]] = {}
        ok = True
        with Progress("verifying rows", unit="row", enabled=progress) as bar:
            for p in s.plans:
                entry: Report = {
                    "table": p.name,
                    "checked": 0,
                    "missing": [],
                    "extra": [],
                    "differ": [],
                    "objects_missing": [],
                    "objects_wrong": [],
                    "error": None,
                }
                entries.setdefault(p.source.schema, []).append(entry)
                if p.blockers or (p.destination_schema, p.name) not in s.existing:
                    entry["error"] = "blocked" if p.blockers else "not migrated yet"
                    ok = False
                    continue
                try:
                    found = TableChecker(_mover(s, p, bar)).check()
                except DjBridgeError as err:
                    entry["error"], ok = str(err), False
                    continue
                entry.update(
                    checked=found.checked,
                    missing=found.missing,
                    extra=found.extra,
                    differ=found.differ,
                    objects_missing=found.objects_missing,
                    objects_wrong=found.objects_wrong,
                )
                ok &= found.ok
        return _report("verify", s, entries, ok), 0 if ok else 1


__all__ = ["load", "plan", "run", "verify", "reference"]
