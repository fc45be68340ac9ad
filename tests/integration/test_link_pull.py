"""Pulling through a link: rows, parts and external objects arrive whole, in the right store."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from djbridge.link.states import State
from tests.integration.linkworld import World, build_pipeline, make_link

pytestmark = pytest.mark.mixed_servers  # a MySQL source into MariaDB, and the reverse


def fetch_local(table: Any, tmp: Path) -> dict[int, dict[str, Any]]:
    dl = tmp / "download"
    dl.mkdir(exist_ok=True)
    return {r["rec_id"]: r for r in table.fetch(as_dict=True, download_path=str(dl))}


def test_pull_copies_rows_parts_and_objects(world: World) -> None:
    src = build_pipeline(world, n=6)
    source_objects_before = world.objects("src")
    Recording = make_link(world)

    result = Recording().source.pull()

    assert result.final_states[State.SHARED] == 6
    local = fetch_local(Recording(), world.tmp)
    assert sorted(local) == list(range(6))
    for rec, sent in src["sent"].items():
        np.testing.assert_array_equal(local[rec]["trace"], sent["trace"])
        assert Path(local[rec]["notes"]).read_bytes() == sent["notes"]
        assert local[rec]["label"] == f"rec-{rec}"
    assert len(Recording.Channel()) == 12 and len(Recording.Reviewer()) == 6
    for key, wave in zip(*Recording.Channel.fetch("KEY", "wave"), strict=True):
        expected = (src["Recording"].Channel & key).fetch1("wave")
        np.testing.assert_array_equal(wave, expected)
    # Every pulled object lives in the destination store, under the local schema.
    dst = world.objects("dst")
    assert dst and all(k.startswith(world.local_schema + "/") for k in dst)
    n_tracked = world.query("local", f"SELECT COUNT(*) FROM `{world.local_schema}`.`~external_dst`")
    assert n_tracked[0][0] == len(dst) == 6 * 2 + 12
    # Nothing was written into the source store.
    assert world.objects("src") == source_objects_before
    # The outbound table records every pulled entity as shared.
    assert set(world.outbound().values()) == {("NONE", "FALSE", "FALSE")}
    assert len(world.outbound()) == 6


def test_restricted_pull_and_browsing(world: World) -> None:
    build_pipeline(world, n=5)
    Recording = make_link(world)
    assert len(Recording().source) == 5
    (Recording().source & "rec_id < 2").pull()
    assert sorted(Recording().fetch("rec_id")) == [0, 1]
    assert len(Recording.Channel()) == 4
    (Recording().source & [{"rec_id": 3}]).pull()
    assert sorted(Recording().fetch("rec_id")) == [0, 1, 3]
    assert len(Recording().source) == 5  # the source shows every row, shared or not
    again = Recording().source.pull()  # pulling shared rows again is a no-op for them
    assert again.final_states[State.SHARED] == 5
    assert again.rows_copied == 2


def test_local_table_mirrors_the_source(world: World) -> None:
    build_pipeline(world, n=1)
    make_link(world)

    def ddl(role: str, schema: str, table: str) -> str:
        return str(world.query(role, f"SHOW CREATE TABLE `{schema}`.`{table}`")[0][1])

    local = ddl("local", world.local_schema, "recording")
    source = ddl("source", world.src_schema, "recording")
    assert "COMMENT='one recording session with raw data'" in local
    assert "UNIQUE KEY `label` (`label`)" in local
    assert "`quality` float DEFAULT NULL" in local
    # MariaDB spells current_timestamp(), MySQL CURRENT_TIMESTAMP: the default survives either way.
    assert re.search(r"`made` timestamp NOT NULL DEFAULT current_timestamp(\(\))?", local, re.I)
    assert ":blob@dst:" in local and ":attach@dst:" in local and "@src" not in local
    assert "REFERENCES `~external_dst` (`hash`)" in local
    # The parent Subject is not on the local side: that key is dropped, its column stays.
    assert "REFERENCES `subject`" in source and "REFERENCES `subject`" not in local
    assert re.search(r"`subject_id` int(\(11\))? NOT NULL", local)  # int(11) on MariaDB
    part = ddl("local", world.local_schema, "recording__reviewer")
    assert "REFERENCES `recording`" in part
    assert re.search(r"`reviewer_id` int(\(11\))? NOT NULL", part)


def test_outbound_table_has_the_original_layout(world: World, source_kind: str) -> None:
    build_pipeline(world, n=1)
    make_link(world)
    columns = world.query(
        "source",
        "SELECT column_name, column_type, column_key FROM information_schema.columns "
        "WHERE table_schema=%s AND table_name='outbound' ORDER BY ordinal_position",
        (world.out_schema,),
    )
    int_type = "int(11)" if source_kind == "mariadb" else "int"  # MySQL 8+ drops the width
    assert columns == [
        ("subject_id", int_type, "PRI"),
        ("rec_id", int_type, "PRI"),
        ("process", "enum('PULL','DELETE','NONE')", ""),
        ("is_flagged", "enum('TRUE','FALSE')", ""),
        ("is_deprecated", "enum('TRUE','FALSE')", ""),
    ]
    fk = world.query(
        "source",
        "SELECT referenced_table_schema, referenced_table_name FROM "
        "information_schema.key_column_usage WHERE table_schema=%s AND table_name='outbound' "
        "AND referenced_table_name IS NOT NULL",
        (world.out_schema,),
    )
    assert set(fk) == {(world.src_schema, "recording")}
