"""A source object whose bytes do not match its JSON never becomes a local row.

A hash-addressed value is checked against its hash, a folder object's files against
their manifest's sizes. A row whose object fails is not written (the user is told),
the other rows arrive, and once the source object is right again the next pull
brings the row, readable as the source has it.
"""

from __future__ import annotations

import pytest

from tests.link2.checks import row_problems
from tests.link2.conftest import SAME_BACKEND
from tests.link2.twolabs import SOURCE_STORE, TRY_PULL, TwoLabs


@pytest.mark.parametrize("pair", SAME_BACKEND, indirect=True)
def test_objects_that_do_not_match_their_json_fail_only_their_rows(labs: TwoLabs) -> None:
    source = labs.ready(range(6), read=True)
    paths = source["master"]["json"]
    store = labs.store(SOURCE_STORE)
    flipped = paths["[1]"]["att"]["path"]  # same size, other bytes: the hash tells
    folder = paths["[2]"]["obj"]["path"]
    cut = next(o.key for o in store.iter_objects(folder + "/") if o.key.endswith("two.bin"))
    originals = {key: store.get(key) for key in (flipped, cut)}
    store.put(flipped, bytes(b ^ 0xFF for b in originals[flipped]))
    store.put(cut, originals[cut][:-5])  # shorter than its manifest says
    header = labs.header(batch_size=1)

    run = labs.run(TRY_PULL, header=header)

    assert run.code == 0, run
    assert run.result["ids"] == [0, 3, 4, 5], run
    told = run.result["error"] is not None or len(run.result["failed"]) == 2
    assert told, run
    for key, data in originals.items():
        store.put(key, data)  # repaired at the source
    run = labs.run(TRY_PULL, header=header)
    assert run.code == 0 and run.result["error"] is None, run
    assert run.result["ids"] == list(range(6)) and run.result["rows"] == 2, run
    local = labs.read_local()
    assert not row_problems(source, local), "\n".join(row_problems(source, local))
