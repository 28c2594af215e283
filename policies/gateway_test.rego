# METADATA
# title: Unit tests for gateway.authz (policies/gateway.rego)
# description: |
#   One or more tests per rule. Run with `gateway policy test` (regopy) or, with OPA >= 1.0,
#   `gateway policy bundle /tmp/b && opa test /tmp/b` (not `opa test policies/`: OPA's loader would put
#   data/*.yaml under data.data.*; docs/dpo-policy.md section 6). Synthetic grants are injected with
#   `with data.grants as ...`; the catalog is the real one (data.catalog). Rego v1 syntax.
package gateway.authz_test

import rego.v1

import data.gateway.authz

# ---------------------------------------------------------------------------------------------
# Fixtures: the demo users of the reference scenario
# ---------------------------------------------------------------------------------------------

anna := {
	"user": "anna", "office": "Amt für Statistik und Stadtforschung", "roles": ["analyst"],
	"purposes": ["statistik"], "districts": [], "clearance": "vertraulich",
}

sven := {
	"user": "sven", "office": "Amt für Soziale Arbeit", "roles": ["analyst"],
	"purposes": ["sozialplanung"], "districts": ["Biebrich", "Dotzheim"], "clearance": "streng_vertraulich",
}

paula := {
	"user": "paula", "office": "Stadtplanungsamt", "roles": ["planner"],
	"purposes": ["stadtplanung"], "districts": [], "clearance": "vertraulich",
}

dora := {
	"user": "dora", "office": "Datenschutz", "roles": ["dpo"],
	"purposes": ["datenschutzkontrolle"], "districts": [], "clearance": "intern",
}

aaron := {
	"user": "aaron", "office": "Revision", "roles": ["auditor"],
	"purposes": ["revision"], "districts": [], "clearance": "intern",
}

# (the gateway adds the local date, weekday and clock, Europe/Berlin: inputs.py)
ctx := {
	"time": "2025-06-01T12:00:00Z", "client_address": "127.0.0.1", "local_date": "2025-06-01",
	"local_weekday": 7, "local_time": "14:00",
}

# NOTE (regopy 1.5 workarounds; both forms mean the same to OPA):
# - the tests override input key by key (`with input.identity as ...`), never `with input as {...}`:
#   regopy crashes (SIGSEGV) when a rule that calls a builtin is evaluated under a whole-input `with`;
# - `with` values are local variables (`user := anna ... with input.identity as user`), never direct
#   references to other rules: regopy evaluates `with input.identity as anna` as undefined.

# A small synthetic grant on einwohner for anna's office: only two columns listed.
narrow_grant := {
	"id": "test.narrow",
	"dataset": "einwohner",
	"purpose": "statistik",
	"offices": ["Amt für Statistik und Stadtforschung"],
	"roles": ["analyst"],
	"columns": {
		"stadtteil": {"op": "plain", "rule": "test.narrow.plain"},
		"geburtsdatum": {"op": "generalise", "params": {"to": "year"}, "rule": "test.narrow.year"},
	},
}

# grant dates are local calendar days, both inclusive
expired_grant := object.union(narrow_grant, {"valid_until": "2025-01-01"})

future_grant := object.union(narrow_grant, {"valid_until": "2099-01-01"})

no_claim_filter_grant := object.union(narrow_grant, {"row_filters": [{"column": "stadtteil", "claim": "districts", "rule": "test.narrow.districts"}]})

# ---------------------------------------------------------------------------------------------
# Default: deny
# ---------------------------------------------------------------------------------------------

test_empty_request_releases_nothing if {
	context := ctx
	d := authz.decision with input.identity as {}
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": []}
		with input.context as context
	d.datasets == {}
	count(d.denials) == 0
}

test_default_deny_unknown_user_no_attributes if {
	context := ctx
	d := authz.decision with input.identity as {}
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	not d.allow
}

# ---------------------------------------------------------------------------------------------
# purpose_binding.purpose_not_held
# ---------------------------------------------------------------------------------------------

test_purpose_not_held if {
	user := anna
	context := ctx
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "stadtplanung"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	not d.allow
	"purpose_binding.purpose_not_held" in {x.rule | some x in d.denials}
}

