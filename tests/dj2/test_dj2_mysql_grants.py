"""What only MySQL needs: a 2.x run reads the account's grants, because MySQL hides the rest.

MySQL's ``information_schema`` lists no table, and no database, that the account
holds nothing on. So a 2.x run on MySQL refuses when the account cannot see every
database, and when it cannot read a schema's ``~lineage`` (which names its tables)
without holding SELECT on the whole schema; privileges that come through an active
role count like any other. A 2.x run on a MariaDB server is a configuration error.
All on MySQL 9.7 (MariaDB 10.11 for the last), with rows made by DataJoint 2.3.5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from djbridge.cleaner.cli import main
from djbridge.config import DatabaseServer
from djbridge.mysql import connect, quote
from tests.conftest import Servers, unique
from tests.dj2.world import REC, Lab2

MYSQL = pytest.mark.parametrize("dj2_backend", ["mysql"], indirect=True)


def with_secret(lab2: Lab2) -> set[str]:
    """Rec with a live and an orphaned row, Secret with a live row; return every key."""
    lab2.declare()
    lab2.declare("Secret", REC.replace("rec_id", "secret_id"))
    lab2.insert([lab2.rec(1), lab2.rec(2)])
    secret = {**lab2.rec(7), "secret_id": 7}
    del secret["rec_id"]
    lab2.insert([secret], table="Secret")
    lab2.delete("rec_id = 2")
    return lab2.stored()


def clean_as(lab2: Lab2, user: str, password: str) -> tuple[int, dict[str, Any]]:
    status, [report] = lab2.clean(
        "--min-age", "0", config=lab2.config(user=user, password=password)
    )
    return status, report


@MYSQL
def test_an_account_that_cannot_see_every_database_is_refused(lab2: Lab2) -> None:
    before = with_secret(lab2)
    user, password = lab2.account(["rec", "secret", "~lineage"])
    lab2.db.execute(f"REVOKE SHOW DATABASES ON *.* FROM '{user}'@'%'")
    status, report = clean_as(lab2, user, password)
    assert status == 1 and report["deleted"] == 0
    assert "cannot see every database" in report["errors"][0]
    assert f"account {user!r}" in report["errors"][0]
    assert lab2.stored() == before


@MYSQL
def test_an_account_that_cannot_read_lineage_is_refused_naming_the_schema(lab2: Lab2) -> None:
    before = with_secret(lab2)
    user, password = lab2.account(["rec", "secret"])  # every table, but not ~lineage
    status, report = clean_as(lab2, user, password)
    assert status == 1 and report["deleted"] == 0
    assert f"{lab2.schema}.*" in report["errors"][0], report["errors"]
    assert lab2.stored() == before


@MYSQL
def test_select_through_an_active_role_counts(lab2: Lab2) -> None:
    before = with_secret(lab2)
    role = unique("djbr_role_")
    lab2.db.execute(f"CREATE ROLE '{role}'")
    try:
        lab2.db.execute(f"GRANT SELECT ON {quote(lab2.schema)}.* TO '{role}'")
        user, password = lab2.account([])
        lab2.db.execute(f"GRANT '{role}' TO '{user}'@'%'")
        lab2.db.execute(f"SET DEFAULT ROLE '{role}' TO '{user}'@'%'")
        status, report = clean_as(lab2, user, password)
        assert status == 0, report["errors"]
        assert report["deleted"] == 5 and len(lab2.stored()) == len(before) - 5
        assert lab2.lost() == [] and lab2.lost(((lab2.schema, "Secret"),)) == []
    finally:
        lab2.db.execute(f"DROP ROLE IF EXISTS '{role}'")


def test_a_2x_run_on_mariadb_is_a_configuration_error(
    servers: Servers,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    maria: DatabaseServer = servers.get("mariadb/local")
    schema = unique("lab_")
    db = connect(maria)
    try:
        db.execute(f"CREATE DATABASE {quote(schema)}")
        config = tmp_path / "maria.toml"
        config.write_text(
            f'[database_servers.maria]\nhost = "{maria.host}:{maria.port}"\n'
            f'user = "{maria.user}"\npassword = "{maria.password}"\nuse_tls = false\n\n'
            "[storage_servers.file.nas]\n\n"
            f'[[cleaning_runs]]\ndatajoint = "2"\ndatabase_server = "maria"\n'
            f'schema = "{schema}"\nstore = "raw"\nstorage_server = "file.nas"\n'
            f'location = "{tmp_path}"\n'
        )
        status = main(["--config-file", str(config), "--no-progress", "--min-age", "0"])
        message = capsys.readouterr().err
        assert status == 2
        assert "cleaning_runs[0].datajoint: database server 'maria'" in message
        assert "MariaDB" in message
    finally:
        db.execute(f"DROP DATABASE IF EXISTS {quote(schema)}")
        db.close()
