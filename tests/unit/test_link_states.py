"""The state machine as data: every (state, operation) pair, and the docs that describe it."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from djbridge.link.states import (
    DONE,
    STEP_SERVER,
    STUCK,
    TRUTH_TABLE,
    Operation,
    Persisted,
    State,
    Step,
    after,
    classify,
    next_step,
    possible_flags,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "link-states.md"


def yes_no(value: bool | None) -> str:
    return "any" if value is None else ("yes" if value else "no")


def transition_rows() -> list[list[str]]:
    rows = []
    for state in State:
        for op in Operation:
            for process in ("PULL", "DELETE") if state in STUCK else ("NONE",):
                for flagged in possible_flags(state):
                    step = next_step(state, op, process=process, flagged=flagged)
                    rows.append([state.value, op.value, process, yes_no(flagged),
                                 step.value if step else "done",
                                 STEP_SERVER[step] if step else "-"])  # fmt: skip
    return rows


def doc_table(heading: str) -> list[list[str]]:
    """Return the body rows of the first table after ``heading`` in the document."""
    lines = DOC.read_text().split(heading, 1)[1].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[first + 2 :]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip("|").split("|")])
    return table


def test_doc_truth_table_matches_code() -> None:
    expected = [[*map(yes_no, row[:5]), row[5].value] for row in TRUTH_TABLE]
    assert doc_table("## Persisted state") == expected


def test_doc_transition_table_matches_code() -> None:
    assert doc_table("## Transitions") == transition_rows()


def test_doc_diagram_names_every_state_and_step() -> None:
    text = DOC.read_text()
    diagram = text[text.index("```mermaid") : text.index("```", text.index("```mermaid") + 3)]
    for state in State:
        if state is not State.ABSENT:
            assert state.value in diagram, state
    for step in Step:
        assert step.value in diagram, step


@pytest.mark.parametrize(
    ("source", "outbound", "local", "process", "flagged"),
    list(
        itertools.product(
            [True, False], [True, False], [True, False], ["NONE", "PULL", "DELETE"], [False, True]
        )
    ),  # fmt: skip
)
def test_every_persisted_combination_is_classified_or_impossible(
    source: bool, outbound: bool, local: bool, process: str, flagged: bool
) -> None:
    persisted = Persisted(source, outbound, local, process, flagged)
    if outbound and not source:
        with pytest.raises(ValueError, match="impossible"):
            classify(persisted)
    else:
        assert isinstance(classify(persisted), State)


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("op", list(Operation))
def test_every_state_and_operation_has_a_defined_outcome(state: State, op: Operation) -> None:
    for process in ("PULL", "DELETE") if state in STUCK else ("NONE",):
        for flagged in possible_flags(state):
            step = next_step(state, op, process=process, flagged=flagged)
            assert step is None or step in STEP_SERVER
            if state in DONE[op]:
                assert step is None


def simulate(persisted: Persisted, op: Operation) -> tuple[State, list[Step]]:
    """Apply steps as the engine does when every statement succeeds, until done."""
    steps: list[Step] = []
    for _ in range(10):
        state = classify(persisted)
        step = next_step(state, op, process=persisted.process, flagged=persisted.flagged)
        if step is None:
            return state, steps
        steps.append(step)
        persisted = after(step, persisted)
    raise AssertionError(f"did not settle: {steps}")


@pytest.mark.parametrize(
    ("start", "op", "end", "steps"),
    [
        (Persisted(True, False, False), Operation.PULL, State.SHARED,
         [Step.START_PULL, Step.ADD_TO_LOCAL, Step.FINISH_PULL]),
        (Persisted(True, True, True, "NONE", False), Operation.DELETE, State.UNSHARED,
         [Step.START_DELETE, Step.REMOVE_FROM_LOCAL, Step.FINISH_DELETE]),
        (Persisted(True, True, True, "NONE", True), Operation.DELETE, State.DEPRECATED,
         [Step.START_DELETE, Step.REMOVE_FROM_LOCAL, Step.DEPRECATE]),
        (Persisted(True, True, True, "PULL", True), Operation.PULL, State.TAINTED,
         [Step.FINISH_PULL]),
        (Persisted(True, True, True, "DELETE", False), Operation.PULL, State.SHARED,
         [Step.REMOVE_FROM_LOCAL, Step.FINISH_DELETE, Step.START_PULL, Step.ADD_TO_LOCAL,
          Step.FINISH_PULL]),
        (Persisted(True, True, False, "NONE", False), Operation.PULL, State.SHARED,
         [Step.RESTART_PULL, Step.ADD_TO_LOCAL, Step.FINISH_PULL]),
        (Persisted(True, False, True), Operation.PULL, State.SHARED,
         [Step.START_PULL, Step.FINISH_PULL]),
        (Persisted(True, True, False, "PULL", True), Operation.PULL, State.DEPRECATED,
         [Step.DEPRECATE]),
    ],
)  # fmt: skip
def test_paths_through_the_machine(
    start: Persisted, op: Operation, end: State, steps: list[Step]
) -> None:
    assert simulate(start, op) == (end, steps)


def test_every_step_touches_exactly_one_server() -> None:
    assert set(STEP_SERVER) == set(Step)
    assert set(STEP_SERVER.values()) == {"source", "local"}


def test_doc_mentions_the_rule() -> None:
    assert re.search(r"never modif\w+ both servers", DOC.read_text(), re.IGNORECASE)
