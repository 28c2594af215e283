"""Fail unless PostgreSQL- and MariaDB-backed tests ran, none of them was skipped, and the whole conformance
suite (tests/test_conformance.py) ran on both servers with no expected failures.

Reads the JUnit XML of the pytest run. Database tests are recognised by the markers recorded in their
properties (tests/conftest.py records `db` for every test marked postgres/mariadb). Every conformance case
also records `conformance_cases`, the number of cases the suite defines (before any deselection), and
`xfail` if it carries an xfail marker (JUnit shows a non-strict XPASS as a plain pass).

* A skipped database test is a failure. An expected failure (`xfail`, reported by JUnit as skipped with
  type `pytest.xfail`) of another database test ran and counts as run.
* In the conformance suite an xfail or XPASS is a failure: the engines must give the same answer.
* Every conformance case must have run, on both servers: as many distinct cases as `conformance_cases`
  says, so that a partly skipped, deselected (`-k`, `--deselect`) or uncollected run fails.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass

#: the JUnit classname of the cross-engine conformance suite
CONFORMANCE = "tests.test_conformance"
DATABASES = ("postgres", "mariadb")
#: the property every conformance case records: how many cases the suite defines
CASES_PROPERTY = "conformance_cases"
#: JUnit's message for a strict XPASS (reported as skipped, without a type)
XPASS_MESSAGE = "xfail-marked test passes unexpectedly"


@dataclass(frozen=True)
class Case:
    """One database test of the report."""

    name: str
    conformance: bool
    databases: tuple[str, ...]
    outcome: str  # "ran", "skipped" or "xfail" (xfail or XPASS)
    declared_cases: tuple[str, ...]


def _case(element: ET.Element) -> Case:
    properties = [(p.get("name", ""), p.get("value", "")) for p in element.iter("property")]
    return Case(
        name=f"{element.get('classname')}::{element.get('name')}",
        conformance=element.get("classname") == CONFORMANCE,
        databases=tuple(value for name, value in properties if name == "db"),
        outcome=_outcome(element, {name for name, _ in properties}),
        declared_cases=tuple(value for name, value in properties if name == CASES_PROPERTY),
    )


def _outcome(element: ET.Element, property_names: set[str]) -> str:
    skipped = element.find("skipped")
    if skipped is not None and (skipped.get("type") == "pytest.xfail" or skipped.get("message") == XPASS_MESSAGE):
        return "xfail"
    if skipped is not None:
        return "skipped"
    return "xfail" if "xfail" in property_names else "ran"


def _listed(header: str, names: list[str]) -> str:
    return f"{header}:\n  " + "\n  ".join(names[:20]) + ("\n  ..." if len(names) > 20 else "")


def _conformance_problems(cases: list[Case]) -> list[str]:
    """Every case of the suite ran, on every database; none is an expected failure."""
    problems: list[str] = []
    xfailed = sorted(c.name for c in cases if c.outcome == "xfail")
    if xfailed:
        problems.append(_listed(f"{len(xfailed)} conformance cases are expected failures (xfail or XPASS); "
                                "the engines must agree: fix the difference and remove the marker", xfailed))
    ran = [c for c in cases if c.outcome == "ran"]
    names = {c.name for c in ran}
    for kind in DATABASES:
        on_kind = {c.name for c in ran if kind in c.databases}
        if not on_kind:
            problems.append(f"the conformance suite ({CONFORMANCE}) did not run on {kind}")
        elif on_kind != names:
            problems.append(_listed(f"{len(names - on_kind)} conformance cases did not run on {kind}",
                                    sorted(names - on_kind)))
    declared = {value for c in cases for value in c.declared_cases}
    if names and (len(declared) != 1 or not next(iter(declared)).isdigit()):
        problems.append(f"the conformance cases do not record one number of cases ({CASES_PROPERTY}: "
                        f"{sorted(declared)}); see the autouse fixture in tests/test_conformance.py")
    elif names and len(names) != int(next(iter(declared))):
        problems.append(f"only {len(names)} of the {next(iter(declared))} conformance cases ran (skipped, "
                        f"deselected or not collected): run the whole {CONFORMANCE.replace('.', '/')}.py")
    return problems


def check(report: ET.Element) -> list[str]:
    """The problems found in a pytest JUnit report (its root; empty when the database tests are complete)."""
    cases = [case for case in map(_case, report.iter("testcase")) if case.databases]
    problems: list[str] = []
    skipped = [c.name for c in cases if c.outcome == "skipped"]
    if skipped:
        problems.append(_listed(f"{len(skipped)} database tests were skipped", skipped))
    ran = {kind: sum(1 for c in cases if c.outcome != "skipped" and kind in c.databases) for kind in DATABASES}
    missing = [kind for kind in DATABASES if not ran[kind]]
    if missing:
        problems.append(f"no database tests ran on {', '.join(missing)}: {ran}")
    conformance = [c for c in cases if c.conformance and c.outcome != "skipped"]
    problems.extend(_conformance_problems(conformance))
    if not problems:
        print(f"database tests ran: {ran}; conformance cases: {len(conformance)} on each of {', '.join(DATABASES)}")
    return problems


def main(path: str) -> int:
    problems = check(ET.parse(path).getroot())  # noqa: S314 - our own pytest report
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
