r"""The world ``bench/link2.py`` runs in: servers, stores, accounts, and the 2.x processes.

The benchmark itself runs under ``.venv`` (DataJoint 0.14). This module owns what every
contestant shares, and how the benchmark reaches DataJoint 2.x:

* **servers** (:func:`start_world`): one private PostgreSQL with a database per lab
  (``link2_src`` and ``link2_local``), or with ``--backend mysql`` one private MySQL 9.7
  whose schemas are the labs'; and for S3 one moto endpoint with a bucket per lab
  (``link2-src``, ``link2-local``), so a copy between them can be server-side, as the
  floor's ``CopyObject`` is. File stores live in the scratch directory (``/dev/shm`` when
  it is writable: small files on a disk would measure the disk);
* **the link account** with the contract's grants (:meth:`World.grant_link`): on
  PostgreSQL ``USAGE`` on the source schema, ``SELECT, REFERENCES`` on its tables and the
  helper schema created ``AUTHORIZATION`` it; on MySQL ``SELECT, REFERENCES`` on the source
  schema and ``ALL`` on the helper schema;
* **the network**: with a round-trip time, a latency proxy (``bench/latency_proxy.py``)
  in front of the source database counts each request-response turn; every contestant
  reaches the source through it (:attr:`World.source_host`), the local side directly.
  Optionally a proxy without delay in front of moto counts the S3 requests;
* **DataJoint 2.x**: :func:`dj2` runs one ``bench/link2_side.py`` request, :func:`run_child`
  one contestant; :func:`write_config` writes a lab's ``datajoint.json`` and ``.secrets/``;
* **landings** (:func:`landing`): rows, part rows, objects and bytes a contestant left.

    with ExitStack() as stack:
        world = start_world(stack, "postgresql", ["file"], scratch, rtt_ms=20)
        request = {"connect": world.connect_fields("source"), "schema": "link2_src_file",
                   "stores": {"raw": world.source_spec("file", "file")}, "store": "raw",
                   "rows": 50, "files": str(scratch / "files")}
        dj2("build", request, scratch / "build")
        world.grant_link("link2_src_file")
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.latency_proxy import Turns, start_proxy
from bench.link_arena import server_tmpdir
from djbridge.config import DatabaseServer, StorageServer
from djbridge.mysql import Database, connect, quote
from djbridge.pgsandbox import PostgreSQL
from djbridge.postgres import PgDatabase, connect_pg, pg_quote
from djbridge.sandbox import MotoS3, MySQL
from djbridge.stores import s3_dj_spec, store_from_dj_spec

ROOT = Path(__file__).resolve().parents[1]  # the checkout, so 2.x children find ``bench``
DJ2_PYTHON = Path(os.environ.get("DJB_DJ2_PYTHON") or ROOT / ".venv-dj2" / "bin" / "python")
RESULT_MARK = "BENCH-RESULT "
DATABASES = {"source": "link2_src", "local": "link2_local"}
HELPER_SCHEMA = "link2_out"
LINK_USER, LINK_PASS = "link2", "link2-bench-pw"
BUCKETS = {"source": "link2-src", "local": "link2-local"}
SOURCE_STORE, LOCAL_STORE = "raw", "raw_local"
TIMEOUT_S = 3600


class BenchError(Exception):
    """A contestant or a setup step failed; the message says which and why."""


@dataclass
class World:
    """The servers of one benchmark run and how the contestants reach them."""

    backend: str
    source: DatabaseServer  # the source lab's admin, on its database (direct)
    local: DatabaseServer  # the local lab's account, on its database
    scratch: Path
    s3: StorageServer | None = None
    source_host: str = ""  # host:port the contestants use (the proxy, with latency)
    turns: Turns | None = None  # the proxy's count, with latency
    rtt_ms: float | None = None
    s3_turns: Turns | None = None  # S3 requests, with count_s3
    services: list[Any] = field(default_factory=list)

    def db(self, role: str) -> Database | PgDatabase:
        """Open an admin connection to the source or the local database."""
        server = self.source if role == "source" else self.local
        return connect_pg(server) if self.backend == "postgresql" else connect(server)

    def sql(self, role: str, *statements: str) -> list[tuple[Any, ...]]:
        """Run statements on one side; return the last one's rows."""
        db = self.db(role)
        try:
            rows: list[tuple[Any, ...]] = []
            for statement in statements:
                rows = db.query(statement)
            return rows
        finally:
            db.close()

    def name(self, schema: str, table: str) -> str:
        """Return ``schema.table`` quoted for the backend."""
        return pg_quote(schema, table) if self.backend == "postgresql" else quote(schema, table)

    def grant_link(self, schema: str) -> None:
        """Give the link account the contract's grants on the source schema ``schema``."""
        if self.backend == "postgresql":
            self.sql("source", f"GRANT USAGE ON SCHEMA {pg_quote(schema)} TO {LINK_USER}",
                     f"GRANT SELECT, REFERENCES ON ALL TABLES IN SCHEMA {pg_quote(schema)} "
                     f"TO {LINK_USER}")  # fmt: skip
        else:
            grant = f"GRANT SELECT, REFERENCES ON {quote(schema)}.* TO '{LINK_USER}'@'%'"
            self.sql("source", grant)

    def connect_fields(self, role: str, *, through_proxy: bool = False) -> dict[str, Any]:
        """Return the account of one side as the 2.x processes and the floor take it."""
        server = self.source if role == "source" else self.local
        if role == "source" and through_proxy:
            host, _, port = self.source_host.rpartition(":")
            server = dataclasses.replace(server, host=host, port=int(port),
                                         user=LINK_USER, password=LINK_PASS)  # fmt: skip
        return {"host": server.host, "port": server.port, "user": server.user,
                "password": server.password, "backend": self.backend,
                "database": server.database}  # fmt: skip

    def source_spec(self, kind: str, area: str) -> dict[str, Any]:
        """Return the 2.x store entry of a source store (``raw``): ``kind`` file or s3."""
        if kind == "s3":
            assert self.s3 is not None
            return s3_dj_spec(self.s3, BUCKETS["source"], f"lab/{area}")
        path = self.scratch / f"src-{area}"
        path.mkdir(parents=True, exist_ok=True)
        return {"protocol": "file", "location": str(path)}

    def local_spec(self, kind: str, place: str) -> dict[str, Any]:
        """Return the 2.x store entry of one attempt's fresh destination (``raw_local``)."""
        if kind == "s3":
            assert self.s3 is not None
            return s3_dj_spec(self.s3, BUCKETS["local"], place)
        path = self.scratch / f"dst-{place}"
        path.mkdir(parents=True, exist_ok=True)
        return {"protocol": "file", "location": str(path)}


