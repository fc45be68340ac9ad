"""The batch engine against two in-memory servers: convergence, batching, stale reads, failures.

:class:`~djbridge.link.sync.Engine` is run unchanged, with its real SQL, on
:class:`tests.unit.fakedb.FakeDatabase` servers that execute that SQL on dicts:
a source server with ``lab.recording`` (master), ``lab.recording__channel`` (two
part rows per key) and the outbound table, and a local server with the two
mirrored tables. The tables have no external columns, so the real
:func:`~djbridge.link.transfer.add_to_local` moves the rows; a copy failure is
played by :class:`CopyEngine`, which raises the store's error for chosen keys
before the real step runs, as a failed object copy does. Another process working
on the same keys is played by the servers' ``before`` hooks.

What a maintainer changing the batch logic needs to hear about at once:

* pulls and deletes converge over many keys and from every intermediate state;
* the statements per batch are constant: more rows per batch, same round trips;
* a step that changed fewer rows than it had keys makes the engine re-read
  exactly those keys, and a concurrent local insert is a re-read, not a failure;
* one batch's failed copy leaves the others committed and the run raising
  :class:`~djbridge.errors.LinkError` with the count; a run that cannot settle
  stops after ``MAX_ROUNDS``.

    lab = Lab(100, batch_size=10)
    result = lab.run(Operation.PULL)
    lab.assert_pulled(result, 100)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from djbridge.errors import DatabaseError, LinkError, StoreError
from djbridge.link.mirror import Column, SourceTable
from djbridge.link.states import Operation, Persisted, State, Step, classify
from djbridge.link.sync import MAX_ROUNDS, Engine, Linked, RunResult
from djbridge.progress import Progress
from tests.unit.fakedb import FakeDatabase

SRC, PART, OUT = "`lab`.`recording`", "`lab`.`recording__channel`", "`out`.`outbound`"
LOC, LOC_PART = "`loc`.`recording`", "`loc`.`recording__channel`"
MASTER_COLS = ["subject_id", "rec_id", "payload"]
PART_COLS = ["subject_id", "rec_id", "channel", "wave"]
OUT_COLS = ["subject_id", "rec_id", "process", "is_flagged", "is_deprecated"]
Key = tuple[Any, ...]


class CopyEngine(Engine):
    """The real engine, whose object copy fails for any batch holding a key of ``failing``."""

    def __init__(self, linked: Linked, failing: set[Key]) -> None:
        super().__init__(linked)
        self.failing = failing

    def add_to_local(
        self, keys: Sequence[Key], result: RunResult, progress: Progress, counted: set[Key]
    ) -> bool:
        if self.failing & set(keys):
            raise StoreError("s3://dst/copy: cannot write 'loc/ab/cd/abcd': connection reset")
        return super().add_to_local(keys, result, progress, counted)


def table(name: str, columns: list[str], keys: int) -> SourceTable:
    return SourceTable("lab", name, "", [Column(c, i < keys) for i, c in enumerate(columns)])


class Lab:
    """A source and a local fake server with ``n`` recordings, and the link between them."""

    def __init__(self, n: int, *, batch_size: int = 10, batch_bytes: int = 16 << 20) -> None:
        self.source = FakeDatabase("source", 2, {SRC: MASTER_COLS, PART: PART_COLS, OUT: OUT_COLS})
        self.local = FakeDatabase("local", 2, {LOC: MASTER_COLS, LOC_PART: PART_COLS})
        self.source.parents[OUT] = SRC
        self.source.pk[PART] = self.local.pk[LOC_PART] = 3
        self.keys: list[Key] = [(i % 3, i) for i in range(n)]
        for key in self.keys:
            self.source.tables[SRC][key] = (*key, b"x" * 20)
            for channel in range(2):
                self.source.tables[PART][(*key, channel)] = (*key, channel, b"w" * 8)
        self.linked = Linked(
            source_db=self.source, local_db=self.local,  # type: ignore[arg-type]
            master=table("recording", MASTER_COLS, 2),
            parts={"channel": table("recording__channel", PART_COLS, 3)},
            outbound=OUT, local_master=LOC, local_parts={"channel": LOC_PART}, placements={},
            local_schema="loc", batch_size=batch_size, batch_bytes=batch_bytes, copy_threads=1,
        )  # fmt: skip

    def run(self, op: Operation, failing: Sequence[Key] = ()) -> RunResult:
        engine = CopyEngine(self.linked, set(failing))
        with Progress(op.value, enabled=False) as progress:
            return engine.run(self.keys, op, progress)

    def state(self, key: Key) -> State:
        out = self.source.tables[OUT].get(key)
        persisted = Persisted(
            key in self.source.tables[SRC], out is not None, key in self.local.tables[LOC],
            out[2] if out else "NONE", bool(out) and out[3] == "TRUE",
        )  # fmt: skip
        return classify(persisted)

    def set_outbound(self, key: Key, process: str, flagged: bool = False) -> None:
        self.source.tables[OUT][key] = (*key, process, "TRUE" if flagged else "FALSE", "FALSE")

    def copy_local(self, key: Key) -> None:
        """Put ``key``'s master and part rows into the local tables, as a finished add does."""
        self.local.tables[LOC][key] = self.source.tables[SRC][key]
        for pk, row in self.source.tables[PART].items():
            if pk[:2] == key:
                self.local.tables[LOC_PART][pk] = row

    @staticmethod
    def keys_in(params: Any) -> set[Key]:
        """The keys of a key filter's flat parameters."""
        values = list(params or ())
        return {tuple(values[i : i + 2]) for i in range(0, len(values), 2)}

    def count(self, server: FakeDatabase, needle: str) -> int:
        return sum(needle in sql for sql in server.statements)

    def assert_pulled(self, keys: Sequence[Key]) -> None:
        for key in keys:
            assert self.state(key) is State.SHARED, key
            assert self.local.tables[LOC][key] == self.source.tables[SRC][key]
        local_parts = {pk for pk in self.local.tables[LOC_PART] if pk[:2] in set(keys)}
        assert local_parts == {pk for pk in self.source.tables[PART] if pk[:2] in set(keys)}


