# METADATA
# title: Gateway access policy (reference scenario, Landeshauptstadt Wiesbaden)
# description: |
#   Decides, per request, which datasets a principal may read for the declared purpose, and how:
#   column masks, row filters, aggregate-only access, row limits. Every allow, mask and deny names
#   its rule. Input and decision schema: docs/dpo.md. Rego v1 syntax (OPA >= 1.0 and regopy).
package gateway.authz

import rego.v1

clearance_rank := {"oeffentlich": 0, "intern": 1, "vertraulich": 2, "streng_vertraulich": 3}

oversight_roles := {"dpo", "auditor"}

purpose := input.action.purpose

ident := input.identity

requested := {name | some name in input.resource.datasets}

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

is_public(name) if data.catalog[name].classification == "oeffentlich"

# (object.keys: regopy 1.5 mis-scopes `some k, v in data.x[arg]` inside functions; keep this form)
has_personal_data(name) if {
	some col in object.keys(data.catalog[name].columns)
	data.catalog[name].columns[col].class != "none"
}

dataset_permits_purpose(name) if "*" in data.catalog[name].purposes

dataset_permits_purpose(name) if purpose in data.catalog[name].purposes

cleared_for(name) if {
	clearance_rank[ident.clearance] >= clearance_rank[data.catalog[name].classification]
}

grant_matches(g) if {
	purpose == g.purpose
	purpose in ident.purposes
	office_ok(g)
	role_ok(g)
	not expired(g)
}

office_ok(g) if not g.offices

office_ok(g) if ident.office in g.offices

role_ok(g) if not g.roles

role_ok(g) if {
	some r in ident.roles
	r in g.roles
}

expired(g) if {
	g.valid_until
	input.context.time > g.valid_until
}

grants_for(name) := sort([g.id |
	some g in data.grants
	g.dataset == name
	grant_matches(g)
])

grant_by_id(id) := g if {
	some g in data.grants
	g.id == id
}

# ---------------------------------------------------------------------------------------------
# Denials: each names its rule. Any denial refuses the whole request.
# ---------------------------------------------------------------------------------------------

denials contains {
	"rule": "purpose_binding.purpose_not_held",
	"dataset": null,
	"message": concat("", ["you do not hold the purpose ", purpose, "; your purposes: ", concat(", ", ident.purposes)]),
} if {
	not purpose in ident.purposes
	some name in requested
	not is_public(name)
}

denials contains {
	"rule": "catalog.unknown_dataset",
	"dataset": name,
	"message": concat("", ["dataset ", name, " is not in the catalog"]),
} if {
	some name in requested
	not data.catalog[name]
}

denials contains {
	"rule": "purpose_binding.purpose_not_permitted",
	"dataset": name,
	"message": concat("", ["dataset ", name, " may not be used for purpose ", purpose, "; permitted purposes: ", concat(", ", data.catalog[name].purposes)]),
} if {
	some name in requested
	data.catalog[name]
	not dataset_permits_purpose(name)
}

denials contains {
	"rule": "separation_of_duties.oversight_no_personal_data",
	"dataset": name,
	"message": concat("", ["data-protection officers and auditors never read personal data; dataset ", name, " holds personal data"]),
} if {
	some name in requested
	has_personal_data(name)
	some r in ident.roles
	r in oversight_roles
}

denials contains {
	"rule": "abac.clearance_too_low",
	"dataset": name,
	"message": concat("", ["dataset ", name, " is classified ", data.catalog[name].classification, ", above your clearance ", object.get(ident, "clearance", "(none)")]),
} if {
	some name in requested
	data.catalog[name]
	not is_public(name)
	not cleared_for(name)
}

denials contains {
	"rule": "abac.no_grant",
	"dataset": name,
	"message": concat("", ["no grant lets office ", object.get(ident, "office", "(none)"), " read dataset ", name, " for purpose ", purpose]),
} if {
	some name in requested
	data.catalog[name]
	not is_public(name)
	count(grants_for(name)) == 0
}

# ---------------------------------------------------------------------------------------------
# Per-dataset treatment
# ---------------------------------------------------------------------------------------------

public_dataset(name) := {
	"allow": true,
	"rules": ["open_data.public_dataset"],
	"columns": {col: {"op": "plain", "rule": "open_data.public_dataset"} | some col in object.keys(data.catalog[name].columns)},
	"row_filters": [],
	"aggregate_only": null,
	"max_rows": null,
}

column_rule(g, col) := g.columns[col]

column_rule(g, col) := {"op": "deny", "rule": concat("", [g.id, ".unlisted_column"])} if not g.columns[col]

row_filters(g) := [{"column": f.column, "op": "in", "values": object.get(ident, f.claim, []), "rule": f.rule} |
	some f in object.get(g, "row_filters", [])
	f.claim
]

granted_dataset(name, g) := {
	"allow": true,
	"rules": [g.id],
	"columns": {col: column_rule(g, col) | some col in object.keys(data.catalog[name].columns)},
	"row_filters": row_filters(g),
	"aggregate_only": object.get(g, "aggregate_only", null),
	"max_rows": object.get(g, "max_rows", null),
}

datasets[name] := public_dataset(name) if {
	some name in requested
	is_public(name)
}

datasets[name] := granted_dataset(name, grant_by_id(grants_for(name)[0])) if {
	some name in requested
	data.catalog[name]
	not is_public(name)
	count(grants_for(name)) > 0
}

default allow := false

allow if {
	count(denials) == 0
	every name in requested {
		datasets[name].allow
	}
}

decision := {
	"allow": allow,
	"datasets": datasets,
	"denials": [d | some d in denials],
}
