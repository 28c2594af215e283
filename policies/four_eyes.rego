# METADATA
# title: Four-eyes approval of policy versions (separation of duties)
# description: |
#   Decides whether a person may approve a proposed policy version: nobody approves their own change,
#   and only holders of an approver role approve at all. Asked by the gateway's approve endpoint
#   (POST /v1/policy/proposals/{id}/approve) through the same policy engine as every access decision
#   (embedded regopy or OPA: data.gateway.four_eyes.decision); the rule names below appear in the audit
#   record of the approval or refusal. Input and decision: docs/dpo-policy.md. Rego v1 syntax.
package gateway.four_eyes

import rego.v1

# roles whose holders may approve a policy version
approver_roles := {"dpo"}

# input:
#   {"proposal": {"id": "prop-…", "version": "sha256:…"},
#    "proposer": {"subject": "<sub>", "user": "dora"},
#    "approver": {"subject": "<sub>", "user": "dirk", "roles": ["dpo"]}}

refusals contains {
	"rule": "separation_of_duties.self_approval",
	"message": concat("", [
		"you proposed ", input.proposal.id, " yourself; a second authorised person must approve it ",
		"(four-eyes principle)",
	]),
} if {
	input.approver.subject == input.proposer.subject
}

# an approver without a stable subject cannot be told apart from the proposer: refused as well
refusals contains {
	"rule": "separation_of_duties.self_approval",
	"message": "the approval carries no subject, so it cannot be told apart from the proposer's",
} if {
	not approver_identified
}

refusals contains {
	"rule": "separation_of_duties.approver_not_authorised",
	"message": concat("", [
		"approving a policy version needs one of the roles ", concat(", ", sort(approver_roles)),
	]),
} if {
	not approver_authorised
}

approver_identified if {
	is_string(input.approver.subject)
	input.approver.subject != ""
}

approver_authorised if {
	some role in input.approver.roles
	role in approver_roles
}

default allow := false

allow if {
	approver_identified
	approver_authorised
	count(refusals) == 0
}

decision := {
	"allow": allow,
	"rule": "separation_of_duties.four_eyes",
	"refusals": [r | some r in refusals],
	"proposal_version": object.get(input, ["proposal", "version"], null),
}
