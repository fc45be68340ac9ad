"""The link's entity states, as data plus two pure functions.

An *entity* is one primary key of the source table. Its state is never stored;
it is derived from what the two servers hold (:func:`classify`):

* is the key in the **source** table, in the **outbound** (helper) table on the
  source server, in the **local** table on the destination server;
* the outbound row's ``process`` (``PULL``, ``DELETE`` or ``NONE``) and
  ``is_flagged``.

Work is a sequence of :class:`Step` values chosen by :func:`next_step`. The rule
that makes interruption harmless: **every step modifies exactly one server**
(:data:`STEP_SERVER`). A crash or a lost connection between two steps leaves a
persisted combination that :func:`classify` recognises, and the next pull or
delete carries on from there. Steps are also conditioned in SQL on the state they
expect, so two processes working on the same keys cannot corrupt each other.

Two persisted combinations are not states of the original design but happen in
practice; they are classified so they never wedge a later pull:
``LOST_LOCAL`` (the local row was removed behind the link's back, e.g. with
``delete_quick``) and ``UNTRACKED_LOCAL`` (a local row without an outbound row).

    from djbridge.link.states import Persisted, classify, next_step, Operation
    state = classify(Persisted(source=True, outbound=True, local=False,
                               process="PULL", flagged=False))
    next_step(state, Operation.PULL, process="PULL", flagged=False)  # Step.ADD_TO_LOCAL
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum


class State(str, Enum):
    """Where an entity stands in the link."""

    UNSHARED = "Unshared"
    ACTIVATED = "Activated"
    RECEIVED = "Received"
    SHARED = "Shared"
    TAINTED = "Tainted"
    DEPRECATED = "Deprecated"
    LOST_LOCAL = "LostLocal"
    UNTRACKED_LOCAL = "UntrackedLocal"
    ABSENT = "Absent"


class Operation(str, Enum):
    """What a user asked for."""

    PULL = "pull"
    DELETE = "delete"


class Step(str, Enum):
    """One unit of persisted work, always on exactly one server."""

    START_PULL = "start pull"
    ADD_TO_LOCAL = "add to local"
    FINISH_PULL = "finish pull"
    START_DELETE = "start delete"
    REMOVE_FROM_LOCAL = "remove from local"
    FINISH_DELETE = "finish delete"
    DEPRECATE = "deprecate"
    RESTART_PULL = "restart pull"


STEP_SERVER: dict[Step, str] = {
    Step.START_PULL: "source",
    Step.ADD_TO_LOCAL: "local",
    Step.FINISH_PULL: "source",
    Step.START_DELETE: "source",
    Step.REMOVE_FROM_LOCAL: "local",
    Step.FINISH_DELETE: "source",
    Step.DEPRECATE: "source",
    Step.RESTART_PULL: "source",
}


@dataclass(frozen=True)
class Persisted:
    """What the servers hold for one key; ``process``/``flagged`` are the outbound row's."""

    source: bool
    outbound: bool
    local: bool
    process: str = "NONE"
    flagged: bool = False


# (source, outbound, local, has process, flagged) -> state; None in a slot = any value.
TRUTH_TABLE: list[tuple[bool, bool, bool, bool | None, bool | None, State]] = [
    (True, False, False, None, None, State.UNSHARED),
    (True, True, False, True, None, State.ACTIVATED),
    (True, True, True, True, None, State.RECEIVED),
    (True, True, True, False, False, State.SHARED),
    (True, True, True, False, True, State.TAINTED),
    (True, True, False, False, True, State.DEPRECATED),
    (True, True, False, False, False, State.LOST_LOCAL),
    (True, False, True, None, None, State.UNTRACKED_LOCAL),
    (False, False, True, None, None, State.UNTRACKED_LOCAL),
    (False, False, False, None, None, State.ABSENT),
]


def classify(p: Persisted) -> State:
    """Derive the state from what is persisted (see :data:`TRUTH_TABLE`).

    Raises
    ------
    ValueError
        For a combination the outbound foreign key makes impossible (an outbound
        row without its source row).
    """
    has_process = p.process in ("PULL", "DELETE")
    for source, outbound, local, process, flagged, state in TRUTH_TABLE:
        if (source, outbound, local) != (p.source, p.outbound, p.local):
            continue
        if process is not None and process != has_process:
            continue
        if flagged is not None and flagged != p.flagged:
            continue
        return state
    raise ValueError(f"impossible persisted state {p}")


