"""When a 2.x run must not guess: settings, listings, lost grants. Nothing is deleted.

Every test runs on PostgreSQL 15 and on MySQL 9.7 (``test_dj2_mysql_grants.py`` has
what only MySQL needs).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from djbridge.cleaner import CleaningRun, clean, load_config
from djbridge.cleaner import CleanOptions as Options
from djbridge.errors import StoreError
from djbridge.sandbox import MotoS3
from djbridge.stores import ObjectInfo, Store
from tests.dj2.world import BACKENDS, Lab2

pytestmark = BACKENDS


def orphaned_lab(lab2: Lab2) -> set[str]:
    """Rec with a live row and an orphaned one, backdated on file stores; return the keys."""
    lab2.declare()
    lab2.insert([lab2.rec(1), lab2.rec(2, folder=True)])
    lab2.delete("rec_id = 2")
    if lab2.kind == "file":
        lab2.backdate()
    return lab2.stored()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('partition_pattern = "subject"\n', "partition_pattern is set"),
        ('schema_prefix = ""\n', "schema_prefix is empty"),
        ('hash_prefix = "/"\n', "hash_prefix is empty"),
        ('hash_prefix = "_x"\nschema_prefix = "_x"\n', "overlap"),
    ],
)
def test_settings_that_put_objects_elsewhere_are_refused(
    lab2: Lab2, extra: str, message: str
) -> None:
    before = orphaned_lab(lab2)
    status, [report] = lab2.clean("--min-age", "0", config=lab2.config(run_extra=extra))
    assert status == 1 and message in report["errors"][0]
    assert lab2.stored() == before


def test_a_store_name_no_column_uses_is_refused(lab2: Lab2) -> None:
    before = orphaned_lab(lab2)
    config = lab2.config()
    config.write_text(config.read_text().replace('store = "raw"', 'store = "rwa"'))
    status, [report] = lab2.clean("--min-age", "0", config=config)
    assert status == 1 and "names store 'rwa'" in report["errors"][0]
    assert lab2.stored() == before


def test_references_found_nowhere_in_the_area_refuse_the_run(lab2: Lab2) -> None:
    orphaned_lab(lab2)
    elsewhere = lab2.tmp / "elsewhere"  # a wrong location that holds a hash-shaped stray
    stray = elsewhere / "_hash" / lab2.schema / ("a" * 26)
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"stray")
    config = lab2.config()
    config.write_text(config.read_text().replace(str(lab2.root), str(elsewhere)))
    status, [report] = lab2.clean("--min-age", "0", config=config)
    assert status == 1 and "none of them is in" in report["errors"][0]
    assert stray.exists()


class FailingSchemaListing:
    """A real store whose listing of the schema area fails half-way through."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.description = inner.description

    def iter_objects(self, prefix: str, **bounds: Any) -> Iterator[ObjectInfo]:
        for number, obj in enumerate(self.inner.iter_objects(prefix, **bounds)):
            if prefix.startswith("_schema/") and number == 1:
                raise StoreError(f"{self.description}: HTTP 403 while listing {prefix}")
            yield obj

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("lab2", ["file", "s3"], indirect=True)
def test_a_failed_listing_of_one_area_leaves_both_untouched(lab2: Lab2) -> None:
    before = orphaned_lab(lab2)

    def open_run(run: CleaningRun) -> Any:
        return FailingSchemaListing(lab2.store())

    [report] = clean(
        load_config(lab2.config()), Options(min_age=0, progress=False), open_run=open_run
    )
    assert not report.ok and "HTTP 403" in report.errors[0]
    assert lab2.stored() == before  # the hash area's orphans too


def test_a_stopped_endpoint_is_a_configuration_error(
    dj2: Any, dj2_server: Any, tmp_path: Any, bucket_factory: Any
) -> None:
    moto = MotoS3("down").start()
    try:
        lab = Lab2(dj2, dj2_server, tmp_path, s3=moto.server, bucket_factory=bucket_factory)
        lab.declare()
        lab.insert([lab.rec(1)])
        moto.stop()
        status, reports = lab.clean("--min-age", "0")
        assert status == 2 and reports == []
        lab.teardown()
    finally:
        moto.stop()


def test_a_grant_revoked_before_a_batch_stops_the_deletion(lab2: Lab2) -> None:
    before = orphaned_lab(lab2)
    user, password = lab2.account(["rec", "~lineage"])
    batches = []

    def hook(event: str, run: Any) -> None:
        if event == "batch":
            batches.append(run)
            lab2.revoke(user, "rec")

    report = lab2.clean_api(hook, config=lab2.config(user=user, password=password), min_age=0)
    assert batches, report.errors  # the run got as far as its first batch
    assert not report.ok and "cannot read" in report.errors[0]
    assert f"{lab2.schema}.rec" in report.errors[0]
    assert report.deleted == 0 and lab2.stored() == before


def second_run(lab2: Lab2, schema: str, **keys: str) -> str:
    """The run block of ``lab2.config()`` again, on ``schema`` and with other keys."""
    text = lab2.config().read_text()
    block = text[text.index("[[cleaning_runs]]") :].replace(lab2.schema, schema)
    for key, value in keys.items():
        block = "\n".join(
            f'{key} = "{value}"' if line.startswith(f"{key} =") else line
            for line in block.splitlines()
        )
    return "\n" + block + "\n"


def test_a_2x_schema_missing_from_its_database_stops_every_run_before_any_delete(
    lab2: Lab2, capsys: pytest.CaptureFixture[str]
) -> None:
    before = orphaned_lab(lab2)
    missing = f"{lab2.schema}_gone"
    config = lab2.config(run_extra=second_run(lab2, missing))
    status, reports = lab2.clean("--min-age", "0", config=config)
    message = capsys.readouterr().err
    assert status == 2 and reports == []
    assert f"cleaning_runs[1].schema: schema {missing!r} does not exist" in message
    if lab2.server.database:  # PostgreSQL: the schema lives in a database, which is named
        assert f"in database {lab2.server.database!r}" in message
    assert lab2.stored() == before  # the first run's orphans too


def test_a_014_schema_missing_from_its_server_stops_every_run_before_any_delete(
    lab2: Lab2, mysql2_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    before = orphaned_lab(lab2)
    old = mysql2_server
    server = (
        f'\n[database_servers.old]\nhost = "{old.host}:{old.port}"\nuser = "{old.user}"\n'
        f'password = "{old.password}"\nuse_tls = false\n'
    )
    run = second_run(lab2, "lab_014_gone", database_server="old").replace('datajoint = "2"\n', "")
    status, reports = lab2.clean("--min-age", "0", config=lab2.config(run_extra=server + run))
    message = capsys.readouterr().err
    assert status == 2 and reports == []
    assert "cleaning_runs[1].schema: schema 'lab_014_gone' does not exist" in message
    assert "on database server 'old'" in message
    assert lab2.stored() == before