test_purpose_not_held_does_not_block_public_data if {
	user := anna
	context := ctx
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "stadtplanung"}
		with input.resource as {"datasets": ["stadtteile"]}
		with input.context as context
	d.allow
	count(d.denials) == 0
}

# ---------------------------------------------------------------------------------------------
# catalog.unknown_dataset
# ---------------------------------------------------------------------------------------------

test_unknown_dataset if {
	user := anna
	context := ctx
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner", "geheim"]}
		with input.context as context
	not d.allow
	some x in d.denials
	x.rule == "catalog.unknown_dataset"
	x.dataset == "geheim"
}

# ---------------------------------------------------------------------------------------------
# purpose_binding.purpose_not_permitted
# ---------------------------------------------------------------------------------------------

test_purpose_not_permitted_by_dataset if {
	context := ctx
	ident := object.union(anna, {"purposes": ["statistik", "werbung"]})
	d := authz.decision with input.identity as ident
		with input.action as {"operation": "SelectFromColumns", "purpose": "werbung"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	not d.allow
	some x in d.denials
	x.rule == "purpose_binding.purpose_not_permitted"
	x.dataset == "einwohner"
}

test_public_dataset_permits_any_purpose if {
	context := ctx
	ident := object.union(anna, {"purposes": ["werbung"]})
	d := authz.decision with input.identity as ident
		with input.action as {"operation": "SelectFromColumns", "purpose": "werbung"}
		with input.resource as {"datasets": ["stadtteile"]}
		with input.context as context
	d.allow
}

# ---------------------------------------------------------------------------------------------
# separation_of_duties.oversight_no_personal_data
# ---------------------------------------------------------------------------------------------

test_dpo_never_reads_personal_data if {
	user := dora
	context := ctx
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "datenschutzkontrolle"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	not d.allow
	"separation_of_duties.oversight_no_personal_data" in {x.rule | some x in d.denials}
}

test_auditor_never_reads_personal_data if {
	user := aaron
	context := ctx
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "revision"}
		with input.resource as {"datasets": ["sozialleistungen"]}
		with input.context as context
	not d.allow
	"separation_of_duties.oversight_no_personal_data" in {x.rule | some x in d.denials}
}

test_oversight_applies_even_with_a_grant if {
	context := ctx
	ident := object.union(anna, {"roles": ["analyst", "dpo"]})
	d := authz.decision with input.identity as ident
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	not d.allow
	{x.rule | some x in d.denials} == {"separation_of_duties.oversight_no_personal_data"}
}

test_dpo_reads_public_data if {
	user := dora
	context := ctx
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "datenschutzkontrolle"}
		with input.resource as {"datasets": ["stadtteile"]}
		with input.context as context
	d.allow
}

# ---------------------------------------------------------------------------------------------
# abac.clearance_too_low
# ---------------------------------------------------------------------------------------------

test_clearance_too_low if {
	context := ctx
	ident := object.union(anna, {"clearance": "intern"})
	d := authz.decision with input.identity as ident
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	not d.allow
	{x.rule | some x in d.denials} == {"abac.clearance_too_low"}
}

test_clearance_missing_is_too_low if {
	context := ctx
	ident := object.remove(anna, ["clearance"])
	d := authz.decision with input.identity as ident
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	not d.allow
	"abac.clearance_too_low" in {x.rule | some x in d.denials}
}

test_clearance_higher_is_enough if {
	context := ctx
	ident := object.union(anna, {"clearance": "streng_vertraulich"})
	d := authz.decision with input.identity as ident
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	d.allow
}

# ---------------------------------------------------------------------------------------------
# abac.no_grant (office, role, purpose, validity)
# ---------------------------------------------------------------------------------------------

test_no_grant_wrong_office if {
	context := ctx
	ident := object.union(anna, {"office": "Bürgerreferat"})
	d := authz.decision with input.identity as ident
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	not d.allow

	# Bürgerreferat holds neither a grant nor a data-use agreement with the Bürgeramt
	{x.rule | some x in d.denials} == {"abac.no_grant", "sovereignty.no_data_use_agreement"}
}

test_no_grant_wrong_role if {
	context := ctx
	ident := object.union(anna, {"roles": ["planner"]})
	d := authz.decision with input.identity as ident
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	not d.allow
	{x.rule | some x in d.denials} == {"abac.no_grant"}
}

