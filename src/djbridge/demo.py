"""The demo behind ``./scripts/demo``: private servers, a small pipeline, djbridge at work.

It starts two private MariaDB servers ("source" with TLS, "local" without), an S3
endpoint (moto) and a file store directory, then builds a DataJoint pipeline on
the source server whose recordings keep their data externally: ``blob@`` on S3 and
``attach@`` on the file store. It prints what it made, leaves orphans and cleans
them with ``dj-cleaner`` (a dry run, then for real), undoes a mistaken clean with
``dj-cleaner --quarantine`` and ``restore``, then links the recordings to the local
server and pulls them with a progress bar, and ends with ``dj-link verify`` run as
cron would (once clean, once repairing an object deleted out of band). It tears
everything down at the end; nothing outside a temporary directory is touched.

    python -m djbridge.demo            # what ./scripts/demo runs
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from djbridge.config import DatabaseServer, StorageServer
from djbridge.mysql import connect, quote
from djbridge.progress import human_bytes
from djbridge.sandbox import MariaDB, MotoS3
from djbridge.stores import Store, open_store, s3_dj_spec
from djbridge.stores.s3 import make_client

SCHEMA = "demo_lab"
BUCKET = "demo-lab"
S3_LOCATION = "dj/raw"
LOCAL_BUCKET = "demo-copy"


@dataclass
class DemoWorld:
    """The servers and stores the demo runs against."""

    source: DatabaseServer
    local: DatabaseServer
    s3: StorageServer
    files: Path
    scratch: Path

    def dj_stores(self) -> dict[str, dict[str, Any]]:
        """DataJoint store specs for the demo's stores."""
        return {
            "raw": s3_dj_spec(self.s3, BUCKET, S3_LOCATION),
            "notes": {"protocol": "file", "location": str(self.files)},
        }

    def store(self, name: str) -> Store:
        """Open one of the demo's stores with djbridge's own store layer."""
        if name == "raw":
            return open_store(self.s3, bucket=BUCKET, location=S3_LOCATION)
        return open_store(StorageServer("notes", "file"), location=str(self.files))


def dj_connection(server: DatabaseServer) -> Any:
    """Open a DataJoint connection with ``use_tls`` set explicitly."""
    import datajoint as dj

    return dj.Connection(
        f"{server.host}:{server.port}", server.user, server.password, use_tls=bool(server.use_tls)
    )


@contextmanager
def demo_world() -> Iterator[DemoWorld]:
    """Start the private servers and yield them; stop and delete everything afterwards."""
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="djbridge-demo-")))
        source = stack.enter_context(MariaDB("source", tls=True))
        local = stack.enter_context(MariaDB("local", tls=False))
        s3 = stack.enter_context(MotoS3("demo-s3"))
        s3.make_bucket(BUCKET)
        files = scratch / "file-store"
        files.mkdir()
        yield DemoWorld(source.server, local.server, s3.server, files, scratch)


def build_pipeline(world: DemoWorld, sessions: int = 3, per_session: int = 4) -> tuple[Any, Any]:
    """Declare the demo schema on the source server, fill it; return (schema, Recording)."""
    import datajoint as dj
    import numpy as np

    dj.config["stores"] = world.dj_stores()
    schema = dj.Schema(SCHEMA, connection=dj_connection(world.source))

    @schema
    class Session(dj.Manual):
        definition = """
        session_id : int
        ---
        subject : varchar(32)
        session_date : date
        """

    @schema
    class Recording(dj.Manual):
        definition = """
        -> Session
        recording_id : smallint
        ---
        trace : blob@raw           # raw samples, kept on S3
        protocol : attach@notes    # the lab notes file, kept on the file store
        """

    rng = np.random.default_rng(2026)
    notes_dir = world.scratch / "notes"
    notes_dir.mkdir(exist_ok=True)
    for sid in range(sessions):
        Session.insert1((sid, f"mouse-{sid % 2}", f"2026-11-{sid + 1:02d}"))
        for rid in range(per_session):
            note = notes_dir / f"session{sid}-rec{rid}.txt"
            note.write_text(f"session {sid}, recording {rid}: {rng.integers(10**9)}\n" * 20)
            trace = rng.normal(size=(200, 8)).astype("float32")
            Recording.insert1((sid, rid, trace, str(note)))
    return schema, Recording


