"""The local table's DDL: the source's ``SHOW CREATE TABLE`` with only its references rewritten.

A link declares its local tables by replaying the source DDL on the local server
(:meth:`SourceTable.local_ddl`). These tests feed it the exact text MariaDB 10.11
prints for a DataJoint 0.14 pipeline (``tests.integration.linkworld``'s
``Subject -> Recording`` with two parts, copied from a real run) and check what a
maintainer reading the local server would check: every column, index, default and
comment survives; external columns name the destination store and reference the
local ``~external_<dst>``; a part references the local master; a parent key is
kept or dropped as the resolver says; ``AUTO_INCREMENT=`` and MariaDB's
``current_timestamp()`` spelling do not leak into the copy.

    ddl = table("recording", RECORDING).local_ddl("loc", "recording", {"src": "dst"}, resolve)
"""

from __future__ import annotations

from typing import Any

import pytest

from djbridge.errors import LinkError
from djbridge.link.declare import declare_local
from djbridge.link.mirror import Column, SourceLayout, SourceTable

RECORDING = """CREATE TABLE `recording` (
  `subject_id` int(11) NOT NULL,
  `rec_id` int(11) NOT NULL,
  `trace` binary(16) NOT NULL COMMENT ':blob@src:',
  `notes` binary(16) NOT NULL COMMENT ':attach@src:',
  `quality` float DEFAULT NULL,
  `made` timestamp NOT NULL DEFAULT current_timestamp(),
  `label` varchar(40) NOT NULL,
  PRIMARY KEY (`subject_id`,`rec_id`),
  UNIQUE KEY `label` (`label`),
  KEY `trace` (`trace`),
  KEY `notes` (`notes`),
  CONSTRAINT `recording_ibfk_1` FOREIGN KEY (`subject_id`) REFERENCES `subject` (`subject_id`) ON UPDATE CASCADE,
  CONSTRAINT `recording_ibfk_2` FOREIGN KEY (`trace`) REFERENCES `~external_src` (`hash`),
  CONSTRAINT `recording_ibfk_3` FOREIGN KEY (`notes`) REFERENCES `~external_src` (`hash`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci COMMENT='one recording session with raw data'"""  # noqa: E501

CHANNEL = """CREATE TABLE `recording__channel` (
  `subject_id` int(11) NOT NULL,
  `rec_id` int(11) NOT NULL,
  `channel` tinyint(4) NOT NULL,
  `gain` double NOT NULL,
  `wave` binary(16) NOT NULL COMMENT ':blob@src:',
  PRIMARY KEY (`subject_id`,`rec_id`,`channel`),
  KEY `wave` (`wave`),
  CONSTRAINT `recording__channel_ibfk_1` FOREIGN KEY (`subject_id`, `rec_id`) REFERENCES `recording` (`subject_id`, `rec_id`) ON UPDATE CASCADE,
  CONSTRAINT `recording__channel_ibfk_2` FOREIGN KEY (`wave`) REFERENCES `~external_src` (`hash`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci"""  # noqa: E501

REVIEWER = """CREATE TABLE `recording__reviewer` (
  `subject_id` int(11) NOT NULL,
  `rec_id` int(11) NOT NULL,
  `reviewer_id` int(11) NOT NULL,
  `verdict` varchar(16) NOT NULL,
  PRIMARY KEY (`subject_id`,`rec_id`,`reviewer_id`),
  KEY `reviewer_id` (`reviewer_id`),
  CONSTRAINT `recording__reviewer_ibfk_1` FOREIGN KEY (`subject_id`, `rec_id`) REFERENCES `recording` (`subject_id`, `rec_id`) ON UPDATE CASCADE,
  CONSTRAINT `recording__reviewer_ibfk_2` FOREIGN KEY (`reviewer_id`) REFERENCES `subject` (`subject_id`) ON UPDATE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci"""  # noqa: E501

