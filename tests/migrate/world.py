"""The migration test world: a DataJoint 0.14 lab on a source server, and where it goes.

:class:`MigrationWorld` owns what one migration test creates:

* two **source schemas** declared and filled by real DataJoint 0.14 in this
  interpreter, on the session's MariaDB or MySQL source server: ``main``
  (``utf8mb4``) with a lookup, manual, imported and computed table, a part table,
  every column type 0.14 declares, a unique and a secondary index, an
  ``auto_increment`` table, and ``blob@``, ``attach@`` and ``filepath@`` columns on
  the store ``raw``; and ``latin`` (created ``CHARACTER SET latin1`` before DataJoint
  sees it) whose table references ``main`` across schemas;
* the **source store** ``raw`` (a directory, or a bucket on the first moto endpoint)
  and the **destination store** ``raw2`` (another directory, or a bucket on the second);
* the **destination**: the same schemas, renamed for ``main``, on PostgreSQL 15 or
  MySQL 9.7, read back by real DataJoint 2.3.5 through the session's driver;
* ``dj-migrate.toml`` in the format of issue 19, passwords as ``${ENV}`` references,
  and :meth:`MigrationWorld.cli`, which runs ``.venv-dj2/bin/dj-migrate`` as a
  subprocess and returns its exit code, parsed report, stdout and stderr.

Rows are few, and each carries values chosen to break a naive copy: extreme
integers, ``char(3)`` values ``''`` and ``'ab'``, times beyond 24 h and negative,
arrays of several dtypes in Fortran order, attachments with a NUL byte inside.

    world.build()
    result = world.cli("run")
    assert result.code == 0, result
    assert_same(fetch_source(world), fetch_destination(world), conversions(plan))
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from djbridge.config import DatabaseServer, StorageServer
from djbridge.mysql import connect, quote
from djbridge.stores import Store, store_from_dj_spec
from tests.conftest import dj_connection, s3_store_spec, unique
from tests.dj2.client import ROOT, Driver
from tests.dj2.world import SIDES

SOURCE_STORE = "raw"
DEST_STORE = "raw2"
JSON_COLUMNS = frozenset({"meta"})
"""Columns declared ``json``: MariaDB keeps them as ``longtext``, so 0.14 fetches text."""
ENV = {"source": "DJM_SOURCE_PW", "destination": "DJM_DEST_PW", "s3": "DJM_S3_SECRET"}


def dj_migrate() -> Path:
    """Return the ``dj-migrate`` script of ``.venv-dj2`` (``DJB_DJ_MIGRATE`` overrides it)."""
    override = os.environ.get("DJB_DJ_MIGRATE")
    return Path(override) if override else ROOT / ".venv-dj2" / "bin" / "dj-migrate"


@dataclass(repr=False)
class Result:
    """One ``dj-migrate`` run: its exit code, its JSON report (or ``None``) and its output."""

    code: int
    report: dict[str, Any] | None
    stdout: str
    stderr: str

    def tables(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Return the report's table entries by ``(source schema, table)``."""
        assert self.report is not None, self
        return {
            (schema["source"], entry["table"]): entry
            for schema in self.report["schemas"]
            for entry in schema["tables"]
        }

    def total(self, name: str) -> int:
        """Return the sum of one numeric field over every table entry."""
        return sum(int(entry[name]) for entry in self.tables().values())

    def __repr__(self) -> str:
        report = json.dumps(self.report, indent=1, default=str)[:6000]
        return (
            f"exit {self.code}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n"
            f"{self.stderr[-3000:]}\n--- report\n{report}"
        )


