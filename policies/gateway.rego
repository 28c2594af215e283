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

# a grant applies to the person and purpose (time aside) ...
grant_applies(g) if {
	purpose == g.purpose
	purpose in ident.purposes
	office_ok(g)
	role_ok(g)
}

# ... and matches when it is also in force now
grant_matches(g) if {
	grant_applies(g)
	not expired(g)
	not not_yet_valid(g)
	not outside_office_hours(g)
}

office_ok(g) if not g.offices

office_ok(g) if ident.office in g.offices

role_ok(g) if not g.roles

role_ok(g) if {
	some r in ident.roles
	r in g.roles
}

# grant validity: dates "YYYY-MM-DD", local calendar days (Europe/Berlin), both ends inclusive, compared
# with context.local_date. A malformed date, or an input without local_date, leaves the grant not in force.
date_pattern := `^[0-9]{4}-[0-9]{2}-[0-9]{2}$`

expired(g) if {
	"valid_until" in object.keys(g)
	not valid_until_ok(g)
}

valid_until_ok(g) if {
	regex.match(date_pattern, g.valid_until)
	today <= g.valid_until
}

not_yet_valid(g) if {
	"valid_from" in object.keys(g)
	not valid_from_ok(g)
}

valid_from_ok(g) if {
	regex.match(date_pattern, g.valid_from)
	g.valid_from <= today
}

format_date(v) := v if is_string(v)

format_date(v) := "(not a date)" if not is_string(v)

# office hours are local time; the gateway puts the local weekday (Monday = 1) and "HH:MM" into the input
outside_office_hours(g) if {
	g.office_hours
	not input.context.local_weekday in g.office_hours.days
}

outside_office_hours(g) if {
	g.office_hours
	input.context.local_time < g.office_hours.from
}

outside_office_hours(g) if {
	g.office_hours
	input.context.local_time >= g.office_hours.until
}

# grants that apply to the person and purpose but are not in force now
# per requested dataset, computed once per request (rules are memoised; functions are not)
applicable_grants[name] := [g |
	some g in data.grants
	g.dataset == name
	grant_applies(g)
] if {
	some name in requested
}

# --- data sovereignty: data-use agreements ---------------------------------------------------

# the local calendar day (Europe/Berlin), computed by the gateway: agreement and grant dates are local days
today := input.context.local_date

agreement_in_force(a) if {
	a.valid_from <= today
	today <= a.valid_until
}

# agreement `a` lets the requesting office use all datasets in `names` for the purpose
agreement_covers(a, names) if {
	agreement_in_force(a)
	purpose in a.purposes
	ident.office in a.parties
	every n in names {
		n in a.datasets
		data.catalog[n].owner in a.parties
	}
}

covered_by_agreement(names) if {
	some a in data.agreements
	agreement_covers(a, names)
}

foreign_dataset(name) if {
	data.catalog[name]
	not is_public(name)
	data.catalog[name].owner != object.get(ident, "office", "")
}

protected_requested := {name |
	some name in requested
	data.catalog[name]
	not is_public(name)
}

owners_requested := {data.catalog[name].owner | some name in protected_requested}

# --- legal regimes -----------------------------------------------------------------------------

regimes_requested := {data.catalog[name].legal_regime | some name in protected_requested}

bridged(regimes) if {
	some b in data.regime_bridges
	purpose in b.purposes
	every r in regimes {
		r in b.regimes
	}
}

# (never `object.get(data, ...)`: reading the whole `data` document includes this package: recursion)
purpose_kind(p) := data.purposes[p].kind

purpose_kind(p) := "administrative" if not data.purposes[p].kind

# --- residency: IPv4 CIDR in plain Rego (regopy has no net.* builtins; OPA would accept these too) -----

pow2 := [
	1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072,
	262144, 524288, 1048576, 2097152, 4194304, 8388608, 16777216, 33554432, 67108864, 134217728,
	268435456, 536870912, 1073741824, 2147483648, 4294967296,
]