def start_world(stack: ExitStack, backend: str, kinds: list[str], scratch: Path,
                rtt_ms: float | None, *, count_s3: bool = False) -> World:  # fmt: skip
    """Start the servers, create both labs' databases, the link account and the proxies.

    With ``count_s3``, every S3 request goes through a proxy without delay that counts it;
    both stores name the proxy, so copies between them stay server-side.
    """
    service: Any = PostgreSQL("bench-link2") if backend == "postgresql" else MySQL("bench-link2")
    services: list[Any] = [service]
    if "s3" in kinds:
        services.append(MotoS3("bench-link2-s3"))
    for one in services:
        stack.callback(one.stop)
        with server_tmpdir(scratch / f"tmp-{one.name}"):
            one.start()
    admin: DatabaseServer = service.server
    if backend == "postgresql":
        source = dataclasses.replace(admin, database=DATABASES["source"])
        local = dataclasses.replace(admin, database=DATABASES["local"])
    else:
        source = local = dataclasses.replace(admin, use_tls=False)
    world = World(backend, source, local, scratch, services=services)
    world.source_host = source.address
    if "s3" in kinds:
        moto: MotoS3 = services[1]
        world.s3 = moto.server
        for bucket in BUCKETS.values():
            moto.make_bucket(bucket)
        if count_s3:
            world.s3_turns = Turns()
            host, port, stop = start_proxy("127.0.0.1", moto.port, 0.0, turns=world.s3_turns)
            stack.callback(stop)
            world.s3 = dataclasses.replace(world.s3, endpoint=f"{host}:{port}")
    create_accounts(world, admin)
    if rtt_ms is not None:
        world.turns, world.rtt_ms = Turns(), rtt_ms
        host, port, stop = start_proxy(source.host, source.port, rtt_ms / 2000,
                                       turns=world.turns)  # fmt: skip
        stack.callback(stop)
        world.source_host = f"{host}:{port}"
    return world


