"""The rig of the link2 tests: two 2.x labs, the source pipeline, the link account's grants."""

from __future__ import annotations

import pytest

from tests.link2.conftest import SAME_BACKEND
from tests.link2.twolabs import TwoLabs


@pytest.mark.parametrize("pair", SAME_BACKEND, indirect=True)
def test_source_pipeline_reads_back_in_plain_2x(labs: TwoLabs) -> None:
    labs.ready(range(4))
    source = labs.read_source()
    rows = source["master"]["rows"]
    assert [r["rec_id"] for r in rows] == [0, 1, 2, 3]
    assert not [r for r in rows if "$error" in r], rows
    assert len(source["parts"]["Channel"]["rows"]) == 8
    assert source["parts"]["Channel"]["join"] == 8
    print(source)