ipv4_number(addr) := n if {
	regex.match(`^[0-9]{1,3}[.][0-9]{1,3}[.][0-9]{1,3}[.][0-9]{1,3}$`, addr)
	parts := split(addr, ".")
	a := to_number(parts[0])
	b := to_number(parts[1])
	c := to_number(parts[2])
	d := to_number(parts[3])
	a <= 255
	b <= 255
	c <= 255
	d <= 255
	n := ((a * 256 + b) * 256 + c) * 256 + d
}

in_network(addr, cidr) if {
	parts := split(cidr, "/")
	count(parts) == 2
	bits := to_number(parts[1])
	bits <= 32
	size := pow2[32 - bits]
	floor(ipv4_number(addr) / size) == floor(ipv4_number(parts[0]) / size)
}

# IPv6 (and anything not IPv4): exact match only
in_network(addr, cidr) if cidr == concat("/", [addr, "128"])

internal_client if {
	some cidr in data.networks.internal
	in_network(input.context.client_address, cidr)
}

grants_for[name] := sort([g.id |
	some g in data.grants
	g.dataset == name
	grant_matches(g)
]) if {
	some name in requested
}

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
	count(applicable_grants[name]) == 0
}

denials contains {
	"rule": "time_bound.expired",
	"dataset": name,
	"message": concat("", ["your grant ", g.id, " on dataset ", name, " was valid until ", format_date(g.valid_until), " (local date)"]),
} if {
	some name in protected_requested
	count(grants_for[name]) == 0
	some g in applicable_grants[name]
	expired(g)
}

denials contains {
	"rule": "time_bound.not_yet_valid",
	"dataset": name,
	"message": concat("", ["your grant ", g.id, " on dataset ", name, " is valid only from ", format_date(g.valid_from), " (local date)"]),
} if {
	some name in protected_requested
	count(grants_for[name]) == 0
	some g in applicable_grants[name]
	not_yet_valid(g)
}

denials contains {
	"rule": "time_bound.outside_office_hours",
	"dataset": name,
	"message": concat("", [
		"your grant ", g.id, " on dataset ", name, " is limited to office hours (", g.office_hours.from,
		" to ", g.office_hours.until, " local time, weekdays ", concat(", ", [format_int(d, 10) | some d in g.office_hours.days]),
		"); try again then",
	]),
} if {
	some name in protected_requested
	count(grants_for[name]) == 0
	some g in applicable_grants[name]
	outside_office_hours(g)
}

denials contains {
	"rule": "sovereignty.no_data_use_agreement",
	"dataset": name,
	"message": concat("", [
		"dataset ", name, " belongs to ", data.catalog[name].owner, "; no data-use agreement in force lets ",
		object.get(ident, "office", "(no office)"), " use it for purpose ", purpose,
		"; ask the owner office and the DPO for one",
	]),
} if {
	some name in protected_requested
	foreign_dataset(name)
	not covered_by_agreement({name})
}

denials contains {
	"rule": "sovereignty.cross_office_join_without_agreement",
	"dataset": null,
	"message": concat("", [
		"this query combines data of ", concat(" and ", sort([o | some o in owners_requested])),
		"; that needs one data-use agreement covering all of ", concat(", ", sort([n | some n in protected_requested])),
		" for purpose ", purpose,
	]),
} if {
	count(owners_requested) > 1
	not covered_by_agreement(protected_requested)
}

denials contains {
	"rule": "legal_regime.cross_regime_join",
	"dataset": null,
	"message": concat("", [
		"this query combines data of different legal regimes (", concat(", ", sort([r | some r in regimes_requested])),
		"); no rule in data.regime_bridges permits that for purpose ", purpose,
	]),
} if {
	count(regimes_requested) > 1
	not bridged(regimes_requested)
}