# A manual table with an auto-increment key, a filepath column, a commented external
# column in a second store, and a parent in another schema (DataJoint qualifies those);
# its shape is MariaDB 10.11's own, read back after creating it with AUTO_INCREMENT=42.
SESSION = """CREATE TABLE `session` (
  `session_id` int(10) unsigned NOT NULL AUTO_INCREMENT,
  `animal` varchar(16) NOT NULL,
  `raw` binary(16) DEFAULT NULL COMMENT ':filepath@raw:the acquisition file',
  `movie` binary(16) NOT NULL COMMENT ':blob@video:compressed movie, isn''t it',
  `seen` datetime NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),
  PRIMARY KEY (`session_id`),
  KEY `animal` (`animal`),
  KEY `raw` (`raw`),
  KEY `movie` (`movie`),
  CONSTRAINT `session_ibfk_1` FOREIGN KEY (`animal`) REFERENCES `lab_animals`.`animal` (`animal`) ON UPDATE CASCADE,
  CONSTRAINT `session_ibfk_2` FOREIGN KEY (`raw`) REFERENCES `~external_raw` (`hash`),
  CONSTRAINT `session_ibfk_3` FOREIGN KEY (`movie`) REFERENCES `~external_video` (`hash`)
) ENGINE=InnoDB AUTO_INCREMENT=42 DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci COMMENT='sessions'"""  # noqa: E501


def table(name: str, ddl: str, schema: str = "lab") -> SourceTable:
    return SourceTable(schema, name, ddl, [Column("subject_id", True), Column("rec_id", True)])


def body(ddl: str) -> list[str]:
    """The column, index and key lines of a CREATE TABLE, without their separators."""
    return [line.strip().rstrip(",") for line in ddl.splitlines()[1:-1]]


def keep_all(schema: str | None, name: str) -> str:
    return f"`{name}`" if schema is None else f"`{schema}`.`{name}`"


def test_a_master_keeps_every_column_index_and_option_and_names_the_destination_store() -> None:
    calls: list[tuple[str | None, str]] = []

    def resolve(schema: str | None, name: str) -> str | None:
        calls.append((schema, name))
        return "`subject`"

    ddl = table("recording", RECORDING).local_ddl("loc", "recording", {"src": "dst"}, resolve)
    lines = body(ddl)
    assert ddl.splitlines()[0] == "CREATE TABLE IF NOT EXISTS `loc`.`recording` ("
    assert ddl.splitlines()[-1] == (
        ") ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci "
        "COMMENT='one recording session with raw data'"
    )
    assert lines == [
        "`subject_id` int(11) NOT NULL",
        "`rec_id` int(11) NOT NULL",
        "`trace` binary(16) NOT NULL COMMENT ':blob@dst:'",
        "`notes` binary(16) NOT NULL COMMENT ':attach@dst:'",
        "`quality` float DEFAULT NULL",
        "`made` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP",
        "`label` varchar(40) NOT NULL",
        "PRIMARY KEY (`subject_id`,`rec_id`)",
        "UNIQUE KEY `label` (`label`)",
        "KEY `trace` (`trace`)",
        "KEY `notes` (`notes`)",
        "FOREIGN KEY (`subject_id`) REFERENCES `subject` (`subject_id`) ON UPDATE CASCADE",
        "FOREIGN KEY (`trace`) REFERENCES `~external_dst` (`hash`)",
        "FOREIGN KEY (`notes`) REFERENCES `~external_dst` (`hash`)",
    ]
    # The tracking tables are the link's own business: the resolver only sees parents.
    assert calls == [(None, "subject")]


def test_a_parent_the_resolver_does_not_know_loses_its_key_but_keeps_its_column_and_index() -> None:
    ddl = table("recording", RECORDING).local_ddl("loc", "rec", {"src": "dst"}, lambda s, n: None)
    lines = body(ddl)
    assert not any("REFERENCES `subject`" in line for line in lines)
    assert "`subject_id` int(11) NOT NULL" in lines
    assert "PRIMARY KEY (`subject_id`,`rec_id`)" in lines
    assert sum("REFERENCES `~external_dst`" in line for line in lines) == 2


def test_dropping_the_last_clause_leaves_a_well_formed_body() -> None:
    def resolve(schema: str | None, name: str) -> str | None:
        return "`rec`" if name == "recording" else None

    ddl = table("recording__reviewer", REVIEWER).local_ddl("loc", "rec__reviewer", {}, resolve)
    assert ddl.splitlines()[-2:] == [
        "  FOREIGN KEY (`subject_id`, `rec_id`) REFERENCES `rec` (`subject_id`, `rec_id`) "
        "ON UPDATE CASCADE",
        ") ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci",
    ]
    assert "KEY `reviewer_id` (`reviewer_id`)" in body(ddl)


def test_a_part_references_whatever_the_resolver_maps_its_master_to() -> None:
    def resolve(schema: str | None, name: str) -> str | None:
        return "`rec_copy`" if (schema, name) == (None, "recording") else None

    ddl = table("recording__channel", CHANNEL).local_ddl(
        "loc", "rec_copy__channel", {"src": "dst"}, resolve
    )
    fks = [line for line in body(ddl) if line.startswith("FOREIGN KEY")]
    assert fks == [
        "FOREIGN KEY (`subject_id`, `rec_id`) REFERENCES `rec_copy` (`subject_id`, `rec_id`) "
        "ON UPDATE CASCADE",
        "FOREIGN KEY (`wave`) REFERENCES `~external_dst` (`hash`)",
    ]
    assert "`wave` binary(16) NOT NULL COMMENT ':blob@dst:'" in body(ddl)


