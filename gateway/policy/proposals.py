"""Four-eyes activation: a policy version goes live only after a second authorised person approves it.

A proposal is a complete policy directory (``*.rego`` modules, ``data/*.yaml``, optionally
``catalog.yaml``) sent by a DPO. It is stored under ``<data_dir>/policy-proposals/<id>/`` only if it
passes the same gate as a reload (it compiles, gives a valid decision, its Rego tests pass), together with
the impact preview against the policy in force. Another person with a policy role approves it, and only
then are its files installed into the policy directory and the policy reloaded. Who may approve is
decided by the Rego rule ``data.gateway.four_eyes.decision`` (``policies/four_eyes.rego``) of the policy
*in force* - never the proposal's own copy - through the same engine as every access decision:
``separation_of_duties.self_approval`` (nobody approves their own change: ``self_approval_refused``)
and ``separation_of_duties.approver_not_authorised``. If that rule cannot be evaluated (undefined,
engine failure, malformed answer) no approval happens (``four_eyes_unavailable``). A proposal reviewed
against another version than the one in force cannot be approved (``policy_changed_since_proposal``):
propose again. Every step is audited by the API
layer (events ``policy_proposed``, ``policy_approved``, ``policy_activated``, ``policy_rejected``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import AccessDenied, BadRequest, Conflict, NotFound, PolicyUnavailable
from gateway.identity.principal import Principal

#: roles that may propose, approve and reject policy versions
POLICY_ROLES = frozenset({"dpo"})
MAX_TOTAL_BYTES = 2_000_000
_REGO_PATH_RE = re.compile(r"^(?:[A-Za-z0-9_\-]+/)*[A-Za-z0-9_\-]+\.rego$")
_DATA_PATH_RE = re.compile(r"^data/[A-Za-z0-9_\-]+\.yaml$")
CATALOG_FILE = "catalog.yaml"


#: the four-eyes decision in the policy (policies/four_eyes.rego)
FOUR_EYES_PATH = "gateway/four_eyes/decision"
#: rule names of the four-eyes policy and the problem code each refusal gets
SELF_APPROVAL_RULE = "separation_of_duties.self_approval"
NOT_AUTHORISED_RULE = "separation_of_duties.approver_not_authorised"
_REFUSAL_CODES = {SELF_APPROVAL_RULE: "self_approval_refused", NOT_AUTHORISED_RULE: "approver_not_authorised"}


class ProposalNotOpen(Conflict):
    code = "proposal_not_open"
    title = "The proposal is no longer open"


class PolicyChanged(Conflict):
    code = "policy_changed_since_proposal"
    title = "The policy in force changed since the proposal"


class Proposal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    state: Literal["proposed", "activated", "rejected", "withdrawn"] = "proposed"
    version: str = Field(description="Content hash of the proposed policy (as reported in decisions).")
    base_version: str = Field(description="The policy version in force when it was proposed.")
    comment: str
    files: list[str]
    proposed_by: str = Field(description="Subject (sub) of the proposer.")
    proposed_by_name: str
    proposed_at: datetime
    tests: str = Field(description="Summary of the Rego test run.")
    impact: dict[str, Any] = Field(default_factory=dict, description="Impact preview (gateway policy diff).")
    decided_by: str | None = None
    decided_by_name: str | None = None
    decided_at: datetime | None = None
    decision_comment: str | None = None

    def decided(self, state: str, subject: str, username: str, comment: str) -> Proposal:
        """This proposal after a decision by ``username`` (``subject``)."""
        return self.model_copy(update={"state": state, "decided_by": subject, "decided_by_name": username,
                                       "decided_at": now(), "decision_comment": comment})


class FourEyesRefusal(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule: str
    message: str


class FourEyesDecision(BaseModel):
    """The answer of ``data.gateway.four_eyes.decision``."""

    model_config = ConfigDict(frozen=True)

    allow: bool
    rule: str = Field(description="The rule that approves (separation_of_duties.four_eyes).")
    refusals: tuple[FourEyesRefusal, ...] = ()

    @property
    def rules(self) -> list[str]:
        """The rules to audit: the refusals' (self-approval first), else the approving rule."""
        names = sorted({r.rule for r in self.refusals}, key=lambda n: (n != SELF_APPROVAL_RULE, n))
        return names or [self.rule]

    def refusal(self, proposal_id: str) -> AccessDenied:
        """The problem to answer with when ``allow`` is false."""
        rules = self.rules
        messages = sorted({r.message for r in self.refusals}) or [
            f"the four-eyes rule {self.rule} does not let you approve {proposal_id}"]
        return AccessDenied("; ".join(messages) + f" (rule {rules[0]})",
                            code=_REFUSAL_CODES.get(rules[0], "approval_refused"), rule=rules[0],
                            extra={"rules": rules})