def create_accounts(world: World, admin: DatabaseServer) -> None:
    """Create both labs' databases (PostgreSQL), the link account and its helper schema."""
    if world.backend == "postgresql":
        db = connect_pg(admin)
        try:
            for name in DATABASES.values():
                db.execute(f"CREATE DATABASE {pg_quote(name)}")
            db.execute(f"CREATE ROLE {LINK_USER} LOGIN PASSWORD '{LINK_PASS}'")
        finally:
            db.close()
        world.sql("source", f"CREATE SCHEMA {pg_quote(HELPER_SCHEMA)} AUTHORIZATION {LINK_USER}")
        return
    world.sql(
        "source",
        f"CREATE USER '{LINK_USER}'@'%' IDENTIFIED BY '{LINK_PASS}'",
        f"GRANT ALL PRIVILEGES ON {quote(HELPER_SCHEMA)}.* TO '{LINK_USER}'@'%'",
    )


def child_env(**extra: str) -> dict[str, str]:
    """Return a 2.x child's environment: this checkout on the path, no venv or DJ_ leftovers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJ_")}
    for leftover in ("VIRTUAL_ENV", "PYTHONHOME", "LINK_USER", "LINK_PASS"):
        env.pop(leftover, None)
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


def run_child(command: list[str], folder: Path, env: dict[str, str],
              label: str) -> dict[str, Any]:  # fmt: skip
    """Run a child in ``folder``; return its ``BENCH-RESULT`` plus ``process_s`` (wall time)."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{label}.log"
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=out, text=True, env=env,
                              cwd=folder, timeout=TIMEOUT_S)  # fmt: skip
    elapsed = time.perf_counter() - started
    marked = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode != 0 or not marked:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        raise BenchError(f"{label} exited {done.returncode}:\n    " + "\n    ".join(tail))
    result: dict[str, Any] = json.loads(marked[-1][len(RESULT_MARK) :])
    result["process_s"] = elapsed
    return result


def dj2(op: str, request: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Run one ``bench/link2_side.py`` request under DataJoint 2.x; return its answer."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{op}.json"
    path.write_text(json.dumps({"op": op, **request}, indent=2))
    command = [str(DJ2_PYTHON), "-m", "bench.link2_side", str(path)]
    return run_child(command, folder, child_env(), f"side-{op}")


def write_config(folder: Path, local: dict[str, Any], stores: dict[str, dict[str, Any]]) -> None:
    """Write a 2.x lab's ``datajoint.json`` and ``.secrets/`` (password, S3 secret keys)."""
    secrets = folder / ".secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "database.host": local["host"],
        "database.port": local["port"],
        "database.user": local["user"],
        "database.backend": local["backend"],
        "database.use_tls": False,
        "safemode": False,
    }
    if local["backend"] == "postgresql":
        config["database.name"] = local["database"]
    public = {}
    for name, spec in stores.items():
        public[name] = {k: v for k, v in spec.items() if k != "secret_key"}
        if "secret_key" in spec:
            (secrets / f"stores.{name}.secret_key").write_text(str(spec["secret_key"]))
    config["stores"] = public
    (folder / "datajoint.json").write_text(json.dumps(config, indent=2))
    (secrets / "database.password").write_text(local["password"])


def objects_under(spec: dict[str, Any], prefixes: list[str]) -> tuple[int, int]:
    """Count the objects of a store below any of ``prefixes``, and their bytes."""
    store = store_from_dj_spec("count", spec)
    found = [o.size for prefix in prefixes for o in store.iter_objects(prefix)]
    return len(found), sum(found)


def landing(world: World, schema: str, tables: list[str], src_spec: dict[str, Any],
            dst_spec: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Count a contestant's local rows per table and its objects in both stores."""
    counts = {}
    for table in tables:
        rows = world.sql("local", f"SELECT COUNT(*) FROM {world.name(schema, table)}")
        counts[table] = int(rows[0][0])
    areas = [f"_hash/{schema}/", f"_schema/{schema}/"]
    objects, size = objects_under(dst_spec, areas)
    return {
        "rows": counts,
        "dst_objects": objects,
        "dst_bytes": size,
        "src_objects": objects_under(src_spec, areas)[0],
    }


def discard(spec: dict[str, Any]) -> None:
    """Free one destination (the /dev/shm pages, moto's memory)."""
    if spec["protocol"] == "file":
        import shutil

        shutil.rmtree(spec["location"], ignore_errors=True)
        return
    store = store_from_dj_spec("discard", spec)
    keys = [o.key for o in store.iter_objects("")]
    for start in range(0, len(keys), 1000):
        store.delete_many(keys[start : start + 1000])
