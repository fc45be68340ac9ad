"""The DataJoint face of a link: the local table class, ``.source`` and their verbs.

:mod:`djbridge.link.declare` builds the class that ``link(...)`` returns from
:class:`LocalTable` and a :class:`LinkCore`, which holds the link's connections,
stores and batch engine. What a user sees:

* ``Table()`` is the local table; parts are its nested classes;
* ``Table().source`` is the source table (restrict it with ``&``), with
  ``.pull(display_progress=...)``, ``.flagged`` and ``.status()``;
* ``(Table() & cond).delete()`` deletes through the link: one confirmation with
  DataJoint's safemode, then the outbound state follows;
* ``(Table() & cond).verify(repair=...)`` checks rows and objects against the source
  (:mod:`djbridge.link.verify`).

    from link import link

    @link("db.lab.org", "lab", "lab_outbound", "Outbound", "my_copy",
          stores={"raw": "raw_copy"})
    class Recording:
        pass

    (Recording().source & "session_id < 10").pull(display_progress=True)
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from djbridge.config import DatabaseServer
from djbridge.errors import LinkError
from djbridge.link.states import STUCK, Operation, State, classify
from djbridge.link.sync import Engine, Key, Linked, RunResult
from djbridge.link.verify import VerifyReport, verify_table
from djbridge.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class LinkStatus:
    """How many entities are in each state, and which ones are stuck mid-process."""

    counts: Counter[State] = field(default_factory=Counter)
    stuck: list[dict[str, Any]] = field(default_factory=list)


class SourceView:
    """Mixin for ``Table().source``: a DataJoint table on the source server plus link verbs."""

    _core: LinkCore

    def _keys(self) -> list[Key]:
        self._core.linked.ensure_connected()
        sql = self.proj().make_sql()  # type: ignore[attr-defined]
        return [tuple(r) for r in self._core.linked.source_db.query(sql)]

    def pull(self, *, display_progress: bool = False) -> RunResult:
        """Pull the rows of this (restricted) source table into the local table."""
        return self._core.run(self._keys(), Operation.PULL, display_progress)

    @property
    def flagged(self) -> list[dict[str, Any]]:
        """Primary keys of rows the source side flagged for deletion."""
        outbound = self._core.outbound_table()
        flagged = (outbound & "is_flagged='TRUE'").proj() & self.proj()  # type: ignore[attr-defined]
        if hasattr(flagged, "to_dicts"):  # DataJoint 2.x
            return list(flagged.to_dicts())
        return list(flagged.fetch(as_dict=True))

    def status(self) -> LinkStatus:
        """Count entities of this (restricted) source table by state; list the stuck ones."""
        return self._core.status(self._keys())


class LocalTable:
    """Mixin for the local table class that :func:`link` returns."""

    _core: LinkCore

    @property
    def source(self) -> Any:
        """The source table on the source server, restrictable with ``&``."""
        return self._core.source_table()

    def delete(
        self,
        transaction: bool = True,
        safemode: bool | None = None,
        force_parts: bool = False,
        *,
        prompt: bool | None = None,
        part_integrity: str = "enforce",
        display_progress: bool = False,
    ) -> int:
        """Delete restricted rows locally through the link; return the entities deleted.

        With DataJoint's safemode on, one confirmation covers the whole deletion and
        cancelling changes nothing on either server. Part rows always go with their
        master, so ``force_parts`` (0.14) and ``part_integrity`` (2.x) change nothing
        here, as in DataJoint for a master. ``prompt`` is 2.x's name for ``safemode``.

        Raises
        ------
        LinkError
            If ``transaction`` is False: a delete through the link commits step by
            step on two servers and cannot join a transaction of the caller's.
        """
        import datajoint as dj

        if not transaction:
            raise LinkError(
                "delete(transaction=False) is not supported through a link: the delete "
                "commits step by step on the local and the source server and cannot join "
                "a transaction of yours; call delete() with transaction=True (the default)"
            )
        del force_parts, part_integrity  # parts are deleted with their masters either way
        safemode = prompt if safemode is None else safemode
        self._core.linked.ensure_connected()
        keys = [tuple(r) for r in self._core.linked.local_db.query(self.proj().make_sql())]  # type: ignore[attr-defined]
        # A delete interrupted after "remove from local" has no local row left for a
        # restriction to find; its source step is still owed, so every delete finishes it.
        unfinished = self._core.unfinished_deletes(exclude=keys)
        if not keys and not unfinished:
            log.info("delete: nothing to delete in %s", self._core.linked.local_master)
            return 0
        safemode = dj.config["safemode"] if safemode is None else safemode
        if safemode and keys:
            print(f"About to delete {len(keys)} entities (with their part rows) from "
                  f"{self._core.linked.local_master} through the link.")  # fmt: skip
            if dj.utils.user_choice("Commit deletes?", default="no") != "yes":
                print("Delete cancelled: nothing changed on either server.")
                return 0
        self._core.run([*keys, *unfinished], Operation.DELETE, display_progress)
        return len(keys)

    def verify(self, *, repair: bool = False, display_progress: bool = False) -> VerifyReport:
        """Check these local rows, their part rows and their objects against the source.

        Parameters
        ----------
        repair
            Copy missing and wrong-size destination objects again from the source
            store, verified as in a pull. Differing rows are never changed; the
            report says how to re-pull them (delete locally, then pull).
        display_progress
            Show a progress bar.

        Returns
        -------
        VerifyReport
            ``checked``, ``rows_differ``, ``missing_local``, ``objects_missing``,
            ``objects_wrong_size``, ``repaired``, and ``ok``.

        Raises
        ------
        LinkError, DatabaseError, StoreError
            If a server or a store cannot be read.
        """
        return verify_table(self, self._core, repair=repair, display_progress=display_progress)


class LinkCore:
    """One link: connections, layout and engine; builds the DataJoint classes."""

    def __init__(
        self, linked: Linked, source_server: DatabaseServer, source_connection: Any = None
    ) -> None:
        self.linked = linked
        self.engine = Engine(linked)
        self.source_server = source_server
        self._dj_source: Any = source_connection  # DataJoint 2.x: the source Instance's

    def _source_connection(self) -> Any:
        import datajoint as dj

        if self._dj_source is None:
            s = self.source_server
            self._dj_source = dj.Connection(
                f"{s.host}:{s.port}", s.user, s.password, use_tls=bool(s.use_tls)
            )
        return self._dj_source

    def source_table(self) -> Any:
        """Return a fresh ``SourceView`` of the master table on the source server."""
        from datajoint.table import FreeTable  # the class, in 0.14 and 2.x alike

        master = self.linked.master
        cls = type("Source", (SourceView, FreeTable), {"_core": self})
        name = self.linked.source_db.dialect.quote(master.schema, master.name)
        return cls(self._source_connection(), name)

    def outbound_table(self) -> Any:
        """Return the outbound table as a DataJoint FreeTable."""
        import datajoint as dj

        return dj.FreeTable(self._source_connection(), self.linked.outbound)

    def run(self, keys: Sequence[Key], op: Operation, display_progress: bool) -> RunResult:
        """Run ``op`` on ``keys`` with an optional progress bar."""
        with Progress(op.value.upper(), total=len(keys), unit="row",
                      enabled=display_progress) as bar:  # fmt: skip
            result = self.engine.run(keys, op, bar)
        log.info("%s of %d entities finished: %s", op.value, len(keys), dict(result.final_states))
        return result

    def unfinished_deletes(self, exclude: Sequence[Key] = ()) -> list[Key]:
        """Return keys mid-delete (outbound ``process='DELETE'``) whose local rows are gone."""
        cols = self.linked.key_columns
        names = ", ".join(self.linked.source_db.dialect.quote(c) for c in cols)
        sql = f"SELECT {names} FROM {self.linked.outbound} WHERE process='DELETE'"
        skip = set(exclude)
        keys = [k for k in map(tuple, self.linked.source_db.query(sql)) if k not in skip]
        if not keys:
            return []
        states = self.engine.read_states(keys)
        unfinished = [k for k in keys if not states[k].local]
        if unfinished:
            log.info("delete: finishing %d deletes interrupted earlier", len(unfinished))
        return unfinished

    def status(self, keys: Sequence[Key]) -> LinkStatus:
        """Classify ``keys`` and report the counts and the stuck ones."""
        report = LinkStatus()
        cols = self.linked.key_columns
        for key, persisted in self.engine.read_states(keys).items():
            state = classify(persisted)
            report.counts[state] += 1
            if state in STUCK:
                report.stuck.append(dict(zip(cols, key, strict=True)))
        return report