def describe(world: DemoWorld) -> None:
    """Print the rows and external objects the pipeline holds."""
    db = connect(world.source)
    try:
        for table in ("session", "recording", "~external_raw", "~external_notes"):
            (count,) = db.query(f"SELECT COUNT(*) FROM {quote(SCHEMA, table)}")[0]
            print(f"  {SCHEMA}.{table:<18} {count:>4} rows")
    finally:
        db.close()
    for name in ("raw", "notes"):
        store = world.store(name)
        objects = list(store.iter_objects(f"{SCHEMA}/"))
        size = human_bytes(sum(o.size for o in objects))
        print(f"  store {name!r:<8} {len(objects):>4} objects, {size:>9}  ({store.description})")


def leave_orphans(schema: Any, recording: Any) -> None:
    """Delete session 0's recordings and their tracking rows, leaving their objects behind.

    ``delete(delete_external_files=False)`` is how labs make orphans without
    meaning to: the rows go, the objects stay in the stores.
    """
    (recording & {"session_id": 0}).delete_quick()
    for store in ("raw", "notes"):
        schema.external[store].delete(delete_external_files=False)


def cleaner_config(world: DemoWorld) -> Path:
    """Write a dj-cleaner TOML file for the demo's two stores and return its path."""
    source = world.source
    text = f"""
[database_servers.source]
host = "{source.host}:{source.port}"
user = "{source.user}"
password = "{source.password}"
use_tls = true

[storage_servers.minio.demo]
endpoint = "{world.s3.endpoint}"
access_key = "{world.s3.access_key}"
secret_key = "{world.s3.secret_key}"
secure = false

[storage_servers.file.demo]

[[cleaning_runs]]
database_server = "source"
schema = "{SCHEMA}"
store = "raw"
storage_server = "minio.demo"
bucket = "{BUCKET}"
location = "{S3_LOCATION}"

[[cleaning_runs]]
database_server = "source"
schema = "{SCHEMA}"
store = "notes"
storage_server = "file.demo"
location = "{world.files}"
"""
    path = world.scratch / "datajoint-cleaner.toml"
    path.write_text(text)
    return path


def clean_stores(world: DemoWorld) -> int:
    """Run dj-cleaner on the demo stores: a dry run, then for real; return the exit status."""
    from djbridge.cleaner.cli import main as dj_cleaner

    config = str(cleaner_config(world))
    # The orphans were made seconds ago; a lab keeps the default --min-age 1d.
    flags = ["--config-file", config, "--min-age", "0", "--no-progress"]
    print("\n$ dj-cleaner --dry-run --min-age 0")
    status = dj_cleaner([*flags, "--dry-run"])
    print("\n$ dj-cleaner --min-age 0")
    return status or dj_cleaner(flags)


def undo_a_mistaken_clean(world: DemoWorld, recording: Any) -> int:
    """Quarantine instead of deleting, then undo the clean with ``dj-cleaner restore``.

    The mistake: session 1 is being re-imported from a dump, and the cleaner runs
    while its rows are not back yet, so its objects look orphaned. With
    ``--quarantine`` they are only moved aside; once the import finishes,
    ``restore`` puts them back and the rows fetch again.
    """
    from djbridge.cleaner.cli import main as dj_cleaner
    from djbridge.cleaner.quarantine import batches

    def insert(db: Any, table: str, rows: list[dict[str, Any]]) -> None:
        columns = list(rows[0])
        db.executemany(
            f"INSERT INTO {quote(SCHEMA, table)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))})",
            [tuple(row[c] for c in columns) for row in rows],
        )

    flags = ["--config-file", str(cleaner_config(world)), "--no-progress"]
    db = connect(world.source)
    try:
        dump = {"recording": db.query_dicts(
            f"SELECT * FROM {quote(SCHEMA, 'recording')} WHERE session_id = 1")}  # fmt: skip
        hashes = [r[c] for r in dump["recording"] for c in ("trace", "protocol")]
        where = f"hash IN ({', '.join(['%s'] * len(hashes))})"
        db.execute(f"DELETE FROM {quote(SCHEMA, 'recording')} WHERE session_id = 1")
        for table in ("~external_raw", "~external_notes"):
            dump[table] = db.query_dicts(
                f"SELECT * FROM {quote(SCHEMA, table)} WHERE {where}", hashes
            )
            db.execute(f"DELETE FROM {quote(SCHEMA, table)} WHERE {where}", hashes)
        print("\nSession 1 is being re-imported from a dump; its rows are not back yet.")
        print("$ dj-cleaner --quarantine --min-age 0")
        status = dj_cleaner([*flags, "--quarantine", "--min-age", "0"])
        for table in ("~external_raw", "~external_notes", "recording"):  # the import ends
            insert(db, table, dump[table])
    finally:
        db.close()
    print("\nThe import has finished, but session 1's objects are in quarantine:")
    describe(world)
    ids = [m.id for name in ("raw", "notes") for m in batches(world.store(name))]
    print("\n$ dj-cleaner quarantine")
    status = status or dj_cleaner(["quarantine", *flags])
    for batch_id in ids:
        print(f"\n$ dj-cleaner restore {batch_id}")
        status = status or dj_cleaner(["restore", batch_id, *flags])
    rows = (recording & {"session_id": 1}).fetch(download_path=str(world.scratch / "dl"))
    print(f"After restore: all {len(rows)} recordings of session 1 fetch with their objects.")
    describe(world)
    return status