def four_eyes_input(proposal: Proposal, approver: Principal) -> dict[str, Any]:
    """The input of the four-eyes rule: who proposed which version, and who wants to approve it."""
    return {
        "proposal": {"id": proposal.id, "version": proposal.version, "base_version": proposal.base_version},
        "proposer": {"subject": proposal.proposed_by, "user": proposal.proposed_by_name},
        "approver": {"subject": approver.subject, "user": approver.username, "roles": list(approver.roles)},
    }


def _unavailable(detail: str) -> PolicyUnavailable:
    return PolicyUnavailable(f"{detail}; nothing is approved until the four-eyes rule can decide "
                             "(policies/four_eyes.rego, data.gateway.four_eyes.decision)",
                             code="four_eyes_unavailable")


#: a self-approval every policy version's four-eyes rule must refuse before it may go live
_SELF_APPROVAL_PROBE: dict[str, Any] = {
    "proposal": {"id": "prop-probe", "version": "sha256:probe", "base_version": "sha256:probe"},
    "proposer": {"subject": "probe-subject", "user": "probe"},
    "approver": {"subject": "probe-subject", "user": "probe", "roles": ["dpo"]},
}


def require_four_eyes_rule(engine: object, version: str) -> None:
    """Refuse a policy version whose four-eyes rule is missing, malformed or lets a DPO approve their own
    change: once in force it would decide every later approval (raises PolicyUnavailable)."""
    evaluate = getattr(engine, "evaluate", None)
    raw = evaluate(FOUR_EYES_PATH, _SELF_APPROVAL_PROBE) if callable(evaluate) else None
    try:
        decision = FourEyesDecision.model_validate(raw) if raw is not None else None
    except ValidationError:
        decision = None
    if decision is None or decision.allow or SELF_APPROVAL_RULE not in decision.rules:
        raise PolicyUnavailable(
            f"policy {version} has no working four-eyes rule: data.gateway.four_eyes.decision must exist and "
            f"refuse a self-approval with {SELF_APPROVAL_RULE} (keep policies/four_eyes.rego)",
            code="policy_invalid")


def four_eyes_decision(engine: object, proposal: Proposal, approver: Principal) -> FourEyesDecision:
    """Ask the policy in force whether ``approver`` may approve ``proposal``. Fails closed: an engine that
    cannot evaluate the rule, an undefined or malformed answer, or an answer that allows despite refusals
    raise PolicyUnavailable (``four_eyes_unavailable``)."""
    evaluate = getattr(engine, "evaluate", None)
    if not callable(evaluate):
        raise _unavailable(f"the policy engine {type(engine).__name__} cannot evaluate the four-eyes rule")
    try:
        raw = evaluate(FOUR_EYES_PATH, four_eyes_input(proposal, approver))
    except PolicyUnavailable as exc:
        raise _unavailable(f"the four-eyes rule could not be evaluated ({exc.detail})") from exc
    if raw is None:
        raise _unavailable("the policy in force does not define the four-eyes rule")
    try:
        decision = FourEyesDecision.model_validate(raw)
    except ValidationError as exc:
        raise _unavailable(f"the four-eyes rule answered with a malformed decision ({exc.error_count()} "
                           "problems)") from exc
    if decision.allow and decision.refusals:
        raise _unavailable("the four-eyes rule both allows and refuses")
    return decision


