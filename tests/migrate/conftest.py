"""Fixtures of the dj-migrate tests: a :class:`~tests.migrate.world.MigrationWorld` per test.

``world`` is built from three choices, each a fixture a test may parametrise with
``indirect=True``:

* the **source** kind, through the root conftest's ``server_pair`` (``[mariadb]`` or
  ``[mysql]``, both by default; :data:`ONE_SOURCE` keeps one, MariaDB unless the
  environment says ``DJB_MIGRATE_SMOKE_SOURCE=mysql``);
* ``dest_backend``: ``"postgresql"`` (the default, the private PostgreSQL 15) or
  ``"mysql"`` (the private MySQL 9.7 without TLS, ``servers.get("mysql/local")``);
* ``store_kind``: ``"file"`` (the default) or ``"s3"`` (a bucket on each moto endpoint).

:data:`FULL_MATRIX` runs a test on every destination and store kind; with both
source kinds that is eight worlds, so only the exactness test takes it. The others
are smoke tests on one combination.

The world is built (source schemas declared and filled by DataJoint 0.14) before the
test starts; its source schemas, destination schemas and buckets are dropped after.
Every test here is marked ``integration``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from djbridge.config import DatabaseServer, StorageServer
from djbridge.mysql import connect, quote
from tests.dj2.client import Driver
from tests.dj2.conftest import dj2, mysql2_server, pg_server
from tests.migrate.world import MigrationWorld

__all__ = ["dj2", "mysql2_server", "pg_server"]

FULL_MATRIX = [
    pytest.mark.parametrize("dest_backend", ["postgresql", "mysql"], indirect=True),
    pytest.mark.parametrize("store_kind", ["file", "s3"], indirect=True),
]
"""Every destination backend and store kind (with ``server_pair``: eight worlds)."""
SMOKE_SOURCE = os.environ.get("DJB_MIGRATE_SMOKE_SOURCE", "mariadb")
ONE_SOURCE = pytest.mark.parametrize("server_pair", [SMOKE_SOURCE], indirect=True)
"""A smoke test: one source kind, MariaDB unless ``DJB_MIGRATE_SMOKE_SOURCE=mysql``."""
MYSQL_SOURCE = pytest.mark.parametrize("server_pair", ["mysql"], indirect=True)
"""A smoke test on a MySQL source (the exactness matrix runs both kinds)."""
BOTH_DESTINATIONS = pytest.mark.parametrize("dest_backend", ["postgresql", "mysql"], indirect=True)


@pytest.fixture
def dest_backend(request: pytest.FixtureRequest) -> str:
    """``"postgresql"`` (default) or ``"mysql"``: the destination of this test."""
    return str(getattr(request, "param", "postgresql"))


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """``"file"`` (default) or ``"s3"``: where both stores of this test live."""
    return str(getattr(request, "param", "file"))


@pytest.fixture
def dest_server(request: pytest.FixtureRequest, dest_backend: str) -> DatabaseServer:
    """The admin account of the destination server."""
    name = {"postgresql": "pg_server", "mysql": "mysql2_server"}[dest_backend]
    server: DatabaseServer = request.getfixturevalue(name)
    return server


@pytest.fixture
def unbuilt_world(
    request: pytest.FixtureRequest,
    source_server: DatabaseServer,
    dest_server: DatabaseServer,
    store_kind: str,
    dj2: Driver,
    bucket_factory: Callable[[StorageServer], str],
    tmp_path: Path,
) -> Iterator[MigrationWorld]:
    """A world whose source schemas are not declared yet (the test calls ``build``)."""
    s3: tuple[StorageServer, StorageServer] | None = None
    buckets = ("", "")
    if store_kind == "s3":
        s3 = (request.getfixturevalue("s3_a"), request.getfixturevalue("s3_b"))
        buckets = (bucket_factory(s3[0]), bucket_factory(s3[1]))
    world = MigrationWorld(source_server, dest_server, store_kind, tmp_path, dj2, s3, buckets)
    try:
        yield world
    finally:
        world.teardown()
        db = connect(source_server)
        try:
            db.execute("SET FOREIGN_KEY_CHECKS=0")
            for name in world.schemas.values():
                db.execute(f"DROP DATABASE IF EXISTS {quote(name)}")
        finally:
            db.close()


@pytest.fixture
def world(unbuilt_world: MigrationWorld) -> MigrationWorld:
    """A world with its source pipeline declared and filled by DataJoint 0.14."""
    unbuilt_world.build()
    return unbuilt_world
