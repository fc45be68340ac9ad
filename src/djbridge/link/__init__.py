"""link: share table rows from one lab's DataJoint server with another's.

The decorator keeps the public interface of datajoint-link 0.11, so existing code
and existing links keep working: the same outbound (helper) table on the source
server, the same local table, pulls and deletes that carry on where a previous
run stopped. What differs is underneath:

* the decorator checks everything before it writes anything
  (:mod:`djbridge.link.declare`);
* state is read for all requested keys at once and each step is applied to a
  whole batch, in one statement or transaction on one server
  (:mod:`djbridge.link.sync`, :mod:`djbridge.link.states`);
* rows are copied with their raw column values and external objects store to
  store, verified, into the **destination** stores only
  (:mod:`djbridge.link.transfer`);
* the local table mirrors the source's DDL, parts and indexes included
  (:mod:`djbridge.link.mirror`).

The same decorator serves DataJoint 0.14 and 2.x: importing it needs no DataJoint,
and decorating a class looks at the installed version (:func:`require_datajoint`)
and takes that generation's declaration, :mod:`djbridge.link.declare` for 0.14 or
:mod:`djbridge.link.declare2` for 2.x. Under 2.x the source may be PostgreSQL or
MySQL (``backend=``, ``database=``); everything after the declaration, the states,
the batch engine and the verified copies, is shared.

    from link import link

    @link("source-db:3306", "lab", "lab_outbound", "Outbound", "lab_copy",
          stores={"raw": "raw_local"})
    class Recording:
        pass

    Recording().source.pull(display_progress=True)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from djbridge.errors import ConfigError, UnsupportedDataJoint
from djbridge.link.declare import LinkRequest, decorate
from djbridge.link.states import Operation, State
from djbridge.link.sync import RunResult
from djbridge.link.tables import LinkStatus
from djbridge.link.verify import VerifyReport

__all__ = [
    "LinkStatus",
    "Operation",
    "RunResult",
    "State",
    "VerifyReport",
    "link",
    "require_datajoint",
]

GENERATIONS = {(0, 14): "0.14", (2, None): "2"}
"""The DataJoint release series the link works with: 0.14, and every 2.x."""


def require_datajoint() -> str:
    """Return the generation of the installed DataJoint: ``"0.14"`` or ``"2"``.

    The version comes from the installed distribution's metadata, so DataJoint is
    not imported to choose (importing 2.x reads its own settings and may warn).

    Raises
    ------
    UnsupportedDataJoint
        If DataJoint is missing or neither 0.14 nor 2.x, naming the installed version.
    """
    try:
        version = metadata.version("datajoint")
    except metadata.PackageNotFoundError:
        version = ""
    found = re.match(r"(\d+)\.(\d+)", version)
    if found:
        major, minor = int(found[1]), int(found[2])
        generation = GENERATIONS.get((major, minor)) or GENERATIONS.get((major, None))
        if generation:
            return generation
    have = f"DataJoint {version}" if version else "no DataJoint"
    raise UnsupportedDataJoint(
        f"the link supports DataJoint 0.14 and 2.x, and this environment has {have}; install "
        "one of them (datajoint>=0.14.6,<0.15 or datajoint>=2,<3)"
    )


def link(
    source_host: str,
    source_schema: str,
    outbound_schema: str,
    outbound_table: str,
    local_schema: str,
    *,
    stores: Mapping[str, str] | None = None,
    use_tls: bool | None = None,
    batch_size: int = 500,
    batch_bytes: int = 16 << 20,
    backend: str | None = None,
    database: str | None = None,
) -> Any:
    """Link the source table named like the decorated class into ``local_schema``.

    Parameters
    ----------
    source_host
        The source database server, ``host`` or ``host:port``.
    source_schema
        The schema that holds the source table on that server.
    outbound_schema, outbound_table
        Where the link keeps its helper (outbound) table on the source server;
        ``outbound_table`` is a DataJoint class name, e.g. ``"Outbound"``.
    local_schema
        The schema on the local server (from ``dj.config``) for the local table.
    stores
        ``{"source_store": "destination_store"}`` for the external stores the
        source table uses (``blob@``, ``attach@`` and ``filepath@`` alike). A store
        left out keeps its name: its objects go to the local ``dj.config["stores"]``
        entry of the same name, under the local schema's folder.
    use_tls
        TLS for the source connection: True, False, or None for TLS where offered.
    batch_size
        Rows per transaction when copying.
    batch_bytes
        Row data per transaction, part rows included: a batch stops growing at
        ``batch_size`` rows or at this many bytes, whichever comes first.
    backend
        DataJoint 2.x only: the source server's kind, ``"postgresql"`` or ``"mysql"``;
        by default the local ``dj.config`` ``database.backend``.
    database
        DataJoint 2.x only: the source's PostgreSQL database; by default the local
        ``database.name``.

    Returns
    -------
    Callable
        A class decorator returning the local DataJoint table class.

    Raises
    ------
    UnsupportedDataJoint
        When a class is decorated where DataJoint is neither 0.14 nor 2.x.
    MissingCredentials
        If ``LINK_USER`` or ``LINK_PASS`` is not set.
    ConfigError
        If the local account or a used or named store is not configured, or a
        destination would share the source schema's folder.
    LinkError
        If a server is unreachable or the source table does not exist.
    """
    request = LinkRequest(
        source_host, source_schema, outbound_schema, outbound_table, local_schema,
        dict(stores or {}), use_tls, batch_size, batch_bytes, backend, database,
    )  # fmt: skip

    def decorator(cls: type) -> Any:
        if require_datajoint() == "2":
            from djbridge.link.declare2 import decorate as decorate2

            return decorate2(cls, request)
        if backend not in (None, "mysql") or database is not None:
            raise ConfigError(
                "link arguments backend= and database= are for DataJoint 2.x; under DataJoint "
                "0.14 the source is a MySQL or MariaDB server"
            )
        return decorate(cls, request)

    return decorator
