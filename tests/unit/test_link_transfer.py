"""The pure parts of a pull's transfer: checksums, batch plans and the copy byte budget.

Each rule here decides whether a pulled object is accepted or how much a pull
holds at once, so each is checked against an independent statement of it:

* :class:`ExternalRow` verifies an object the way DataJoint 0.14 recorded it: MD5
  of the bytes for a blob, MD5 of ``name + NUL + bytes`` for an attachment (the
  ``init_string`` DataJoint's ``upload_attachment`` uses), ``contents_hash`` for a
  filepath, and nothing for a filepath whose checksum DataJoint skipped;
* :func:`plan_batches` cuts keys, in order, at ``max_rows`` keys or ``max_bytes``
  of row data, always taking at least one key;
* :class:`ByteBudget` never lets the copies in flight hold more than its limit,
  and still runs a copy that costs more than the whole limit, alone.

    rows = ExternalRow(hashlib.md5(data).digest(), len(data), None, None, None)
    assert rows.checksum_ok(data)
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid

import pytest
from datajoint.hash import uuid_from_buffer

from djbridge.link.transfer import ByteBudget, ExternalRow, RowSize, plan_batches

DATA = b"\x00\x01 some object bytes \xff" * 50


def blob_row(data: bytes) -> ExternalRow:
    return ExternalRow(hashlib.md5(data).digest(), len(data), None, None, None)


def attachment_row(name: str, data: bytes) -> ExternalRow:
    # DataJoint 0.14: uuid_from_file(path, init_string=attachment_name + "\0").
    digest = uuid_from_buffer(data, init_string=name + "\0").bytes
    return ExternalRow(digest, len(data), name, None, None)


def filepath_row(path: str, data: bytes | None) -> ExternalRow:
    contents = uuid_from_buffer(data).bytes if data is not None else None
    return ExternalRow(uuid_from_buffer(path.encode()).bytes, 9, None, path, contents)


# ---- checksums -----------------------------------------------------------------------------
def test_a_blob_is_checked_against_the_md5_of_its_bytes() -> None:
    row = blob_row(DATA)
    assert row.checksum_ok(DATA)
    assert not row.checksum_ok(DATA[:-1])
    assert not row.checksum_ok(DATA[:-1] + b"\x00")
    assert row.expected_digest() == hashlib.md5(DATA).digest()


def test_an_attachment_digest_starts_with_its_name_and_a_nul_byte() -> None:
    row = attachment_row("notes.bin", DATA)
    assert row.checksum_ok(DATA)
    assert not row.checksum_ok(b"")
    # The same bytes under another name, or hashed without the NUL, are different objects.
    assert attachment_row("other.bin", DATA).hash != row.hash
    assert row.hash != hashlib.md5(DATA).digest()
    assert row.hash != hashlib.md5(b"notes.bin" + DATA).digest()
    digest = row.new_digest()
    digest.update(DATA)
    assert digest.digest() == row.expected_digest() == row.hash


def test_a_streamed_digest_equals_the_whole_buffer_check() -> None:
    row = attachment_row("frames.npy", DATA)
    digest = row.new_digest()
    for start in range(0, len(DATA), 7):
        digest.update(DATA[start : start + 7])
    assert digest.digest() == row.expected_digest()


def test_a_filepath_is_checked_against_its_contents_hash_not_its_path_hash() -> None:
    row = filepath_row("raw/run1/a.dat", DATA)
    assert row.expected_digest() == uuid.UUID(bytes=hashlib.md5(DATA).digest()).bytes
    assert row.expected_digest() != row.hash
    assert row.checksum_ok(DATA)
    assert not row.checksum_ok(DATA + b"!")
    assert row.new_digest().digest() == hashlib.md5().digest(), "a filepath has no name prefix"


def test_a_filepath_without_contents_hash_records_no_checksum() -> None:
    row = filepath_row("raw/big.dat", None)
    assert row.expected_digest() is None
    assert row.checksum_ok(b"anything at all")


# ---- batch plans ---------------------------------------------------------------------------
def keyed(sizes: list[int]) -> tuple[list[tuple[int]], dict[tuple[int], RowSize]]:
    keys = [(i,) for i in range(len(sizes))]
    return keys, {k: RowSize(s, s, "t") for k, s in zip(keys, sizes, strict=True)}


def test_batches_stop_at_the_row_limit() -> None:
    keys, sizes = keyed([1] * 7)
    assert [len(b) for b in plan_batches(keys, sizes, 3, 1 << 20)] == [3, 3, 1]


def test_batches_stop_at_the_byte_limit_and_a_batch_may_fill_it_exactly() -> None:
    keys, sizes = keyed([4, 4, 4, 4, 5, 5])
    assert plan_batches(keys, sizes, 100, 10) == [keys[0:2], keys[2:4], keys[4:6]]


def test_a_key_larger_than_the_byte_budget_goes_alone() -> None:
    keys, sizes = keyed([1, 50, 1, 1])
    assert plan_batches(keys, sizes, 100, 10) == [[keys[0]], [keys[1]], keys[2:4]]


def test_keys_without_a_size_weigh_nothing() -> None:
    keys = [(i,) for i in range(5)]
    sizes = {keys[2]: RowSize(8, 8, "t")}
    assert plan_batches(keys, sizes, 100, 8) == [keys]
    assert plan_batches(keys, {}, 2, 0) == [keys[0:2], keys[2:4], keys[4:5]]
    assert plan_batches([], {}, 2, 8) == []


@pytest.mark.parametrize("seed", range(5))
def test_random_plans_keep_order_and_limits_and_cut_only_when_needed(seed: int) -> None:
    rng = random.Random(seed)
    keys, sizes = keyed([rng.choice([0, 1, 3, 9, 40]) for _ in range(300)])
    max_rows, max_bytes = rng.randint(1, 12), rng.randint(5, 60)
    batches = plan_batches(keys, sizes, max_rows, max_bytes)
    assert [k for b in batches for k in b] == keys
    weight = [sum(sizes[k].total for k in b) for b in batches]
    for batch, w in zip(batches, weight, strict=True):
        assert 1 <= len(batch) <= max_rows
        assert w <= max_bytes or len(batch) == 1
    for batch, w, nxt in zip(batches, weight, batches[1:], strict=False):
        # The batch was closed because the next key would not fit.
        assert len(batch) == max_rows or w + sizes[nxt[0]].total > max_bytes


# ---- the copy byte budget ------------------------------------------------------------------
def run_copies(budget: ByteBudget, costs: list[int], hold: float = 0.01) -> tuple[int, int]:
    """Run one thread per cost; return the peak bytes held and how often a big copy had company.

    A copy is *big* when it costs more than the whole limit.
    """
    lock = threading.Lock()
    held = peak = company = inflight = big = 0

    def copy(cost: int) -> None:
        nonlocal held, peak, company, inflight, big
        with budget.hold(cost):
            with lock:
                company += inflight if cost > budget.limit else big
                held, inflight = held + min(cost, budget.limit), inflight + 1
                big += cost > budget.limit
                peak = max(peak, held)
            time.sleep(hold)
            with lock:
                held, inflight = held - min(cost, budget.limit), inflight - 1
                big -= cost > budget.limit

    threads = [threading.Thread(target=copy, args=(c,), daemon=True) for c in costs]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a copy never got its budget"
    assert budget.used == 0
    return peak, company


def test_copies_in_flight_never_hold_more_than_the_limit() -> None:
    rng = random.Random(3)
    costs = [rng.choice([1, 3, 4, 7, 10]) for _ in range(40)]
    peak, _ = run_copies(ByteBudget(10), costs)
    assert peak <= 10
    assert peak > max(costs) // 2, "the copies never overlapped: the test proved nothing"


def test_a_copy_above_the_limit_still_runs_and_runs_alone() -> None:
    budget = ByteBudget(10)
    peak, company = run_copies(budget, [2, 3, 50, 2, 3, 25, 1, 4])
    assert company == 0
    assert peak == 10