def check_files(files: dict[str, str]) -> None:
    """Refuse paths outside the policy layout and oversized proposals (BadRequest names the file)."""
    if not files:
        raise BadRequest("a proposal needs the policy's files: *.rego modules and data/*.yaml",
                         code="proposal_empty")
    total = 0
    for name, text in files.items():
        if not (_REGO_PATH_RE.match(name) or _DATA_PATH_RE.match(name) or name == CATALOG_FILE):
            raise BadRequest(
                f"file {name!r} is not part of a policy: use NAME.rego, data/NAME.yaml or catalog.yaml "
                "(letters, digits, _ and - only)", code="proposal_bad_file")
        total += len(text.encode("utf-8"))
    if total > MAX_TOTAL_BYTES:
        raise BadRequest(f"the proposal is {total:,} bytes; at most {MAX_TOTAL_BYTES:,} are accepted",
                         code="proposal_too_large")
    if not any(name.endswith(".rego") and not name.endswith("_test.rego") for name in files):
        raise BadRequest("a proposal needs at least one policy module (*.rego)", code="proposal_empty")
    if not any(name.endswith("_test.rego") for name in files):
        # the gate runs the proposal's own tests: without any, it would check nothing
        raise BadRequest("a proposal must carry its Rego unit tests (*_test.rego with test_ rules); "
                         "add the test modules of the policy directory", code="proposal_without_tests")


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


class ProposalStore:
    """Proposals on disk: ``<root>/<id>/proposal.json`` and ``<root>/<id>/policy/`` (the files)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()  # one approval/rejection at a time

    def new_id(self) -> str:
        return "prop-" + uuid.uuid4().hex[:12]

    def staging(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))

    def store(self, proposal: Proposal, staged: Path) -> None:
        """Move the staged policy directory into place and write the proposal's metadata."""
        target = self.root / proposal.id
        target.mkdir(parents=True)
        os.replace(staged, target / "policy")
        self.save(proposal)

    def save(self, proposal: Proposal) -> None:
        path = self.root / proposal.id / "proposal.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(proposal.model_dump_json(indent=2), encoding="utf-8")
        os.replace(tmp, path)

    def get(self, proposal_id: str) -> Proposal:
        if not re.fullmatch(r"prop-[0-9a-f]{12}", proposal_id):
            raise NotFound(f"there is no policy proposal {proposal_id!r}", code="proposal_not_found")
        path = self.root / proposal_id / "proposal.json"
        if not path.exists():
            raise NotFound(f"there is no policy proposal {proposal_id!r}", code="proposal_not_found")
        return Proposal.model_validate(json.loads(path.read_text(encoding="utf-8")))

    def policy_dir(self, proposal_id: str) -> Path:
        return self.root / proposal_id / "policy"

    def files(self, proposal_id: str) -> dict[str, str]:
        base = self.policy_dir(proposal_id)
        return {str(p.relative_to(base)): p.read_text(encoding="utf-8")
                for p in sorted(base.rglob("*")) if p.is_file()}

    def list(self) -> list[Proposal]:
        if not self.root.exists():
            return []
        found = [self.get(p.name) for p in self.root.iterdir()
                 if p.is_dir() and re.fullmatch(r"prop-[0-9a-f]{12}", p.name) and (p / "proposal.json").exists()]
        return sorted(found, key=lambda p: p.proposed_at, reverse=True)


def install(source: Path, policy_dir: Path, catalog_path: Path) -> None:
    """Make ``policy_dir`` hold exactly the proposal's modules and data (and its catalog, if it has one).

    Each file is written to a temporary name and renamed into place; modules and data files the
    proposal does not contain are removed. The reloader sees the change and re-checks it anyway.
    """
    wanted = {str(p.relative_to(source)) for p in source.rglob("*") if p.is_file()}
    for old in list(policy_dir.rglob("*.rego")) + list((policy_dir / "data").glob("*.yaml")):
        if str(old.relative_to(policy_dir)) not in wanted:
            old.unlink()
    for name in sorted(wanted):
        src = source / name
        target = catalog_path if name == CATALOG_FILE else policy_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, target)


def check_writable(source: Path, policy_dir: Path, catalog_path: Path) -> None:
    """Raise OSError unless ``install`` can write every directory it would touch (checked before the
    approval is recorded, so a read-only ``policy_dir`` refuses the approval instead of half-doing it)."""
    targets = {policy_dir, policy_dir / "data"}
    if (source / CATALOG_FILE).exists():
        targets.add(catalog_path.parent)
    for directory in sorted(targets):
        if not directory.exists():
            continue
        try:
            fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=directory)
        except OSError as exc:  # name the directory, not the probe file
            raise OSError(exc.errno, exc.strerror, str(directory)) from exc
        os.close(fd)
        os.unlink(probe)


def now() -> datetime:
    return datetime.now(UTC)
