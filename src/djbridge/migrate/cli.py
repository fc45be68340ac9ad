"""The ``dj-migrate`` command line: ``plan``, ``run`` and ``verify``, thin over the library.

Every command takes ``--config-file`` (default ``./dj-migrate.toml``), ``--schema NAME``
(repeatable; default every schema of the file), ``--report PATH``, ``--no-progress`` and
``--log-level``; ``run`` also takes ``--delete-extra``. Exit status: 0 all good; 1 a
blocker (plan), a failed or blocked table (run) or a difference (verify); 2 a usage or
configuration error, found before anything was written. No traceback and no credential
reaches the output or the report.

    dj-migrate plan --report plan.json
    dj-migrate run --schema lab_ephys
    dj-migrate verify
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from djbridge.cleaner.cli import RedactingFormatter
from djbridge.errors import ConfigError, DjBridgeError, redact
from djbridge.migrate import load, plan, run, verify
from djbridge.migrate.settings import DEFAULT_FILE, Settings


def parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``dj-migrate``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config-file", type=Path, default=Path(DEFAULT_FILE))
    common.add_argument(
        "--schema",
        action="append",
        default=[],
        metavar="NAME",
        help="a source schema of the file (repeatable; default all)",
    )
    common.add_argument("--report", type=Path, help="write the JSON report here")
    common.add_argument("--no-progress", action="store_true", help="draw no progress bars")
    common.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    top = argparse.ArgumentParser(
        prog="dj-migrate", description="Move DataJoint 0.14 schemas into DataJoint 2.x."
    )
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("plan", parents=[common], help="say what a run would do; write nothing")
    run_parser = commands.add_parser("run", parents=[common], help="declare and copy")
    run_parser.add_argument(
        "--delete-extra",
        action="store_true",
        help="delete destination rows whose keys left the source",
    )
    commands.add_parser("verify", parents=[common], help="compare every row and object")
    return top


def _secrets(settings: Settings | None) -> list[str]:
    if settings is None:
        return []
    out = [settings.source.password, settings.destination.password]
    out += [s.secret_key for s in settings.source_stores.values()]
    out += [s.spec.secret_key for s in settings.destination_stores.values()]
    return [s for s in out if s]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dj-migrate``; return the exit status."""
    args = parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    logging.basicConfig(level=args.log_level, handlers=[handler])
    settings: Settings | None = None
    try:
        settings = load(args.config_file, args.schema)
        handler.setFormatter(
            RedactingFormatter("%(levelname)s %(name)s: %(message)s", set(_secrets(settings)))
        )
        progress = False if args.no_progress else None
        report: dict[str, Any]
        if args.command == "plan":
            report, status = plan(settings)
        elif args.command == "run":
            report, status = run(settings, delete_extra=args.delete_extra, progress=progress)
        else:
            report, status = verify(settings, progress=progress)
    except ConfigError as err:
        print(
            f"dj-migrate: configuration error: {redact(str(err), _secrets(settings))}",
            file=sys.stderr,
        )
        print("dj-migrate: nothing was written", file=sys.stderr)
        return 2
    except DjBridgeError as err:
        print(f"dj-migrate: {redact(str(err), _secrets(settings))}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - a user sees a message, never a traceback
        text = redact(f"{type(err).__name__}: {err}", _secrets(settings))
        print(f"dj-migrate: unexpected error: {text}", file=sys.stderr)
        return 1
    text = redact(json.dumps(report, indent=2, default=str), _secrets(settings))
    if args.report:
        args.report.write_text(text + "\n", encoding="utf-8")
    print(_summary(report), file=sys.stdout)
    return status


def _summary(report: dict[str, Any]) -> str:
    lines = []
    for schema in report["schemas"]:
        lines.append(f"{schema['source']} -> {schema['destination']}")
        for table in schema["tables"]:
            fields = {k: v for k, v in table.items() if k not in ("table", "definition")}
            brief = ", ".join(
                f"{k}={len(v) if isinstance(v, list) else v}"
                for k, v in fields.items()
                if v not in (None, [], {}, 0)
            )
            lines.append(f"  {table['table']}: {brief or 'nothing to do'}")
    lines.append(f"{report['command']}: {'ok' if report['ok'] else 'NOT ok'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