LINK_USER, LINK_PASS = "djlink", "demo-link-pw"


def configure_link(world: DemoWorld) -> None:
    """Create the link account on the source and point DataJoint at the local server.

    The grants are the ones the link README asks of a source admin; the local
    stores are a second bucket on the same S3 endpoint (server-side copies) and a
    second directory.
    """
    import datajoint as dj

    db = connect(world.source)
    try:
        db.execute(f"CREATE USER '{LINK_USER}'@'%' IDENTIFIED BY '{LINK_PASS}'")
        db.execute(f"GRANT SELECT, REFERENCES ON {quote(SCHEMA)}.* TO '{LINK_USER}'@'%'")
        db.execute(f"GRANT ALL PRIVILEGES ON `demo\\_outbound`.* TO '{LINK_USER}'@'%'")
    finally:
        db.close()
    os.environ["LINK_USER"], os.environ["LINK_PASS"] = LINK_USER, LINK_PASS
    local_files = world.scratch / "local-file-store"
    local_files.mkdir()
    stores = world.dj_stores()
    stores["raw_local"] = dict(stores["raw"], bucket=LOCAL_BUCKET, location="copies/raw")
    stores["notes_local"] = {"protocol": "file", "location": str(local_files)}
    make_client(world.s3).make_bucket(LOCAL_BUCKET)
    dj.config["stores"] = stores
    dj.config["database.host"] = world.local.address
    dj.config["database.user"] = world.local.user
    dj.config["database.password"] = world.local.password
    dj.config["database.use_tls"] = False
    dj.config["safemode"] = False


def link_tables(world: DemoWorld) -> None:
    """Link the demo's Recording table into the local server and pull it."""
    from link import link

    configure_link(world)

    @link(world.source.address, SCHEMA, "demo_outbound", "Outbound", "demo_copy",
          stores={"raw": "raw_local", "notes": "notes_local"})  # fmt: skip
    class Recording:
        """The demo recordings, mirrored on the local server."""

    linked: Any = Recording  # mypy does not see what a class decorator returns
    print("\n>>> (Recording().source & 'session_id > 0').pull(display_progress=True)")
    result = (linked().source & "session_id > 0").pull(display_progress=True)
    print(f"  pulled {result.rows_copied} rows and {result.objects_copied} objects "
          f"({human_bytes(result.bytes_copied)}) into demo_copy.recording")  # fmt: skip
    local = open_store(world.s3, bucket=LOCAL_BUCKET, location="copies/raw")
    print(f"  local raw store now holds {len(list(local.iter_objects('demo_copy/')))} objects")
    status = linked().source.status()
    print("  states:", ", ".join(f"{s.value} {n}" for s, n in sorted(status.counts.items())))


def verify_with_dj_link(world: DemoWorld) -> int:
    """Run ``dj-link verify`` as cron would, lose an object, then ``verify --repair``.

    ``dj-link`` is a separate process that reads ``dj-link.toml`` and DataJoint's own
    ``dj_local_conf.json`` from its working directory; return its last exit status.
    """
    import subprocess

    import datajoint as dj

    cron = world.scratch / "cron"
    cron.mkdir()
    (cron / "dj-link.toml").write_text(f"""[[links]]
name = "recordings"
source_host = "{world.source.address}"
source_schema = "{SCHEMA}"
outbound_schema = "demo_outbound"
outbound_table = "Outbound"
local_schema = "demo_copy"
table = "Recording"
stores = {{ raw = "raw_local", notes = "notes_local" }}
""")
    dj.config.save(str(cron / "dj_local_conf.json"))
    command = [sys.executable, "-m", "djbridge.link.cli", "verify", "--no-progress"]
    status = 0
    for extra, note in (([], ""), (["--repair"], "one local object deleted out of band")):
        if note:
            local = open_store(world.s3, bucket=LOCAL_BUCKET, location="copies/raw")
            local.delete_many([next(iter(local.iter_objects("demo_copy/"))).key])
            print(f"\n({note})")
        print(f"\n$ dj-link verify {' '.join(extra)}".rstrip())
        done = subprocess.run([*command, *extra], cwd=cron, stdin=subprocess.DEVNULL)
        status = done.returncode
    return status


