"""Fail unless PostgreSQL- and MariaDB-backed tests ran and none of them was skipped.

Reads the JUnit XML of the pytest run; database tests are recognised by the markers recorded in
their properties (see tests/conftest.py, which records `db` for every test marked postgres/mariadb).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def main(path: str) -> int:
    tree = ET.parse(path)  # noqa: S314 - our own pytest report
    ran = {"postgres": 0, "mariadb": 0}
    skipped: list[str] = []
    for case in tree.iter("testcase"):
        kinds = [p.get("value", "") for p in case.iter("property") if p.get("name") == "db"]
        if not kinds:
            continue
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("skipped") is not None:
            skipped.append(name)
            continue
        for kind in kinds:
            ran[kind] = ran.get(kind, 0) + 1
    if skipped:
        print(f"{len(skipped)} database tests were skipped:", *skipped[:20], sep="\n  ")
        return 1
    if not ran["postgres"] or not ran["mariadb"]:
        print(f"database tests missing: {ran}")
        return 1
    print(f"database tests ran: {ran}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
