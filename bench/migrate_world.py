"""The world ``bench/migrate.py`` runs in: servers, a 0.14 workload built fast, and job files.

What every contestant of the dj-migrate benchmark shares lives here:

* the **servers**: a DataJoint 0.14 source (MariaDB 10.11 or Oracle MySQL 9.7, plain TCP),
  the DataJoint 2.x destination (PostgreSQL 15 or MySQL 9.7), and for S3 stores two moto
  endpoints, the source store's and the destination's, so that no copy is server-side;
* the **workload** (:func:`build_workload`): a Manual master ``Recording`` with an internal
  ``longblob``, a ``blob@`` (about 1 KB packed) and an ``attach@`` (1 KB) per row, and a
  part ``Recording.Channel`` with three rows per master. DataJoint 0.14 declares the
  tables; the rows, the ``~external_<store>`` rows and the objects (written straight into
  the store in 0.14's layout) go in with bulk SQL and a thread pool, which is some hundred
  times faster than ``insert``. :func:`check_sample` then reads a sample back with
  DataJoint 0.14, so the shortcut is proven to give what 0.14 itself would have written;
* an **empty twin** of every source schema (the same tables, no rows), from which
  ``dj-migrate run`` declares a contestant's destination tables without copying a row;
* the **job** of one contestant: a JSON-able dict with the servers (as the contestant
  reaches them: through latency proxies in that mode), the schemas and the store specs,
  and the ``dj-migrate.toml`` text for it (:func:`migrate_toml`).

    world = World(source, dest, scratch, s3={...})
    build_workload(world, "file", rows=1000)        # schema bench_mig_file, store raw_file
    text = migrate_toml(world, job)                 # dj-migrate.toml for one contestant
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.link_workload import CHANNEL
from djbridge.config import DatabaseServer, StorageServer
from djbridge.layout import object_key, tracking_table
from djbridge.mysql import connect, quote
from djbridge.stores import Store, s3_dj_spec, store_from_dj_spec

PARTS_PER_ROW = 3
TRACE_SAMPLES = 128  # float64: 1,024 bytes before DataJoint's header
NOTE_BYTES = 1024
INSERT_CHUNK = 2000
DEST_STORE = "raw2"
S3_BUCKETS = {"source": "bench-src", "dest": "bench-dst"}


def source_schema(kind: str, suffix: str = "") -> str:
    """Return the source schema of one store kind (``file``, ``s3``, ``rows``, ``big``)."""
    return f"bench_mig_{kind}{suffix}"


def source_store(kind: str) -> str:
    """Return the 0.14 store name of one store kind."""
    return f"raw_{kind}"


def note_name(row: int) -> str:
    """Return the file name of row ``row``'s attachment."""
    return f"notes-{row:06d}.txt"