def test_a_pull_of_many_keys_converges_in_three_steps_and_reads_state_once() -> None:
    lab = Lab(250, batch_size=40)
    result = lab.run(Operation.PULL)
    lab.assert_pulled(lab.keys)
    assert result.final_states == Counter({State.SHARED: 250})
    assert result.steps == Counter({Step.START_PULL: 250, Step.ADD_TO_LOCAL: 250,
                                    Step.FINISH_PULL: 250})  # fmt: skip
    assert (result.rows_copied, result.part_rows_copied) == (250, 500)
    assert lab.count(lab.source, "LEFT JOIN") == 1, "nothing was stale: no re-read"
    # Pulling again finds everything shared and changes nothing.
    before = dict(lab.source.tables[OUT])
    again = lab.run(Operation.PULL)
    assert again.final_states == Counter({State.SHARED: 250}) and not again.steps
    assert lab.source.tables[OUT] == before


def test_a_delete_removes_every_key_and_deprecates_the_flagged_ones() -> None:
    lab = Lab(30, batch_size=7)
    lab.run(Operation.PULL)
    flagged = set(lab.keys[3:6])
    for key in flagged:
        lab.set_outbound(key, "NONE", flagged=True)
    result = lab.run(Operation.DELETE)
    assert result.final_states == Counter({State.UNSHARED: 27, State.DEPRECATED: 3})
    assert not lab.local.tables[LOC] and not lab.local.tables[LOC_PART]
    assert lab.source.tables[OUT] == {k: (*k, "NONE", "TRUE", "TRUE") for k in flagged}
    assert len(lab.source.tables[SRC]) == 30, "a delete never touches the source table"


def test_a_pull_finishes_every_interrupted_state() -> None:
    lab = Lab(8)
    k = lab.keys
    lab.set_outbound(k[1], "PULL")  # Activated: killed before the local commit
    lab.set_outbound(k[2], "PULL")  # Received: killed before finish pull
    lab.copy_local(k[2])
    lab.set_outbound(k[3], "DELETE")  # Received mid-delete: the delete completes, then a pull
    lab.copy_local(k[3])
    lab.set_outbound(k[4], "DELETE")  # Activated mid-delete
    lab.set_outbound(k[5], "NONE")  # LostLocal: the local row was deleted behind the link
    lab.copy_local(k[6])  # UntrackedLocal: a local row without an outbound row
    lab.set_outbound(k[7], "PULL", flagged=True)  # flagged while Activated: deprecated
    result = lab.run(Operation.PULL)
    lab.assert_pulled(k[:7])
    assert lab.state(k[7]) is State.DEPRECATED
    assert result.final_states == Counter({State.SHARED: 7, State.DEPRECATED: 1})


