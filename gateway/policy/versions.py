"""The archive of policy versions: which rules were in force for any past decision.

Every version that goes live (at start, on a reload, on a four-eyes activation) is written once to
``<data_dir>/policy-versions/sha256-<hex>/`` in the OPA bundle layout of :mod:`gateway.policy.bundle`:
the Rego modules (with their tests), ``data.json`` (grants, agreements, regimes, networks and the
catalog, exactly as evaluated) and ``.manifest`` (``revision`` = the version). The files are made
read-only; archiving a version that is already there changes nothing. An audit record's
``policy_version`` (``sha256:<hex>``) names the directory, and the content hash recomputed from the
archived modules and data equals that version (``ArchivedVersion.verified``).

``activation_recorder`` is the hook the policy engines call for each version that goes live: it archives
the version and appends a ``policy_activated`` audit record (rule ``startup``, ``reload.file_change``,
``reload.requested`` or ``opa.push``) before the version serves any decision.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import NotFound
from gateway.policy.bundle import MANIFEST, bundle_files, read_bundle, recomputed_version, write_bundle
from gateway.policy.engine import ActivationHook, PolicyBundle

log = logging.getLogger("gateway.policy.versions")

VERSIONS_DIR = "policy-versions"
_VERSION_RE = re.compile(r"^sha256[:-]([0-9a-f]{16})$")


class PolicyVersionNotFound(NotFound):
    code = "policy_version_not_found"
    title = "No such policy version"


@dataclass(frozen=True)
class ArchivedVersion:
    version: str
    manifest: dict[str, Any]
    files: dict[str, str] = field(repr=False)
    #: the content hash recomputed from the archived modules and data equals ``version``
    verified: bool


def directory_name(version: str) -> str:
    """``sha256:0123…`` -> ``sha256-0123…`` (no colon in file names). Unknown shapes are not found."""
    match = _VERSION_RE.match(version)
    if match is None:
        raise PolicyVersionNotFound(
            f"{version!r} is not a policy version; versions look like sha256:0123456789abcdef "
            "(the policy_version of a decision or audit record)")
    return f"sha256-{match.group(1)}"


class PolicyVersionArchive:
    """``<root>/sha256-<hex>/``: one read-only OPA bundle per version that went live."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, version: str) -> Path:
        return self.root / directory_name(version)

    def archive(self, bundle: PolicyBundle) -> Path:
        """Write ``bundle`` once (idempotent: an intact archived copy is left as it is)."""
        target = self.path(bundle.version)
        if (target / MANIFEST).exists() and self._intact(target, bundle):
            return target
        self.root.mkdir(parents=True, exist_ok=True)
        write_bundle(bundle, target, file_mode=0o444)
        return target

    def _intact(self, target: Path, bundle: PolicyBundle) -> bool:
        try:
            stored = read_bundle(target)
        except Exception:
            return False
        return recomputed_version(stored) == bundle.version and stored.test_modules == bundle.test_modules

    def get(self, version: str) -> ArchivedVersion:
        target = self.path(version)
        if not (target / MANIFEST).exists():
            raise PolicyVersionNotFound(f"policy version {version} is not in the archive ({self.root}); only "
                                        "versions that went live on this gateway are archived")
        bundle = read_bundle(target)
        files = bundle_files(bundle)
        manifest = json.loads(files[MANIFEST])
        return ArchivedVersion(version=bundle.version, manifest=manifest, files=files,
                               verified=recomputed_version(bundle) == bundle.version == _canonical(version))

    def versions(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted("sha256:" + p.name.removeprefix("sha256-") for p in self.root.iterdir()
                      if p.is_dir() and _VERSION_RE.match(p.name) and (p / MANIFEST).exists())


def _canonical(version: str) -> str:
    return "sha256:" + directory_name(version).removeprefix("sha256-")


def activation_recorder(archive: PolicyVersionArchive, append: Callable[[Any], Any]) -> ActivationHook:
    """The hook for the policy engines: archive the version, then audit ``policy_activated``.

    ``append`` is the audit store's ``append``. Either failing raises, and the engine then keeps the
    version it had (at start: does not start) - no version serves decisions that the trail does not name.
    """
    from gateway.audit import AuditEvent

    def record(bundle: PolicyBundle, rule: str) -> None:
        path = archive.archive(bundle)
        append(AuditEvent(
            request_id="policy-" + uuid.uuid4().hex, event="policy_activated", decision="allow",
            subject="system:gateway", username="gateway", rules=[rule],
            columns=[f"policy.version={bundle.version}", f"policy.archive={path.name}"],
            policy_version=bundle.version,
        ))
        log.info("policy %s archived in %s and audited (rule %s)", bundle.version, path, rule)

    return record
