"""Fail unless PostgreSQL- and MariaDB-backed tests ran, none of them was skipped, and the conformance suite
(tests/test_conformance.py) ran on both servers.

Reads the JUnit XML of the pytest run; database tests are recognised by the markers recorded in
their properties (see tests/conftest.py, which records `db` for every test marked postgres/mariadb).
An expected failure (`xfail`, reported by JUnit as skipped with type `pytest.xfail`) ran and counts as run.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

#: the JUnit classname of the cross-engine conformance suite
CONFORMANCE = "tests.test_conformance"
DATABASES = ("postgres", "mariadb")


def _skipped(case: ET.Element) -> bool:
    skipped = case.find("skipped")
    return skipped is not None and skipped.get("type") != "pytest.xfail"


def check(report: ET.Element) -> list[str]:
    """The problems found in a pytest JUnit report (its root; empty when the database tests are complete)."""
    ran = dict.fromkeys(DATABASES, 0)
    conformance = dict.fromkeys(DATABASES, 0)
    skipped: list[str] = []
    for case in report.iter("testcase"):
        kinds = [p.get("value", "") for p in case.iter("property") if p.get("name") == "db"]
        if not kinds:
            continue
        name = f"{case.get('classname')}::{case.get('name')}"
        if _skipped(case):
            skipped.append(name)
            continue
        for kind in kinds:
            ran[kind] = ran.get(kind, 0) + 1
            if case.get("classname") == CONFORMANCE:
                conformance[kind] = conformance.get(kind, 0) + 1
    problems: list[str] = []
    if skipped:
        problems.append(f"{len(skipped)} database tests were skipped:\n  " + "\n  ".join(skipped[:20]))
    missing = [kind for kind in DATABASES if not ran[kind]]
    if missing:
        problems.append(f"no database tests ran on {', '.join(missing)}: {ran}")
    missing = [kind for kind in DATABASES if not conformance[kind]]
    if missing:
        problems.append(f"the conformance suite ({CONFORMANCE}) did not run on {', '.join(missing)}: {conformance}")
    if not problems:
        print(f"database tests ran: {ran}; conformance cases: {conformance}")
    return problems


def main(path: str) -> int:
    problems = check(ET.parse(path).getroot())  # noqa: S314 - our own pytest report
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
