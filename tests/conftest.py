"""Fixtures: real MariaDB and S3 servers, started here, plus per-test isolation.

Session-wide servers (started once, in parallel threads, on first use):

* ``source_server``: a private server **with TLS** (the lab that shares data);
* ``local_server``: a private server **without TLS** (the lab that receives);
* ``s3_a`` and ``s3_b``: two moto S3 endpoints, each its own process.

Each database test runs twice, parametrised by server kind: on MariaDB 10.11 (ids
``[mariadb...]``) and on Oracle MySQL 9.7 (``[mysql...]``), four servers in all. A test
marked ``mixed_servers`` also runs with a MySQL source and a MariaDB local side, and
the reverse (``[mysql-to-mariadb...]``, ``[mariadb-to-mysql...]``). ``source_kind``
and ``local_kind`` tell a test which kinds it has.

Environment switches point them at servers that are already running instead:
``DJB_TEST_SOURCE_DB`` / ``DJB_TEST_LOCAL_DB`` = ``host:port`` for the MariaDB kind,
``DJB_TEST_MYSQL_SOURCE_DB`` / ``DJB_TEST_MYSQL_LOCAL_DB`` for the MySQL kind (each
with ``..._USER``, ``..._PASSWORD``, ``..._TLS`` = ``1``/``0``), and ``DJB_TEST_S3_A`` /
``DJB_TEST_S3_B`` = ``host:port`` (with ``DJB_TEST_S3_KEY`` / ``DJB_TEST_S3_SECRET``).

Per test: random schema and bucket names, dropped afterwards. A test that uses
a server fixture is marked ``integration`` automatically.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from djbridge.config import DatabaseServer, StorageServer
from djbridge.mysql import Database, connect, quote
from djbridge.sandbox import SERVER_KINDS, MotoS3, MySQLFamily
from djbridge.stores import s3_dj_spec
from djbridge.stores.s3 import make_client

pytest_plugins = ["tests.integration.linkworld"]

SERVER_FIXTURES = {
    "source_server",
    "local_server",
    "s3_a",
    "s3_b",
    "source_db",
    "local_db",
    "server_pair",
}


INTEGRATION_FOLDERS = frozenset({"integration", "dj2", "migrate", "link2"})
"""Test folders whose every test talks to real servers."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        folders = set(Path(str(item.path)).parts)
        if names & SERVER_FIXTURES or folders & INTEGRATION_FOLDERS:
            item.add_marker(pytest.mark.integration)


