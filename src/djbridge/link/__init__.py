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

The link works with DataJoint 0.14 only for now. Importing it needs no DataJoint at
all, so ``from link import link`` works beside DataJoint 2.x too; there, decorating a
class raises :class:`~djbridge.errors.UnsupportedDataJoint` (:func:`require_datajoint`),
before anything else is checked, until a later release supports 2.x.

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

from djbridge.errors import UnsupportedDataJoint
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

SUPPORTED = (0, 14)
"""The DataJoint release series (major, minor) that the link works with."""


def require_datajoint() -> str:
    """Return the installed DataJoint version if the link supports it.

    The version comes from the installed distribution's metadata, so DataJoint is
    not imported (importing 2.x reads its own settings and may warn).

    Returns
    -------
    str
        The version, e.g. ``"0.14.10"``.

    Raises
    ------
    UnsupportedDataJoint
        If DataJoint is missing or not 0.14, naming the installed version.
    """
    try:
        version = metadata.version("datajoint")
    except metadata.PackageNotFoundError:
        version = ""
    found = re.match(r"(\d+)\.(\d+)", version)
    if found and (int(found[1]), int(found[2])) == SUPPORTED:
        return version
    have = f"DataJoint {version}" if version else "no DataJoint"
    raise UnsupportedDataJoint(
        f"the link supports DataJoint 0.14 only for now, and this environment has {have}; "
        "support for DataJoint 2.x comes in a later release of djbridge. Run the link from "
        "an environment with DataJoint 0.14 (datajoint>=0.14.6,<0.15); dj-cleaner works "
        "with either"
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

    Returns
    -------
    Callable
        A class decorator returning the local DataJoint table class.

    Raises
    ------
    UnsupportedDataJoint
        When a class is decorated where DataJoint is not 0.14 (e.g. 2.x).
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
        dict(stores or {}), use_tls, batch_size, batch_bytes,
    )  # fmt: skip

    def decorator(cls: type) -> Any:
        require_datajoint()
        return decorate(cls, request)

    return decorator
