"""The collation twins that let a link replay one server kind's DDL on the other."""

from __future__ import annotations

import pytest

from djbridge.dialect import COLLATION_TWINS, adapt_collations, twin_collation
from djbridge.errors import LinkError

MARIADB = frozenset({"utf8mb4_general_ci", "utf8mb4_nopad_bin", "utf8mb4_uca1400_nopad_ai_ci",
                     "utf8mb4_uca1400_nopad_as_ci", "utf8mb4_uca1400_nopad_as_cs",
                     "latin1_swedish_ci"})  # fmt: skip
MYSQL = frozenset({"utf8mb4_general_ci", "utf8mb4_0900_ai_ci", "utf8mb4_0900_as_ci",
                   "utf8mb4_0900_as_cs", "utf8mb4_0900_bin", "latin1_swedish_ci"})  # fmt: skip

MYSQL_DDL = """CREATE TABLE `recording` (
  `name` varchar(20) COLLATE utf8mb4_0900_bin NOT NULL,
  `label` varchar(40) NOT NULL,
  PRIMARY KEY (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci"""


def test_a_mysql_table_gets_mariadbs_twins() -> None:
    ddl = adapt_collations(MYSQL_DDL, "lab.recording", MARIADB)
    assert "COLLATE utf8mb4_nopad_bin NOT NULL" in ddl
    assert ddl.endswith("COLLATE=utf8mb4_uca1400_nopad_ai_ci")
    assert "0900" not in ddl


def test_and_back_again() -> None:
    there = adapt_collations(MYSQL_DDL, "lab.recording", MARIADB)
    assert adapt_collations(there, "lab.recording", MYSQL) == MYSQL_DDL


@pytest.mark.parametrize("name", ["utf8mb4_general_ci", "latin1_swedish_ci"])
def test_a_collation_both_know_is_kept(name: str) -> None:
    assert twin_collation(name, MARIADB) == name == twin_collation(name, MYSQL)


@pytest.mark.parametrize(("mysql", "maria"), [(k, v[0]) for k, v in COLLATION_TWINS.items()])
def test_every_twin_maps_both_ways(mysql: str, maria: str) -> None:
    assert twin_collation(mysql, MARIADB) == maria
    assert twin_collation(maria, MYSQL) == mysql


def test_a_collation_without_a_twin_is_refused_naming_table_and_collation() -> None:
    ddl = MYSQL_DDL.replace("utf8mb4_0900_bin", "utf8mb4_de_pb_0900_ai_ci")
    with pytest.raises(LinkError, match=r"lab\.recording: collation utf8mb4_de_pb_0900_ai_ci"):
        adapt_collations(ddl, "lab.recording", MARIADB)