@pytest.mark.parametrize("op", [Operation.PULL, Operation.DELETE])
def test_statements_per_batch_do_not_grow_with_the_rows_in_a_batch(op: Operation) -> None:
    counts = []
    for n, batch in ((60, 10), (600, 100), (120, 10)):
        lab = Lab(n, batch_size=batch)
        if op is Operation.DELETE:
            lab.run(Operation.PULL)
            lab.source.statements.clear()
            lab.local.statements.clear()
        lab.run(op)
        counts.append((len(lab.source.statements), len(lab.local.statements)))
    six_small, six_large, twelve = counts
    assert six_small == six_large, "round trips grew with the rows per batch"
    # Six more batches cost six times a constant per batch: 4 source + 3 local for a pull
    # (start, two fetches, finish; a transaction with two inserts), 2 + 3 for a delete
    # (start, finish; a transaction with two deletes).
    per_batch = (4, 3) if op is Operation.PULL else (2, 3)
    assert (twelve[0] - six_small[0], twelve[1] - six_small[1]) == (6 * per_batch[0],
                                                                    6 * per_batch[1])  # fmt: skip


def test_add_batches_are_cut_by_bytes_and_an_oversized_row_fails_named() -> None:
    lab = Lab(12, batch_size=100, batch_bytes=120)  # about 46 bytes per key: two fit
    big = lab.keys[5]
    lab.source.tables[SRC][big] = (*big, b"x" * 400)
    lab.local.max_packet = 300
    with pytest.raises(LinkError, match="1 of 12 entities failed") as err:
        lab.run(Operation.PULL)
    assert "max_allowed_packet (300 bytes)" in str(err.value) and "'rec_id': 5" in str(err.value)
    lab.assert_pulled([k for k in lab.keys if k != big])
    assert lab.state(big) is State.ACTIVATED
    inserts = lab.count(lab.local, f"INSERT INTO {LOC} ")
    assert inserts == 6, f"11 keys of ~46 bytes in batches of 120 bytes: {inserts} batches"


def test_a_start_pull_that_changed_fewer_rows_re_reads_exactly_its_keys() -> None:
    lab = Lab(30, batch_size=10)
    raced = lab.keys[12:15]  # in the second chunk of start pull

    def other_process(sql: str, params: Any) -> None:
        if sql.startswith("INSERT IGNORE") and params[0][:2] == lab.keys[10]:
            for key in raced:
                lab.set_outbound(key, "PULL")

    lab.source.before = other_process
    result = lab.run(Operation.PULL)
    lab.assert_pulled(lab.keys)
    assert lab.count(lab.source, "LEFT JOIN") == 2
    assert result.steps[Step.START_PULL] == 30


def flag(lab: Lab, key: Key, flagged: bool) -> None:
    """The source lab sets or lifts the flag of ``key``."""
    lab.set_outbound(key, lab.source.tables[OUT][key][2], flagged)


def pull_elsewhere(lab: Lab, key: Key) -> None:
    """Another process lost the local row of ``key`` and restarted its pull."""
    del lab.local.tables[LOC][key]
    lab.local.tables[LOC_PART] = {k: r for k, r in lab.local.tables[LOC_PART].items()
                                  if k[:2] != key}  # fmt: skip
    lab.set_outbound(key, "PULL")


RACES = {
    # Flagged while Activated: deprecate, unless the flag was lifted meanwhile.
    "deprecate": ("PULL", True, False, "is_deprecated='TRUE'",
                  lambda lab, k: flag(lab, k, False), State.SHARED),
    # Mid-delete and unflagged: finish the delete, unless it was flagged meanwhile.
    "finish-delete": ("DELETE", False, False, "DELETE FROM", lambda lab, k: flag(lab, k, True),
                      State.DEPRECATED),
    # Lost its local row: restart the pull, unless it was flagged meanwhile.
    "restart-pull": ("NONE", False, False, "SET process='PULL'",
                     lambda lab, k: flag(lab, k, True), State.DEPRECATED),
    # Shared: start the delete, unless another process is pulling it again.
    "start-delete": ("NONE", False, True, "SET process='DELETE'", pull_elsewhere,
                     State.ACTIVATED),
}  # fmt: skip


@pytest.mark.parametrize("name", RACES)
def test_a_source_step_changes_nothing_when_its_condition_no_longer_holds(name: str) -> None:
    process, flagged, local, step, race, final = RACES[name]
    lab = Lab(4)
    key = lab.keys[2]
    lab.set_outbound(key, process, flagged)
    if local:
        lab.copy_local(key)

    def other_process(sql: str, params: Any) -> None:
        if step in sql and key in lab.keys_in(params):
            race(lab, key)

    lab.source.before = other_process
    lab.run(Operation.DELETE if name.endswith("delete") else Operation.PULL)
    assert lab.state(key) is final
    assert lab.count(lab.source, "LEFT JOIN") == 2, "the step's key was not re-read"


