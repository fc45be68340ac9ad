"""Least privilege: the seed's grants are enough, and regular users cannot touch the link."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from djbridge.config import DatabaseServer
from djbridge.errors import DatabaseError
from djbridge.mysql import connect, quote
from tests.conftest import dj_connection
from tests.integration.linkworld import World, link_config

ACCOUNT, PASSWORD = "djlink_tight", "tight-secret"


@pytest.fixture
def tight_world(
    source_server: DatabaseServer,
    local_server: DatabaseServer,
    schema_factory: Any,
    tmp_path: Path,
) -> Iterator[World]:
    """A source table with no parts or external data, and the README's table-level grants."""
    import datajoint as dj

    names = [schema_factory(role, prefix) for role, prefix in
             (("source", "src_"), ("source", "out_"), ("local", "loc_"))]  # fmt: skip
    world = World(source_server, local_server, *names, {}, tmp_path)
    schema = dj.Schema(world.src_schema, connection=dj_connection(source_server))

    @schema
    class Session(dj.Manual):
        definition = """
        session_id : int
        ---
        operator : varchar(32)
        """

    Session.insert([(i, f"op{i}") for i in range(5)])
    db = connect(source_server)
    try:
        db.execute(f"CREATE DATABASE {quote(world.out_schema)}")  # the admin makes the schema
        db.execute(f"CREATE USER IF NOT EXISTS '{ACCOUNT}'@'%' IDENTIFIED BY '{PASSWORD}'")
        db.execute(f"GRANT SELECT, REFERENCES ON {quote(world.src_schema, 'session')} "
                   f"TO '{ACCOUNT}'@'%'")  # fmt: skip
        db.execute(f"GRANT ALL PRIVILEGES ON {quote(world.out_schema, 'outbound')} "
                   f"TO '{ACCOUNT}'@'%'")  # fmt: skip
    finally:
        db.close()
    with link_config(world):
        os.environ["LINK_USER"], os.environ["LINK_PASS"] = ACCOUNT, PASSWORD
        yield world
    db = connect(source_server)
    try:
        db.execute(f"DROP USER IF EXISTS '{ACCOUNT}'@'%'")
    finally:
        db.close()


def test_the_seed_grants_are_enough(tight_world: World) -> None:
    from link import link

    w = tight_world

    @link(f"{w.source.host}:{w.source.port}", w.src_schema, w.out_schema, "Outbound",
          w.local_schema)  # fmt: skip
    class Session:
        pass

    linked: Any = Session
    (linked().source & "session_id < 3").pull()
    assert sorted(linked().fetch("session_id")) == [0, 1, 2]
    (linked() & {"session_id": 1}).delete(safemode=False)
    assert sorted(linked().fetch("session_id")) == [0, 2]
    assert sorted(w.outbound()) == [0, 2]


def test_a_regular_user_cannot_alter_the_outbound_table(tight_world: World) -> None:
    from link import link

    w = tight_world
    # Decorating creates the outbound table with the link account.
    link(f"{w.source.host}:{w.source.port}", w.src_schema, w.out_schema, "Outbound",
         w.local_schema)(type("Session", (), {}))  # fmt: skip
    admin = connect(w.source)
    try:
        admin.execute("CREATE USER IF NOT EXISTS 'regular'@'%' IDENTIFIED BY 'regular-pw'")
        admin.execute(f"GRANT ALL PRIVILEGES ON {quote(w.src_schema)}.* TO 'regular'@'%'")
    finally:
        admin.close()
    regular = connect(DatabaseServer("source", w.source.host, "regular", "regular-pw",
                                     w.source.port, w.source.use_tls))  # fmt: skip
    table = quote(w.out_schema, "outbound")
    try:
        for sql in (f"UPDATE {table} SET is_flagged='TRUE'", f"DELETE FROM {table}",
                    f"INSERT INTO {table} VALUES (9, 'NONE', 'FALSE', 'FALSE')",
                    f"ALTER TABLE {table} DROP FOREIGN KEY x", f"DROP TABLE {table}"):  # fmt: skip
            with pytest.raises(DatabaseError, match="denied"):
                regular.execute(sql)
    finally:
        regular.close()
        admin = connect(w.source)
        admin.execute("DROP USER 'regular'@'%'")
        admin.close()
