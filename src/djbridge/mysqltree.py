"""A private Oracle MySQL server tree, unpacked from Debian's packages, never installed.

No registry reachable from a Debian 12 machine ships Oracle MySQL for it: only Debian's
unstable suite ("sid") carries ``mysql-server-core`` (9.7 today), built against a newer C
library than the system's. This module makes such a server usable without touching the
system, for the test fixtures and benchmarks (:class:`djbridge.sandbox.MySQL`):

1. a private apt configuration reads sid's package index into the tree's own folder, with
   an empty dpkg status, so the system's packages are neither seen nor changed;
2. the dependency closure of ``mysql-server-core`` is resolved afresh from that index
   (sid renames libraries, e.g. ``libicu78`` to ``libicu79``), leaving out what ``mysqld``
   never loads (perl, curl, fido2, mecab, tirpc, the full protobuf);
3. each package is downloaded by name and unpacked with ``dpkg-deb -x`` into one tree;
4. ``ld.so --list`` checks that every library the server needs resolves *inside* the tree.

The server then runs through the tree's own dynamic loader (:func:`command`). A package
that cannot be had, or a library that does not resolve, is a :class:`MySQLTreeError`
naming it; every network step has a timeout, so nothing hangs.

    from djbridge.mysqltree import ensure_tree, command
    tree = ensure_tree()                    # ~/.cache/djbridge/mysql-sid, fetched once
    argv = command(tree, "--version")       # [loader, --library-path, L, mysqld, --version]

Run ``python -m djbridge.mysqltree`` to fetch it (``./scripts/setup`` does).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from djbridge.errors import DjBridgeError

log = logging.getLogger(__name__)

SUITE_LINE = "deb http://deb.debian.org/debian sid main"
ROOT_PACKAGE = "mysql-server-core"
LIBDIR = "usr/lib/x86_64-linux-gnu"
LOADER = "ld-linux-x86-64.so.2"
COMPLETE = ".complete"
NETWORK_TIMEOUT = 600
"""Seconds any one apt call may take (the index is 11 MB, the packages 45 MB)."""

NEVER_LOADED = re.compile(r"^(perl|libperl|perl-|libcurl|libfido2|libmecab|libtirpc|libprotobuf\d)")
"""Dependencies of the package that ``mysqld`` itself never loads, and their subtrees."""


class MySQLTreeError(DjBridgeError):
    """The private MySQL tree could not be fetched, unpacked or checked."""


def default_tree() -> Path:
    """Return where the tree lives: ``$DJB_MYSQL_TREE``, else the user's cache folder."""
    explicit = os.environ.get("DJB_MYSQL_TREE")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "djbridge" / "mysql-sid"


def libdir(tree: Path) -> Path:
    """Return the tree's library folder (sid has a merged ``/usr``)."""
    return tree / LIBDIR


def mysqld(tree: Path) -> Path:
    """Return the path of the unpacked ``mysqld``."""
    return tree / "usr" / "sbin" / "mysqld"


def command(tree: Path, *args: str) -> list[str]:
    """Return the argv that runs the tree's ``mysqld`` through the tree's own loader."""
    lib = libdir(tree)
    return [str(lib / LOADER), "--library-path", str(lib), str(mysqld(tree)), *args]


def environment(tree: Path) -> dict[str, str]:
    """Return the environment for the tree's programs (C locale, the tree's gconv)."""
    return {**os.environ, "LC_ALL": "C", "GCONV_PATH": str(libdir(tree) / "gconv")}


class PrivateApt:
    """apt-get and apt-cache on sid's index, kept in ``folder``, blind to the system."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (folder / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        (folder / "sources.list").write_text(SUITE_LINE + "\n")
        self.options = [
            f"-oDir::Etc::SourceList={folder / 'sources.list'}",
            "-oDir::Etc::SourceParts=/dev/null",
            f"-oDir::State::Lists={folder / 'lists'}",
            f"-oDir::Cache={folder / 'cache'}",
            "-oDir::State::status=/dev/null",
            "-oDebug::NoLocking=1",
            "-oAcquire::Retries=2",
            "-oAcquire::http::Timeout=30",
        ]
        if os.geteuid() == 0:
            self.options.append("-oAPT::Sandbox::User=root")

    def run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        """Run ``tool`` with the private options; a failure names the call."""
        argv = [tool, *self.options, *args]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=NETWORK_TIMEOUT, cwd=cwd
            )
        except FileNotFoundError as err:
            raise MySQLTreeError(f"{tool} is not available on this machine") from err
        except subprocess.TimeoutExpired as err:
            raise MySQLTreeError(f"{tool} {' '.join(args[:2])} did not finish in time") from err
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise MySQLTreeError(f"{tool} {' '.join(args)} failed: {' / '.join(tail)}")
        return done.stdout

    def update(self) -> None:
        """Read sid's package index into the private folder."""
        self.run("apt-get", "-q", "update")

    def depends(self, names: Iterable[str]) -> dict[str, list[str]]:
        """Return each package's hard dependencies (Depends, Pre-Depends), one name each.

        Of alternatives the first is taken, and a virtual package is replaced by its
        first provider, as apt itself would.
        """
        text = self.run(
            "apt-cache",
            "depends",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            *names,
        )
        return parse_depends(text)

    def download(self, names: Iterable[str], into: Path) -> list[Path]:
        """Download the packages by name into ``into``; return the ``.deb`` files."""
        wanted = sorted(names)
        try:
            self.run("apt-get", "-q", "download", *wanted, cwd=into)
        except MySQLTreeError as err:
            missing = [n for n in wanted if not any(into.glob(f"{n}_*.deb"))]
            raise MySQLTreeError(
                f"cannot download {', '.join(missing) or 'the packages'} from Debian sid: {err}"
            ) from err
        return sorted(into.glob("*.deb"))


