"""The README gives a source admin the link account's grants, for MySQL and for PostgreSQL.

Every link2 test creates its link account with exactly these statements
(:meth:`TwoLabs.grant_link` runs them with the test's names), so the whole suite
shows that they are enough: pull, status, flagged, delete and verify, on both kinds
of source server. This test only checks that the README still says them.
"""

from __future__ import annotations

from tests.link2.twolabs import readme_grants


def test_the_readme_gives_the_link_accounts_grants_for_both_kinds_of_source() -> None:
    assert readme_grants("mysql") == [
        "CREATE USER 'djlink'@'%' IDENTIFIED BY 'secret-password'",
        "GRANT SELECT, REFERENCES ON `source\\_schema`.* TO 'djlink'@'%'",
        "GRANT ALL PRIVILEGES ON `helper\\_schema`.* TO 'djlink'@'%'",
    ]
    assert readme_grants("postgresql") == [
        "CREATE ROLE djlink LOGIN PASSWORD 'secret-password'",
        "GRANT USAGE ON SCHEMA source_schema TO djlink",
        "GRANT SELECT, REFERENCES ON ALL TABLES IN SCHEMA source_schema TO djlink",
        "CREATE SCHEMA helper_schema AUTHORIZATION djlink",
    ]
