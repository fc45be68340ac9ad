"""Fixtures of the link-on-DataJoint-2.x tests: two 2.x labs per test (:class:`TwoLabs`).

``labs`` is built from two choices, each a fixture a test may parametrise with
``indirect=True``:

* ``pair``: the source and local servers, ``"postgresql-to-postgresql"`` (the
  default: one private PostgreSQL 15, a database per lab), ``"mysql-to-mysql"``
  (the source on the private MySQL 9.7 with TLS, the local side on the one
  without), ``"postgresql-to-mysql"`` or ``"mysql-to-postgresql"``;
* ``store_kind``: ``"file"`` (the default: two directories) or ``"s3"`` (a bucket
  on each moto endpoint).

The labs' accounts and databases exist when the test starts; the source pipeline
and the link account do not (``labs.ready(ids)`` builds the one and creates the
other with the README's grants). Everything is dropped afterwards. Every test here
is marked ``integration``; the slow ones (kills at every statement, concurrent pulls,
300 MiB objects, the S3 repair) also ``slow``.

    @pytest.mark.parametrize("pair", SAME_BACKEND, indirect=True)
    def test_something(labs: TwoLabs) -> None:
        labs.ready(range(3))
        run = labs.run("emit(rows=Recording().source.pull().rows_copied)")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from djbridge.config import DatabaseServer, StorageServer
from tests.conftest import Servers
from tests.dj2.conftest import dj2, mysql2_server, pg_server
from tests.link2.twolabs import TwoLabs

__all__ = ["dj2", "mysql2_server", "pg_server"]

SAME_BACKEND = ["postgresql-to-postgresql", "mysql-to-mysql"]
CROSS_BACKEND = ["postgresql-to-mysql", "mysql-to-postgresql"]


@pytest.fixture
def pair(request: pytest.FixtureRequest) -> str:
    """``"<source backend>-to-<local backend>"``; PostgreSQL on both sides by default."""
    return str(getattr(request, "param", "postgresql-to-postgresql"))


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """``"file"`` (default) or ``"s3"``: where both stores of this test live."""
    return str(getattr(request, "param", "file"))


def admin_of(request: pytest.FixtureRequest, backend: str, role: str) -> DatabaseServer:
    """The admin account of the server of one role (``source`` or ``local``)."""
    if backend == "postgresql":
        server: DatabaseServer = request.getfixturevalue("pg_server")
        return server
    if role == "local":
        server = request.getfixturevalue("mysql2_server")
        return server
    servers: Servers = request.getfixturevalue("servers")
    server = servers.get("mysql/source")
    return server


@pytest.fixture
def labs(
    request: pytest.FixtureRequest,
    pair: str,
    store_kind: str,
    bucket_factory: Callable[[StorageServer], str],
    tmp_path: Path,
) -> Iterator[TwoLabs]:
    """Two labs with their accounts and the link account; dropped afterwards."""
    source_backend, local_backend = pair.split("-to-")
    source = admin_of(request, source_backend, "source")
    local = admin_of(request, local_backend, "local")
    s3: tuple[StorageServer, StorageServer] | None = None
    buckets = ("", "")
    if store_kind == "s3":
        s3 = (request.getfixturevalue("s3_a"), request.getfixturevalue("s3_b"))
        buckets = (bucket_factory(s3[0]), bucket_factory(s3[1]))
    world = TwoLabs(source, local, tmp_path, s3=s3, buckets=buckets)
    try:
        world.create()
        yield world
    finally:
        world.teardown()