def dj2_bin(name: str) -> Path:
    """Return a program of the DataJoint 2.x environment (``.venv-dj2``; ``DJB_DJ2_PYTHON``)."""
    override = os.environ.get("DJB_DJ2_PYTHON")
    folder = Path(override).parent if override else Path(sys.prefix).parent / ".venv-dj2" / "bin"
    program = folder / name
    if not program.exists():
        raise SystemExit(f"{program} is missing: run ./scripts/setup to make .venv-dj2")
    return program


FETCH_2X = """
import sys, warnings; warnings.filterwarnings("ignore")
import datajoint as dj
host, port, user, password, db = sys.argv[1:6]
inst = dj.Instance(host=host, port=int(port), user=user, password=password,
                   backend="postgresql", use_tls=False, database__name=db)
inst.config.stores.update({"raw": {"protocol": "s3", "endpoint": sys.argv[6], "bucket": "demo-dj2",
    "location": "dj2", "access_key": sys.argv[7], "secret_key": sys.argv[8], "secure": False},
    "notes": {"protocol": "file", "location": sys.argv[9]}})
lab = dj.VirtualModule("lab", "demo_lab", connection=inst.connection)
rows = (lab.Recording & "session_id = 2").to_dicts()
trace = rows[0]["trace"]
print(f"  DataJoint {dj.__version__} fetched {len(rows)} recordings of session 2;",
      f"the first trace is {trace.dtype} {trace.shape}")
print("  a join on session_id (needs ~lineage):", len(lab.Session * lab.Recording), "rows")
"""


