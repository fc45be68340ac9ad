"""The ``dj-cleaner`` command: parse flags, call :func:`djbridge.cleaner.clean`, print.

Exit status: 0 when every run succeeded (also when there was nothing to delete),
1 when any run failed or any deletion failed, 2 for a usage or configuration
error, in which case nothing was deleted. No traceback ever reaches the user; an
unexpected error is one line on standard error (the traceback goes to the log at
DEBUG level).

Logs go to standard error, or to ``--log-file``, at ``--log-level`` (default
WARNING on the terminal, INFO in a log file). No credential is ever formatted
into a message; text that comes from a library (an exception, a server's reply)
has every whole occurrence of a password or secret key masked. Names in the
summary and the report are printed exactly as configured.

    dj-cleaner --config-file lab.toml --dry-run --min-age 7d --report dry.json
    dj-cleaner --config-file lab.toml --min-age 7d --max-delete 10000
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

from djbridge.cleaner import CleanOptions, RunReport, clean, commands, load_config, redact
from djbridge.cleaner.ranges import MAX_JOBS
from djbridge.cleaner.settings import DEFAULT_CONFIG, parse_duration
from djbridge.errors import ConfigError, DjBridgeError
from djbridge.progress import human_bytes

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_ERRORS_SHOWN = 10
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
log = logging.getLogger("djbridge.cleaner")


class RedactingFormatter(logging.Formatter):
    """Mask secrets in the library text of a record: exception arguments and tracebacks.

    Messages that djbridge writes hold no secrets, and names in them stay exact.
    """

    def __init__(self, fmt: str, secrets: set[str]) -> None:
        super().__init__(fmt)
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` with its library exception arguments masked."""
        if self.secrets and isinstance(record.args, tuple):
            record.args = tuple(self._mask(arg) for arg in record.args)
        return super().format(record)

    def _mask(self, arg: object) -> object:
        if isinstance(arg, BaseException) and not isinstance(arg, DjBridgeError):
            return redact(str(arg), self.secrets)
        return arg

    def formatException(self, ei: Any) -> str:  # noqa: N802 - the logging API's name
        """Format a traceback with every secret masked."""
        return redact(super().formatException(ei), self.secrets)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (also used by the docs)."""
    parser = argparse.ArgumentParser(
        prog="dj-cleaner",
        description="Delete objects in DataJoint external stores that no ~external row "
        "references, after checks that keep every live object. Subcommands: "
        "quarantine, restore ID, purge (see dj-cleaner SUBCOMMAND --help).",
        parents=[common_parser()],
    )
    parser.add_argument(
        "-c",
        "--config-file",
        default=DEFAULT_CONFIG,
        help=f"TOML file (default ./{DEFAULT_CONFIG})",
    )
    parser.add_argument("--dry-run", action="store_true", help="report only, delete nothing")
    parser.add_argument(
        "--min-age",
        default="1d",
        metavar="DURATION",
        help="delete only objects older than this: 0, 90s, 15m, 12h, 7d (default 1d)",
    )
    parser.add_argument(
        "--include-unused",
        action="store_true",
        help="first delete ~external rows that no table references, then their objects",
    )
    parser.add_argument(
        "--max-delete",
        type=int,
        metavar="N",
        help="a run that would delete more than N objects deletes none and fails",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help=f"work on N key ranges in parallel, 1..{MAX_JOBS} (default: by round trip)",
    )
    parser.add_argument(
        "--quarantine",
        action="store_true",
        help="move the objects into the store's .dj-quarantine/ area instead of deleting them",
    )
    parser.add_argument("--report", metavar="PATH", help="write a JSON report to PATH")
    return parser


def common_parser() -> argparse.ArgumentParser:
    """Return the flags every form of the command takes: logging and progress bars."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--log-level", type=str.upper, choices=LEVELS, help="WARNING on stderr, INFO in a file"
    )
    parser.add_argument("--log-file", metavar="PATH", help="write the log to PATH, not stderr")
    parser.add_argument("--no-progress", action="store_true", help="never draw progress bars")
    return parser


