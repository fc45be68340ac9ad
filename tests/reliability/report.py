"""Regenerate ``docs/reliability.md``: run the reliability tests and tabulate the results.

Each row of :data:`PROMISES` names one promise the tools make under faults or hostile
input, and the tests (pytest node-id prefixes) that prove it. The script runs those
tests once with a JUnit XML report, then writes one table row per promise: how many
tests ran, how many passed, and how long they took. A promise whose tests did not
all pass is written as FAILING, so the document can never claim more than the run.

    ./scripts/reliability-report          # runs the tests, rewrites docs/reliability.md
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"

PROMISES: list[tuple[str, str, list[str]]] = [
    ("Crash and resume", "A pull or delete killed with SIGKILL at ≥ 50 seeded points, "
     "covering every step, is finished by one resume run; dj-cleaner then reclaims only "
     "the aborted copies' objects",
     ["tests/reliability/test_link_faults_kill.py"]),
    ("Crash and resume", "A connection killed server-side mid-batch, on either server, "
     "leaves a state the next run finishes",
     ["tests/reliability/test_link_faults.py::test_connection_killed"]),
    ("Crash and resume", "A pull killed inside a streamed copy (after the first chunk, "
     "before the rename, after one or two multipart parts) leaves no live key with a "
     "partial object, and one resume converges",
     ["tests/reliability/test_link_faults_stream.py"]),
    ("Crash and resume", "dj-cleaner with parallel key ranges: a range that fails makes the "
     "run delete nothing and names the range; the counts equal those of --jobs 1",
     ["tests/integration/test_cleaner_jobs.py"]),
    ("Crash and resume", "An S3 endpoint stopped mid-copy fails the pull clearly; the "
     "resume converges",
     ["tests/reliability/test_link_faults.py::test_destination_endpoint_stopped"]),
    ("Crash and resume", "Every persisted midpoint (Activated, Received mid-pull or "
     "mid-delete, delete after local removal) is finished by the next pull or delete",
     ["tests/integration/test_link_resume.py",
      "tests/reliability/test_link_faults.py::test_delete_interrupted"]),
    ("Concurrency", "Two processes pulling overlapping keys through one link: no duplicate, "
     "missing or half-copied row",
     ["tests/reliability/test_link_concurrency.py::test_two_processes"]),
    ("Concurrency", "A pull while the source side flags rows: flagged rows end Tainted or "
     "Deprecated, nothing is lost",
     ["tests/reliability/test_link_concurrency.py::test_source_flags"]),
    ("Concurrency", "dj-cleaner during inserts and a long populate transaction: the grace "
     "period and the re-check keep every live object",
     ["tests/reliability/test_cleaner_concurrency.py",
      "tests/integration/test_cleaner_rules.py::test_recheck",
      "tests/integration/test_cleaner_rules.py::test_young_orphans"]),
    ("Permissions", "The link account with exactly the README's grants is enough; a regular "
     "user cannot alter the outbound table",
     ["tests/integration/test_link_permissions.py"]),
    ("Permissions", "dj-cleaner works with SELECT on the schema (plus DELETE on ~external "
     "tables for --include-unused)",
     ["tests/reliability/test_cleaner_permissions.py"]),
    ("Hostile input", "Names with backticks, quotes or semicolons in link arguments are "
     "refused before anything is created",
     ["tests/integration/test_link_hostile.py", "tests/unit/test_mysql_errors.py"]),
    ("Hostile input", "Hostile names, malformed TOML, wrong types and huge values in the "
     "cleaner's config exit 2 with a message naming the key; nothing is deleted",
     ["tests/reliability/test_cleaner_hostile.py", "tests/unit/test_cleaner_config.py"]),
]  # fmt: skip


@dataclass
class Row:
    """The outcome of one promise's tests."""

    area: str
    promise: str
    ran: int = 0
    passed: int = 0
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        """HOLDS when every test ran and passed, NOT RUN or FAILING otherwise."""
        if self.ran == 0:
            return "NOT RUN"
        return "HOLDS" if self.passed == self.ran else "FAILING"


def node_id(case: ET.Element) -> str:
    """Turn a JUnit testcase's classname and name back into a pytest node id."""
    classname = case.get("classname", "")
    module = classname.replace(".", "/") + ".py"
    return f"{module}::{case.get('name', '')}"


def tabulate(junit: Path) -> list[Row]:
    """Aggregate a JUnit report into one row per promise."""
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    rows = []
    for area, promise, prefixes in PROMISES:
        row = Row(area, promise)
        for case in cases:
            if not any(node_id(case).startswith(p) for p in prefixes):
                continue
            if case.find("skipped") is not None:
                continue
            row.ran += 1
            row.seconds += float(case.get("time", 0))
            if case.find("failure") is None and case.find("error") is None:
                row.passed += 1
        rows.append(row)
    return rows


def render(rows: list[Row]) -> str:
    """Render the document."""
    lines = [
        "# Reliability",
        "",
        "What djbridge promises when things go wrong, and the tests that prove it against",
        "real servers (private MariaDB processes, moto S3 endpoints, real files). This file",
        "is generated by `./scripts/reliability-report`, which runs those tests; do not edit",
        "it by hand.",
        "",
        f"Last generated: {dt.date.today().isoformat()}, Python {sys.version.split()[0]}.",
        "",
        "| Area | Promise | Tests | Passed | Time | Verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.area} | {r.promise} | {r.ran} | {r.passed} | "
                     f"{r.seconds:.0f} s | {r.verdict} |")  # fmt: skip
    lines += ["", "Test files per promise:", ""]
    for area, promise, prefixes in PROMISES:
        lines.append(
            f"- {area}, {promise[:60].rstrip()}...: " + ", ".join(f"`{p}`" for p in prefixes)
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run the tests, write the document, and return pytest's exit status."""
    targets = sorted({p.split("::")[0] for _, _, prefixes in PROMISES for p in prefixes})
    targets = [t for t in targets if (ROOT / t).exists()]
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             f"--junitxml={junit}", *targets],
            cwd=ROOT,
        )  # fmt: skip
        DOC.write_text(render(tabulate(junit)))
    print(f"wrote {DOC.relative_to(ROOT)}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