test_no_grant_for_dataset if {
	user := anna
	context := ctx
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["sozialleistungen"]}
		with input.context as context
	not d.allow
	"abac.no_grant" in {x.rule | some x in d.denials}
}

test_no_grant_expired if {
	user := anna
	context := ctx
	grants := [expired_grant]
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
	not d.allow
	{x.rule | some x in d.denials} == {"time_bound.expired"}
}

test_grant_before_expiry if {
	user := anna
	context := ctx
	grants := [future_grant]
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
	d.allow
	d.datasets.einwohner.rules == ["test.narrow"]
}

test_no_grants_at_all if {
	user := anna
	context := ctx
	grants := []
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
	not d.allow
}

# ---------------------------------------------------------------------------------------------
# Granted dataset: masks, unlisted columns, row filters, aggregate-only, max_rows
# ---------------------------------------------------------------------------------------------

test_anna_masks_from_grant if {
	user := anna
	context := ctx
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	d.allow
	cols := d.datasets.einwohner.columns
	cols.steuer_id.op == "deny"
	cols.steuer_id.rule == "einwohner.deny_tax_id"
	cols.vorname.op == "pseudonymise"
	cols.geburtsdatum.op == "generalise"
	cols.geburtsdatum.params.to == "year"
	cols.email.op == "redact"
	cols.stadtteil.op == "plain"
	d.datasets.einwohner.max_rows == 100000
	d.datasets.einwohner.aggregate_only == null
}

test_unlisted_columns_are_denied if {
	user := anna
	context := ctx
	grants := [narrow_grant]
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
	d.allow
	cols := d.datasets.einwohner.columns
	cols.stadtteil.op == "plain"
	cols.steuer_id.op == "deny"
	cols.steuer_id.rule == "test.narrow.unlisted_column"
	cols.vorname == {"op": "deny", "rule": "test.narrow.unlisted_column"}
	count(cols) == count(data.catalog.einwohner.columns)
}

test_row_filter_own_districts if {
	user := sven
	context := ctx
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "sozialplanung"}
		with input.resource as {"datasets": ["sozialleistungen"]}
		with input.context as context
	d.allow
	d.datasets.sozialleistungen.row_filters == [
		{
			"column": "stadtteil", "op": "in", "values": ["Biebrich", "Dotzheim"],
			"rule": "sozialleistungen.own_districts_only",
		},
		{
			"column": "ende", "op": "not_before_days", "values": [3650], "keep_null": true,
			"rule": "retention.deletion_period",
		},
	]
}

test_row_filter_empty_districts_matches_nothing if {
	context := ctx
	ident := object.union(sven, {"districts": []})
	d := authz.decision with input.identity as ident
		with input.action as {"operation": "SelectFromColumns", "purpose": "sozialplanung"}
		with input.resource as {"datasets": ["sozialleistungen"]}
		with input.context as context
	d.allow
	d.datasets.sozialleistungen.row_filters[0].values == []
}

test_row_filter_missing_claim_matches_nothing if {
	context := ctx
	grants := [no_claim_filter_grant]
	ident := object.remove(anna, ["districts"])
	d := authz.decision with input.identity as ident
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
	d.datasets.einwohner.row_filters == [{
		"column": "stadtteil", "op": "in", "values": [], "rule": "test.narrow.districts",
	}]
}

test_paula_aggregate_only if {
	user := paula
	context := ctx
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "stadtplanung"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	d.allow
	d.datasets.einwohner.aggregate_only == {"min_cell": 3, "rule": "einwohner.aggregate_only_min_cell"}
	d.datasets.einwohner.max_rows == null
}

# ---------------------------------------------------------------------------------------------
# open_data.public_dataset
# ---------------------------------------------------------------------------------------------

test_public_dataset_all_plain if {
	user := dora
	context := ctx
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "datenschutzkontrolle"}
		with input.resource as {"datasets": ["stadtteile"]}
		with input.context as context
	ds := d.datasets.stadtteile
	ds.rules == ["open_data.public_dataset"]
	every col, rule in ds.columns {
		rule == {"op": "plain", "rule": "open_data.public_dataset"}
		data.catalog.stadtteile.columns[col]
	}
	count(ds.columns) == count(data.catalog.stadtteile.columns)
	ds.row_filters == []
}

