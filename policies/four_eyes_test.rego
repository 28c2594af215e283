# METADATA
# title: Unit tests for gateway.four_eyes (policies/four_eyes.rego)
# description: |
#   Run with `gateway policy test` (regopy) or, with OPA >= 1.0, `gateway policy bundle /tmp/b &&
#   opa test /tmp/b` (not `opa test policies/`: OPA's loader would put data/*.yaml under data.data.*;
#   docs/dpo-policy.md section 6). Input is overridden key by key (regopy 1.5 crashes on
#   `with input as {...}`). Rego v1 syntax.
package gateway.four_eyes_test

import rego.v1

import data.gateway.four_eyes

proposal := {"id": "prop-0123456789ab", "version": "sha256:0123456789abcdef"}

dora := {"subject": "sub-dora", "user": "dora", "roles": ["dpo"]}

dirk := {"subject": "sub-dirk", "user": "dirk", "roles": ["dpo"]}

anna := {"subject": "sub-anna", "user": "anna", "roles": ["analyst"]}

refusal_rules(decision) := {r.rule | some r in decision.refusals}

test_second_dpo_approves if {
	p := proposal
	proposer := dora
	approver := dirk
	d := four_eyes.decision with input.proposal as p with input.proposer as proposer with input.approver as approver
	d.allow == true
	d.rule == "separation_of_duties.four_eyes"
	count(d.refusals) == 0
	d.proposal_version == "sha256:0123456789abcdef"
}

test_self_approval_refused if {
	p := proposal
	proposer := dora
	approver := dora
	d := four_eyes.decision with input.proposal as p with input.proposer as proposer with input.approver as approver
	d.allow == false
	refusal_rules(d) == {"separation_of_duties.self_approval"}
}

test_self_approval_refused_even_under_another_name if {
	p := proposal
	proposer := dora
	approver := {"subject": "sub-dora", "user": "dora.zweitkonto", "roles": ["dpo"]}
	d := four_eyes.decision with input.proposal as p with input.proposer as proposer with input.approver as approver
	d.allow == false
	"separation_of_duties.self_approval" in refusal_rules(d)
}

test_approver_without_dpo_role_refused if {
	p := proposal
	proposer := dora
	approver := anna
	d := four_eyes.decision with input.proposal as p with input.proposer as proposer with input.approver as approver
	d.allow == false
	refusal_rules(d) == {"separation_of_duties.approver_not_authorised"}
}

test_auditor_may_not_approve if {
	p := proposal
	proposer := dora
	approver := {"subject": "sub-aaron", "user": "aaron", "roles": ["auditor"]}
	d := four_eyes.decision with input.proposal as p with input.proposer as proposer with input.approver as approver
	d.allow == false
	refusal_rules(d) == {"separation_of_duties.approver_not_authorised"}
}

test_approver_without_subject_refused if {
	p := proposal
	proposer := dora
	approver := {"subject": "", "user": "x", "roles": ["dpo"]}
	d := four_eyes.decision with input.proposal as p with input.proposer as proposer with input.approver as approver
	d.allow == false
	"separation_of_duties.self_approval" in refusal_rules(d)
}

test_nothing_known_is_refused if {
	p := proposal
	d := four_eyes.decision with input.proposal as p
	d.allow == false
	refusal_rules(d) == {"separation_of_duties.self_approval", "separation_of_duties.approver_not_authorised"}
}