def note_bytes(row: int) -> bytes:
    """Return the contents of row ``row``'s attachment: 1 KB, distinct per row."""
    return (f"row {row:08d} ".encode() * (NOTE_BYTES // 13 + 1))[:NOTE_BYTES]


def trace_of(row: int) -> Any:
    """Return row ``row``'s ``blob@`` value: 128 float64, distinct per row."""
    import numpy as np

    return np.arange(TRACE_SAMPLES, dtype=np.float64) + row * TRACE_SAMPLES


def samples_of(row: int) -> Any:
    """Return row ``row``'s internal ``longblob`` value: 16 int32."""
    import numpy as np

    return np.arange(16, dtype=np.int32) * (row + 1)


@dataclass
class World:
    """The servers of one benchmark run, and how the contestants reach the source."""

    source: DatabaseServer  # direct; the fixture is built and checked on it
    dest: DatabaseServer
    scratch: Path
    s3: dict[str, StorageServer] = field(default_factory=dict)  # "source", "dest"
    source_host: str = ""  # host:port the contestants use (a proxy, with latency)
    s3_endpoint: str = ""  # the source S3 endpoint the contestants use

    def __post_init__(self) -> None:
        self.source_host = self.source_host or self.source.address
        if "source" in self.s3 and not self.s3_endpoint:
            self.s3_endpoint = self.s3["source"].endpoint

    def source_spec(self, kind: str, *, direct: bool = True) -> dict[str, Any]:
        """Return the 0.14 ``dj.config["stores"]`` entry of one kind's source store."""
        if kind != "s3":
            return {"protocol": "file", "location": str(self.scratch / f"src-{kind}")}
        spec = s3_dj_spec(self.s3["source"], S3_BUCKETS["source"], kind)
        if not direct:
            spec["endpoint"] = self.s3_endpoint
        return spec

    def dest_spec(self, kind: str, place: str) -> dict[str, Any]:
        """Return the 2.x store entry of one contestant's fresh destination location."""
        if kind != "s3":
            path = self.scratch / f"dst-{place}"
            path.mkdir(parents=True, exist_ok=True)
            return {"protocol": "file", "location": str(path)}
        return s3_dj_spec(self.s3["dest"], S3_BUCKETS["dest"], place)

    def source_for_contestants(self) -> DatabaseServer:
        """Return the source server as the contestants reach it."""
        host, _, port = self.source_host.rpartition(":")
        return dataclasses.replace(self.source, host=host, port=int(port))


def dj_connection(server: DatabaseServer) -> Any:
    """Open a DataJoint 0.14 connection to ``server`` (plain TCP unless it uses TLS)."""
    import datajoint as dj

    return dj.Connection(server.address, server.user, server.password,
                         use_tls=bool(server.use_tls))  # fmt: skip


def declare_recording(schema: Any, store: str, *, external: bool = True) -> Any:
    """Declare ``Recording`` and its part ``Channel`` in a DataJoint 0.14 ``schema``.

    With ``external=False`` the master keeps its internal columns only (the pgloader
    comparison, which knows nothing of stores).
    """
    import datajoint as dj

    outside = f"trace : blob@{store}   # 128 samples\nnotes : attach@{store}  # 1 KB of notes"
    master_definition = f"""
    # one recording
    recording_id : int
    ---
    label : varchar(32)
    samples : longblob      # 16 values, kept in the row
    {outside if external else ""}
    """

    class Recording(dj.Manual):
        definition = master_definition

        class Channel(dj.Part):
            definition = CHANNEL

    return schema(Recording)


def declare_big(schema: Any, store: str) -> Any:
    """Declare ``Big``: one ``attach@`` column, for the 1 GiB rows."""
    import datajoint as dj

    class Big(dj.Manual):
        definition = f"""
        big_id : int
        ---
        payload : attach@{store}
        """

    return schema(Big)


def declare_pair(world: World, name: str, store: str, declarer: Any) -> float:
    """Declare the tables in ``name`` and its empty twin ``name_empty``; return seconds."""
    import datajoint as dj

    started = time.perf_counter()
    connection = dj_connection(world.source)
    for schema_name in (name, name + "_empty"):
        declarer(dj.Schema(schema_name, connection=connection), store)
    connection.close()
    return time.perf_counter() - started


def chunked(items: Sequence[Any], size: int = INSERT_CHUNK) -> Iterator[Sequence[Any]]:
    """Yield ``items`` ``size`` at a time."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_many(world: World, schema: str, table: str, rows: Sequence[tuple[Any, ...]],
                columns: Sequence[str]) -> None:  # fmt: skip
    """Insert raw rows with multi-row INSERTs, ``INSERT_CHUNK`` at a time."""
    db = connect(world.source)
    try:
        names = ", ".join(quote(c) for c in columns)
        marks = ", ".join(["%s"] * len(columns))
        sql = f"INSERT INTO {quote(schema, table)} ({names}) VALUES ({marks})"
        for chunk in chunked(rows):
            db.executemany(sql, list(chunk))
    finally:
        db.close()


def put_all(store: Store, objects: Sequence[tuple[str, bytes]], threads: int) -> None:
    """Write ``(key, bytes)`` pairs into ``store`` with a thread pool."""
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda item: store.put(*item), objects))


def build_workload(world: World, kind: str, rows: int) -> float:
    """Declare and fill one store kind's source schema (and its empty twin); return seconds.

    Each row's values are what DataJoint 0.14 would store: blobs packed by 0.14's own
    ``blob.pack``, a ``blob@`` keyed by the MD5 of its packed bytes, an attachment keyed by
    the MD5 of its name, a NUL byte and its contents, at ``schema/ab/cd/<hex>[.name]``.
    """
    from datajoint.blob import pack

    logging.getLogger("datajoint").setLevel(logging.WARNING)
    started = time.perf_counter()
    schema, store = source_schema(kind), source_store(kind)
    spec = world.source_spec(kind)
    set_dj_stores({store: spec})
    declare_pair(world, schema, store, declare_recording)
    masters, parts, tracked, objects = [], [], [], []
    for row in range(rows):
        trace = pack(trace_of(row))
        trace_hash = hashlib.md5(trace).digest()
        name, note = note_name(row), note_bytes(row)
        note_hash = hashlib.md5(name.encode() + b"\0" + note).digest()
        tracked += [(trace_hash, len(trace), None), (note_hash, len(note), name)]
        objects += [(object_key(schema, trace_hash), trace),
                    (object_key(schema, note_hash, name), note)]  # fmt: skip
        masters.append((row, f"rec-{row}", pack(samples_of(row)), trace_hash, note_hash))
        parts += [(row, ch, 0.5 + ch + row % 7 / 8) for ch in range(PARTS_PER_ROW)]
    put_all(spec_store(store, spec), objects, 16 if kind == "s3" else 4)
    insert_many(world, schema, tracking_table(store), tracked, ("hash", "size", "attachment_name"))
    master_columns = ("recording_id", "label", "samples", "trace", "notes")
    insert_many(world, schema, "recording", masters, master_columns)
    insert_many(world, schema, "recording__channel", parts, ("recording_id", "channel", "gain"))
    return time.perf_counter() - started


def build_rows_only(world: World, kind: str) -> float:
    """Declare ``bench_mig_rows`` (internal columns only) and copy kind's rows into it."""
    started = time.perf_counter()
    set_dj_stores({})
    declare_pair(world, source_schema("rows"), "", _declare_internal)
    db = connect(world.source)
    try:
        src, dst = source_schema(kind), source_schema("rows")
        db.execute(
            f"INSERT INTO {quote(dst, 'recording')} (recording_id, label, samples) "
            f"SELECT recording_id, label, samples FROM {quote(src, 'recording')}"
        )
        db.execute(
            f"INSERT INTO {quote(dst, 'recording__channel')} "
            f"SELECT * FROM {quote(src, 'recording__channel')}"
        )
    finally:
        db.close()
    return time.perf_counter() - started


def _declare_internal(schema: Any, store: str) -> Any:
    return declare_recording(schema, store, external=False)


def build_big(world: World, rows: int, size: int) -> float:
    """Declare ``bench_mig_big`` and give each of ``rows`` rows an attachment of ``size`` bytes.

    The attachments are sparse files (a distinct first line, then zeros) written straight
    into the store; their MD5 is computed as 0.14 would, over name, NUL and contents.
    """
    started = time.perf_counter()
    schema, store = source_schema("big"), source_store("big")
    spec = world.source_spec("big")
    set_dj_stores({store: spec})
    declare_pair(world, schema, store, declare_big)
    tracked, masters = [], []
    for row in range(rows):
        name = f"big-{row}.bin"
        head = f"big row {row}\n".encode()
        digest = hashlib.md5(name.encode() + b"\0" + head)
        zeros = bytes(1 << 20)
        left = size - len(head)
        while left:
            digest.update(zeros[: min(left, len(zeros))])
            left -= min(left, len(zeros))
        path = Path(spec["location"]) / object_key(schema, digest.digest(), name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            out.write(head)
            out.truncate(size)
        tracked.append((digest.digest(), size, name))
        masters.append((row, digest.digest()))
    insert_many(world, schema, tracking_table(store), tracked, ("hash", "size", "attachment_name"))
    insert_many(world, schema, "big", masters, ("big_id", "payload"))
    return time.perf_counter() - started


def set_dj_stores(stores: dict[str, Any]) -> None:
    """Set DataJoint 0.14's stores (file locations are created)."""
    import datajoint as dj

    for spec in stores.values():
        if spec["protocol"] == "file":
            Path(spec["location"]).mkdir(parents=True, exist_ok=True)
    dj.config["stores"] = stores


def spec_store(name: str, spec: dict[str, Any]) -> Store:
    """Open the store a ``dj.config["stores"]`` entry describes."""
    return store_from_dj_spec(name, spec)


def check_sample(world: World, kind: str, rows: int) -> str:
    """Fetch three rows with DataJoint 0.14 and compare them with the generator; "" if equal."""
    import datajoint as dj
    import numpy as np

    set_dj_stores({source_store(kind): world.source_spec(kind)})
    connection = dj_connection(world.source)
    module = dj.VirtualModule("sample", source_schema(kind), connection=connection)
    wanted = sorted({0, rows // 2, rows - 1})
    problems = []
    with tempfile.TemporaryDirectory(prefix="djb-mig-sample-") as folder:
        restriction = module.Recording & [{"recording_id": r} for r in wanted]
        for got in restriction.fetch(as_dict=True, download_path=folder):
            row = int(got["recording_id"])
            ok = (
                got["label"] == f"rec-{row}"
                and np.array_equal(got["samples"], samples_of(row))
                and got["samples"].dtype == np.int32
                and np.array_equal(got["trace"], trace_of(row))
                and Path(got["notes"]).name == note_name(row)
                and Path(got["notes"]).read_bytes() == note_bytes(row)
            )
            if not ok:
                problems.append(f"row {row} differs")
        parts = len(module.Recording.Channel & [{"recording_id": r} for r in wanted])
        if parts != PARTS_PER_ROW * len(wanted):
            problems.append(f"{parts} part rows for {len(wanted)} masters")
        if len(restriction) != len(wanted):
            problems.append(f"{len(restriction)} of {len(wanted)} sample rows found")
    connection.close()
    return "; ".join(problems)


def migrate_toml(world: World, job: dict[str, Any]) -> str:
    """Return the ``dj-migrate.toml`` of one contestant's job (passwords from the env)."""
    source = world.source_for_contestants()
    dest = world.dest
    lines = [
        "[source]",
        f'host = "{source.address}"',
        f'user = "{source.user}"',
        'password = "${BENCH_SOURCE_PW}"',
        f"use_tls = {str(bool(source.use_tls)).lower()}",
        "",
        "[destination]",
        f'backend = "{dest.backend}"',
        f'host = "{dest.address}"',
        f'user = "{dest.user}"',
        'password = "${BENCH_DEST_PW}"',
        f"use_tls = {str(bool(dest.use_tls)).lower()}",
    ]
    if dest.backend == "postgresql":
        lines.append(f'database = "{dest.database or "postgres"}"')
    stores: list[tuple[str, str, dict[str, Any]]] = []
    if job.get("source_store"):
        stores.append(("source_stores", job["source_store"], job["source_spec"]))
        stores.append(("destination_stores", DEST_STORE, job["dest_spec"]))
    for section, name, spec in stores:
        lines += ["", f"[{section}.{name}]"]
        for key, value in spec.items():
            shown = str(value).lower() if isinstance(value, bool) else f'"{value}"'
            lines.append(f"{key} = {shown}")
    lines += ["", "[[schemas]]", f'source = "{job["source_schema"]}"',
              f'destination = "{job["dest_schema"]}"']  # fmt: skip
    if job.get("source_store"):
        lines.append(f'stores = {{ {job["source_store"]} = "{DEST_STORE}" }}')
    return "\n".join(lines) + "\n"


def password_env(world: World) -> dict[str, str]:
    """Return the environment that ``${BENCH_*_PW}`` in a ``dj-migrate.toml`` read."""
    return {**os.environ, "BENCH_SOURCE_PW": world.source.password,
            "BENCH_DEST_PW": world.dest.password}  # fmt: skip


def server_dict(server: DatabaseServer) -> dict[str, Any]:
    """Return the fields that rebuild ``server`` in a child process."""
    return dataclasses.asdict(server)


def unique_suffix() -> str:
    """Return a short random suffix for names that must not repeat across runs."""
    return uuid.uuid4().hex[:6]
