"""What differs between the two MySQL-protocol servers labs run: MariaDB and Oracle MySQL.

Both speak the same protocol and nearly the same SQL, and djbridge talks to both through
:mod:`djbridge.mysql`. Where they really differ, the difference is written down here, as
data, and asked for by name; the rest of the code never branches on a version string.

* **Which server.** :func:`server_kind` reads ``VERSION()`` once per connection:
  ``"mariadb"`` or ``"mysql"``.
* **Collations.** A table's DDL names its collations, and a link replays the source's DDL
  on the local server. MySQL 8+ defaults to ``utf8mb4_0900_ai_ci``, which MariaDB 10.11
  does not know; MariaDB's ``nopad`` and UCA 14 collations are unknown to MySQL.
  :data:`COLLATION_TWINS` maps each to the other server's collation that compares
  strings the same way (MariaDB 11.4.5 itself makes ``utf8mb4_0900_ai_ci`` an alias of
  ``utf8mb4_uca1400_nopad_ai_ci``); :func:`adapt_collations` rewrites a DDL with it and
  refuses, naming the table and the collation, one that neither server can match.

    from djbridge.dialect import adapt_collations, server_kind
    kind = server_kind(local_db)                       # "mariadb"
    ddl = adapt_collations(source_ddl, "recording", local_collations(local_db))
"""

from __future__ import annotations

import re
from collections.abc import Set

from djbridge.errors import LinkError
from djbridge.mysql import Database

KINDS = ("mariadb", "mysql")

COLLATION_TWINS: dict[str, tuple[str, str]] = {
    # MySQL 8+ name -> (MariaDB 10.10+ name, why they compare alike)
    "utf8mb4_0900_ai_ci": (
        "utf8mb4_uca1400_nopad_ai_ci",
        "Unicode collation, accent- and case-insensitive, no padding; MariaDB 11.4.5 "
        "makes the MySQL name an alias of this one",
    ),
    "utf8mb4_0900_as_ci": ("utf8mb4_uca1400_nopad_as_ci", "accent-sensitive, case-insensitive"),
    "utf8mb4_0900_as_cs": ("utf8mb4_uca1400_nopad_as_cs", "accent- and case-sensitive"),
    "utf8mb4_0900_bin": ("utf8mb4_nopad_bin", "code point order, no padding"),
}
"""Pairs of collations, one per server kind, that order and compare strings alike."""

_TWIN_OF = {
    **{mysql: maria for mysql, (maria, _) in COLLATION_TWINS.items()},
    **{maria: mysql for mysql, (maria, _) in COLLATION_TWINS.items()},
    # MariaDB accepts the UCA 14 names with or without the character set.
    **{maria.removeprefix("utf8mb4_"): mysql for mysql, (maria, _) in COLLATION_TWINS.items()},
}
_COLLATE = re.compile(r"\bCOLLATE(=| )([A-Za-z0-9_]+)")


def server_kind(db: Database) -> str:
    """Return ``"mariadb"`` or ``"mysql"`` for the server behind ``db``."""
    version = str(db.query("SELECT VERSION()")[0][0])
    return "mariadb" if "mariadb" in version.lower() else "mysql"


def local_collations(db: Database) -> frozenset[str]:
    """Return the names of every collation the server behind ``db`` knows.

    MariaDB lists its UCA 14 collations without a character set (``uca1400_ai_ci``) and
    accepts them with one (``utf8mb4_uca1400_ai_ci``); both spellings are returned.
    """
    names = {
        str(r[0]) for r in db.query("SELECT collation_name FROM information_schema.collations")
    }
    return frozenset(names | {f"utf8mb4_{n}" for n in names if n.startswith("uca1400_")})


def twin_collation(name: str, known: Set[str]) -> str | None:
    """Return the collation to use for ``name`` on a server that knows ``known``.

    ``name`` itself when the server knows it, else its twin when the server knows that,
    else None.
    """
    if name in known:
        return name
    twin = _TWIN_OF.get(name)
    return twin if twin is not None and twin in known else None


def adapt_collations(ddl: str, table: str, known: Set[str]) -> str:
    """Rewrite every collation in ``ddl`` (one ``CREATE TABLE``) for a server knowing ``known``.

    Raises
    ------
    LinkError
        If a collation has no counterpart there. Nothing has been created yet, and the
        message names the table and the collation.
    """

    def swap(match: re.Match[str]) -> str:
        wanted = twin_collation(match.group(2), known)
        if wanted is None:
            raise LinkError(
                f"table {table}: collation {match.group(2)} does not exist on the local "
                "server, and no collation there compares strings the same way; create the "
                "local table yourself, or link into a server of the source's kind"
            )
        return f"COLLATE{match.group(1)}{wanted}"

    return _COLLATE.sub(swap, ddl)