def migrate_to_dj2(world: DemoWorld, stack: ExitStack) -> int:
    """Move the demo schema to DataJoint 2.x on a private PostgreSQL with ``dj-migrate``."""
    import subprocess

    from djbridge.pgsandbox import PostgreSQL

    pg = stack.enter_context(PostgreSQL("demo-dj2")).server
    make_client(world.s3).make_bucket("demo-dj2")
    files = world.scratch / "dj2-files"
    folder = world.scratch / "migrate"
    folder.mkdir()
    (folder / "dj-migrate.toml").write_text(
        f'[source]\nhost = "{world.source.address}"\nuser = "{world.source.user}"\n'
        'password = "${OLD_DB_PW}"\nuse_tls = true\n\n'
        f'[destination]\nbackend = "postgresql"\nhost = "{pg.address}"\n'
        f'database = "{pg.database}"\n'
        f'user = "{pg.user}"\npassword = "${{NEW_DB_PW}}"\n\n'
        f'[source_stores.raw]\nprotocol = "s3"\nendpoint = "{world.s3.endpoint}"\n'
        f'bucket = "{BUCKET}"\nlocation = "{S3_LOCATION}"\naccess_key = "{world.s3.access_key}"\n'
        'secret_key = "${S3_SECRET}"\nsecure = false\n\n'
        f'[source_stores.notes]\nprotocol = "file"\nlocation = "{world.files}"\n\n'
        f'[destination_stores.raw]\nprotocol = "s3"\nendpoint = "{world.s3.endpoint}"\n'
        f'bucket = "demo-dj2"\nlocation = "dj2"\naccess_key = "{world.s3.access_key}"\n'
        'secret_key = "${S3_SECRET}"\nsecure = false\n\n'
        f'[destination_stores.notes]\nprotocol = "file"\nlocation = "{files}"\n\n'
        f'[[schemas]]\nsource = "{SCHEMA}"\n'
    )
    env = {**os.environ, "OLD_DB_PW": world.source.password, "NEW_DB_PW": pg.password,
           "S3_SECRET": world.s3.secret_key}  # fmt: skip
    program = str(dj2_bin("dj-migrate"))
    print(f"\nDataJoint 2.x on a private PostgreSQL at {pg.address}; dj-migrate runs beside it.")
    status = 0
    for step, note in ((["plan"], ""), (["run", "--no-progress"], ""),
                       (["run", "--no-progress"], "a new recording lands on the 0.14 side"),
                       (["verify", "--no-progress"], "")):  # fmt: skip
        if note:
            print(f"\n({note})")
            db = connect(world.source)
            db.execute(
                f"INSERT INTO {quote(SCHEMA, 'recording')} SELECT session_id, 99, trace, protocol "
                f"FROM {quote(SCHEMA, 'recording')} WHERE session_id = 2 AND recording_id = 0"
            )
            db.close()
        print(f"\n$ dj-migrate {' '.join(step)}")
        done = subprocess.run([program, *step], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
        lines = done.stdout.splitlines()
        print("\n".join(line for line in lines if "definition" not in line))
        status = status or done.returncode
    subprocess.run(
        [str(dj2_bin("python")), "-c", FETCH_2X, pg.host, str(pg.port), pg.user, pg.password,
         pg.database, world.s3.endpoint, world.s3.access_key, world.s3.secret_key, str(files)],
        check=False, cwd=folder,  # DataJoint downloads attachments into the working directory
    )  # fmt: skip
    return status or link_between_dj2_labs(world, pg)


def link_between_dj2_labs(world: DemoWorld, pg: DatabaseServer) -> int:
    """Share the migrated Recording table with a second 2.x lab: ``dj-link`` under 2.x."""
    import json
    import subprocess

    from djbridge.postgres import connect_pg

    admin = connect_pg(pg)
    admin.execute("CREATE DATABASE partner_lab")
    admin.close()
    folder = world.scratch / "dj2-link"
    (folder / ".secrets").mkdir(parents=True)
    raw = {"protocol": "s3", "endpoint": world.s3.endpoint, "bucket": "demo-dj2",
           "location": "dj2", "access_key": world.s3.access_key,
           "secret_key": world.s3.secret_key, "secure": False}  # fmt: skip
    config = {
        "database": {
            "host": pg.host,
            "port": pg.port,
            "user": pg.user,
            "backend": "postgresql",
            "name": "partner_lab",
            "use_tls": False,
        },  # fmt: skip
        "stores": {
            "raw": raw,
            "notes": {"protocol": "file", "location": str(world.scratch / "dj2-files")},
            "raw_local": {"protocol": "file", "location": str(world.scratch / "partner-files")},
        },  # fmt: skip
    }
    (folder / "datajoint.json").write_text(json.dumps(config, indent=1))
    (folder / ".secrets" / "database.password").write_text(pg.password)
    (folder / "dj-link.toml").write_text(
        f'[[links]]\nsource_host = "{pg.address}"\nsource_schema = "{SCHEMA}"\n'
        'outbound_schema = "demo_lab_outbound"\noutbound_table = "Outbound"\n'
        f'local_schema = "partner_copy"\ntable = "Recording"\ndatabase = "{pg.database}"\n'
        'stores = { raw = "raw_local" }\n'
    )
    env = {**os.environ, "LINK_USER": pg.user, "LINK_PASS": pg.password}
    print("\nA second lab on DataJoint 2.x (database partner_lab) links the migrated table;")
    print("dj-link runs under 2.x and reads datajoint.json and .secrets/:")
    status = 0
    for step in (["pull", "--no-progress"], ["status"], ["verify", "--no-progress"]):
        print(f"\n$ dj-link {' '.join(step)}")
        done = subprocess.run([str(dj2_bin("dj-link")), *step], cwd=folder, env=env,
                              stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        status = status or done.returncode
    return status


def main(argv: list[str] | None = None) -> int:
    """Run the demo end to end and return an exit status."""
    os.environ.setdefault("DJ_LOG_LEVEL", "WARNING")  # read when datajoint is imported
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print("djbridge demo: starting private servers (MariaDB x2, S3) ...")
    with demo_world() as world:
        print(f"  source MariaDB {world.source.address} (TLS), local {world.local.address}")
        print(f"  S3 endpoint {world.s3.endpoint}, file store {world.files}")
        schema, recording = build_pipeline(world)
        print("Demo pipeline on the source server:")
        describe(world)
        leave_orphans(schema, recording)
        print("\nSession 0 deleted with delete_external_files=False: its objects are orphans.")
        describe(world)
        status = clean_stores(world)
        print("\nAfter dj-cleaner:")
        describe(world)
        if status:
            print(f"dj-cleaner exited with {status}")
            return status
        status = undo_a_mistaken_clean(world, recording)
        if status:
            print(f"dj-cleaner exited with {status}")
            return status
        link_tables(world)
        status = verify_with_dj_link(world)
        if status:
            print(f"dj-link exited with {status}")
            return status
        with ExitStack() as stack:
            status = migrate_to_dj2(world, stack)
        if status:
            print(f"dj-migrate exited with {status}")
            return status
    print("Done: servers stopped, temporary data removed.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