def parse_depends(text: str) -> dict[str, list[str]]:
    """Parse ``apt-cache depends`` output into ``{package: [dependency, ...]}``."""
    result: dict[str, list[str]] = {}
    current: list[str] = []
    pending_virtual = False
    in_alternatives = False
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            current = result.setdefault(line.strip(), [])
            pending_virtual = in_alternatives = False
            continue
        stripped = line.strip()
        if stripped.startswith(("Depends:", "PreDepends:", "|Depends:", "|PreDepends:")):
            name = stripped.split(":", 1)[1].strip()
            skip = in_alternatives  # an earlier alternative was taken already
            in_alternatives = stripped.startswith("|")
            if skip:
                pending_virtual = False
                continue
            if name.startswith("<") and name.endswith(">"):
                pending_virtual = True
                continue
            pending_virtual = False
            current.append(name.split(":")[0])
        elif pending_virtual and line.startswith("    "):
            current.append(stripped.split(":")[0])
            pending_virtual = False
    return result


def closure(apt: PrivateApt, root: str = ROOT_PACKAGE) -> set[str]:
    """Return ``root`` and every package it needs at run time, resolved level by level."""
    seen = {root}
    frontier = [root]
    while frontier:
        deps = apt.depends(frontier)
        missing = [name for name in frontier if name not in deps]
        if missing:
            raise MySQLTreeError(f"Debian sid has no package {', '.join(missing)}")
        frontier = []
        for names in deps.values():
            for name in names:
                if name not in seen and not NEVER_LOADED.match(name):
                    seen.add(name)
                    frontier.append(name)
    return seen


def unresolved(tree: Path) -> list[str]:
    """Return the libraries ``mysqld`` needs that do not resolve inside the tree."""
    lib = libdir(tree)
    done = subprocess.run(
        [str(lib / LOADER), "--library-path", str(lib), "--list", str(mysqld(tree))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    bad = []
    inside = str(tree.resolve())
    for line in done.stdout.splitlines():
        if "=>" not in line:
            continue
        name, _, target = line.strip().partition("=>")
        path = target.strip().split(" (")[0]
        if "not found" in target or not str(Path(path).resolve()).startswith(inside):
            bad.append(name.strip())
    if done.returncode != 0 and not bad:
        bad.append(f"(ld.so exited {done.returncode}: {done.stderr.strip()[-200:]})")
    return bad


def version(tree: Path) -> str:
    """Return ``mysqld --version`` of the tree, e.g. ``mysqld  Ver 9.7.4 ...``."""
    done = subprocess.run(
        command(tree, "--version"), capture_output=True, text=True, env=environment(tree)
    )
    return done.stdout.strip()


def fetch(tree: Path) -> Path:
    """Fetch, unpack and check a fresh tree at ``tree`` (replacing an incomplete one)."""
    tree.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mysql-sid-", dir=tree.parent))
    try:
        apt = PrivateApt(work / "apt")
        apt.update()
        names = closure(apt)
        log.info("mysql tree: %d packages: %s", len(names), " ".join(sorted(names)))
        debs = work / "debs"
        debs.mkdir()
        files = apt.download(names, debs)
        staged = work / "tree"
        for deb in files:
            subprocess.run(
                ["dpkg-deb", "-x", str(deb), str(staged)], check=True, capture_output=True
            )
        if not mysqld(staged).is_file():
            raise MySQLTreeError(f"{ROOT_PACKAGE} did not unpack a usr/sbin/mysqld")
        (staged / COMPLETE).write_text("\n".join(sorted(names)) + "\n")
        if tree.exists():
            shutil.rmtree(tree)
        staged.rename(tree)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bad = unresolved(tree)
    if bad:
        shutil.rmtree(tree, ignore_errors=True)
        raise MySQLTreeError(
            f"mysqld from Debian sid needs libraries the tree lacks: {', '.join(bad)}"
        )
    return tree


def ensure_tree(tree: Path | None = None) -> Path:
    """Return a complete tree, fetching it first if it is missing or incomplete."""
    tree = tree or default_tree()
    if (tree / COMPLETE).is_file() and mysqld(tree).is_file():
        return tree
    return fetch(tree)


def main() -> int:
    """Fetch the tree if needed and print where it is (the body of ``python -m``)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        tree = ensure_tree()
    except MySQLTreeError as err:
        print(f"setup: {err}", file=sys.stderr)
        return 1
    print(f"{tree}: {version(tree)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
