"""A parent linked into the local schema first keeps its foreign keys; its rows come first.

The source's ``Recording`` references ``Subject`` from the master (``-> Subject``)
and from its part ``Reviewer`` under another name (``-> Subject.proj(reviewer_id=
"subject_id")``). The lab links ``Subject`` first, with only some of its rows, then
``Recording``: both foreign keys point at the local subject table, and a recording
whose subject (or reviewer) is not local waits, named, while the others arrive.
"""

from __future__ import annotations

from typing import Any

import pytest

from djbridge.errors import LinkError
from tests.integration.linkworld import World, build_pipeline, make_link


def link_subject(world: World) -> Any:
    from link import link

    @link(f"{world.source.host}:{world.source.port}", world.src_schema, world.out_schema,
          "SubjectOutbound", world.local_schema, stores={"src": "dst"})  # fmt: skip
    class Subject:
        """The linked subjects."""

    return Subject


@pytest.mark.parametrize("world", ["file"], indirect=True)
def test_rows_wait_for_their_local_parent_and_keep_its_foreign_keys(world: World) -> None:
    build_pipeline(world, n=6)  # subject rec % 3, reviewer (rec + 1) % 3
    Subject = link_subject(world)
    (Subject().source & "subject_id < 2").pull()
    Recording = make_link(world)

    parents = {tuple(sorted(p["attr_map"].items())) for t in (Recording, Recording.Reviewer)
               for _, p in t.parents(foreign_key_info=True) if "subject" in _}  # fmt: skip
    assert parents == {(("subject_id", "subject_id"),), (("reviewer_id", "subject_id"),)}

    with pytest.raises(LinkError) as raised:
        Recording().source.pull()

    message = str(raised.value)
    assert message.startswith("pull: 4 of 6 entities failed"), message
    assert "{'subject_id': 2}" in message and "pull that parent row into it first" in message
    assert sorted(Recording.fetch("rec_id")) == [0, 3]
    assert len(Recording.Reviewer()) == 2 and len(Recording.Channel()) == 4

    Subject().source.pull()
    Recording().source.pull()
    assert sorted(Recording.fetch("rec_id")) == list(range(6))
    assert len(Recording.Reviewer()) == 6 and len(Recording * Subject) == 6