test_public_dataset_no_clearance_needed if {
	context := ctx
	ident := object.remove(anna, ["clearance", "office"])
	d := authz.decision with input.identity as ident
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["stadtteile"]}
		with input.context as context
	d.allow
}

# ---------------------------------------------------------------------------------------------
# Whole-request semantics: one denial refuses everything
# ---------------------------------------------------------------------------------------------

test_one_denied_dataset_refuses_the_request if {
	user := anna
	context := ctx
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["stadtteile", "sozialleistungen"]}
		with input.context as context
	not d.allow
	d.datasets.stadtteile.allow
	not d.datasets.sozialleistungen
}

# ---------------------------------------------------------------------------------------------
# Catalog default masks (columns.<col>.default_mask) and the legal basis in the decision
# ---------------------------------------------------------------------------------------------

# lists vorname without an op (the catalog default applies), nachname without an op but with its own
# rule name, plz (no default mask in the catalog) without an op, and geburtsdatum with an explicit op
default_mask_grant := object.union(narrow_grant, {"columns": {
	"vorname": {},
	"nachname": {"rule": "test.narrow.names_as_catalog"},
	"plz": {},
	"geburtsdatum": {"op": "plain", "rule": "test.narrow.plain_birth_date"},
}})

# the catalog with a default mask set on one column
with_default_mask(name, col, mask) := object.union(data.catalog, {name: object.union(
	data.catalog[name],
	{"columns": object.union(
		data.catalog[name].columns,
		{col: object.union(data.catalog[name].columns[col], {"default_mask": mask})},
	)},
)})

test_listed_without_op_gets_the_catalog_default_mask if {
	user := anna
	context := ctx
	grants := [default_mask_grant]
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
	d.allow
	cols := d.datasets.einwohner.columns
	cols.vorname == {"op": "pseudonymise", "params": {"domain": "vorname"}, "rule": "catalog.default_mask"}
	cols.nachname == {"op": "pseudonymise", "params": {"domain": "nachname"}, "rule": "test.narrow.names_as_catalog"}
}

test_listed_without_op_and_no_default_mask_is_denied if {
	user := anna
	context := ctx
	grants := [default_mask_grant]
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
	d.datasets.einwohner.columns.plz == {"op": "deny", "rule": "test.narrow.no_default_mask"}
}

test_explicit_op_wins_over_the_default_mask if {
	user := anna
	context := ctx
	grants := [default_mask_grant]
	catalog := with_default_mask("einwohner", "geburtsdatum", {"op": "deny"})
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
		with data.catalog as catalog
	d.datasets.einwohner.columns.geburtsdatum == {"op": "plain", "rule": "test.narrow.plain_birth_date"}

	# unlisted columns stay denied even where the catalog has a default mask
	d.datasets.einwohner.columns.strasse == {"op": "deny", "rule": "test.narrow.unlisted_column"}
}

test_public_dataset_column_with_default_mask_is_masked if {
	user := anna
	context := ctx
	catalog := with_default_mask("stadtteile", "einwohner_gesamt", {"op": "noise", "params": {"scale": 10}})
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["stadtteile"]}
		with input.context as context
		with data.catalog as catalog
	d.allow
	cols := d.datasets.stadtteile.columns
	cols.einwohner_gesamt == {"op": "noise", "params": {"scale": 10}, "rule": "catalog.default_mask"}
	cols.stadtteil == {"op": "plain", "rule": "open_data.public_dataset"}
}

test_decision_names_the_legal_basis if {
	user := anna
	context := ctx
	d := authz.decision with input.identity as user
		with input.action as {"operation": "SelectFromColumns", "purpose": "statistik"}
		with input.resource as {"datasets": ["einwohner", "stadtteile"]}
		with input.context as context
	d.allow
	d.datasets.einwohner.legal_basis == data.catalog.einwohner.legal_basis
	d.datasets.stadtteile.legal_basis == data.catalog.stadtteile.legal_basis
	startswith(d.datasets.einwohner.legal_basis, "§")
}
