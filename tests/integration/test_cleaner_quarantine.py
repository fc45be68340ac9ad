"""dj-cleaner --quarantine, quarantine, restore ID and purge, against real servers.

Every test checks what an administrator would: the objects' bytes at their keys,
the rows that fetch, the exit status and the reports.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import re
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from djbridge.cleaner import CleanOptions, clean, load_config
from djbridge.cleaner.quarantine import AREA, Manifest, batches
from djbridge.stores import Store, open_store
from tests.integration.test_cleaner_rules import (
    Lab,
    age_flags,
    all_keys,
    cli,
    insert_recs,
    orphan,
)

ID_SHAPE = r"^\d{8}T\d{6}Z-[0-9a-f]{6}$"


def contents(lab: Lab, keys: Any) -> dict[str, bytes]:
    return {key: lab.store.get(key) for key in keys}


def quarantined(lab: Lab) -> set[str]:
    return {k for k in all_keys(lab) if k.startswith(f"{AREA}/")}


def run_quarantine(lab: Lab, tmp_path: Path, *flags: str) -> tuple[int, dict[str, Any]]:
    config = lab.config(tmp_path / "c.toml")
    status, [report] = cli(config, *age_flags(lab, all_keys(lab)), "--quarantine", *flags)
    return status, report


def test_quarantine_then_restore_gives_back_every_byte(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    insert_recs(lab, range(6))
    orphans = orphan(lab, [0, 2, 4])
    before = contents(lab, orphans)

    status, report = run_quarantine(lab, tmp_path)

    assert status == 0
    assert report["quarantined"] == len(orphans) == 6 and report["deleted"] == 0
    assert report["bytes_quarantined"] == sum(orphans.values())
    batch = report["quarantine_id"]
    assert re.match(ID_SHAPE, batch)
    assert not set(orphans) & all_keys(lab)
    assert quarantined(lab) == {f"{AREA}/{batch}/{k}" for k in orphans} | {
        f"{AREA}/{batch}/manifest.json"
    }
    manifest = json.loads(lab.store.get(f"{AREA}/{batch}/manifest.json"))
    assert manifest["id"] == batch and manifest["schema"] == lab.schema
    assert manifest["database_server"] == "lab" and manifest["store"] == "lab"
    assert (manifest["bucket"], manifest["location"]) == (lab.bucket, lab.location)
    assert sorted(o["key"] for o in manifest["objects"]) == sorted(orphans)
    assert {o["key"]: o["size"] for o in manifest["objects"]} == orphans
    capsys.readouterr()

    listing = main_json(lab, tmp_path, ["quarantine", "--json"], capsys)
    assert listing == [
        {"id": batch, "created": manifest["created"], "schema": lab.schema, "store": "lab",
         "objects": 6, "bytes": sum(orphans.values())}
    ]  # fmt: skip

    status, outcomes = restore_cli(lab, tmp_path, batch)

    assert status == 0
    assert outcomes == [
        {"id": batch, "restored": 6, "kept": [], "purged": 0, "bytes_purged": 0,
         "restored_at_purge": 0, "errors": []}
    ]  # fmt: skip
    assert contents(lab, orphans) == before
    assert quarantined(lab) == set()  # the empty batch's manifest is gone too
    rows = lab.tables["Rec"].fetch(as_dict=True, download_path=str(tmp_path / "dl"))
    assert sorted(r["rec"] for r in rows) == [1, 3, 5]


def main_json(lab: Lab, tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    from djbridge.cleaner.cli import main

    capsys.readouterr()
    status = main([argv[0], "--config-file", str(tmp_path / "c.toml"), *argv[1:]])
    assert status == 0
    return json.loads(capsys.readouterr().out)


def restore_cli(lab: Lab, tmp_path: Path, batch: str) -> tuple[int, list[dict[str, Any]]]:
    from djbridge.cleaner.cli import main

    report = tmp_path / f"restore-{batch}.json"
    args = ["restore", batch, "--config-file", str(tmp_path / "c.toml"), "--no-progress"]
    status = main([*args, "--report", str(report)])
    return status, json.loads(report.read_text()) if report.exists() else []


def test_restore_never_overwrites(lab: Lab, tmp_path: Path) -> None:
    insert_recs(lab, range(4))
    orphans = sorted(orphan(lab, [0, 1]))
    before = contents(lab, orphans)
    status, report = run_quarantine(lab, tmp_path)
    batch = report["quarantine_id"]
    taken, same = orphans[0], orphans[1]
    lab.store.put(taken, b"a different object, uploaded meanwhile")
    lab.store.put(same, before[same])  # identical bytes: counts as restored

    status, [outcome] = restore_cli(lab, tmp_path, batch)

    assert status == 1
    assert outcome["kept"] == [taken] and outcome["restored"] == len(orphans) - 1
    assert lab.store.get(taken) == b"a different object, uploaded meanwhile"
    assert lab.store.get(f"{AREA}/{batch}/{taken}") == before[taken]
    assert contents(lab, orphans[1:]) == {k: before[k] for k in orphans[1:]}
    assert quarantined(lab) == {f"{AREA}/{batch}/{taken}", f"{AREA}/{batch}/manifest.json"}
    assert restore_cli(lab, tmp_path, "20000101T000000Z-000000")[0] == 2


def backdate(store: Store, batch: str, days: int) -> None:
    manifest = Manifest.read(store, batch)
    old = datetime.now(timezone.utc) - timedelta(days=days)
    created = old.isoformat(timespec="seconds").replace("+00:00", "Z")
    dataclasses.replace(manifest, created=created).write(store)


def test_purge_deletes_only_old_batches_and_restores_a_re_referenced_hash(
    lab: Lab, tmp_path: Path
) -> None:
    insert_recs(lab, range(6))
    old_orphans = orphan(lab, [0, 1])
    old_bytes = contents(lab, old_orphans)
    _, first = run_quarantine(lab, tmp_path)
    backdate(lab.store, first["quarantine_id"], days=8)
    young_orphans = orphan(lab, [2])
    _, second = run_quarantine(lab, tmp_path)
    # Recording 0 comes back with identical content: its hashes are referenced again.
    insert_recs(lab, [0])
    again = set(lab.tracked()) & set(old_orphans)
    assert len(again) == 2 and not (set(lab.tracked()) & set(young_orphans))
    if lab.backend == "s3":
        # DataJoint uploaded the objects again; on S3, remove those uploads so that the
        # purge must move the quarantined copies back (on files it drops its copies).
        lab.store.delete_many(sorted(again))
    report = tmp_path / "purge.json"
    from djbridge.cleaner.cli import main

    dry = main(["purge", "--config-file", str(tmp_path / "c.toml"), "--dry-run"])
    assert dry == 0 and len(quarantined(lab)) == (4 + 1) + (2 + 1)  # objects and manifests

    status = main(["purge", "--config-file", str(tmp_path / "c.toml"), "--report", str(report)])

    [outcome] = json.loads(report.read_text())
    assert status == 0 and outcome["id"] == first["quarantine_id"]
    assert outcome["purged"] == 2 and outcome["restored_at_purge"] == 2
    assert outcome["bytes_purged"] == sum(v for k, v in old_orphans.items() if k not in again)
    for key in again:
        assert lab.store.get(key) == old_bytes[key]
    assert not any(k.startswith(f"{AREA}/{first['quarantine_id']}/") for k in all_keys(lab))
    assert {k.partition("/")[2].partition("/")[2] for k in quarantined(lab)} == set(
        young_orphans
    ) | {"manifest.json"}
    rows = lab.tables["Rec"].fetch(as_dict=True, download_path=str(tmp_path / "dl"))
    assert sorted(r["rec"] for r in rows) == [0, 3, 4, 5]


def test_a_second_clean_leaves_the_quarantine_area_alone(lab: Lab, tmp_path: Path) -> None:
    insert_recs(lab, range(4))
    orphan(lab, [0, 1])
    _, report = run_quarantine(lab, tmp_path)
    held = contents(lab, quarantined(lab))

    status, [again] = cli(lab.config(tmp_path / "c.toml"), *age_flags(lab, all_keys(lab)))

    assert status == 0 and again["deleted"] == 0 and again["orphaned"] == 0
    assert again["scanned"] == again["referenced"] == 4
    assert contents(lab, quarantined(lab)) == held
    assert [m.id for m in batches(lab.store)] == [report["quarantine_id"]]


def _killed_quarantine(config_path: str, backend: str) -> None:
    """In a child: quarantine, and die by SIGKILL in the middle of the moves.

    A file store dies after renaming half of the batch; an S3 store after its
    server-side copies, before the batched delete of the originals.
    """
    config = load_config(config_path)

    def opener(run: Any) -> Store:
        store = open_store(run.storage, bucket=run.bucket, location=run.location)
        if backend == "file":
            move_many = store.move_many

            def die_half_way(pairs: Any) -> Any:
                pairs = list(pairs)
                move_many(pairs[: len(pairs) // 2])
                os.kill(os.getpid(), signal.SIGKILL)

            store.move_many = die_half_way  # type: ignore[method-assign]
        else:
            delete_many = store.delete_many

            def die_before_delete(keys: Any) -> Any:
                keys = list(keys)
                if any(not k.startswith(AREA) for k in keys):
                    os.kill(os.getpid(), signal.SIGKILL)
                return delete_many(keys)

            store.delete_many = die_before_delete  # type: ignore[method-assign]
        return store

    clean(config, CleanOptions(min_age=0, progress=False, quarantine=True), open_run=opener)


def test_sigkill_mid_quarantine_then_restore_loses_nothing(lab: Lab, tmp_path: Path) -> None:
    insert_recs(lab, range(10))
    orphans = orphan(lab, range(0, 10, 2))
    before = contents(lab, orphans)
    config = lab.config(tmp_path / "c.toml")
    child = multiprocessing.get_context("fork").Process(
        target=_killed_quarantine, args=(str(config), lab.backend)
    )
    child.start()
    child.join(300)

    assert child.exitcode == -signal.SIGKILL
    [batch] = list(batches(lab.store))
    assert len(batch.objects) == len(orphans) == 10  # the manifest was written before the moves
    moved = {k for k in quarantined(lab) if not k.endswith("manifest.json")}
    if lab.backend == "file":
        assert len(moved) == 5 and len(set(orphans) & all_keys(lab)) == 5
    else:
        assert len(moved) == 10 and set(orphans) <= all_keys(lab)  # copied, not yet deleted

    status, [outcome] = restore_cli(lab, tmp_path, batch.id)

    assert status == 0 and outcome["kept"] == [] and outcome["restored"] == len(moved)
    assert contents(lab, orphans) == before
    assert quarantined(lab) == set()
    rows = lab.tables["Rec"].fetch(as_dict=True, download_path=str(tmp_path / "dl"))
    assert sorted(r["rec"] for r in rows) == [1, 3, 5, 7, 9]
