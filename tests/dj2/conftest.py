"""Fixtures for DataJoint 2.x stores: one private PostgreSQL 15 and one 2.x driver per session.

* ``pg_server``: a private PostgreSQL started here (``initdb`` and ``postgres`` as
  the ``postgres`` user), or an existing one from ``DJB_TEST_PG`` = ``host:port``
  with ``DJB_TEST_PG_USER`` (default ``postgres``), ``DJB_TEST_PG_PASSWORD`` and
  ``DJB_TEST_PG_DATABASE`` (default ``postgres``);
* ``dj2``: one DataJoint 2.3 driver process (``tests/dj2/driver.py`` under
  ``.venv-dj2``) with an instance ``admin`` connected as that account;
* ``lab2``: a test's own pipeline (:class:`tests.dj2.world.Lab2`) on a file store,
  or on S3 when the test is parametrized with ``indirect=True`` and ``"s3"``;
  its schemas, roles and bucket are dropped afterwards.

Every test here is marked ``integration``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from djbridge.config import DatabaseServer, StorageServer
from djbridge.pgsandbox import ADMIN_PASSWORD, ADMIN_USER, PostgreSQL
from tests.dj2.client import Driver
from tests.dj2.world import Lab2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


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
def dj2(pg_server: DatabaseServer) -> Iterator[Driver]:
    """One DataJoint 2.x process for the session, with an ``admin`` instance."""
    driver = Driver()
    driver.call(
        "connect",
        name="admin",
        host=pg_server.host,
        port=pg_server.port,
        user=pg_server.user,
        password=pg_server.password,
        database=pg_server.database,
    )
    yield driver
    driver.close()


@pytest.fixture
def lab2(
    request: pytest.FixtureRequest,
    dj2: Driver,
    pg_server: DatabaseServer,
    tmp_path: Path,
) -> Iterator[Lab2]:
    """A fresh 2.x pipeline on a file store (default) or S3 (``indirect`` param ``"s3"``)."""
    kind = getattr(request, "param", "file")
    s3: StorageServer | None = None
    bucket_factory: Callable[[StorageServer], str] | None = None
    if kind == "s3":
        s3 = request.getfixturevalue("s3_a")
        bucket_factory = request.getfixturevalue("bucket_factory")
    lab = Lab2(dj2, pg_server, tmp_path, s3=s3, bucket_factory=bucket_factory)
    yield lab
    lab.teardown()
