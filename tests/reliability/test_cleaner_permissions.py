"""dj-cleaner with the least privileges a database administrator would grant it.

* ``SELECT`` on the schema is enough for dry runs and for deleting object orphans
  (the cleaner never writes to the database then);
* ``--include-unused`` also deletes ``~external`` rows, so it needs ``DELETE`` on the
  ``~external_<store>`` table: with that grant it works; without it, the run fails
  before it deletes anything, with an error naming the table and the privilege.

Grants live in the database, so a file store is enough here; the S3 paths of the same
runs are covered by ``tests/integration/test_cleaner_rules.py``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from djbridge.config import DatabaseServer
from djbridge.mysql import connect, quote
from tests.reliability.cleaner_helpers import (
    STORE,
    Lab,
    all_keys,
    backdate,
    build_lab,
    cli,
    insert_recs,
    orphan,
)

Account = Callable[..., tuple[str, str]]


@pytest.fixture(params=["file"])
def lab(request: pytest.FixtureRequest) -> Lab:
    return build_lab(request)


@pytest.fixture
def account(source_server: DatabaseServer) -> Iterator[Account]:
    """Return ``make(*grants)``: a fresh user with exactly those grants, dropped afterwards."""
    made: list[str] = []

    def make(*grants: str) -> tuple[str, str]:
        user, password = f"clean_{secrets.token_hex(4)}", "pw-" + secrets.token_hex(8)
        db = connect(source_server)
        try:
            db.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
            made.append(user)
            for grant in grants:
                db.execute(f"GRANT {grant} TO {quote(user)}@'%'")
        finally:
            db.close()
        return user, password

    yield make
    db = connect(source_server)
    try:
        for user in made:
            db.execute(f"DROP USER IF EXISTS {quote(user)}@'%'")
    finally:
        db.close()


def config_as(lab: Lab, path: Path, user: str, password: str) -> Path:
    """Write the lab's configuration with another account's credentials."""
    text = lab.config(path).read_text()
    text = text.replace(f'user = "{lab.server.user}"', f'user = "{user}"')
    path.write_text(text.replace(f'password = "{lab.server.password}"', f'password = "{password}"'))
    return path


def unused_setup(lab: Lab) -> tuple[dict[str, int], dict[str, int]]:
    """Leave two object orphans (rec 0) and two unused rows (rec 1), all two days old.

    Returns the orphans and the tracked objects, both as ``{key: size}``.
    """
    insert_recs(lab, range(4))
    orphans = orphan(lab, [0])
    before = lab.tracked()
    (lab.tables["Rec"] & {"rec": 1}).delete_quick()  # its two rows stay, now unused
    backdate(lab, all_keys(lab))
    db = connect(lab.server)
    try:
        db.execute(
            f"UPDATE {quote(lab.schema, '~external_' + STORE)} "
            "SET timestamp = NOW() - INTERVAL 2 DAY"
        )
    finally:
        db.close()
    return orphans, before


def test_select_only_account_dry_run_and_real_run(
    lab: Lab, account: Account, tmp_path: Path
) -> None:
    insert_recs(lab, range(4))
    orphans = orphan(lab, [0, 2])
    backdate(lab, all_keys(lab))
    user, password = account(f"SELECT ON {quote(lab.schema)}.*")
    config = config_as(lab, tmp_path / "c.toml", user, password)
    live = lab.tracked()

    status, [dry] = cli(config, "--dry-run")
    assert status == 0, dry["errors"]
    assert dry["to_delete"] == 4 and dry["deleted"] == 0
    assert set(orphans) <= all_keys(lab)

    status, [done] = cli(config)
    assert status == 0, done["errors"]
    assert done["deleted"] == 4 and done["referenced"] == 4
    assert not set(orphans) & all_keys(lab)
    assert lab.tracked() == live and set(live) <= all_keys(lab)
    rows = lab.tables["Rec"].fetch(as_dict=True, download_path=str(tmp_path / "dl"))
    assert sorted(r["rec"] for r in rows) == [1, 3]


def test_include_unused_works_with_delete_on_the_external_table(
    lab: Lab, account: Account, tmp_path: Path
) -> None:
    orphans, before = unused_setup(lab)
    user, password = account(
        f"SELECT ON {quote(lab.schema)}.*", f"DELETE ON {quote(lab.schema, '~external_' + STORE)}"
    )
    config = config_as(lab, tmp_path / "c.toml", user, password)

    status, [report] = cli(config, "--include-unused")

    assert status == 0, report["errors"]
    assert report["unused_rows"] == report["unused_rows_deleted"] == 2
    assert report["deleted"] == 4  # two object orphans, two objects of the unused rows
    after = lab.tracked()
    assert len(after) == len(before) - 2 and set(after) <= all_keys(lab)
    assert not set(orphans) & all_keys(lab)
    assert all_keys(lab) >= set(after)
    rows = lab.tables["Rec"].fetch(as_dict=True, download_path=str(tmp_path / "dl"))
    assert sorted(r["rec"] for r in rows) == [2, 3]


def test_include_unused_without_delete_fails_clearly_and_deletes_nothing(
    lab: Lab, account: Account, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orphans, before = unused_setup(lab)
    user, password = account(f"SELECT ON {quote(lab.schema)}.*")
    config = config_as(lab, tmp_path / "c.toml", user, password)
    objects = all_keys(lab)

    status, [dry] = cli(config, "--include-unused", "--dry-run")
    assert status == 0 and dry["unused_rows"] == 2 and dry["to_delete"] == 4

    status, [report] = cli(config, "--include-unused")

    assert status == 1
    assert report["status"] == "failed" and report["deleted"] == 0
    assert report["unused_rows_deleted"] == 0
    [error] = report["errors"]
    assert "DELETE" in error and f"~external_{STORE}" in error and "--include-unused" in error
    assert "Traceback" not in capsys.readouterr().err
    assert all_keys(lab) == objects and set(orphans) <= objects
    assert lab.tracked() == before
