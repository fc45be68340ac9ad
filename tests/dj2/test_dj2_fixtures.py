"""The 2.x test rig itself: private PostgreSQL and MySQL, DataJoint 2.3 in a venv, the layout."""

from __future__ import annotations

import re

import pytest

from djbridge.config import DatabaseServer
from djbridge.errors import DatabaseError
from djbridge.postgres import connect_pg, pg_quote
from tests.dj2.client import Driver
from tests.dj2.world import BACKENDS, Lab2

HASH_KEY = re.compile(r"_hash/lab_[0-9a-f]{8}/[a-z2-7]{26}")


def test_private_postgresql_answers_as_a_non_root_server(pg_server: DatabaseServer) -> None:
    db = connect_pg(pg_server)
    try:
        (version,) = db.query("SHOW server_version_num")[0]
        assert int(version) >= 150000
        assert db.query("SELECT %s::text || %s", ("a", "b")) == [("ab",)]
    finally:
        db.close()


def test_login_errors_name_the_server_and_never_the_password(pg_server: DatabaseServer) -> None:
    wrong = DatabaseServer(
        name="labpg",
        host=pg_server.host,
        port=pg_server.port,
        user="nobody",
        password="s3cret-pw",
        backend="postgresql",
        database=pg_server.database,
    )
    with pytest.raises(DatabaseError) as caught:
        connect_pg(wrong).close()
    assert "labpg" in str(caught.value) and "s3cret-pw" not in str(caught.value)


def test_pg_quote_doubles_quotes_and_refuses_nul() -> None:
    assert pg_quote("lab", 'we"ird') == '"lab"."we""ird"'
    with pytest.raises(Exception, match="invalid SQL identifier"):
        pg_quote("a\0b")


@BACKENDS
def test_driver_builds_every_codec_where_the_layout_says(lab2: Lab2, dj2: Driver) -> None:
    assert dj2.version.startswith("2.3")
    lab2.declare()
    lab2.insert([lab2.rec(1), lab2.rec(2, folder=True)])
    keys = lab2.stored()
    hashed = [k for k in keys if k.startswith("_hash/")]
    assert len(hashed) == 6 and all(HASH_KEY.fullmatch(k) for k in hashed)
    schema_keys = [k for k in keys if k.startswith(f"_schema/{lab2.schema}/rec/")]
    assert any(k.endswith(".manifest.json") for k in schema_keys)  # the folder object's sidecar
    assert {"user/rec1.bin", "user/rec2.bin"} <= keys
    assert lab2.lost() == []
    assert lab2.delete("rec_id = 2") == 1
    stats = lab2.gc(dry_run=True)
    assert stats["hash_paths_orphaned"] == 3 and stats["deleted"] == 0


@BACKENDS
@pytest.mark.parametrize("lab2", ["file", "s3"], indirect=True)
def test_lost_notices_any_single_missing_object(lab2: Lab2) -> None:
    lab2.declare()
    lab2.insert([lab2.rec(1), lab2.rec(2, folder=True)])
    store = lab2.store()
    for key in sorted(lab2.stored()):
        data = store.get(key)
        store.delete_many([key])
        try:
            assert lab2.lost(), f"removing {key} went unnoticed"
        finally:
            store.put(key, data)
    assert lab2.lost() == []


@pytest.mark.parametrize("dj2_backend", ["mysql"], indirect=True)
def test_datajoint2_on_mysql_keeps_codec_columns_and_lineage_as_the_cleaner_reads_them(
    lab2: Lab2,
) -> None:
    lab2.declare()
    lab2.insert([lab2.rec(1)])
    columns = lab2.db.query(
        "SELECT column_name, data_type, column_comment FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = 'rec' ORDER BY ordinal_position",
        (lab2.schema,),
    )
    codecs = {name: (kind, comment) for name, kind, comment in columns if name in "bahonf"}
    assert codecs["b"] == ("json", ":<blob@raw>:")
    assert all(kind == "json" and comment.startswith(":<") for kind, comment in codecs.values())
    lineage = lab2.db.query(f"SELECT table_name, attribute_name FROM {lab2.table('~lineage')}")
    assert sorted(lineage) == [("rec", "rec_id"), ("rec", "tag")]
    [(version,)] = lab2.db.query("SELECT VERSION()")
    assert str(version).startswith("9.7") and "MariaDB" not in str(version)
