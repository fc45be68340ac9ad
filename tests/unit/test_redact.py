"""Redaction masks whole secrets in library text and never garbles a name."""

from __future__ import annotations

import pytest

from djbridge.errors import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Access denied for 'dj'", "Access denied for '***'"),
        ("password=dj;", "password=***;"),
        ("dj", "***"),
        ("http://user:dj@host", "http://user:***@host"),
        ("schema acc_hydyidje", "schema acc_hydyidje"),
        ("dj-cleaner failed", "dj-cleaner failed"),
        ("lab_djx/raw", "lab_djx/raw"),
        ("djdj", "djdj"),
    ],
)
def test_only_whole_occurrences_are_masked(text: str, expected: str) -> None:
    assert redact(text, {"dj"}) == expected


def test_the_longer_secret_wins_and_empty_secrets_are_ignored() -> None:
    assert redact("key 'abc+def' and 'abc'", {"abc", "abc+def", ""}) == "key '***' and '***'"


def test_secrets_are_literal_text_not_patterns() -> None:
    assert redact("echo: a.*b said a.*b", {"a.*b"}) == "echo: *** said ***"
    assert redact("echo: aXXb", {"a.*b"}) == "echo: aXXb"
