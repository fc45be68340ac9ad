r"""What a MySQL account may read, from its own ``SHOW GRANTS``.

MySQL's ``information_schema`` lists only the databases, tables and columns an
account holds some privilege on, so it cannot show what the account is missing.
The account's grants can: ``SHOW GRANTS`` (for the current user, with its active
roles expanded, as MySQL 9.7 does) names every privilege at each level. This
module parses them into :class:`Grants` and answers two questions:

* :meth:`Grants.sees_every_database`: a global ``SHOW DATABASES`` or ``SELECT``
  privilege makes every database visible; without one, a database the account
  holds nothing on is invisible, and so are the rows in it;
* :meth:`Grants.can_read`: ``SELECT`` (or ``ALL``) on ``*.*`` (unless a partial
  revoke excludes the database), on the database (a ``LIKE`` pattern such as
  ``lab\_%``, literal when ``partial_revokes`` is on), or on the table.

Column-level grants never count: a column the account cannot read is hidden, so a
table readable only in part may hold codec columns nobody can see. Only the
privileges named here count; anything else (proxy users, anonymous accounts) is
treated as absent, which errs on the side of refusing.

    grants = Grants.parse(row[0] for row in db.query("SHOW GRANTS"), literal=False)
    grants.sees_every_database()
    grants.can_read("lab", "rec"), grants.can_read_all("lab")
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_NAME = r"`(?:[^`]|``)+`"
_GRANT = re.compile(
    rf"^(?P<verb>GRANT|REVOKE) (?P<privileges>(?:[^`]|`(?:[^`]|``)*`)+?) "
    rf"ON (?P<target>\*\.\*|{_NAME}\.(?:\*|{_NAME})) (?:TO|FROM) "
)
_SPLIT = re.compile(r",\s*(?![^()]*\))")  # commas outside a column list
_READ = {"SELECT", "ALL", "ALL PRIVILEGES"}


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`")


def _privileges(text: str) -> set[str]:
    """Return the table-wide privileges of a grant (a column list makes one column-level)."""
    return {item.strip().upper() for item in _SPLIT.split(text) if "(" not in item}


@functools.lru_cache(maxsize=256)
def _like(pattern: str) -> re.Pattern[str]:
    """Compile a database grant's ``LIKE`` pattern: ``%``, ``_``, and a backslash escapes."""
    out, escaped = [], False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL)


@dataclass
class Grants:
    """An account's read privileges, parsed from ``SHOW GRANTS``.

    ``literal`` is true when the server runs with ``partial_revokes``: database
    names in grants are then names, not ``LIKE`` patterns.
    """

    literal: bool = False
    global_select: bool = False
    show_databases: bool = False
    revoked: set[str] = field(default_factory=set)  # databases a partial revoke excludes
    databases: list[str] = field(default_factory=list)  # database names or patterns
    tables: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def parse(cls, lines: Iterable[str], *, literal: bool) -> Grants:
        """Read the lines of ``SHOW GRANTS``; lines of other forms (roles, proxies) are skipped."""
        grants = cls(literal=literal)
        for line in lines:
            match = _GRANT.match(line)
            if match is None:
                continue
            privileges = _privileges(match["privileges"])
            reads = bool(privileges & _READ)
            target = match["target"]
            if match["verb"] == "REVOKE":
                if reads and target.endswith(".*") and target != "*.*":
                    grants.revoked.add(_unquote(target[:-2]))
                continue
            if target == "*.*":
                grants.global_select |= reads
                grants.show_databases |= "SHOW DATABASES" in privileges
            elif reads and target.endswith(".*"):
                grants.databases.append(_unquote(target[:-2]))
            elif reads:
                database, table = re.findall(_NAME, target)
                grants.tables.add((_unquote(database), _unquote(table)))
        return grants

    def sees_every_database(self) -> bool:
        """Return whether every database of the server is visible to the account."""
        return self.show_databases or (self.global_select and not self.revoked)

    def can_read_all(self, database: str) -> bool:
        """Return whether the account may read every table of ``database``."""
        if self.global_select and database not in self.revoked:
            return True
        if self.literal:
            return database in self.databases
        return any(_like(pattern).fullmatch(database) for pattern in self.databases)

    def can_read(self, database: str, table: str) -> bool:
        """Return whether the account may read every column of ``database.table``."""
        return (database, table) in self.tables or self.can_read_all(database)