denials contains {
	"rule": "legal_regime.rueckspielverbot",
	"dataset": name,
	"message": concat("", [
		"dataset ", name, " comes from the sealed-off statistics unit and may be used for statistics only, ",
		"never for purpose ", purpose, " (Rückspielverbot)",
	]),
} if {
	some name in requested
	data.catalog[name].legal_regime == "statistics_secrecy"
	purpose_kind(purpose) != "statistics"
}

denials contains {
	"rule": "residency.on_premises_only",
	"dataset": name,
	"message": concat("", [
		"dataset ", name, " is served only inside the city's internal networks; your address is outside them",
	]),
} if {
	some name in requested
	data.catalog[name].residency.serve == "on_premises"
	not internal_client
}

# ---------------------------------------------------------------------------------------------
# Per-dataset treatment
# ---------------------------------------------------------------------------------------------

# retention (Löschfrist): rows past the deletion period are invisible, for every grant and purpose
retention_filters(name) := [{
	"column": r.column, "op": "not_before_days", "values": [r.days], "keep_null": r.keep_null,
	"rule": "retention.deletion_period",
}] if {
	r := data.catalog[name].retention
}

retention_filters(name) := [] if not data.catalog[name].retention

# the catalog's default mask of a column ({op, params}); undefined when the catalog sets none
default_mask(name, col) := data.catalog[name].columns[col].default_mask

public_column(name, col) := {
	"op": m.op, "params": object.get(m, "params", {}), "rule": "catalog.default_mask",
} if {
	m := default_mask(name, col)
}

public_column(name, col) := {"op": "plain", "rule": "open_data.public_dataset"} if not default_mask(name, col)

public_dataset(name) := {
	"allow": true,
	"rules": ["open_data.public_dataset"],
	"legal_basis": object.get(data.catalog[name], "legal_basis", null),
	"columns": {col: public_column(name, col) | some col in object.keys(data.catalog[name].columns)},
	"row_filters": retention_filters(name),
	"aggregate_only": null,
	"max_rows": null,
}

# a column the grant lists with an op: as the grant says
column_rule(g, name, col) := g.columns[col] if g.columns[col].op

# a column the grant lists without an op: the catalog's default mask (the grant's rule name, if it gives one)
column_rule(g, name, col) := {
	"op": m.op, "params": object.get(m, "params", {}),
	"rule": object.get(g.columns[col], "rule", "catalog.default_mask"),
} if {
	default_mask_applies(g, name, col)
	m := default_mask(name, col)
}

# ... and without a default mask in the catalog (or not listed as a mapping): denied
column_rule(g, name, col) := {"op": "deny", "rule": concat("", [g.id, ".no_default_mask"])} if {
	listed_without_op(g, col)
	not default_mask_applies(g, name, col)
}

column_rule(g, name, col) := {"op": "deny", "rule": concat("", [g.id, ".unlisted_column"])} if {
	not col in object.keys(g.columns)
}

listed_without_op(g, col) if {
	col in object.keys(g.columns)
	not g.columns[col].op
}

default_mask_applies(g, name, col) if {
	listed_without_op(g, col)
	is_object(g.columns[col])
	default_mask(name, col)
}

row_filters(g) := [{"column": f.column, "op": "in", "values": object.get(ident, f.claim, []), "rule": f.rule} |
	some f in object.get(g, "row_filters", [])
	f.claim
]

granted_dataset(name, g) := {
	"allow": true,
	"rules": [g.id],
	"legal_basis": object.get(data.catalog[name], "legal_basis", null),
	"columns": {col: column_rule(g, name, col) | some col in object.keys(data.catalog[name].columns)},
	"row_filters": array.concat(row_filters(g), retention_filters(name)),
	"aggregate_only": object.get(g, "aggregate_only", null),
	"max_rows": object.get(g, "max_rows", null),
}

datasets[name] := public_dataset(name) if {
	some name in requested
	is_public(name)
}

datasets[name] := granted_dataset(name, grant_by_id(grants_for[name][0])) if {
	some name in requested
	data.catalog[name]
	not is_public(name)
	count(grants_for[name]) > 0
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
