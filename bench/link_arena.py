"""The world the link benchmark runs in: private servers, stores, the link account, the source.

``bench/link_pull.py`` builds this once per run and then lets each contestant
loose on it. This module owns the parts every contestant shares:

* the servers (:func:`start_services`): a source and a local MariaDB, both with TLS
  (datajoint-link 0.11 cannot connect otherwise), each with a tmpdir of its own,
  and for S3 two moto endpoints, the source store's and the destination's;
* the stores of one kind (:class:`Arena`): one source store and one fresh
  destination location per contestant run, as ``dj.config["stores"]`` entries;
  file stores live under the scratch directory in ``/dev/shm``;
* the link account (:func:`create_link_account`) with the README's grants, and the
  source workload (:func:`build_source`);
* the network (:func:`start_network`): the address of the source database and of
  the source S3 endpoint that every contestant is given. With a delay, those are
  latency proxies (``bench/latency_proxy.py``) that also count each request-response
  turn, so two labs far apart are one flag away; the local side stays direct, as a
  lab's own servers are near it. Only the contestants go through the proxies: the
  workload is built and the landing checked on the direct addresses.

    with ExitStack() as stack:
        services = start_services(stack, ["file"], scratch)
        create_link_account(services["source"].server, ["bench_src_file"])
        build_source(Arena("file", "bench_src_file", scratch), services["source"].server, 50)
        network = start_network(stack, services, delay_s=0.01)   # 20 ms round trips
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.latency_proxy import Turns, start_proxy
from bench.link_workload import build_workload
from djbridge.config import DatabaseServer, StorageServer
from djbridge.mysql import connect, quote
from djbridge.sandbox import MariaDB, MotoS3
from djbridge.stores import s3_dj_spec

LINK_USER, LINK_PASS = "djlink", "djlink-bench-pw"
OUTBOUND_SCHEMA = "bench_outbound"


@dataclass
class Arena:
    """One store kind's stores: the source store and a fresh destination per contestant."""

    kind: str
    source_schema: str
    scratch: Path
    s3_source: StorageServer | None = None
    s3_dest: StorageServer | None = None

    @property
    def src_store(self) -> str:
        """Name of the source store in ``dj.config["stores"]``."""
        return f"src_{self.kind}"

    @property
    def dst_store(self) -> str:
        """Name of the destination store in ``dj.config["stores"]``."""
        return f"dst_{self.kind}"

    def spec(self, role: str, contestant: str = "") -> dict[str, Any]:
        """Return the ``dj.config["stores"]`` entry of the source or a destination store."""
        if self.kind == "file":
            folder = "file-src" if role == "src" else f"file-dst-{contestant}"
            return {"protocol": "file", "location": str(self.scratch / folder)}
        server = self.s3_source if role == "src" else self.s3_dest
        assert server is not None
        return s3_dj_spec(server, f"bench-{role}", "src" if role == "src" else f"dst-{contestant}")


def scratch_root() -> Path:
    """Return a fresh directory for file stores and job files, in /dev/shm when it exists."""
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    if base is None:
        print("warning: /dev/shm is not writable; file stores go to disk and will measure it")
    scratch = Path(tempfile.mkdtemp(prefix="djbridge-bench-", dir=base))
    scratch.chmod(0o755)  # the servers' tmpdirs live inside, and mariadbd runs as 'mysql'
    return scratch


@contextmanager
def server_tmpdir(path: Path) -> Iterator[None]:
    """Point ``TMPDIR`` at ``path`` while a server starts, so mariadbd makes it its tmpdir.

    Every mariadbd deletes the ``#sql*`` files in its tmpdir when it starts. With the
    default ``/tmp``, any other private server started on this machine (a test run,
    say) deletes the live temporary tables of ours, and a pull dies with
    ``Error on delete of '/tmp/#sql-temptable-...'``. A directory of its own avoids it.
    """
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o1777)  # mariadbd runs as 'mysql' when started by root
    saved = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(path)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved


