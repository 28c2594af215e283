"""The policy engine interface and the helpers both backends share."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import ValidationError

from gateway.catalog import Catalog
from gateway.errors import PolicyUnavailable
from gateway.policy.decision import Decision, PolicyInput

DECISION_PATH = "gateway/authz/decision"


class PolicyEngine(Protocol):
    """Answers one question: may this principal, for this purpose, read these datasets, and how."""

    @property
    def version(self) -> str: ...

    def decide(self, policy_input: PolicyInput) -> Decision: ...


@dataclass(frozen=True)
class PolicyBundle:
    """The Rego modules and the data documents of one policy version."""

    modules: dict[str, str]
    data: dict[str, Any]
    version: str
    #: ``*_test.rego`` modules, kept apart: they are run by `gateway policy test`, never loaded into the
    #: decision interpreter (regopy 1.5 crashes evaluating decisions with test modules loaded)
    test_modules: dict[str, str] = field(default_factory=dict)


#: called with the bundle that goes live and the rule that made it go live (archive + audit,
#: gateway.policy.versions.activation_recorder)
ActivationHook = Callable[[PolicyBundle, str], None]


def run_activation_hook(hook: ActivationHook | None, bundle: PolicyBundle, rule: str) -> None:
    """Hand a version to ``hook`` before it decides anything; a failure refuses the version
    (PolicyUnavailable ``policy_activation_failed``): no version serves unarchived or unaudited."""
    if hook is None:
        return
    try:
        hook(bundle, rule)
    except Exception as exc:
        raise PolicyUnavailable(
            f"policy {bundle.version} could not be archived or audited ({type(exc).__name__}: {exc}), "
            "so it was not activated", code="policy_activation_failed") from exc


def load_bundle(policy_dir: Path, catalog: Catalog) -> PolicyBundle:
    """Read every ``*.rego`` and ``data/*.yaml`` under ``policy_dir``.

    The version is a content hash over modules, data and catalog, so any change gives a new version.
    """
    all_modules = {
        str(p.relative_to(policy_dir)): p.read_text(encoding="utf-8")
        for p in sorted(policy_dir.rglob("*.rego"))
    }
    modules = {n: t for n, t in all_modules.items() if not n.endswith("_test.rego")}
    test_modules = {n: t for n, t in all_modules.items() if n.endswith("_test.rego")}
    if not modules:
        raise PolicyUnavailable(f"no Rego policy modules found in {policy_dir}", code="policy_missing")
    data: dict[str, Any] = {}
    for p in sorted((policy_dir / "data").glob("*.yaml")):
        loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise PolicyUnavailable(f"policy data file {p.name} must hold a mapping", code="policy_invalid")
        data.update(loaded)
    data["catalog"] = catalog.as_policy_data()
    return PolicyBundle(
        modules=modules, data=data, version=content_version(modules, data), test_modules=test_modules
    )


def content_version(modules: dict[str, str], data: dict[str, Any]) -> str:
    """The policy version: a content hash over the (non-test) modules and the data document."""
    digest = hashlib.sha256()
    for name, text in sorted(modules.items()):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    digest.update(json.dumps(data, sort_keys=True, default=str).encode())
    return "sha256:" + digest.hexdigest()[:16]


def parse_decision(raw: Any, version: str) -> Decision:
    """Validate the engine's raw answer; anything malformed fails closed."""
    if not isinstance(raw, dict):
        raise PolicyUnavailable("the policy returned no decision document", code="policy_no_decision")
    denials = raw.get("denials")
    if isinstance(denials, list):  # OPA and regopy order sets differently: sort for a stable answer
        raw = {**raw, "denials": sorted(denials, key=lambda d: json.dumps(d, sort_keys=True))}
    try:
        return Decision.model_validate({**raw, "policy_version": version})
    except ValidationError as exc:
        raise PolicyUnavailable(
            "the policy returned a decision that does not match the decision schema "
            f"({exc.error_count()} problems); no data is released",
            code="policy_bad_decision",
        ) from exc
