"""Database errors reach the user with a message, never a blank one."""

from __future__ import annotations

import pymysql
import pytest

from djbridge.errors import ConfigError
from djbridge.mysql import describe, quote


def test_database_errors_are_never_blank() -> None:
    assert describe(pymysql.err.OperationalError(2013, "")) == (
        "OperationalError (the connection was probably lost) [2013]"
    )
    assert describe(pymysql.err.OperationalError(1045, "Access denied")) == "Access denied [1045]"
    assert describe(pymysql.err.InterfaceError()) != ""


@pytest.mark.parametrize(
    ("parts", "quoted"),
    [
        (("lab",), "`lab`"),
        (("lab", "t"), "`lab`.`t`"),
        (("a`b; DROP",), "`a``b; DROP`"),
        (("it's",), "`it's`"),
    ],  # fmt: skip
)
def test_quote_doubles_backticks(parts: tuple[str, ...], quoted: str) -> None:
    assert quote(*parts) == quoted


@pytest.mark.parametrize("bad", ["", "x" * 65, "nul\0byte"])
def test_quote_rejects_impossible_names(bad: str) -> None:
    with pytest.raises(ConfigError):
        quote(bad)