def test_rows_that_appeared_locally_during_an_add_are_re_read_not_failed() -> None:
    lab = Lab(20, batch_size=5)
    winner = lab.keys[7]

    def other_process(sql: str, params: Any) -> None:
        # Another process commits the winner while this one reads the batch's rows.
        fetch = sql.startswith(f"SELECT `subject_id`, `rec_id`, `payload` FROM {SRC}")
        if fetch and winner in lab.keys_in(params) and winner not in lab.local.tables[LOC]:
            lab.copy_local(winner)
            lab.set_outbound(winner, "PULL")

    lab.source.before = other_process
    result = lab.run(Operation.PULL)
    lab.assert_pulled(lab.keys)
    assert not result.failed
    assert result.rows_copied == 19, "the winner's row was copied by the other process"
    assert lab.count(lab.source, "LEFT JOIN") == 2


def test_a_failed_copy_leaves_the_other_batches_committed_and_names_the_count() -> None:
    lab = Lab(20, batch_size=5)
    broken = lab.keys[5:10]
    with pytest.raises(LinkError, match=r"pull: 5 of 20 entities failed.*connection reset"):
        lab.run(Operation.PULL, failing={lab.keys[7]})
    lab.assert_pulled(lab.keys[:5] + lab.keys[10:])
    assert {lab.state(k) for k in broken} == {State.ACTIVATED}
    assert not any(k in lab.local.tables[LOC] for k in broken)
    lab.run(Operation.PULL)
    lab.assert_pulled(lab.keys)


def test_keys_that_never_settle_stop_the_run_after_max_rounds() -> None:
    lab = Lab(6, batch_size=2)
    restless = lab.keys[0]

    def other_process(sql: str, params: Any) -> None:
        # Whenever the link finishes this key's pull, another process has just finished
        # it and removed its local rows: the link finds it LostLocal and starts over.
        if "SET process='NONE' WHERE process='PULL'" in sql and restless in lab.keys_in(params):
            lab.set_outbound(restless, "NONE")
            del lab.local.tables[LOC][restless]
            for pk in [pk for pk in lab.local.tables[LOC_PART] if pk[:2] == restless]:
                del lab.local.tables[LOC_PART][pk]

    lab.source.before = other_process
    with pytest.raises(LinkError, match=f"1 entities did not settle after {MAX_ROUNDS} rounds"):
        lab.run(Operation.PULL)
    lab.assert_pulled(lab.keys[1:])
    # It comes back every three rounds (restart, add, finish), each time re-read.
    assert lab.count(lab.source, "LEFT JOIN") == 1 + MAX_ROUNDS // 3


def test_a_key_whose_part_rows_exceed_the_byte_budget_streams_them_in_bounded_inserts() -> None:
    lab = Lab(4, batch_size=100, batch_bytes=400)
    heavy = lab.keys[2]
    for channel in range(40):  # 40 part rows of ~120 bytes: 4,800 bytes, twelve budgets
        lab.source.tables[PART][(*heavy, channel)] = (*heavy, channel, b"h" * 100)
    part_inserts: list[int] = []
    lab.local.before = lambda sql, rows: (
        part_inserts.append(len(rows)) if sql.startswith(f"INSERT INTO {LOC_PART}") else None
    )
    result = lab.run(Operation.PULL)
    lab.assert_pulled(lab.keys)
    assert result.part_rows_copied == 3 * 2 + 40
    # The light keys go in one batch with one part insert; the heavy key's 40 part rows
    # go in statements of about 400 bytes (4 rows of ~120 bytes each), never all at once.
    assert max(part_inserts) <= 4 and sum(part_inserts) == 46, part_inserts
    assert len(part_inserts) >= 11, part_inserts


def test_a_failure_while_part_rows_stream_commits_nothing_of_that_key() -> None:
    lab = Lab(3, batch_size=100, batch_bytes=400)
    heavy = lab.keys[1]
    for channel in range(40):
        lab.source.tables[PART][(*heavy, channel)] = (*heavy, channel, b"h" * 100)
    inserts = 0

    def drop_the_connection(sql: str, rows: Any) -> None:
        nonlocal inserts
        if sql.startswith(f"INSERT INTO {LOC_PART}") and heavy in {r[:2] for r in rows}:
            inserts += 1
            if inserts == 3:  # the third statement of the heavy key's streamed part rows
                raise DatabaseError("local: Lost connection to server during query [2013]")

    lab.local.before = drop_the_connection
    with pytest.raises(DatabaseError, match="Lost connection"):
        lab.run(Operation.PULL)
    assert heavy not in lab.local.tables[LOC], "the master row was rolled back with its parts"
    assert not [pk for pk in lab.local.tables[LOC_PART] if pk[:2] == heavy]
    assert lab.state(heavy) is State.ACTIVATED
    lab.local.before = lambda sql, rows: None
    lab.run(Operation.PULL)
    lab.assert_pulled(lab.keys)