def start_services(stack: ExitStack, kinds: Sequence[str], scratch: Path) -> dict[str, Any]:
    """Start both MariaDB servers and, for S3, two moto endpoints; stop them with ``stack``."""
    services: dict[str, Any] = {
        "source": MariaDB("bench-source", tls=True),
        "local": MariaDB("bench-local", tls=True),
    }
    if "s3" in kinds:
        services["s3_source"] = MotoS3("bench-s3-source")
        services["s3_dest"] = MotoS3("bench-s3-dest")
    for role, service in services.items():  # one at a time: mariadb-install-db runs that
        stack.callback(service.stop)  # overlap delete each other's temporary tables
        with server_tmpdir(scratch / f"tmp-{role}"):
            service.start()
    if "s3" in kinds:
        services["s3_source"].make_bucket("bench-src")
        services["s3_dest"].make_bucket("bench-dst")
    return services


@dataclass
class Network:
    """How the contestants reach the source lab: directly, or through latency proxies.

    ``turns`` holds the proxies' counters of request-response turns, by ``db`` and
    ``s3``; it is empty when there are no proxies (``delay_s`` is ``None``).
    """

    delay_s: float | None
    source_host: str
    s3_endpoint: str | None = None
    turns: dict[str, Turns] = field(default_factory=dict)


def start_network(stack: ExitStack, services: dict[str, Any], delay_s: float | None) -> Network:
    """Return the source addresses the contestants use; with a delay, start proxies for them.

    A proxy delays each direction by ``delay_s`` (a round trip costs twice that) and
    counts the turns it carries; ``stack`` stops it before the servers stop.
    """
    source: DatabaseServer = services["source"].server
    s3: StorageServer | None = services["s3_source"].server if "s3_source" in services else None
    if delay_s is None:
        return Network(None, f"{source.host}:{source.port}", s3.endpoint if s3 else None)
    turns = {"db": Turns()}
    host, port, stop = start_proxy(source.host, source.port, delay_s, turns=turns["db"])
    stack.callback(stop)
    network = Network(delay_s, f"{host}:{port}", turns=turns)
    if s3 is not None:
        s3_host, _, s3_port = s3.endpoint.rpartition(":")
        turns["s3"] = Turns()
        host, port, stop = start_proxy(s3_host, int(s3_port), delay_s, turns=turns["s3"])
        stack.callback(stop)
        network.s3_endpoint = f"{host}:{port}"
    return network


def like_name(schema: str) -> str:
    """Escape ``_`` and ``%`` so that a GRANT names exactly this schema."""
    return schema.replace("_", r"\_").replace("%", r"\%")


def create_link_account(source: DatabaseServer, source_schemas: Sequence[str]) -> None:
    """Create the link account with the grants the README asks for, and the outbound schema.

    The grants are schema-wide (as 0.11's own tests do): a link reads the part
    tables and ``~external_*`` tables too, and each contestant has its own
    outbound table.
    """
    db = connect(source)
    try:
        db.execute(f"CREATE USER '{LINK_USER}'@'%' IDENTIFIED BY '{LINK_PASS}'")
        for schema in source_schemas:
            db.execute(
                f"GRANT SELECT, REFERENCES ON {quote(like_name(schema))}.* TO '{LINK_USER}'@'%'"
            )
        db.execute(
            f"GRANT ALL PRIVILEGES ON {quote(like_name(OUTBOUND_SCHEMA))}.* TO '{LINK_USER}'@'%'"
        )
        db.execute(f"CREATE DATABASE {quote(OUTBOUND_SCHEMA)}")
    finally:
        db.close()


def dj_connection(server: DatabaseServer) -> Any:
    import datajoint as dj

    address = f"{server.host}:{server.port}"
    return dj.Connection(address, server.user, server.password, use_tls=bool(server.use_tls))


def build_source(arena: Arena, source: DatabaseServer, rows: int) -> float:
    """Declare and fill the source tables for one store kind; return the seconds it took."""
    import datajoint as dj

    logging.getLogger("datajoint").setLevel(logging.WARNING)
    started = time.perf_counter()
    stores = dict(dj.config.get("stores") or {})
    stores[arena.src_store] = arena.spec("src")
    if arena.kind == "file":
        Path(stores[arena.src_store]["location"]).mkdir(parents=True, exist_ok=True)
    dj.config["stores"] = stores
    connection = dj_connection(source)
    build_workload(connection, arena.source_schema, arena.src_store, rows, arena.scratch)
    connection.close()
    return time.perf_counter() - started
