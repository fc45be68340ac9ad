"""``dj-migrate verify``: what changed at the source or broke at the destination is found.

After a run, a 0.14 user updates a row at the source, and at the destination one
object is deleted and another overwritten. ``verify`` exits 1 and names each: the
row in ``differ``, the objects in ``objects_missing`` and ``objects_wrong`` with their
key, column and path. Nothing else is reported, and the source is not written.
"""

from __future__ import annotations

from tests.migrate.conftest import ONE_SOURCE
from tests.migrate.world import MigrationWorld

pytestmark = ONE_SOURCE


def test_verify_finds_changed_rows_and_lost_or_damaged_objects(world: MigrationWorld) -> None:
    run = world.cli("run")
    assert run.code == 0, run
    clean = world.cli("verify")
    assert clean.code == 0, clean
    with world.dj014():
        world.tables["Session"].update1({"subject_id": 1, "session_idx": 1, "note": "changed"})
    fingerprint = world.source_fingerprint()
    dests = world.dest_recordings()
    lost, damaged = dests[(1, 1)]["ext"]["path"], dests[(2, 1)]["att"]["path"]
    store = world.dest_store()
    assert not store.delete_many([lost])
    store.put(damaged, b"damaged bytes")
    verify = world.cli("verify")
    assert verify.code == 1, verify
    tables = verify.tables()
    session = tables[(world.schemas["main"], "session")]
    assert session["differ"] == [{"subject_id": 1, "session_idx": 1}], verify
    recording = tables[(world.schemas["main"], "recording")]
    assert recording["objects_missing"] == [
        {"key": {"subject_id": 1, "session_idx": 1}, "column": "ext", "path": lost}
    ], verify
    assert recording["objects_wrong"] == [
        {"key": {"subject_id": 2, "session_idx": 1}, "column": "att", "path": damaged}
    ], verify
    others = [e for (_, t), e in tables.items() if t not in ("session", "recording")]
    for entry in others:
        assert not (entry["missing"] or entry["extra"] or entry["differ"]), verify
    assert world.source_fingerprint() == fingerprint