def _setup_logging(args: argparse.Namespace, secrets: set[str]) -> logging.Handler:
    level = args.log_level or ("INFO" if args.log_file else "WARNING")
    try:
        handler: logging.Handler = (
            logging.FileHandler(args.log_file, encoding="utf-8")
            if args.log_file
            else logging.StreamHandler(sys.stderr)
        )
    except OSError as err:
        raise ConfigError(f"--log-file: cannot open {args.log_file!r}: {err}") from err
    handler.setFormatter(RedactingFormatter(LOG_FORMAT, secrets))
    root = logging.getLogger("djbridge")
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def _options(args: argparse.Namespace) -> CleanOptions:
    if args.max_delete is not None and args.max_delete < 0:
        raise ConfigError("--max-delete: must be 0 or more")
    if args.jobs is not None and not 1 <= args.jobs <= MAX_JOBS:
        raise ConfigError(f"--jobs: must be between 1 and {MAX_JOBS}")
    if args.report:
        parent = Path(args.report).resolve().parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise ConfigError(f"--report: cannot write to directory {str(parent)!r}")
    try:
        min_age = parse_duration(args.min_age)
    except ConfigError as err:
        raise ConfigError(f"--min-age: {err}") from None
    return CleanOptions(
        dry_run=args.dry_run,
        min_age=min_age,
        include_unused=args.include_unused,
        max_delete=args.max_delete,
        progress=False if args.no_progress else None,
        jobs=args.jobs,
        quarantine=args.quarantine,
    )


def summary(report: RunReport) -> str:
    """Return the human summary of one run, as printed after it."""
    mode = " (dry run)" if report.dry_run else ""
    where = f"{report.bucket}/{report.location}" if report.bucket else report.location
    if report.dry_run:
        deleted = f"would delete {report.to_delete} ({human_bytes(report.bytes_to_delete)})"
    elif report.quarantine_id or report.quarantined:
        deleted = (
            f"quarantined {report.quarantined} ({human_bytes(report.bytes_quarantined)}) "
            f"as batch {report.quarantine_id or '-'}"
        )
    else:
        deleted = f"deleted {report.deleted} ({human_bytes(report.bytes_deleted)} reclaimed)"
    lines = [
        f"[{report.status}] server {report.database_server}, schema {report.schema}, "
        f"store {report.store}{mode}: {report.storage_server} {where}",
        f"  scanned {report.scanned}, referenced {report.referenced}, "
        f"orphaned {report.orphaned}, {deleted}",
        f"  kept: {report.kept_young} too young, {report.kept_foreign} not DataJoint-managed, "
        f"{report.kept_rechecked} referenced again at the re-check",
        f"  missing: {report.missing} of {report.tracked} tracked objects are not in the store",
    ]
    for name, area in getattr(report, "areas", {}).items():
        lines.append(
            f"  {name} area: scanned {area['scanned']}, referenced {area['referenced']}, "
            f"orphaned {area['orphaned']}, deleted {area['deleted']} "
            f"({human_bytes(area['bytes_deleted'])})"
        )
    if report.unused_rows or report.unused_rows_deleted:
        lines.append(
            f"  unused ~external rows: {report.unused_rows} found, "
            f"{report.unused_rows_deleted} deleted"
        )
    lines.append(f"  errors: {len(report.errors) or 'none'}")
    lines += [f"    {error}" for error in report.errors[:MAX_ERRORS_SHOWN]]
    if len(report.errors) > MAX_ERRORS_SHOWN:
        lines.append(f"    ... and {len(report.errors) - MAX_ERRORS_SHOWN} more (see the report)")
    return "\n".join(lines)


def _run(args: argparse.Namespace, secrets: set[str], command: str) -> int:
    if command:
        config = load_config(args.config_file)
        secrets.update(config.secrets())
        return commands.run(command, args, config)
    options = _options(args)
    config = load_config(args.config_file)
    secrets.update(config.secrets())  # the log formatter and main() mask library text
    reports = clean(config, options)
    for report in reports:
        print(summary(report))
    if args.report:
        body = json.dumps([r.to_dict() for r in reports], indent=2)
        try:
            Path(args.report).write_text(body + "\n", encoding="utf-8")
        except OSError as err:
            print(f"dj-cleaner: cannot write the report {args.report!r}: {err}", file=sys.stderr)
            return EXIT_FAILED
    failed = [r for r in reports if not r.ok]
    if failed:
        print(f"dj-cleaner: {len(failed)} of {len(reports)} runs failed", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status (0, 1 or 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in commands.COMMANDS else ""
    if command:
        parser = commands.build_parser(command, common_parser())
        argv = argv[1:]
    else:
        parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse has printed the usage message
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    handler: logging.Handler | None = None
    secrets: set[str] = set()
    try:
        handler = _setup_logging(args, secrets)
        return _run(args, secrets, command)
    except ConfigError as err:
        print(f"dj-cleaner: configuration error: {err}", file=sys.stderr)
        print("dj-cleaner: nothing was deleted", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dj-cleaner: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except Exception as err:  # the last line of defence: one line, never a traceback
        log.debug("unexpected error", exc_info=True)
        text = redact(str(err), secrets)
        print(f"dj-cleaner: unexpected error: {type(err).__name__}: {text}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if handler is not None:
            logging.getLogger("djbridge").removeHandler(handler)
            handler.close()


if __name__ == "__main__":
    sys.exit(main())