@dataclass
class MigrationWorld:
    """One migration test's servers, schemas, stores and files; see the module docstring."""

    source: DatabaseServer
    dest: DatabaseServer
    store_kind: str
    tmp: Path
    dj2: Driver
    s3: tuple[StorageServer, StorageServer] | None = None
    buckets: tuple[str, str] = ("", "")
    schemas: dict[str, str] = field(default_factory=dict)
    dest_names: dict[str, str] = field(default_factory=dict)
    src_stores: dict[str, dict[str, Any]] = field(default_factory=dict)
    dst_stores: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    conn2: str = ""

    def __post_init__(self) -> None:
        self.schemas = {"main": unique("mig_"), "latin": unique("migl_")}
        self.dest_names = {"main": unique("m2_"), "latin": self.schemas["latin"]}
        self.stage = self.tmp / "stage"
        self.files = self.tmp / "files"
        for folder in (self.stage, self.files):
            folder.mkdir(parents=True, exist_ok=True)
        if self.store_kind == "file":
            for name in ("src", "dst"):
                (self.tmp / name).mkdir(exist_ok=True)
            src: dict[str, Any] = {"protocol": "file", "location": str(self.tmp / "src")}
            dst: dict[str, Any] = {"protocol": "file", "location": str(self.tmp / "dst")}
        else:
            assert self.s3 is not None
            src = s3_store_spec(self.s3[0], self.buckets[0], "lab/raw")
            dst = s3_store_spec(self.s3[1], self.buckets[1], "dj2/raw2")
        self.src_stores = {SOURCE_STORE: {**src, "stage": str(self.stage)}}
        self.dst_stores = {DEST_STORE: dst}

    # ---- names and handles -------------------------------------------------------------
    @property
    def backend(self) -> str:
        """``"postgresql"`` or ``"mysql"``: the destination's kind."""
        return self.dest.backend

    def role(self, source_schema: str) -> str:
        """Return the role (``main`` or ``latin``) of a source schema name."""
        return next(role for role, name in self.schemas.items() if name == source_schema)

    def source_store(self) -> Store:
        """Return djbridge's view of the source store ``raw`` (its location is the root)."""
        return store_from_dj_spec(SOURCE_STORE, self.src_stores[SOURCE_STORE])

    def dest_store(self) -> Store:
        """Return djbridge's view of the destination store ``raw2``."""
        return store_from_dj_spec(DEST_STORE, self.dst_stores[DEST_STORE])

    def source_query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on the source server as its admin."""
        db = connect(self.source)
        try:
            return db.query(sql, args)
        finally:
            db.close()

    def dest_query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on the destination server as its admin."""
        db = SIDES[self.backend].connect(self.dest)
        try:
            return db.query(sql, args)
        finally:
            db.close()

    def dest_table(self, role: str, table: str) -> str:
        """Return the quoted destination name of one table of a schema (by role)."""
        return SIDES[self.backend].table(self.dest_names[role], table)

    # ---- the 0.14 source ---------------------------------------------------------------
    @contextmanager
    def dj014(self) -> Iterator[Any]:
        """Yield ``datajoint`` (0.14) with this world's stores; restore the config afterwards."""
        import datajoint as dj

        saved = dj.config.get("stores")
        saved_env = os.environ.get("DJ_SUPPORT_FILEPATH_MANAGEMENT")
        os.environ["DJ_SUPPORT_FILEPATH_MANAGEMENT"] = "TRUE"
        dj.config["stores"] = self.src_stores
        try:
            yield dj
        finally:
            dj.config["stores"] = saved
            if saved_env is None:
                os.environ.pop("DJ_SUPPORT_FILEPATH_MANAGEMENT", None)
            else:
                os.environ["DJ_SUPPORT_FILEPATH_MANAGEMENT"] = saved_env

    def build(self, *, inline_attach: bool = False) -> None:
        """Create both source schemas with their character sets, declare and fill them.

        ``inline_attach`` adds ``Document``, whose ``attach`` column lives in the table.
        """
        charsets = {"main": "utf8mb4", "latin": "latin1"}
        for role, charset in charsets.items():
            self.source_query(
                f"CREATE DATABASE {quote(self.schemas[role])} CHARACTER SET {charset}"
            )
        with self.dj014() as dj:
            conn = dj_connection(self.source)
            main = dj.Schema(self.schemas["main"], connection=conn)
            latin = dj.Schema(self.schemas["latin"], connection=conn)
            self.tables = declare_pipeline(dj, main, latin, inline_attach)
            fill(self, self.tables)

    def insert_more(self, first: int = 10, count: int = 2) -> None:
        """Add ``count`` subjects from ``first``, each with a session, recording and results."""
        with self.dj014():
            t = self.tables
            for n in range(first, first + count):
                t["Subject"].insert1(
                    dict(subject_id=n, species="Danio rerio", sex="F", name=f"new {n} ñ", code="n")
                )
                t["Session"].insert1(session_row(n, 1, n))
                t["Recording"].insert1(self.recording_row(n, 1, n))
            t["Analysis"].populate()
            t["Summary"].populate()

    def recording_row(self, subject: int, session: int, n: int) -> dict[str, Any]:
        """Return a Recording row whose arrays, attachments and file are its own."""
        rng = np.random.default_rng(n)
        att = self.files / f"att{n}" / "notes.txt"
        att.parent.mkdir(parents=True, exist_ok=True)
        att.write_bytes(f"notes of recording {n}\n".encode() + b"\x00\xff" + rng.bytes(40))
        relpath = f"sub{subject}/sess{session}/raw.dat"
        (self.stage / relpath).parent.mkdir(parents=True, exist_ok=True)
        (self.stage / relpath).write_bytes(f"raw data {n} ".encode() * (n + 1))
        return dict(
            subject_id=subject, session_idx=session,
            arr=np.arange(n, n + 6, dtype=np.int32).reshape(2, 3),
            ext=rng.normal(size=(3, n + 1)), att=str(att),
            fp=str(self.stage / relpath),
        )  # fmt: skip

    def file(self, relpath: str, data: bytes) -> Path:
        """Write a file below the world's input folder; return its path."""
        path = self.files / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    # ---- the configuration and the command -----------------------------------------------
    def env(self) -> dict[str, str]:
        """The environment variables the configuration file refers to."""
        values = {ENV["source"]: self.source.password, ENV["destination"]: self.dest.password}
        if self.s3 is not None:
            values[ENV["s3"]] = self.s3[0].secret_key
        return values

    def secrets(self) -> list[str]:
        """Every credential of the world: none may appear in output or a report."""
        return [s for s in self.env().values() if len(s) >= 4]

    def config_text(self, *, roles: tuple[str, ...] = ("main", "latin")) -> str:
        """Return ``dj-migrate.toml`` for this world, listing the schemas of ``roles``."""
        src, dst = self.source, self.dest
        lines = [
            "[source]",
            f'host = "{src.host}:{src.port}"',
            f'user = "{src.user}"',
            f'password = "${{{ENV["source"]}}}"',
            f"use_tls = {str(bool(src.use_tls)).lower()}",
            "",
            "[destination]",
            f'backend = "{dst.backend}"',
            f'host = "{dst.host}:{dst.port}"',
        ]
        if dst.backend == "postgresql":
            lines.append(f'database = "{dst.database}"')
        lines += [f'user = "{dst.user}"', f'password = "${{{ENV["destination"]}}}"', ""]
        lines += store_toml(f"source_stores.{SOURCE_STORE}", self.src_stores[SOURCE_STORE])
        lines += store_toml(f"destination_stores.{DEST_STORE}", self.dst_stores[DEST_STORE])
        for role in roles:
            lines += [
                "[[schemas]]",
                f'source = "{self.schemas[role]}"',
                f'destination = "{self.dest_names[role]}"',
                f'stores = {{ {SOURCE_STORE} = "{DEST_STORE}" }}',
                "",
            ]
        return "\n".join(lines)

    def config(self, text: str | None = None, name: str = "dj-migrate.toml") -> Path:
        """Write a configuration file (this world's unless ``text`` is given); return its path."""
        path = self.tmp / name
        path.write_text(self.config_text() if text is None else text)
        return path

    def cli(
        self,
        command: str,
        *flags: str,
        config: Path | None = None,
        timeout: float = 600,
        env: dict[str, str] | None = None,
    ) -> Result:
        """Run ``dj-migrate COMMAND --config-file ... --report ... --no-progress FLAGS``."""
        config = config or self.config()
        report = self.tmp / f"report-{command}-{unique('')}.json"
        args = [str(dj_migrate()), command, "--config-file", str(config)]
        args += ["--report", str(report), "--no-progress", *flags]
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, cwd=self.tmp,
            env={**os.environ, **self.env(), **(env or {})},
        )  # fmt: skip
        data = json.loads(report.read_text()) if report.exists() else None
        return Result(done.returncode, data, done.stdout, done.stderr)

    def popen(self, command: str, *flags: str) -> subprocess.Popen[str]:
        """Start ``dj-migrate`` without waiting (a test may kill it)."""
        args = [str(dj_migrate()), command, "--config-file", str(self.config())]
        args += ["--report", str(self.tmp / "killed.json"), "--no-progress", *flags]
        return subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
            cwd=self.tmp, env={**os.environ, **self.env()},
        )  # fmt: skip

    # ---- snapshots -------------------------------------------------------------------
    def source_fingerprint(self) -> dict[str, str]:
        """Return a digest of every source table (definition and rows) and source object."""
        out: dict[str, str] = {}
        for schema in self.schemas.values():
            names = self.source_query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
            for (name,) in names:
                table = quote(schema, name)
                create = self.source_query(f"SHOW CREATE TABLE {table}")[0][1]
                rows = sorted(repr(r) for r in self.source_query(f"SELECT * FROM {table}"))
                digest = hashlib.sha256((create + "\n".join(rows)).encode()).hexdigest()
                out[f"{schema}.{name}"] = digest
        store = self.source_store()
        for obj in store.iter_objects(""):
            out[f"object:{obj.key}"] = hashlib.sha256(store.get(obj.key)).hexdigest()
        return out

    def source_objects_size(self) -> int:
        """Return the bytes of every object in the source store."""
        return sum(obj.size for obj in self.source_store().iter_objects(""))

    def dest_schemas(self) -> set[str]:
        """Return the names of every schema (database) on the destination server."""
        if self.backend == "postgresql":
            rows = self.dest_query("SELECT schema_name FROM information_schema.schemata")
        else:
            rows = self.dest_query("SHOW DATABASES")
        return {str(r[0]) for r in rows}

    def dest_objects(self) -> dict[str, int]:
        """Return ``{key: size}`` of every object in the destination store."""
        return {obj.key: obj.size for obj in self.dest_store().iter_objects("")}

    def dest_recordings(self) -> dict[tuple[int, int], dict[str, Any]]:
        """Return the destination's JSON of every Recording row, by key."""
        table = self.dest_table("main", "recording")
        rows = self.dest_query(f"SELECT subject_id, session_idx, ext, att, fp FROM {table}")
        out = {}
        for subject, session, *values in rows:
            decoded = [json.loads(v) if isinstance(v, str | bytes) else v for v in values]
            out[(int(subject), int(session))] = dict(
                zip(("ext", "att", "fp"), decoded, strict=True)
            )
        return out

    def cleaner_config(self) -> Path:
        """Write a dj-cleaner file with one ``datajoint = "2"`` run per destination schema."""
        server, spec = self.dest, self.dst_stores[DEST_STORE]
        text = (
            f"[database_servers.dest]\n{SIDES[self.backend].toml(server)}"
            f'host = "{server.host}:{server.port}"\nuser = "{server.user}"\n'
            f'password = "{server.password}"\nuse_tls = false\n\n'
        )
        if spec["protocol"] == "s3":
            text += (
                f'[storage_servers.s3.moto]\nendpoint = "{spec["endpoint"]}"\n'
                f'access_key = "{spec["access_key"]}"\nsecret_key = "{spec["secret_key"]}"\n'
                "secure = false\n\n"
            )
            where = f'storage_server = "s3.moto"\nbucket = "{spec["bucket"]}"\n'
        else:
            text += "[storage_servers.file.nas]\n\n"
            where = 'storage_server = "file.nas"\n'
        for schema in self.dest_names.values():
            text += (
                f'[[cleaning_runs]]\ndatajoint = "2"\ndatabase_server = "dest"\n'
                f'schema = "{schema}"\nstore = "{DEST_STORE}"\n{where}'
                f'location = "{spec["location"]}"\n\n'
            )
        path = self.tmp / "cleaner.toml"
        path.write_text(text)
        return path

    # ---- the 2.x side ------------------------------------------------------------------
    def connect2(self) -> str:
        """Open (once) a DataJoint 2.x driver instance on the destination with ``raw2``."""
        if not self.conn2:
            self.conn2 = unique("mig")
            dst = self.dest
            self.dj2.call(
                "connect", name=self.conn2, backend=dst.backend, host=dst.host, port=dst.port,
                user=dst.user, password=dst.password, database=dst.database,
            )  # fmt: skip
            self.dj2.call(
                "store", conn=self.conn2, store=DEST_STORE, spec=self.dst_stores[DEST_STORE]
            )
        return self.conn2

    def teardown(self) -> None:
        """Close the 2.x instance and drop the destination schemas (the source's go elsewhere)."""
        if self.conn2:
            self.dj2.call("disconnect", conn=self.conn2)
        db = SIDES[self.backend].connect(self.dest)
        try:
            # The latin schema references main: drop it first (MySQL refuses the reverse).
            names = [self.dest_names["latin"], self.dest_names["main"]]
            for statement in SIDES[self.backend].drop(names, []):
                db.execute(statement)
        finally:
            db.close()


