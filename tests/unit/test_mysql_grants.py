"""Reading MySQL's ``SHOW GRANTS`` lines: what an account may read, at every level."""

from __future__ import annotations

import pytest

from djbridge.cleaner.grants import Grants

TO = " TO `cleaner`@`%`"


def grants(*lines: str, literal: bool = False) -> Grants:
    full = [line if " TO " in line or line.startswith("REVOKE") else line + TO for line in lines]
    return Grants.parse(full, literal=literal)


def test_usage_alone_reads_nothing_and_sees_no_other_database() -> None:
    g = grants("GRANT USAGE ON *.*")
    assert not g.sees_every_database()
    assert not g.can_read("lab", "rec") and not g.can_read_all("lab")


@pytest.mark.parametrize(
    "line",
    [
        "GRANT SELECT ON *.*",
        "GRANT SELECT, INSERT, SHOW DATABASES ON *.*",
        "GRANT ALL PRIVILEGES ON *.*",
        "GRANT RELOAD,SELECT,SHOW VIEW ON *.*",
    ],
)
def test_global_select_reads_and_sees_everything(line: str) -> None:
    g = grants(line)
    assert g.sees_every_database() and g.can_read_all("any_db") and g.can_read("x", "y")


def test_show_databases_sees_everything_but_reads_nothing() -> None:
    g = grants("GRANT SHOW DATABASES ON *.*")
    assert g.sees_every_database() and not g.can_read("lab", "rec")


def test_database_grants_are_like_patterns_unless_partial_revokes() -> None:
    g = grants("GRANT SELECT ON `lab\\_%`.*", "GRANT INSERT ON `other`.*")
    assert g.can_read_all("lab_ephys") and g.can_read("lab_", "rec")
    assert not g.can_read_all("labxephys")  # the escaped _ is literal
    assert not g.can_read_all("other") and not g.can_read_all("Lab_ephys")
    literal = grants("GRANT SELECT ON `lab_%`.*", literal=True)
    assert literal.can_read_all("lab_%") and not literal.can_read_all("lab_ephys")


def test_table_grants_and_column_grants() -> None:
    g = grants(
        "GRANT SELECT ON `lab`.`rec`",
        "GRANT SELECT (`id`, `b`), INSERT ON `lab`.`secret`",
        "GRANT SELECT ON `we``ird`.`t``1`",
        "GRANT UPDATE ON `lab`.`other`",
    )
    assert g.can_read("lab", "rec") and g.can_read("we`ird", "t`1")
    assert not g.can_read("lab", "secret")  # columns only: a codec column may be hidden
    assert not g.can_read("lab", "other") and not g.can_read_all("lab")


def test_partial_revokes_take_a_database_out_of_a_global_grant() -> None:
    g = grants(
        "GRANT SELECT ON *.*", "REVOKE SELECT ON `secret`.* FROM `cleaner`@`%`", literal=True
    )
    assert g.can_read_all("lab") and not g.can_read_all("secret")
    assert not g.can_read("secret", "t")
    assert not g.sees_every_database()  # the revoked database may be invisible


def test_other_lines_are_skipped() -> None:
    g = grants(
        "GRANT `r1`@`%`,`r2`@`%`",
        "GRANT PROXY ON ''@'' TO 'root'@'localhost' WITH GRANT OPTION",
        "GRANT EXECUTE ON PROCEDURE `lab`.`p`",
        "GRANT SELECT ON `lab`.* TO `cleaner`@`%` WITH GRANT OPTION",
    )
    assert g.can_read_all("lab") and not g.sees_every_database()
