"""Tracking protects the hashes of every tracking table of the schema, whatever the call order."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from djbridge.cleaner.tracking import Tracking
from djbridge.mysql import Database, quote

EXTERNAL_DDL = (
    "CREATE TABLE {table} (hash binary(16) NOT NULL, size bigint unsigned NOT NULL, "
    "attachment_name varchar(255), filepath varchar(1000), contents_hash binary(16), "
    "timestamp timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (hash))"
)


def test_other_tracking_tables_are_found_by_the_constructor(
    source_db: Database, schema_factory: Callable[..., str]
) -> None:
    schema = schema_factory()
    source_db.execute(f"CREATE DATABASE {quote(schema)}")
    digests = {store: hashlib.md5(store.encode()).digest() for store in ("raw", "notes")}
    for store, digest in digests.items():
        table = quote(schema, f"~external_{store}")
        source_db.execute(EXTERNAL_DDL.format(table=table))
        source_db.execute(f"INSERT INTO {table} (hash, size) VALUES (%s, 1)", (digest,))

    tracking = Tracking(source_db, schema, "raw")  # no check() before the re-check

    assert tracking.others == ["~external_notes"]
    assert tracking.still_tracked(list(digests.values())) == set(digests.values())
    assert list(tracking.hashes()) == sorted([(digests["raw"], True), (digests["notes"], False)])
