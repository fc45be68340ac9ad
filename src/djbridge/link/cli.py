"""The ``dj-link`` command: run links from cron (status, pull, verify, delete-flagged).

It reads ``dj-link.toml`` (``--config-file`` to change it), whose ``[[links]]``
entries are parsed by :mod:`djbridge.link.jobs`. The local server and the stores
come from DataJoint's own configuration, loaded as DataJoint loads it when it is
imported (``dj_local_conf.json`` in the working directory, else
``~/.datajoint_config.json``, and the ``DJ_*`` variables); the source account comes
from ``LINK_USER`` and ``LINK_PASS``.

Everything is checked before any link runs: the arguments, the whole file, the
``--link`` names, the environment and, for ``delete-flagged`` without ``--yes``,
that there is a terminal to ask on. Then each selected link runs in turn; one
failing does not stop the others.

Exit status: 0 all good; 1 a link failed, or verify found differences; 2 a usage
or configuration error, or a DataJoint other than 0.14, with nothing written (no link
touched, no report). No traceback reaches the user, and no credential reaches the
output or the report.

    dj-link pull --report pull.json            # new source rows, every link
    dj-link verify --repair --link ephys
    dj-link status --no-progress
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from djbridge.cleaner.cli import RedactingFormatter
from djbridge.errors import ConfigError, UnsupportedDataJoint, redact
from djbridge.link import require_datajoint
from djbridge.link.jobs import (
    COMMANDS,
    DEFAULT_CONFIG,
    Options,
    check_environment,
    load_jobs,
    run_job,
    select,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HELP = {
    "status": "count entities per state and list the stuck ones",
    "pull": "pull source rows: new rows only, unless --all",
    "verify": "check local rows and objects against the source",
    "delete-flagged": "delete locally the rows the source flagged",
}


def common_options() -> argparse.ArgumentParser:
    """Return the options every subcommand takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c", "--config-file", default=argparse.SUPPRESS, help=f"default ./{DEFAULT_CONFIG}"
    )
    common.add_argument(
        "--link", action="append", metavar="NAME", help="run this link only (repeatable)"
    )
    common.add_argument("--report", metavar="PATH", help="write a JSON report to PATH")
    common.add_argument("--no-progress", action="store_true", help="never draw progress bars")
    common.add_argument("--log-level", type=str.upper, choices=LEVELS, default="WARNING")
    return common


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser, with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="dj-link", description="Run DataJoint links from cron: status, pull, verify."
    )
    parser.add_argument("-c", "--config-file", default=DEFAULT_CONFIG, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = [common_options()]
    for name in COMMANDS:
        sub = commands.add_parser(name, parents=parents, help=HELP[name], description=HELP[name])
        if name == "pull":
            sub.add_argument("--where", metavar="SQL", help="restrict the source rows")
            sub.add_argument(
                "--all", action="store_true", dest="all_rows", help="also stuck and lost rows"
            )
        if name == "verify":
            sub.add_argument("--repair", action="store_true", help="copy bad objects again")
        if name == "delete-flagged":
            sub.add_argument("--yes", action="store_true", help="do not ask")
    return parser


def ask(question: str) -> bool:
    """Ask ``question`` on the terminal; only ``yes`` or ``y`` agrees."""
    try:
        return input(f"{question} [yes/no] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def options_for(args: argparse.Namespace) -> Options:
    """Check the arguments that need no server, and turn them into :class:`Options`."""
    if args.report:
        parent = Path(args.report).resolve().parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise ConfigError(f"--report: cannot write to directory {str(parent)!r}")
    confirm = None
    if args.command == "delete-flagged" and not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError("delete-flagged: not on a terminal to ask; pass --yes to delete")
        confirm = ask
    return Options(
        where=getattr(args, "where", None),
        all_rows=getattr(args, "all_rows", False),
        repair=getattr(args, "repair", False),
        progress=not args.no_progress and sys.stderr.isatty(),
        confirm=confirm,
    )


def secrets_in_config() -> set[str]:
    """Return the passwords and secret keys the run may meet, to mask in library text."""
    import datajoint as dj

    if require_datajoint() == "2":
        from djbridge.link.declare2 import dj2_local_server

        found = {os.environ.get("LINK_PASS", ""), dj2_local_server().password}
        for spec in dict(dj.config.stores).values():
            secret = spec.get("secret_key") if isinstance(spec, dict) else None
            found.add(str(getattr(secret, "get_secret_value", lambda s=secret: s)() or ""))
        return {s for s in found if s}
    found = {os.environ.get("LINK_PASS", ""), str(dj.config.get("database.password") or "")}
    for spec in (dj.config.get("stores") or {}).values():
        if isinstance(spec, dict):
            found.add(str(spec.get("secret_key") or ""))
    return {s for s in found if s}


def describe(entry: dict[str, Any]) -> str:
    """Return the lines printed for one link's run."""
    head = f"[{'ok' if entry['ok'] else 'FAILED'}] {entry['name']} ({entry['command']})"
    if entry["command"] == "verify" and "summary" in entry:
        return f"{head}: {entry['summary']}"
    if entry["error"]:
        return f"{head}: {entry['error']}"
    if entry["command"] == "status":
        counts = ", ".join(f"{state} {n}" for state, n in entry["counts"].items()) or "no rows"
        return f"{head}: {counts}; {len(entry['stuck'])} stuck"
    if entry["command"] == "pull":
        return f"{head}: pulled {entry['pulled']} rows"
    return f"{head}: {'cancelled' if entry.get('cancelled') else 'deleted'} {entry['deleted']}"


def run(args: argparse.Namespace, secrets: set[str]) -> int:
    """Validate everything, then run each selected link; return the exit status."""
    require_datajoint()
    options = options_for(args)
    jobs = select(load_jobs(args.config_file), args.link)
    os.environ.setdefault("DJ_LOG_LEVEL", "WARNING")  # read when datajoint is imported
    check_environment(jobs)
    secrets.update(secrets_in_config())
    entries = []
    for job in jobs:
        entry = run_job(job, args.command, options)
        if entry["error"]:
            entry["error"] = redact(entry["error"], secrets)
        print(describe(entry), flush=True)
        entries.append(entry)
    if args.report:
        body = json.dumps({"links": entries}, indent=2, default=str)
        try:
            Path(args.report).write_text(redact(body, secrets) + "\n", encoding="utf-8")
        except OSError as err:
            print(f"dj-link: cannot write the report {args.report!r}: {err}", file=sys.stderr)
            return EXIT_FAILED
    failed = [e for e in entries if not e["ok"]]
    if failed:
        print(f"dj-link: {len(failed)} of {len(entries)} links failed", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status (0, 1 or 2)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse printed the usage message
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    secrets = {os.environ.get("LINK_PASS", "")} - {""}
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(LOG_FORMAT, secrets))
    root = logging.getLogger("djbridge")
    root.addHandler(handler)
    root.setLevel(args.log_level)
    try:
        return run(args, secrets)
    except UnsupportedDataJoint as err:
        print(f"dj-link: {err}", file=sys.stderr)
        print("dj-link: nothing was run", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as err:
        print(f"dj-link: configuration error: {redact(str(err), secrets)}", file=sys.stderr)
        print("dj-link: nothing was run", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dj-link: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except Exception as err:  # the last line of defence: one line, never a traceback
        root.debug("unexpected error", exc_info=True)
        text = redact(str(err), secrets)
        print(f"dj-link: unexpected error: {type(err).__name__}: {text}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        root.removeHandler(handler)
        handler.close()


if __name__ == "__main__":
    sys.exit(main())
