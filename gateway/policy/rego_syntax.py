"""Keep the policy portable to OPA >= 1.0: Rego v1 syntax only.

regopy (the embedded engine) still accepts Rego v0 rule heads such as ``deny[msg] { ... }`` or
``allow { ... }``, which OPA 1.0 refuses to load. A policy that only the embedded engine can read
would split the two backends, so every module must

* import ``rego.v1`` (OPA 0.59+ then enforces v1 syntax too, OPA 1.0 accepts the import), and
* write every rule body with ``if`` (and partial set rules with ``contains``): a line that starts a
  rule and opens its body with ``{`` without ``if``, ``contains`` or ``else`` is v0 syntax.

The check reads the text line by line (comments and strings of other lines do not matter); it is
called by ``gateway policy check`` and before any version goes live (reload, four-eyes activation).
"""

from __future__ import annotations

import re

#: the start of a rule whose body opens on the same line: name, optional ``[key]`` or ``(args)``,
#: optional ``:= value`` / ``= value`` (a plain value: ``x := {`` or ``x := [{`` open a composite
#: literal, which is v1 as well), then ``{`` at the end of the line
_RULE_HEAD = re.compile(
    r"^(?:default\s+)?[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*"
    r"(?:\[[^\]]*\]|\([^)]*\))?"
    r"(?:\s*:?=\s*[^\s{}\[\]()#][^{}\[\]()#]*?)?"
    r"\s*\{\s*(?:#.*)?$"
)
_V1_KEYWORDS = re.compile(r"\b(?:if|contains|else)\b")
_IMPORT_V1 = re.compile(r"^\s*import\s+rego\.v1\s*(?:#.*)?$", re.MULTILINE)


def rego_v1_problems(name: str, text: str) -> list[str]:
    """What keeps module ``name`` from loading on OPA >= 1.0 (empty when nothing does)."""
    problems: list[str] = []
    if not _IMPORT_V1.search(text):
        problems.append(f"{name}: add `import rego.v1` after the package line (Rego v1 syntax, portable to OPA 1.0)")
    for number, line in enumerate(text.splitlines(), start=1):
        if _RULE_HEAD.match(line) and not _V1_KEYWORDS.search(line.split("#", 1)[0]):
            problems.append(f"{name}:{number}: Rego v0 rule head `{line.strip()}`: write `... if {{` "
                            "(or `... contains x if {` for a partial set rule)")
    return problems


def modules_v1_problems(modules: dict[str, str]) -> list[str]:
    """:func:`rego_v1_problems` for every module, sorted by module name."""
    return [problem for name in sorted(modules) for problem in rego_v1_problems(name, modules[name])]
