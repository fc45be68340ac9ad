"""Fixtures for DataJoint 2.x stores: PostgreSQL 15 or MySQL 9.7, one 2.x driver per session.

* ``pg_server``: a private PostgreSQL started here (``initdb`` and ``postgres`` as
  the ``postgres`` user), or an existing one from ``DJB_TEST_PG`` = ``host:port``
  with ``DJB_TEST_PG_USER`` (default ``postgres``), ``DJB_TEST_PG_PASSWORD`` and
  ``DJB_TEST_PG_DATABASE`` (default ``postgres``);
* ``mysql2_server``: the private MySQL 9.7 without TLS of the root conftest
  (``servers.get("mysql/local")``), which DataJoint 2.3.5 reaches over plain TCP;
* ``dj2_backend``: ``"postgresql"`` unless a test is parametrized with it
  (``indirect=True``); :data:`tests.dj2.world.BACKENDS` runs a test on both, and
  ``dj2_server`` is that backend's admin account;
* ``dj2``: one DataJoint 2.3 driver process (``tests/dj2/driver.py`` under
  ``.venv-dj2``), whose instances may connect to either server;
* ``lab2``: a test's own pipeline (:class:`tests.dj2.world.Lab2`) on ``dj2_server``
  and a file store, or S3 when the test is parametrized with ``indirect=True`` and
  ``"s3"``; its schemas, accounts and bucket are dropped afterwards.

Every test here is marked ``integration``.

    pytestmark = BACKENDS                       # from tests.dj2.world: each test on both
    @pytest.mark.parametrize("lab2", ["file", "s3"], indirect=True)
    def test_something(lab2: Lab2) -> None: ...
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from djbridge.config import DatabaseServer, StorageServer
from djbridge.pgsandbox import ADMIN_PASSWORD, ADMIN_USER, PostgreSQL
from tests.conftest import Servers
from tests.dj2.client import Driver
from tests.dj2.world import Lab2


def _pg_from_env() -> DatabaseServer | None:
    address = os.environ.get("DJB_TEST_PG")
    if not address:
        return None
    host, _, port = address.rpartition(":")
    return DatabaseServer(
        name="pg",
        host=host or address,
        port=int(port) if port.isdigit() else 5432,
        user=os.environ.get("DJB_TEST_PG_USER", ADMIN_USER),
        password=os.environ.get("DJB_TEST_PG_PASSWORD", ADMIN_PASSWORD),
        use_tls=False,
        backend="postgresql",
        database=os.environ.get("DJB_TEST_PG_DATABASE", "postgres"),
    )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[DatabaseServer]:
    """The PostgreSQL server of every 2.x test (superuser account)."""
    existing = _pg_from_env()
    if existing is not None:
        yield existing
        return
    try:
        sandbox = PostgreSQL("dj2").start()
    except Exception as err:  # noqa: BLE001 - reported as a test failure with the reason
        pytest.fail(f"could not start PostgreSQL: {err}", pytrace=False)
    yield sandbox.server
    sandbox.stop()


@pytest.fixture(scope="session")
def mysql2_server(servers: Servers) -> DatabaseServer:
    """The MySQL 9.7 server of the 2.x tests (admin account, no TLS)."""
    server: DatabaseServer = servers.get("mysql/local")
    assert server.backend == "mysql" and server.use_tls is False, server
    return server


@pytest.fixture
def dj2_backend(request: pytest.FixtureRequest) -> str:
    """``"postgresql"`` (the default) or ``"mysql"``: the server of this test's 2.x schemas."""
    return str(getattr(request, "param", "postgresql"))


@pytest.fixture
def dj2_server(request: pytest.FixtureRequest, dj2_backend: str) -> DatabaseServer:
    """The admin account of this test's 2.x server."""
    name = {"postgresql": "pg_server", "mysql": "mysql2_server"}[dj2_backend]
    server: DatabaseServer = request.getfixturevalue(name)
    return server


@pytest.fixture(scope="session")
def dj2() -> Iterator[Driver]:
    """One DataJoint 2.x process for the session."""
    driver = Driver()
    yield driver
    driver.close()


@pytest.fixture
def lab2(
    request: pytest.FixtureRequest,
    dj2: Driver,
    dj2_server: DatabaseServer,
    tmp_path: Path,
) -> Iterator[Lab2]:
    """A fresh 2.x pipeline on a file store (default) or S3 (``indirect`` param ``"s3"``)."""
    kind = getattr(request, "param", "file")
    s3: StorageServer | None = None
    bucket_factory: Callable[[StorageServer], str] | None = None
    if kind == "s3":
        s3 = request.getfixturevalue("s3_a")
        bucket_factory = request.getfixturevalue("bucket_factory")
    lab = Lab2(dj2, dj2_server, tmp_path, s3=s3, bucket_factory=bucket_factory)
    yield lab
    lab.teardown()