def store_toml(table: str, spec: dict[str, Any]) -> list[str]:
    """Return the TOML lines of one store table; an S3 secret goes through the environment."""
    lines = [f"[{table}]"]
    keys = ("protocol", "endpoint", "bucket", "location", "access_key", "secret_key")
    for key in (*keys, "subfolding", "hash_prefix"):
        if key not in spec:
            continue
        value = f"${{{ENV['s3']}}}" if key == "secret_key" else spec[key]
        value = list(value) if isinstance(value, tuple) else value
        lines.append(f"{key} = {json.dumps(value)}")
    if spec.get("protocol") == "s3":
        lines.append(f"secure = {str(bool(spec.get('secure'))).lower()}")
    return [*lines, ""]


# ---- the 0.14 pipeline -----------------------------------------------------------------
def declare_pipeline(dj: Any, main: Any, latin: Any, inline_attach: bool) -> dict[str, Any]:
    """Declare the source pipeline with DataJoint 0.14; return its classes by name.

    ``Document``, the table with an in-table ``attach`` column, is declared only with
    ``inline_attach``: DataJoint 2.3.5 cannot read such a column back on PostgreSQL,
    so ``dj-migrate`` blocks that table there, and most tests want a clean plan.
    """

    @main
    class Species(dj.Lookup):
        definition = """
        # species kept in the lab
        species : varchar(32)        # latin name
        ---
        common = "" : varchar(64)    # common name
        """
        contents = [
            ("Mus musculus", "house mouse"),
            ("Rattus norvegicus", "brown rat"),
            ("Danio rerio", ""),
        ]

    @main
    class Subject(dj.Manual):
        definition = """
        # an animal
        subject_id : int unsigned
        ---
        -> Species
        sex : enum('M', 'F', 'unknown')
        name : varchar(64)           # unique across the lab
        code = "" : char(3)
        dob = null : date
        unique index (name)
        index (dob)
        """

    @main
    class Numbers(dj.Manual):
        definition = """
        num_id : tinyint unsigned
        ---
        i8 : tinyint
        u8 : tinyint unsigned
        i16 : smallint
        u16 : smallint unsigned
        i32 : int
        u32 : int unsigned
        i64 : bigint
        u64 : bigint unsigned
        f32 : float
        f64 : double
        dec : decimal(8,3)
        udec = null : decimal(5,2) unsigned
        maybe = null : int          # often missing
        """

    @main
    class Session(dj.Manual):
        definition = """
        -> Subject
        session_idx : smallint unsigned
        ---
        started : datetime
        made = CURRENT_TIMESTAMP : timestamp
        duration : time
        uid : uuid
        meta = null : json
        note = "" : varchar(255)     # free text
        """

    @main
    class Recording(dj.Manual):
        definition = f"""
        -> Session
        ---
        arr : longblob
        ext : blob@{SOURCE_STORE}
        att : attach@{SOURCE_STORE}
        fp = null : filepath@{SOURCE_STORE}
        """

    class Document(dj.Manual):
        definition = """
        # small files kept in the table itself
        -> Session
        doc_name : varchar(32)
        ---
        doc = null : attach
        """

    @main
    class Counter(dj.Manual):
        definition = """
        row_id : int auto_increment
        ---
        label : varchar(16)
        """

    @main
    class Analysis(dj.Imported):
        definition = """
        -> Session
        ---
        score : float
        """

        def make(self, key: dict[str, Any]) -> None:
            self.insert1(dict(key, score=0.25 * key["session_idx"] + key["subject_id"] % 7))

    @main
    class Summary(dj.Computed):
        definition = """
        -> Analysis
        ---
        total : double
        """

        class Item(dj.Part):
            definition = """
            -> master
            item : tinyint
            ---
            value : longblob
            """

        def make(self, key: dict[str, Any]) -> None:
            self.insert1(dict(key, total=float(key["session_idx"]) / 3))
            self.Item.insert(
                [dict(key, item=i, value=np.full((i + 1,), i, dtype=np.int16)) for i in range(2)]
            )

    @latin
    class Rating(dj.Manual):
        definition = """
        # a rater's view of a subject
        -> Subject
        rater : varchar(16)
        ---
        score : decimal(4,1)
        remark = "" : varchar(100)   # latin1 text
        grade : char(3)
        """

    return {
        "Species": Species, "Subject": Subject, "Numbers": Numbers, "Session": Session,
        "Recording": Recording, "Counter": Counter, "Analysis": Analysis, "Summary": Summary,
        "Rating": Rating, "Document": main(Document) if inline_attach else None,
    }  # fmt: skip