SERVER_PAIRS: dict[str, tuple[str, str]] = {
    "mariadb": ("mariadb", "mariadb"),
    "mysql": ("mysql", "mysql"),
    "mysql-to-mariadb": ("mysql", "mariadb"),
    "mariadb-to-mysql": ("mariadb", "mysql"),
}
"""Server kinds of (source, local) by test id. Every database test runs on the first two;
a test marked ``mixed_servers`` also on the two mixed pairs."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server_pair" not in metafunc.fixturenames:
        return
    if any(
        m.name == "parametrize" and "server_pair" in m.args[0]
        for m in metafunc.definition.iter_markers()
    ):
        return
    names = ["mariadb", "mysql"]
    if metafunc.definition.get_closest_marker("mixed_servers"):
        names += ["mysql-to-mariadb", "mariadb-to-mysql"]
    metafunc.parametrize("server_pair", names, indirect=True, scope="session")


def _env_prefix(kind: str, role: str) -> str:
    return f"DJB_TEST_{role.upper()}" if kind == "mariadb" else f"DJB_TEST_MYSQL_{role.upper()}"


def _db_from_env(kind: str, role: str) -> DatabaseServer | None:
    prefix = _env_prefix(kind, role)
    address = os.environ.get(f"{prefix}_DB")
    if not address:
        return None
    host, _, port = address.rpartition(":")
    tls = os.environ.get(f"{prefix}_TLS")
    return DatabaseServer(
        name=role,
        host=host or address,
        port=int(port) if port.isdigit() else 3306,
        user=os.environ.get(f"{prefix}_USER", "root"),
        password=os.environ.get(f"{prefix}_PASSWORD", ""),
        use_tls=None if tls is None else tls == "1",
    )


def _s3_from_env(role: str) -> StorageServer | None:
    endpoint = os.environ.get(f"DJB_TEST_S3_{role.upper()}")
    if not endpoint:
        return None
    return StorageServer(
        name=f"s3_{role}",
        kind="s3",
        endpoint=endpoint,
        access_key=os.environ.get("DJB_TEST_S3_KEY", MotoS3.ACCESS_KEY),
        secret_key=os.environ.get("DJB_TEST_S3_SECRET", MotoS3.SECRET_KEY),
        secure=False,
    )


ROLE_TLS = {"source": True, "local": False}
"""The sharing lab's server offers TLS; the receiving lab's does not (on either kind)."""


class Servers:
    """Starts every missing server at once, in threads, on first use.

    Keys are ``"<kind>/<role>"`` for database servers (``mariadb/source``,
    ``mysql/local``, ...) and ``s3_a``/``s3_b`` for the S3 endpoints.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: dict[str, Any] = {}
        self.services: list[Any] = []
        self.error: BaseException | None = None

    def _start_all(self) -> None:
        wanted: dict[str, Any] = {}
        for kind, cls in SERVER_KINDS.items():
            for role, tls in ROLE_TLS.items():
                key = f"{kind}/{role}"
                self.started[key] = _db_from_env(kind, role) or wanted.setdefault(
                    key, cls(f"{kind}-{role}", tls=tls)
                )
        for role in ("a", "b"):
            self.started[f"s3_{role}"] = _s3_from_env(role) or wanted.setdefault(
                f"s3_{role}", MotoS3(f"s3_{role}")
            )
        errors: list[BaseException] = []

        def run(service: Any) -> None:
            try:
                service.start()
            except BaseException as err:  # reported below, after every thread ended
                errors.append(err)

        threads = [threading.Thread(target=run, args=(s,)) for s in wanted.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.services = list(wanted.values())
        if errors:
            raise errors[0]

    def get(self, key: str) -> Any:
        with self.lock:
            if not self.started:
                try:
                    self._start_all()
                except BaseException as err:
                    self.error = err
            if self.error is not None:
                pytest.fail(f"could not start the test servers: {self.error}", pytrace=False)
        value = self.started[key]
        return value.server if isinstance(value, MySQLFamily | MotoS3) else value

    def stop(self) -> None:
        for service in self.services:
            service.stop()


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    box = Servers()
    yield box
    box.stop()


@pytest.fixture(scope="session")
def server_pair(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The server kinds (source, local) of this test: its id says which."""
    return SERVER_PAIRS[getattr(request, "param", "mariadb")]


@pytest.fixture(scope="session")
def source_kind(server_pair: tuple[str, str]) -> str:
    """``"mariadb"`` or ``"mysql"``: the kind of the source server."""
    return server_pair[0]


@pytest.fixture(scope="session")
def local_kind(server_pair: tuple[str, str]) -> str:
    """``"mariadb"`` or ``"mysql"``: the kind of the local server."""
    return server_pair[1]


@pytest.fixture(scope="session")
def source_server(servers: Servers, source_kind: str) -> DatabaseServer:
    """The sharing lab's server (TLS)."""
    server: DatabaseServer = servers.get(f"{source_kind}/source")
    return server


@pytest.fixture(scope="session")
def local_server(servers: Servers, local_kind: str) -> DatabaseServer:
    """The receiving lab's server (no TLS)."""
    server: DatabaseServer = servers.get(f"{local_kind}/local")
    return server


@pytest.fixture(scope="session")
def s3_a(servers: Servers) -> StorageServer:
    server: StorageServer = servers.get("s3_a")
    return server


@pytest.fixture(scope="session")
def s3_b(servers: Servers) -> StorageServer:
    server: StorageServer = servers.get("s3_b")
    return server


def unique(prefix: str) -> str:
    """Return a random lowercase name, safe as a schema or bucket name."""
    return f"{prefix}{secrets.token_hex(4)}"


@pytest.fixture
def source_db(source_server: DatabaseServer) -> Iterator[Database]:
    db = connect(source_server)
    yield db
    db.close()


@pytest.fixture
def local_db(local_server: DatabaseServer) -> Iterator[Database]:
    db = connect(local_server)
    yield db
    db.close()


@pytest.fixture
def schema_factory(
    source_server: DatabaseServer, local_server: DatabaseServer
) -> Iterator[Callable[[str], str]]:
    """Return ``make(role)``: a fresh schema name on that server, dropped at teardown."""
    made: list[tuple[DatabaseServer, str]] = []

    def make(role: str = "source", prefix: str = "djbt_") -> str:
        name = unique(prefix)
        made.append((source_server if role == "source" else local_server, name))
        return name

    yield make
    for server, name in reversed(made):
        db = connect(server)
        try:
            db.execute("SET FOREIGN_KEY_CHECKS=0")
            db.execute(f"DROP DATABASE IF EXISTS {quote(name)}")
        finally:
            db.close()


@pytest.fixture
def bucket_factory() -> Iterator[Callable[[StorageServer], str]]:
    """Return ``make(server)``: a fresh bucket there, emptied and removed at teardown."""
    made: list[tuple[StorageServer, str]] = []

    def make(server: StorageServer) -> str:
        name = unique("djbt-")
        make_client(server).make_bucket(name)
        made.append((server, name))
        return name

    yield make
    for server, name in made:
        client = make_client(server)
        try:
            for obj in client.list_objects(name, recursive=True):
                assert obj.object_name is not None
                client.remove_object(name, obj.object_name)
            client.remove_bucket(name)
        except Exception as err:  # noqa: BLE001 - the endpoint may have been stopped on purpose
            print(f"bucket cleanup of {name} skipped: {err}")


@pytest.fixture
def file_root(tmp_path: Path) -> Path:
    """A fresh directory for a file store."""
    root = tmp_path / "store"
    root.mkdir()
    return root


def dj_connection(server: DatabaseServer) -> Any:
    """Open a DataJoint connection with ``use_tls`` set explicitly (see FIELD-NOTES)."""
    import datajoint as dj

    return dj.Connection(
        f"{server.host}:{server.port}", server.user, server.password, use_tls=bool(server.use_tls)
    )


@pytest.fixture
def dj_stores() -> Iterator[dict[str, Any]]:
    """Yield ``dj.config["stores"]`` to fill in; the previous stores come back afterwards."""
    import datajoint as dj

    saved = dict(dj.config.get("stores", {}) or {})
    stores: dict[str, Any] = {}
    dj.config["stores"] = stores
    yield stores
    dj.config["stores"] = saved


def s3_store_spec(server: StorageServer, bucket: str, location: str) -> dict[str, Any]:
    """Return a DataJoint ``stores`` entry for an S3 store."""
    return s3_dj_spec(server, bucket, location)
