"""Bad input on DataJoint 2.x: a djbridge error that names the thing, and nothing written.

One script tries each mistake in turn, as a user would make it, and reports what
``link(...)`` raised. Afterwards neither server holds anything of the link: no
local schema, no outbound table, the source pipeline as it was.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from djbridge.sandbox import free_port
from tests.link2.conftest import SAME_BACKEND
from tests.link2.twolabs import TwoLabs

ATTEMPTS = """
import os

from link import link


def attempt(args, name="Recording", unset=(), env=None, **keywords):
    saved = dict(os.environ)
    for variable in unset:
        os.environ.pop(variable, None)
    os.environ.update(env or {})
    try:
        link(*args, **keywords)(type(name, (), {"__doc__": "A table in the source schema."}))
    except Exception as err:
        return {"error": type(err).__name__, "kinds": [c.__name__ for c in type(err).__mro__],
                "message": str(err)}
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {"error": None}


cases = CASES
emit(**{name: attempt(**case) for name, case in cases.items()})
"""


def cases(labs: TwoLabs, closed: int) -> dict[str, dict[str, Any]]:
    """The mistakes to try: each the link's arguments and what else is wrong."""
    source = labs.source.admin
    host = f"{source.host}:{source.port}"
    args = [host, labs.src_schema, labs.out_schema, "Outbound", labs.local_schema]
    keywords: dict[str, Any] = {"stores": {"raw": "raw_local"}}
    if source.backend == "postgresql":
        keywords.update(backend="postgresql", database=labs.source.database)
    found = {
        "no_user": {"args": args, "unset": ["LINK_USER"], **keywords},
        "no_pass": {"args": args, "unset": ["LINK_PASS"], **keywords},
        "wrong_pass": {"args": args, "env": {"LINK_PASS": "not-the-password"}, **keywords},
        "unknown_store": {"args": args, **keywords, "stores": {"raw": "nowhere"}},
        "no_table": {"args": args, "name": "NoSuchTable", **keywords},
        "no_schema": {"args": [host, "nope_schema", *args[2:]], **keywords},
        "unreachable": {"args": [f"127.0.0.1:{closed}", *args[1:]], **keywords},
        "bad_name": {"args": [*args[:4], "lab; DROP TABLE x"], **keywords},
    }
    if source.backend == "postgresql":  # the test cluster trusts every login over TCP
        del found["wrong_pass"]
    return found


EXPECTED = {
    "no_user": ("MissingCredentials", "LINK_USER"),
    "no_pass": ("MissingCredentials", "LINK_PASS"),
    "wrong_pass": ("LinkError", "source"),
    "unknown_store": ("ConfigError", "'nowhere'"),
    "no_table": ("LinkError", "no_such_table"),
    "no_schema": ("LinkError", "nope_schema"),
    "unreachable": ("LinkError", "127.0.0.1:{closed}"),
    "bad_name": ("ConfigError", "lab; DROP TABLE x"),
}
"""Each mistake's djbridge error class (or a subclass) and what its message must name."""


@pytest.mark.parametrize("pair", SAME_BACKEND, indirect=True)
def test_each_mistake_is_named_and_nothing_is_written(labs: TwoLabs) -> None:
    labs.ready(range(2))
    before = labs.source_fingerprint()
    local_before = labs.local.schemas()
    closed = free_port()

    run = labs.run(ATTEMPTS.replace("CASES", json.dumps(cases(labs, closed))), header="")

    assert run.code == 0 and run.result is not None, run
    assert set(run.result) <= set(EXPECTED)
    for name, found in run.result.items():
        kind, named = EXPECTED[name]
        assert found["error"] is not None, f"{name}: nothing was raised"
        assert kind in found["kinds"], f"{name}: {found}"
        assert named.format(closed=closed) in found["message"], f"{name}: {found}"
    assert "not-the-password" not in json.dumps(run.result)
    assert labs.local.schemas() == local_before and labs.local_schema not in local_before
    assert labs.source.tables(labs.out_schema) == []
    assert labs.source_fingerprint() == before
