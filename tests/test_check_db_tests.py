""".ci/check_db_tests.py, run as CI runs it (a subprocess on a JUnit report), on small reports written here.

The reports have the shape pytest writes (`--junitxml`, checked against a real run of
tests/test_conformance.py): a `testcase` per test with its `db` and `conformance_cases` properties, a
`skipped` child for a skip (type `pytest.skip`), an xfail (type `pytest.xfail`) or a strict XPASS, and
an `xfail` property for a non-strict XPASS, which JUnit shows as a plain pass.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "check_db_tests.py"
CONFORMANCE = "tests.test_conformance"
BOTH = ("postgres", "mariadb")
#: the conformance cases of the reports below (as many as `conformance_cases` says)
CASES = ("test_same_result[anna-00]", "test_same_result[sven-01]", "test_released_answer[anna-00]")


def _case(name: str, *, classname: str = CONFORMANCE, dbs: tuple[str, ...] = BOTH, cases: int | None = len(CASES),
          skipped: dict[str, str] | None = None, xfail_marker: bool = False) -> ET.Element:
    case = ET.Element("testcase", classname=classname, name=name, time="0.01")
    properties = ET.SubElement(case, "properties")
    for db in dbs:
        ET.SubElement(properties, "property", name="db", value=db)
    if classname == CONFORMANCE and cases is not None:
        ET.SubElement(properties, "property", name="conformance_cases", value=str(cases))
    if xfail_marker:
        ET.SubElement(properties, "property", name="xfail", value="engines differ")
    if skipped is not None:
        ET.SubElement(case, "skipped", attrib=skipped)
    return case


def _others() -> list[ET.Element]:
    """Database tests outside the conformance suite (one an accepted xfail) and a test without a database."""
    return [
        _case("test_stream[postgres]", classname="tests.test_connector_streaming", dbs=("postgres",)),
        _case("test_stream[mariadb]", classname="tests.test_connector_streaming", dbs=("mariadb",)),
        _case("test_known_gap", classname="tests.test_connector_streaming", dbs=("postgres",),
              skipped={"type": "pytest.xfail", "message": "known gap"}),
        _case("test_plain", classname="tests.test_masks", dbs=()),
    ]


def _complete() -> list[ET.Element]:
    return [_case(name) for name in CASES] + _others()


def _check(tmp_path: Path, cases: list[ET.Element]) -> tuple[int, str]:
    suite = ET.Element("testsuite", name="pytest", tests=str(len(cases)))
    suite.extend(cases)
    root = ET.Element("testsuites", name="pytest tests")
    root.append(suite)
    report = tmp_path / "junit.xml"
    ET.ElementTree(root).write(report, encoding="utf-8", xml_declaration=True)
    done = subprocess.run([sys.executable, str(SCRIPT), str(report)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert not done.stderr, done.stderr
    return done.returncode, done.stdout


def test_a_complete_run_passes(tmp_path: Path) -> None:
    code, out = _check(tmp_path, _complete())
    assert code == 0, out
    assert "database tests ran: {'postgres': 5, 'mariadb': 4}" in out
    assert "conformance cases: 3 on each of postgres, mariadb" in out


def test_a_skipped_database_test_fails(tmp_path: Path) -> None:
    cases = _complete()
    cases[3] = _case("test_stream[postgres]", classname="tests.test_connector_streaming", dbs=("postgres",),
                     skipped={"type": "pytest.skip", "message": "no server"})
    code, out = _check(tmp_path, cases)
    assert code == 1
    assert "1 database tests were skipped:\n  tests.test_connector_streaming::test_stream[postgres]" in out


@pytest.mark.parametrize(("skipped", "xfail_marker"), [
    pytest.param({"type": "pytest.xfail", "message": "engines differ"}, False, id="xfail"),
    pytest.param({"message": "xfail-marked test passes unexpectedly"}, False, id="strict-xpass"),
    pytest.param(None, True, id="xpass"),
])
def test_an_expected_failure_in_the_conformance_suite_fails(tmp_path: Path, skipped: dict[str, str] | None,
                                                            xfail_marker: bool) -> None:
    cases = _complete()
    cases[1] = _case(CASES[1], skipped=skipped, xfail_marker=xfail_marker)
    code, out = _check(tmp_path, cases)
    assert code == 1
    assert "1 conformance cases are expected failures (xfail or XPASS)" in out
    assert f"  {CONFORMANCE}::{CASES[1]}" in out
    assert "only 2 of the 3 conformance cases ran" in out


def test_a_missing_database_fails(tmp_path: Path) -> None:
    cases = [_case(name, dbs=("postgres",)) for name in CASES]
    cases.append(_case("test_stream[postgres]", classname="tests.test_connector_streaming", dbs=("postgres",)))
    code, out = _check(tmp_path, cases)
    assert code == 1
    assert "no database tests ran on mariadb: {'postgres': 4, 'mariadb': 0}" in out
    assert f"the conformance suite ({CONFORMANCE}) did not run on mariadb" in out


def test_no_conformance_suite_fails(tmp_path: Path) -> None:
    code, out = _check(tmp_path, _others())
    assert code == 1
    assert f"the conformance suite ({CONFORMANCE}) did not run on postgres" in out
    assert f"the conformance suite ({CONFORMANCE}) did not run on mariadb" in out


def test_conformance_cases_missing_on_one_engine_fail(tmp_path: Path) -> None:
    cases = _complete()
    cases[2] = _case(CASES[2], dbs=("postgres",))
    code, out = _check(tmp_path, cases)
    assert code == 1
    assert f"1 conformance cases did not run on mariadb:\n  {CONFORMANCE}::{CASES[2]}" in out


def test_a_partly_deselected_conformance_suite_fails(tmp_path: Path) -> None:
    cases = _complete()
    del cases[0]
    code, out = _check(tmp_path, cases)
    assert code == 1
    assert "only 2 of the 3 conformance cases ran (skipped, deselected or not collected)" in out


def test_conformance_cases_without_their_count_fail(tmp_path: Path) -> None:
    cases = [_case(name, cases=None) for name in CASES] + _others()
    code, out = _check(tmp_path, cases)
    assert code == 1
    assert "the conformance cases do not record one number of cases (conformance_cases: [])" in out