BIG = 4294967295
"""The largest ``int unsigned``: a subject id that a signed ``int`` cannot hold."""


def session_row(subject: int, idx: int, n: int, **extra: Any) -> dict[str, Any]:
    """Return a Session row; ``made`` is left to ``CURRENT_TIMESTAMP`` unless given."""
    row = dict(
        subject_id=subject, session_idx=idx,
        started=datetime.datetime(2024, 2, 29, 23, 59, 59) + datetime.timedelta(days=n),
        duration=datetime.timedelta(hours=n, seconds=n), uid=uuid.UUID(int=n * 7919 + 1),
    )  # fmt: skip
    return {**row, **extra}


def fill(world: MigrationWorld, t: dict[str, Any]) -> None:
    """Insert the handful of rows of every table, then populate the auto-populated ones."""
    mariadb_json = bool(t["Session"].heading.attributes["meta"].type.startswith("longtext"))

    def as_json(value: Any) -> Any:  # MariaDB keeps json as longtext: 0.14 sends text there
        return json.dumps(value) if mariadb_json and value is not None else value

    t["Subject"].insert([
        dict(subject_id=1, species="Mus musculus", sex="M", name="Ünïcødé 名前 'q' \"dq\" 🐭",
             code="ab", dob=datetime.date(2020, 1, 2)),
        dict(subject_id=2, species="Rattus norvegicus", sex="F", name="O'Brien\\tab\tnew\nline",
             code="", dob=None),
        dict(subject_id=BIG, species="Danio rerio", sex="unknown", name="   lead and trail  ",
             code="abc", dob=datetime.date(1000, 1, 1)),
    ])  # fmt: skip
    i64 = 2**63
    t["Numbers"].insert([
        dict(num_id=0, i8=-128, u8=255, i16=-32768, u16=65535, i32=-(2**31), u32=2**32 - 1,
             i64=-i64, u64=2**64 - 1, f32=1.1, f64=1.7976931348623157e308,
             dec=decimal.Decimal("99999.999"), udec=decimal.Decimal("999.99"), maybe=None),
        dict(num_id=255, i8=127, u8=0, i16=32767, u16=0, i32=2**31 - 1, u32=0, i64=i64 - 1,
             u64=0, f32=-3.25e10, f64=-2.2250738585072014e-308,
             dec=decimal.Decimal("-99999.999"), udec=None, maybe=-1),
        dict(num_id=7, i8=0, u8=1, i16=0, u16=1, i32=0, u32=1, i64=0, u64=i64, f32=0.0,
             f64=0.1, dec=decimal.Decimal("0.001"), udec=decimal.Decimal("0.00"), maybe=0),
    ])  # fmt: skip
    hour = datetime.timedelta(hours=1)
    for row in [
        session_row(1, 1, 1, duration=25 * hour + datetime.timedelta(minutes=3, seconds=4),
                    meta=as_json({"a": 1, "b": [1, 2, "x"], "c": {"d": None, "e": True},
                                  "f": 2.5, "é": "ü"}), note="tab\tnew\nline 🐭"),
        session_row(1, 2, 2, duration=-(hour + datetime.timedelta(minutes=2, seconds=3)),
                    made=datetime.datetime(2037, 12, 31, 23, 59, 59), meta=as_json([1, 2, 3])),
        session_row(2, 1, 3, duration=datetime.timedelta(0),
                    made=datetime.datetime(1971, 1, 1, 0, 0, 1), note="'single' \"double\""),
        session_row(BIG, 65535, 4, duration=838 * hour + datetime.timedelta(minutes=59,
                    seconds=59), meta=as_json(42)),
    ]:  # fmt: skip
        t["Session"].insert1(row)  # one at a time: some leave ``made`` to its default
    recs = [world.recording_row(s, i, n) for n, (s, i) in enumerate([(1, 1), (1, 2), (2, 1)])]
    recs[0]["arr"] = np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4))
    recs[0]["ext"] = np.asfortranarray(np.arange(20, dtype=np.float32).reshape(4, 5))
    recs[1]["arr"] = {"a": np.array([1, -2], dtype=np.int16), "b": "text", "c": [1, 2.5, "x"]}
    recs[1]["ext"] = np.array([1, 2, 3], dtype=np.uint8)
    recs[1]["fp"] = None
    recs[2]["arr"] = "a plain string"
    recs[2]["ext"] = np.array([[1 + 2j, 3 - 4j]])
    recs.append(world.recording_row(BIG, 65535, 3))
    recs[3]["arr"] = np.array([True, False, True])
    recs[3]["ext"] = np.array([1, 2, 3], dtype=np.uint8)  # the same object as recording 1's
    t["Recording"].insert(recs)
    if t["Document"] is not None:
        t["Document"].insert([
            dict(subject_id=1, session_idx=1, doc_name="protocol", doc=str(world.file(
                "doc1/protocol.txt", b"step 1\x00step 2\n"))),
            dict(subject_id=1, session_idx=1, doc_name="none", doc=None),
            dict(subject_id=2, session_idx=1, doc_name="empty", doc=str(world.file(
                "doc2/empty.dat", b""))),
        ])  # fmt: skip
    t["Counter"].insert([{"label": "first"}, {"label": "second"}, {"label": "third"}])
    t["Counter"].insert1({"row_id": 10, "label": "tenth"})
    (t["Counter"] & {"row_id": 2}).delete_quick()
    t["Analysis"].populate()
    t["Summary"].populate()
    t["Rating"].insert([
        dict(subject_id=1, rater="anna", score=decimal.Decimal("4.5"),
             remark="café naïve ½ «quoted»", grade="ab"),
        dict(subject_id=2, rater="bo", score=decimal.Decimal("-3.0"), remark="", grade=""),
        dict(subject_id=1, rater="zoë", score=decimal.Decimal("0.0"),
             remark="O'Reilly \"q\" ÿ", grade="xyz"),
    ])  # fmt: skip