def test_each_store_maps_on_its_own_and_comment_text_after_the_store_survives() -> None:
    seen: list[tuple[str | None, str]] = []

    def resolve(schema: str | None, name: str) -> str | None:
        seen.append((schema, name))
        return keep_all(schema, name)

    stores = {"raw": "raw_copy", "video": "archive"}
    ddl = table("session", SESSION).local_ddl("loc", "session", stores, resolve)
    lines = body(ddl)
    assert (
        "`raw` binary(16) DEFAULT NULL COMMENT ':filepath@raw_copy:the acquisition file'" in lines
    )
    assert (
        "`movie` binary(16) NOT NULL COMMENT ':blob@archive:compressed movie, isn''t it'" in lines
    )
    assert "FOREIGN KEY (`raw`) REFERENCES `~external_raw_copy` (`hash`)" in lines
    assert "FOREIGN KEY (`movie`) REFERENCES `~external_archive` (`hash`)" in lines
    # A parent in another schema reaches the resolver qualified.
    assert seen == [("lab_animals", "animal")]
    assert (
        "FOREIGN KEY (`animal`) REFERENCES `lab_animals`.`animal` (`animal`) ON UPDATE CASCADE"
        in lines
    )


def test_auto_increment_counter_is_dropped_but_the_column_attribute_kept() -> None:
    ddl = table("session", SESSION).local_ddl(
        "loc", "session", {"raw": "raw", "video": "video"}, keep_all
    )
    assert "AUTO_INCREMENT=" not in ddl
    assert "`session_id` int(10) unsigned NOT NULL AUTO_INCREMENT" in body(ddl)
    assert ddl.splitlines()[-1] == (
        ") ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci COMMENT='sessions'"
    )


def test_current_timestamp_is_normalised_in_defaults_and_on_update() -> None:
    ddl = table("session", SESSION).local_ddl(
        "loc", "session", {"raw": "raw", "video": "video"}, keep_all
    )
    assert "current_timestamp()" not in ddl
    seen = "`seen` datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP"
    assert seen in body(ddl)


def test_an_unparseable_foreign_key_is_an_error_not_a_silent_drop() -> None:
    ddl = RECORDING.replace(
        "FOREIGN KEY (`subject_id`) REFERENCES `subject` (`subject_id`)",
        "FOREIGN KEY (`subject_id`) REFERENCES subject(subject_id)",
    )
    with pytest.raises(LinkError, match="cannot parse foreign key"):
        table("recording", ddl).local_ddl("loc", "recording", {"src": "dst"}, keep_all)


class LocalTables:
    """The two calls ``declare_local`` makes on the local server, over a set of table names."""

    def __init__(self, existing: set[str]) -> None:
        self.existing = existing
        self.statements: list[str] = []

    def table_exists(self, schema: str, name: str) -> bool:
        return (schema, name) in {("loc", t) for t in self.existing}

    def execute(self, sql: str, params: Any = None) -> int:
        self.statements.append(sql)
        return 0


@pytest.mark.parametrize(("existing", "subject_kept"), [(set(), False), ({"subject"}, True)])
def test_declare_local_points_parts_at_the_local_master_and_keeps_linked_parents(
    existing: set[str], subject_kept: bool
) -> None:
    master = table("recording", RECORDING)
    layout = SourceLayout(master, {"channel": table("recording__channel", CHANNEL)})
    db = LocalTables(existing)
    parts = declare_local(layout, {"src": "dst"}, db, "loc", "my_rec")  # type: ignore[arg-type]
    assert parts == {"channel": "my_rec__channel"}
    master_ddl, part_ddl = db.statements
    assert master_ddl.startswith("CREATE TABLE IF NOT EXISTS `loc`.`my_rec` (")
    assert part_ddl.startswith("CREATE TABLE IF NOT EXISTS `loc`.`my_rec__channel` (")
    assert "REFERENCES `my_rec` (`subject_id`, `rec_id`) ON UPDATE CASCADE" in part_ddl
    assert "REFERENCES `recording`" not in part_ddl
    assert ("REFERENCES `subject` (`subject_id`)" in master_ddl) is subject_kept
