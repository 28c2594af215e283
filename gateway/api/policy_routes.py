"""Policy administration API: four-eyes activation of policy versions (docs/dpo-policy.md).

* ``POST /v1/policy/proposals`` (role ``dpo``): a complete policy directory as ``files``; refused with
  ``policy_invalid`` / ``policy_tests_failed`` (422) unless it compiles, decides and passes its Rego tests.
  The answer carries the impact preview against the policy in force (recent audited queries replayed).
* ``GET /v1/policy/proposals`` and ``GET /v1/policy/proposals/{id}`` (roles ``dpo``, ``auditor``): the
  proposals; a single one with its files.
* ``POST /v1/policy/proposals/{id}/approve`` (role ``dpo``, never the proposer: decided by the Rego rule
  ``data.gateway.four_eyes.decision`` of the policy in force, fail closed): installs the files and
  reloads; the new version is in force when the answer arrives.
* ``POST /v1/policy/proposals/{id}/reject`` (role ``dpo``; the proposer may withdraw their own).
* ``GET /v1/policy`` (roles ``dpo``, ``auditor``): the version in force and the reload status.

Every call, granted or refused, is audited before the answer leaves (events ``policy_proposed``,
``policy_approved``, ``policy_activated``, ``policy_rejected``, ``policy_read``); ``rules`` names the
four-eyes rule applied, ``columns`` holds ``policy.proposal=<id>`` and ``policy.version=<version>``.
"""

import logging
import shutil
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.api import problems
from gateway.audit import AuditEvent, AuditFilter
from gateway.errors import AccessDenied, AuditUnavailable, GatewayError, PolicyRejected, PolicyUnavailable
from gateway.identity.principal import Principal
from gateway.policy.impact import replay
from gateway.policy.proposals import (
    CATALOG_FILE,
    POLICY_ROLES,
    PolicyChanged,
    Proposal,
    ProposalNotOpen,
    ProposalStore,
    check_files,
    check_writable,
    four_eyes_decision,
    install,
    now,
    write_tree,
)
from gateway.policy.reload import load_candidate
from gateway.policy.versions import VERSIONS_DIR, PolicyVersionArchive
from gateway.runtime import Runtime

log = logging.getLogger("gateway.api.policy")

READ_ROLES = POLICY_ROLES | {"auditor"}
#: audited requests replayed for the impact preview of a proposal
IMPACT_WINDOW = timedelta(days=30)
IMPACT_LIMIT = 500  # a cold decision costs 25-35 ms per version: about 30 s at most; more with the CLI

PROBLEM_RESPONSES = problems.openapi_responses(
    (400, "Invalid proposal"),
    (401, "Missing or invalid access token"),
    (403, "Your role may not do this, or you proposed this version yourself"),
    (404, "No such proposal"),
    (409, "The proposal is not open, or the policy changed since it was proposed"),
    (422, "The proposed policy does not compile or fails its tests"),
    (503, "The audit trail or the policy engine is unavailable"),
)


class ProposalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: dict[str, str] = Field(description="Path -> text: NAME.rego, data/NAME.yaml, catalog.yaml.")
    comment: str = Field(min_length=3, max_length=2000, description="What changes and why.")


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=2000)


class ProposalView(BaseModel):
    proposal: Proposal
    files: dict[str, str] | None = None
    active_version: str


class PolicyVersionView(BaseModel):
    """An archived policy version (``GET /v1/policy/versions/{version}``)."""

    version: str = Field(description="The policy version, as in decisions and audit records.")
    verified: bool = Field(description="The content hash recomputed from the archived modules and data "
                                       "equals the version.")
    manifest: dict[str, Any] = Field(description="The OPA bundle manifest (revision, roots).")
    files: dict[str, str] = Field(description="Path -> text: the Rego modules (with their tests), data.json "
                                              "(grants, agreements, regimes, networks, catalog) and .manifest.")


class PolicyStatus(BaseModel):
    active_version: str
    reload: dict[str, Any] | None
    open_proposals: int


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or uuid.uuid4().hex)


