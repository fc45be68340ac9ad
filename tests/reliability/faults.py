"""Fault-test helpers: the zygote client, kill plans, and the convergence checks.

The checks are what a lab would verify after a crash and one resume:

* :func:`assert_converged`: no entity is left mid-process, the local tables equal
  the source tables restricted to the keys that are shared (master and parts,
  raw column values), no part row is without its master, and every local
  ``~external_dst`` row's object exists in the destination store with its size;
* :func:`clean_and_check`: ``dj-cleaner`` on the destination store with
  ``min_age=0`` deletes exactly the managed objects no ``~external`` row lists;
* :func:`assert_fetches_equal`: every local row fetches, through DataJoint, equal
  to the source row (arrays exactly, attachments byte for byte).

    zygote = Zygote()
    [code] = zygote.run([lane.case("pull", kill={"at": 17})])
    assert_converged(lane, deprecated=set())
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from djbridge import layout
from djbridge.cleaner import CleanOptions, RunReport, clean, parse_config
from djbridge.mysql import quote
from tests.integration.linkworld import LINK_PASS, LINK_USER, World, grant_link_account

DRIVER = Path(__file__).with_name("driver.py")
ROOT = DRIVER.parents[2]
TABLES = ("recording", "recording__channel", "recording__reviewer")
Key = tuple[Any, ...]


class Zygote:
    """A pre-imported driver process that forks one child per case (see ``driver.py``)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        """Start the driver; ``env`` adds variables its children inherit (``DJB_S3_PART_SIZE``)."""
        path = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": path, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            cwd=ROOT, env=env, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the fault driver did not start")

    def start(self, cases: list[dict[str, Any]]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cases": cases}) + "\n")
        self.proc.stdin.flush()

    def wait(self) -> list[int]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fault driver exited")
        codes: list[int] = json.loads(line)["codes"]
        return codes

    def run(self, cases: list[dict[str, Any]]) -> list[int]:
        self.start(cases)
        return self.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


@dataclass
class Lane:
    """One link (its own outbound and local schemas) over a shared source pipeline."""

    world: World
    name: str
    batch_size: int = 3
    runs: int = 0
    reports: list[dict[str, Any]] = field(default_factory=list)

    def case(self, op: str, **extra: Any) -> dict[str, Any]:
        """Describe one child run of ``op`` for the zygote."""
        self.runs += 1
        w = self.world
        result = w.tmp / f"{self.name}-{self.runs}.json"
        return {
            "op": op, "batch_size": self.batch_size, "result": str(result),
            "link_user": LINK_USER, "link_pass": LINK_PASS,
            "source": vars(w.source), "local": vars(w.local), "src_schema": w.src_schema,
            "out_schema": w.out_schema, "local_schema": w.local_schema, "stores": w.stores,
            "tmp": str(w.tmp), **extra,
        }  # fmt: skip

    @staticmethod
    def report(case: dict[str, Any]) -> dict[str, Any]:
        """Return what a finished child wrote (empty if it was killed first)."""
        path = Path(case["result"])
        out: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        note = path.with_suffix(".note")
        if note.exists():
            out["note"] = json.loads(note.read_text())
        return out


def new_lane(world: World, schema_factory: Callable[..., str], name: str, **kw: Any) -> Lane:
    """Return a lane with fresh outbound and local schemas (the link account granted)."""
    w = replace(
        world, out_schema=schema_factory("source", "out_"),
        local_schema=schema_factory("local", "loc_"),
    )  # fmt: skip
    grant_link_account(w.source, w.src_schema, w.out_schema)
    return Lane(w, name, **kw)


# ---- kill plans ----------------------------------------------------------------------------
PULL_STEPS = (
    "read_state", "start_pull", "fetch_rows", "read_tracking", "read_local", "put",
    "local_begin", "insert_external", "insert_master", "insert_part", "commit", "committed",
    "finish_pull",
)  # fmt: skip
DELETE_STEPS = (
    "read_local", "read_state", "start_delete", "local_begin", "delete_part", "delete_master",
    "commit", "committed", "finish_delete", "deprecate",
)  # fmt: skip


def kill_plan(trace: list[str], steps: Iterable[str], total: int, seed: int) -> list[int]:
    """Choose ``total`` event numbers (1-based) from ``trace`` with ``random.Random(seed)``.

    Every label of ``steps`` gets at least one kill point (``put`` three: the first,
    one in the middle and the last object of some batch are all likely), the rest
    are drawn uniformly from the whole run.
    """
    rng = random.Random(seed)
    chosen: set[int] = set()
    for step in steps:
        where = [i + 1 for i, label in enumerate(trace) if label == step]
        assert where, f"the reference run never reached {step!r}: {sorted(set(trace))}"
        chosen.update(rng.sample(where, min(len(where), 3 if step == "put" else 1)))
    rest = [i for i in range(1, len(trace) + 1) if i not in chosen]
    chosen.update(rng.sample(rest, max(0, min(len(rest), total - len(chosen)))))
    return sorted(chosen)


# ---- reading both servers ------------------------------------------------------------------
def query(world: World, role: str, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    return world.query(role, sql, args)


def columns(world: World, table: str) -> list[str]:
    rows = query(world, "source", "SELECT column_name FROM information_schema.columns WHERE "
                 "table_schema=%s AND table_name=%s ORDER BY ordinal_position",
                 (world.src_schema, table))  # fmt: skip
    return [r[0] for r in rows]


def table_rows(world: World, role: str, table: str) -> set[tuple[Any, ...]]:
    schema = world.src_schema if role == "source" else world.local_schema
    names = ", ".join(quote(c) for c in columns(world, table))
    return set(query(world, role, f"SELECT {names} FROM {quote(schema, table)}"))


def outbound(world: World) -> dict[Key, tuple[str, str, str]]:
    rows = query(world, "source", "SELECT subject_id, rec_id, process, is_flagged, is_deprecated "
                 f"FROM {quote(world.out_schema, 'outbound')}")  # fmt: skip
    return {tuple(r[:2]): tuple(r[2:]) for r in rows}  # type: ignore[misc]


def source_keys(world: World) -> set[Key]:
    return {k[:2] for k in table_rows(world, "source", "recording")}


def flag(world: World, keys: Iterable[Key]) -> None:
    out = quote(world.out_schema, "outbound")
    for key in keys:
        query(world, "source", f"UPDATE {out} SET is_flagged='TRUE' "
              "WHERE subject_id=%s AND rec_id=%s", key)  # fmt: skip


def external_rows(world: World) -> list[tuple[bytes, int, str | None, str | None]]:
    table = quote(world.local_schema, "~external_dst")
    rows = query(world, "local", f"SELECT hash, size, attachment_name, filepath FROM {table}")
    return [(bytes(h), int(s), a, f) for h, s, a, f in rows]


def object_key(schema: str, digest: bytes, attachment: str | None) -> str:
    return layout.object_key(schema, digest, attachment)


# ---- the convergence checks ----------------------------------------------------------------
def assert_converged(
    world: World, op: str, *, keys: set[Key] | None = None, deprecated: set[Key] = frozenset()
) -> set[Key]:
    """Assert a settled, consistent link after ``op`` over ``keys``; return the shared keys.

    ``deprecated`` are the keys the state machine must have deprecated (flagged
    while they were Activated, or flagged and then deleted).
    """
    keys = source_keys(world) if keys is None else keys
    out = outbound(world)
    busy = {k: v for k, v in out.items() if v[0] != "NONE"}
    assert not busy, f"entities left mid-process: {busy}"
    shared = {k for k, (_, _, dep) in out.items() if dep == "FALSE"}
    assert {k for k, (_, _, dep) in out.items() if dep == "TRUE"} == set(deprecated)
    assert all(out[k][1] == "TRUE" for k in deprecated), "deprecated without a flag"
    if op == "pull":
        assert keys - set(deprecated) <= shared, f"not pulled: {keys - set(deprecated) - shared}"
    else:
        assert not keys & shared, f"not deleted: {keys & shared}"
    # The local tables equal the source restricted to the shared keys, parts included.
    for table in TABLES:
        local = table_rows(world, "local", table)
        source = {r for r in table_rows(world, "source", table) if r[:2] in shared}
        assert local == source, f"{table}: local differs from source (shared {sorted(shared)})"
    local_keys = {r[:2] for r in table_rows(world, "local", "recording")}
    assert local_keys == shared
    assert_tracked_objects_present(world)
    return shared


def assert_tracked_objects_present(world: World) -> None:
    """Assert every local ``~external_dst`` row's object is in the store with its size."""
    have = world.objects("dst", f"{world.local_schema}/")
    for digest, size, attachment, filepath in external_rows(world):
        assert filepath is None
        key = object_key(world.local_schema, digest, attachment)
        assert have.get(key) == size, f"{key}: tracked with {size} bytes, store has {have.get(key)}"


def managed(keys: Iterable[str]) -> set[str]:
    """Keep the keys shaped like DataJoint's own objects (folds match the hash)."""
    return {
        key
        for key in keys
        if layout.managed_hash(key.partition("/")[2], layout.DEFAULT_SUBFOLDING) is not None
    }


def cleaner_config(world: World) -> dict[str, Any]:
    spec, local = world.stores["dst"], world.local
    run: dict[str, Any] = {"database_server": "local", "schema": world.local_schema,
                           "store": "dst", "location": spec["location"]}  # fmt: skip
    if spec["protocol"] == "file":
        storage: dict[str, Any] = {"file": {"dst": {}}}
        run["storage_server"] = "file.dst"
    else:
        keys = ("endpoint", "access_key", "secret_key", "secure")
        storage = {"s3": {"dst": {k: spec[k] for k in keys}}}
        run |= {"storage_server": "s3.dst", "bucket": spec["bucket"]}
    database = {"host": f"{local.host}:{local.port}", "user": local.user,
                "password": local.password, "use_tls": bool(local.use_tls)}  # fmt: skip
    return {"database_servers": {"local": database}, "storage_servers": storage,
            "cleaning_runs": [run]}  # fmt: skip


def clean_and_check(world: World) -> tuple[RunReport, int]:
    """Run dj-cleaner on the destination store; assert it removed exactly the orphans.

    Returns the report and the number of orphans it reclaimed.
    """
    prefix = f"{world.local_schema}/"
    referenced = {object_key(world.local_schema, h, a) for h, _, a, _ in external_rows(world)}
    before = world.objects("dst", prefix)
    orphans = managed(before) - referenced
    [report] = clean(parse_config(cleaner_config(world)), CleanOptions(min_age=0, progress=False))
    after = world.objects("dst", prefix)
    assert not report.errors, report.errors
    assert managed(after) == referenced, "the cleaner deleted a live object or left an orphan"
    assert report.deleted == len(orphans)
    assert set(after) - managed(after) == set(before) - managed(before), "foreign files touched"
    return report, len(orphans)


def close_link(table: Any) -> None:
    """Close the connections of a linked class made in this process."""
    linked = table._core.linked
    linked.source_db.close()
    linked.local_db.close()


def verify_all(
    world: World, op: str, source: Any, tmp: Path, *,
    keys: set[Key] | None = None, deprecated: set[Key] = frozenset(),
) -> int:  # fmt: skip
    """Every check after a resume, in order; return the orphans the cleaner reclaimed."""
    from tests.integration.linkworld import make_link

    assert_converged(world, op, keys=keys, deprecated=deprecated)
    _, reclaimed = clean_and_check(world)
    local = make_link(world)
    try:
        assert_fetches_equal(world, source, local, tmp)
    finally:
        close_link(local)
    return reclaimed


def assert_fetches_equal(world: World, source: Any, local: Any, tmp: Path) -> int:
    """Fetch every local row and its parts through DataJoint; compare with the source.

    ``source`` is the source ``Recording`` class, ``local`` the linked class.
    Returns the number of master rows compared.
    """
    stamp = str(time.monotonic_ns())
    down_local, down_source = tmp / f"fetch-l-{stamp}", tmp / f"fetch-s-{stamp}"
    down_local.mkdir()
    down_source.mkdir()
    rows = local().fetch(as_dict=True, download_path=str(down_local), order_by="KEY")
    keys = [{"subject_id": r["subject_id"], "rec_id": r["rec_id"]} for r in rows]
    if not keys:
        return 0
    want = (source() & keys).fetch(as_dict=True, download_path=str(down_source), order_by="KEY")
    assert len(rows) == len(want)
    for got, ref in zip(rows, want, strict=True):
        assert got.keys() == ref.keys()
        for name, value in ref.items():
            if name == "notes":
                assert Path(got[name]).read_bytes() == Path(value).read_bytes()
            elif isinstance(value, np.ndarray):
                assert value.dtype == got[name].dtype and np.array_equal(value, got[name])
            else:
                assert got[name] == value, name
    for part in ("Channel", "Reviewer"):
        got_parts = (getattr(local, part)() & keys).fetch(as_dict=True, order_by="KEY")
        ref_parts = (getattr(source, part)() & keys).fetch(as_dict=True, order_by="KEY")
        assert len(got_parts) == len(ref_parts)
        for got, ref in zip(got_parts, ref_parts, strict=True):
            for name, value in ref.items():
                if isinstance(value, np.ndarray):
                    assert np.array_equal(value, got[name]), (part, name)
                else:
                    assert got[name] == value, (part, name)
    return len(rows)