# (state, operation, process) -> next step; process is the outbound row's process.
_PULL: dict[tuple[State, str], Step | None] = {
    (State.UNSHARED, "NONE"): Step.START_PULL,
    (State.ACTIVATED, "PULL"): Step.ADD_TO_LOCAL,
    (State.ACTIVATED, "DELETE"): Step.FINISH_DELETE,
    (State.RECEIVED, "PULL"): Step.FINISH_PULL,
    (State.RECEIVED, "DELETE"): Step.REMOVE_FROM_LOCAL,
    (State.LOST_LOCAL, "NONE"): Step.RESTART_PULL,
    (State.UNTRACKED_LOCAL, "NONE"): Step.START_PULL,
}
_DELETE: dict[tuple[State, str], Step | None] = {
    (State.SHARED, "NONE"): Step.START_DELETE,
    (State.TAINTED, "NONE"): Step.START_DELETE,
    (State.RECEIVED, "PULL"): Step.FINISH_PULL,
    (State.RECEIVED, "DELETE"): Step.REMOVE_FROM_LOCAL,
    (State.ACTIVATED, "DELETE"): Step.FINISH_DELETE,
    (State.ACTIVATED, "PULL"): None,  # another process is pulling it; nothing local to delete
    (State.UNTRACKED_LOCAL, "NONE"): Step.REMOVE_FROM_LOCAL,
}
# A flagged entity that loses its local copy mid-process becomes Deprecated.
_FLAGGED_OVERRIDES: dict[tuple[State, str], Step] = {
    (State.ACTIVATED, "PULL"): Step.DEPRECATE,
    (State.ACTIVATED, "DELETE"): Step.DEPRECATE,
}

# States in which an operation has nothing left to do.
DONE: dict[Operation, frozenset[State]] = {
    Operation.PULL: frozenset({State.SHARED, State.TAINTED, State.DEPRECATED, State.ABSENT}),
    Operation.DELETE: frozenset({State.UNSHARED, State.DEPRECATED, State.ABSENT, State.LOST_LOCAL}),
}
STUCK = frozenset({State.ACTIVATED, State.RECEIVED})


def possible_flags(state: State) -> tuple[bool, ...]:
    """Return the ``is_flagged`` values an entity in ``state`` can have."""
    if state in STUCK:
        return (False, True)
    fixed = {flagged for *_, flagged, st in TRUTH_TABLE if st is state and flagged is not None}
    return tuple(sorted(fixed)) or (False,)  # without an outbound row nothing is flagged


def after(step: Step, p: Persisted) -> Persisted:
    """Return what the servers hold once ``step`` succeeded for an entity in ``p``."""
    changes: dict[Step, dict[str, object]] = {
        Step.START_PULL: {"outbound": True, "process": "PULL", "flagged": False},
        Step.RESTART_PULL: {"process": "PULL"},
        Step.ADD_TO_LOCAL: {"local": True},
        Step.FINISH_PULL: {"process": "NONE"},
        Step.START_DELETE: {"process": "DELETE"},
        Step.REMOVE_FROM_LOCAL: {"local": False},
        Step.FINISH_DELETE: {"outbound": False, "process": "NONE", "flagged": False},
        Step.DEPRECATE: {"process": "NONE"},
    }
    return replace(p, **changes[step])  # type: ignore[arg-type]


def next_step(state: State, op: Operation, *, process: str, flagged: bool) -> Step | None:
    """Return the step that moves an entity on for ``op``, or None when it is done.

    A pending process of the other kind is finished first, as in the original
    design: pulling an entity stuck mid-delete completes the delete, then pulls.

    Raises
    ------
    ValueError
        If ``state`` has no step for ``op`` and is not a finished state.
    """
    if state in DONE[op]:
        return None
    key = (state, process if state in STUCK else "NONE")
    if flagged and key in _FLAGGED_OVERRIDES:
        return _FLAGGED_OVERRIDES[key]
    table = _PULL if op is Operation.PULL else _DELETE
    if key in table:
        return table[key]
    raise ValueError(f"cannot {op.value} an entity in state {state.value} (process {process})")