def policy_router(runtime: Runtime, principal_dependency: Callable[..., Principal]) -> APIRouter:
    router = APIRouter(prefix="/v1/policy", tags=["policy"], responses=PROBLEM_RESPONSES)
    Caller = Annotated[Principal, Depends(principal_dependency)]
    gateway = runtime.gateway
    settings = runtime.settings
    store = ProposalStore(settings.data_dir / "policy-proposals")

    def audit(caller: Principal, request: Request, *, event: str, decision: Literal["allow", "deny", "error"],
              rule: str, proposal_id: str | None = None, version: str | None = None,
              error_code: str | None = None, extra: Iterable[str] = (), more_rules: Iterable[str] = ()) -> None:
        parameters = [f"policy.proposal={proposal_id}"] if proposal_id else []
        if version:
            parameters.append(f"policy.version={version}")
        parameters.extend(extra)
        record = AuditEvent.for_principal(
            caller, request_id=_request_id(request), event=event, decision=decision,
            client_address=request.client.host if request.client else None, rules=[rule, *more_rules],
            columns=parameters,
            error_code=error_code, policy_version=gateway.policy.version,
        )
        try:
            gateway.audit.append(record)
        except AuditUnavailable:
            raise
        except Exception as exc:
            raise AuditUnavailable("the policy change could not be recorded, so it was not made",
                                   code="audit_unavailable") from exc

    def require(caller: Principal, request: Request, roles: frozenset[str], *, event: str,
                proposal_id: str | None = None) -> None:
        if not set(caller.roles) & roles:
            error = AccessDenied(
                f"this needs one of the roles {', '.join(sorted(roles))}; you have "
                f"{', '.join(caller.roles) or 'none'}", code="policy_role_required", rule="four_eyes.role")
            audit(caller, request, event=event, decision="deny", rule="four_eyes.role", proposal_id=proposal_id,
                  error_code=error.code)
            raise error

    def refuse(caller: Principal, request: Request, error: GatewayError, *, event: str, rule: str,
               proposal_id: str | None = None, version: str | None = None) -> GatewayError:
        audit(caller, request, event=event, decision="deny", rule=rule, proposal_id=proposal_id,
              version=version, error_code=error.code)
        return error

    @router.get("", response_model=PolicyStatus, summary="The policy version in force")
    def status(request: Request, caller: Caller) -> PolicyStatus:
        require(caller, request, READ_ROLES, event="policy_read")
        status_of = getattr(gateway.policy, "status", None)
        open_count = sum(1 for p in store.list() if p.state == "proposed")
        audit(caller, request, event="policy_read", decision="allow", rule="four_eyes.read")
        return PolicyStatus(active_version=gateway.policy.version,
                            reload=status_of() if callable(status_of) else None, open_proposals=open_count)

    @router.post("/proposals", response_model=ProposalView, status_code=201,
                 summary="Propose a policy version (checked, tested, impact previewed; not yet active)")
    def propose(request: Request, caller: Caller, body: Annotated[ProposalRequest, Body()]) -> ProposalView:
        require(caller, request, POLICY_ROLES, event="policy_proposed")
        try:
            check_files(body.files)
        except GatewayError as exc:
            raise refuse(caller, request, exc, event="policy_proposed", rule="four_eyes.propose") from exc
        staged = store.staging()
        try:
            write_tree(staged, body.files)
            catalog_path = staged / CATALOG_FILE if CATALOG_FILE in body.files else settings.catalog_path
            try:
                candidate = load_candidate(staged, catalog_path, run_tests=True)
            except PolicyUnavailable as exc:
                error = PolicyRejected(exc.detail, code=exc.code if exc.code.startswith("policy_") else None)
                raise refuse(caller, request, error, event="policy_proposed", rule="four_eyes.gate") from exc
            records = gateway.audit.query(
                AuditFilter(time_from=datetime.now(UTC) - IMPACT_WINDOW, newest_first=True), limit=IMPACT_LIMIT)
            # the engine in force is the baseline: no second copy of the active policy is loaded
            impact = replay(reversed(records), gateway.policy, candidate.engine, current_catalog=gateway.catalog,
                            proposed_catalog=candidate.catalog).as_dict()
            test_count = sum(1 for name in body.files if name.endswith("_test.rego"))
            proposal = Proposal(
                id=store.new_id(), version=candidate.bundle.version, base_version=gateway.policy.version,
                comment=body.comment, files=sorted(body.files), proposed_by=caller.subject,
                proposed_by_name=caller.username, proposed_at=now(),
                tests=f"compiled, decided and passed the Rego tests of {test_count} test module(s)",
                impact=impact,
            )
            # audited before it is stored: no proposal exists that the trail does not know of
            audit(caller, request, event="policy_proposed", decision="allow", rule="four_eyes.propose",
                  proposal_id=proposal.id, version=proposal.version)
            store.store(proposal, staged)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        return ProposalView(proposal=proposal, active_version=gateway.policy.version)

    @router.get("/proposals", response_model=list[Proposal], summary="All proposals, newest first")
    def proposals(request: Request, caller: Caller) -> list[Proposal]:
        require(caller, request, READ_ROLES, event="policy_read")
        found = store.list()
        audit(caller, request, event="policy_read", decision="allow", rule="four_eyes.read",
              extra=[f"policy.proposals={len(found)}"])
        return found

    @router.get("/proposals/{proposal_id}", response_model=ProposalView, summary="One proposal with its files")
    def proposal(request: Request, caller: Caller,
                 proposal_id: Annotated[str, Path(max_length=40)]) -> ProposalView:
        require(caller, request, READ_ROLES, event="policy_read", proposal_id=proposal_id)
        found = store.get(proposal_id)
        audit(caller, request, event="policy_read", decision="allow", rule="four_eyes.read",
              proposal_id=proposal_id, version=found.version)
        return ProposalView(proposal=found, files=store.files(proposal_id), active_version=gateway.policy.version)

    def not_installed(caller: Principal, request: Request, found: Proposal, exc: OSError, *,
                      event: str) -> PolicyUnavailable:
        """A policy directory the gateway cannot write: audited, answered 503, the proposal stays open."""
        where = exc.filename or settings.policy_dir
        audit(caller, request, event=event, decision="error", rule="four_eyes.activate", proposal_id=found.id,
              version=found.version, error_code="policy_not_activated")
        log.error("proposal %s not installed: %s (%s)", found.id, type(exc).__name__, where)
        return PolicyUnavailable(
            f"proposal {found.id} was not activated: the gateway cannot write {where} ({exc.strerror or exc}). "
            f"Make policy_dir ({settings.policy_dir}) and its data/ directory (and catalog_path, if the proposal "
            "holds a catalog) writable for the gateway's service account, then approve again; the proposal "
            f"stays open and {gateway.policy.version} stays in force", code="policy_not_activated")

    @router.post("/proposals/{proposal_id}/approve", response_model=ProposalView,
                 summary="Approve a proposal (not your own); it goes live at once")
    def approve(request: Request, caller: Caller, proposal_id: Annotated[str, Path(max_length=40)],
                body: Annotated[DecisionRequest | None, Body()] = None) -> ProposalView:
        require(caller, request, POLICY_ROLES, event="policy_approved", proposal_id=proposal_id)
        with store.lock:
            found = store.get(proposal_id)
            # the four-eyes rule of the policy in force decides (policies/four_eyes.rego), fail closed
            try:
                verdict = four_eyes_decision(gateway.policy, found, caller)
            except PolicyUnavailable as exc:
                audit(caller, request, event="policy_approved", decision="error", rule="separation_of_duties.four_eyes",
                      proposal_id=proposal_id, version=found.version, error_code=exc.code)
                raise
            if not verdict.allow:
                error = verdict.refusal(proposal_id)
                audit(caller, request, event="policy_approved", decision="deny", rule=verdict.rules[0],
                      more_rules=verdict.rules[1:], proposal_id=proposal_id, version=found.version,
                      error_code=error.code)
                raise error
            if found.state != "proposed":
                raise refuse(caller, request, ProposalNotOpen(
                    f"proposal {proposal_id} is {found.state}; only open proposals can be approved"),
                    event="policy_approved", rule="four_eyes.open_only", proposal_id=proposal_id,
                    version=found.version)
            if found.base_version != gateway.policy.version:
                raise refuse(caller, request, PolicyChanged(
                    f"proposal {proposal_id} was made against policy {found.base_version}, but "
                    f"{gateway.policy.version} is in force now; propose it again so its impact is previewed "
                    "against the policy in force"), event="policy_approved", rule="four_eyes.same_base",
                    proposal_id=proposal_id, version=found.version)
            source = store.policy_dir(proposal_id)
            catalog_path = source / CATALOG_FILE if (source / CATALOG_FILE).exists() else settings.catalog_path
            try:
                candidate = load_candidate(source, catalog_path, run_tests=True)
            except PolicyUnavailable as exc:
                raise refuse(caller, request, PolicyRejected(exc.detail), event="policy_approved",
                             rule="four_eyes.gate", proposal_id=proposal_id, version=found.version) from exc
            try:
                check_writable(source, settings.policy_dir, settings.catalog_path)
            except OSError as exc:
                raise not_installed(caller, request, found, exc, event="policy_approved") from None
            audit(caller, request, event="policy_approved", decision="allow", rule=verdict.rule,
                  proposal_id=proposal_id, version=candidate.bundle.version,
                  extra=[f"policy.proposed_by={found.proposed_by_name}"])
            try:
                install(source, settings.policy_dir, settings.catalog_path)
            except OSError as exc:
                raise not_installed(caller, request, found, exc, event="policy_activated") from None
            # embedded: reload; OPA: publish the bundle (opa.bundle_dir) or push it, and re-pin
            reload_now = getattr(gateway.policy, "check_now", None)
            if callable(reload_now):
                reload_now(force=True)
            activated = gateway.policy.version == candidate.bundle.version
            found = found.decided("activated" if activated else "proposed", caller.subject, caller.username,
                                  body.comment if body else "")
            store.save(found)
            audit(caller, request, event="policy_activated", decision="allow" if activated else "error",
                  rule="four_eyes.activate", proposal_id=proposal_id, version=candidate.bundle.version,
                  error_code=None if activated else "policy_not_activated")
            if not activated:
                raise PolicyUnavailable(
                    f"the files of {proposal_id} were installed but {gateway.policy.version} is still in force; "
                    "see /healthz (policy_reload.last_error)", code="policy_not_activated")
        return ProposalView(proposal=found, active_version=gateway.policy.version)

    @router.post("/proposals/{proposal_id}/reject", response_model=ProposalView,
                 summary="Reject a proposal (or withdraw your own)")
    def reject(request: Request, caller: Caller, proposal_id: Annotated[str, Path(max_length=40)],
               body: Annotated[DecisionRequest | None, Body()] = None) -> ProposalView:
        require(caller, request, POLICY_ROLES, event="policy_rejected", proposal_id=proposal_id)
        with store.lock:
            found = store.get(proposal_id)
            if found.state != "proposed":
                raise refuse(caller, request, ProposalNotOpen(
                    f"proposal {proposal_id} is {found.state}; only open proposals can be rejected"),
                    event="policy_rejected", rule="four_eyes.open_only", proposal_id=proposal_id)
            own = found.proposed_by == caller.subject
            audit(caller, request, event="policy_rejected", decision="allow",
                  rule="four_eyes.withdraw" if own else "four_eyes.reject", proposal_id=proposal_id,
                  version=found.version)
            found = found.decided("withdrawn" if own else "rejected", caller.subject, caller.username,
                                  body.comment if body else "")
            store.save(found)
        return ProposalView(proposal=found, active_version=gateway.policy.version)

    versions = PolicyVersionArchive(settings.data_dir / VERSIONS_DIR)

    @router.get("/versions/{version}", response_model=PolicyVersionView,
                summary="The rules of a policy version that was in force (from the archive)")
    def policy_version(request: Request, caller: Caller,
                       version: Annotated[str, Path(max_length=80)]) -> PolicyVersionView:
        require(caller, request, READ_ROLES, event="policy_read")
        archived = versions.get(version)  # PolicyVersionNotFound: 404 policy_version_not_found
        audit(caller, request, event="policy_read", decision="allow", rule="policy_versions.read",
              version=archived.version)
        return PolicyVersionView(version=archived.version, verified=archived.verified,
                                 manifest=archived.manifest, files=archived.files)

    return router
