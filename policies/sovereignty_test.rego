# METADATA
# title: Unit tests for the sovereignty, legal-regime, residency, retention and time rules
# description: |
#   Data-use agreements (sovereignty.*), legal regimes and the Rückspielverbot (legal_regime.*),
#   on-premises serving (residency.*), deletion periods (retention.*) and time-bound grants
#   (time_bound.*) of policies/gateway.rego. Same conventions as gateway_test.rego (regopy 1.5
#   workarounds: key-by-key `with input.x as local`, never `with input as {...}`).
package gateway.sovereignty_test

import rego.v1

import data.gateway.authz

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

bea := {
	"user": "bea", "office": "Bürgerreferat", "roles": ["analyst"],
	"purposes": ["buergerservice"], "districts": [], "clearance": "intern",
}

# a Tuesday, 10:00 local time, from inside the city's network
ctx := {
	"time": "2025-06-03T08:00:00Z", "client_address": "10.20.30.40", "local_date": "2025-06-03",
	"local_weekday": 2, "local_time": "10:00",
}

rules_of(d) := {x.rule | some x in d.denials}

select_for(p) := {"operation": "SelectFromColumns", "purpose": p}

# A synthetic grant letting sven read einwohner for sozialplanung (the reference policy has none), so
# that joins across offices and regimes can be tested.
sven_einwohner_grant := {
	"id": "test.sven_einwohner", "dataset": "einwohner", "purpose": "sozialplanung",
	"offices": ["Amt für Soziale Arbeit"], "roles": ["analyst"],
	"columns": {"stadtteil": {"op": "plain", "rule": "test.plain"}},
}

sven_einwohner_catalog := object.union(data.catalog, {"einwohner": object.union(
	data.catalog.einwohner,
	{"purposes": ["statistik", "stadtplanung", "sozialplanung"]},
)})

agreement_einwohner_for_sven := {
	"id": "test.dnv_einwohner", "parties": ["Bürgeramt", "Amt für Soziale Arbeit"], "datasets": ["einwohner"],
	"purposes": ["sozialplanung"], "valid_from": "2025-01-01", "valid_until": "2025-12-31",
}

agreement_both_for_sven := {
	"id": "test.dnv_both", "parties": ["Bürgeramt", "Amt für Soziale Arbeit"],
	"datasets": ["einwohner", "sozialleistungen"], "purposes": ["sozialplanung"],
	"valid_from": "2025-01-01", "valid_until": "2025-12-31",
}

bridge_social_registration := {
	"id": "test.bridge", "regimes": ["social_data", "registration_data"], "purposes": ["sozialplanung"],
	"legal_basis": "test",
}

# ---------------------------------------------------------------------------------------------
# sovereignty: data-use agreements
# ---------------------------------------------------------------------------------------------

test_agreement_lets_anna_read_einwohner if {
	user := anna
	context := ctx
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	d.allow
	count(d.denials) == 0
}

test_no_agreement_before_it_starts if {
	user := anna
	context := object.union(ctx, {"time": "2024-12-31T12:00:00Z", "local_date": "2024-12-31", "local_time": "13:00"})
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	not d.allow
	rules_of(d) == {"sovereignty.no_data_use_agreement"}
}

test_agreement_valid_on_its_last_day if {
	user := anna
	context := object.union(ctx, {"time": "2028-12-31T22:59:00Z", "local_date": "2028-12-31", "local_time": "23:59"})
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	d.allow
}

test_no_agreement_after_it_ends if {
	user := anna
	context := object.union(ctx, {"time": "2029-01-01T00:00:00Z", "local_date": "2029-01-01", "local_time": "01:00"})
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	not d.allow
	rules_of(d) == {"sovereignty.no_data_use_agreement"}
}

test_agreement_of_another_office_does_not_count if {
	# paula's agreement (DNV-2025-011) is with the Stadtplanungsamt; removing it leaves her without one
	user := paula
	context := ctx
	agreements := [a | some a in data.agreements; a.id != "DNV-2025-011"]
	d := authz.decision with input.identity as user
		with input.action as select_for("stadtplanung")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.agreements as agreements
	not d.allow
	rules_of(d) == {"sovereignty.no_data_use_agreement"}
}

test_agreement_for_another_purpose_does_not_count if {
	user := anna
	context := ctx
	agreements := [object.union(a, {"purposes": ["stadtplanung"]}) | some a in data.agreements]
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.agreements as agreements
	not d.allow
	rules_of(d) == {"sovereignty.no_data_use_agreement"}
}

test_own_office_needs_no_agreement if {
	user := sven
	context := ctx
	agreements := []
	d := authz.decision with input.identity as user
		with input.action as select_for("sozialplanung")
		with input.resource as {"datasets": ["sozialleistungen"]}
		with input.context as context
		with data.agreements as agreements
	d.allow
}

test_public_data_needs_no_agreement if {
	user := anna
	context := ctx
	agreements := []
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["stadtteile"]}
		with input.context as context
		with data.agreements as agreements
	d.allow
}

test_cross_office_join_needs_one_agreement_covering_both if {
	user := sven
	context := ctx
	grants := array.concat(data.grants, [sven_einwohner_grant])
	catalog := sven_einwohner_catalog
	agreements := [agreement_einwohner_for_sven]
	bridges := [bridge_social_registration]
	d := authz.decision with input.identity as user
		with input.action as select_for("sozialplanung")
		with input.resource as {"datasets": ["einwohner", "sozialleistungen"]}
		with input.context as context
		with data.grants as grants
		with data.catalog as catalog
		with data.agreements as agreements
		with data.regime_bridges as bridges
	not d.allow

	# each dataset alone is fine (own office; an agreement for einwohner); the join is not
	rules_of(d) == {"sovereignty.cross_office_join_without_agreement"}
}

test_cross_office_join_with_agreement_and_bridge_allowed if {
	user := sven
	context := ctx
	grants := array.concat(data.grants, [sven_einwohner_grant])
	catalog := sven_einwohner_catalog
	agreements := [agreement_both_for_sven]
	bridges := [bridge_social_registration]
	d := authz.decision with input.identity as user
		with input.action as select_for("sozialplanung")
		with input.resource as {"datasets": ["einwohner", "sozialleistungen"]}
		with input.context as context
		with data.grants as grants
		with data.catalog as catalog
		with data.agreements as agreements
		with data.regime_bridges as bridges
	d.allow
}

# ---------------------------------------------------------------------------------------------
# legal regimes
# ---------------------------------------------------------------------------------------------

test_cross_regime_join_refused_without_bridge if {
	user := sven
	context := ctx
	grants := array.concat(data.grants, [sven_einwohner_grant])
	catalog := sven_einwohner_catalog
	agreements := [agreement_both_for_sven]
	d := authz.decision with input.identity as user
		with input.action as select_for("sozialplanung")
		with input.resource as {"datasets": ["einwohner", "sozialleistungen"]}
		with input.context as context
		with data.grants as grants
		with data.catalog as catalog
		with data.agreements as agreements
	not d.allow
	rules_of(d) == {"legal_regime.cross_regime_join"}
}

test_bridge_for_another_purpose_does_not_count if {
	user := sven
	context := ctx
	grants := array.concat(data.grants, [sven_einwohner_grant])
	catalog := sven_einwohner_catalog
	agreements := [agreement_both_for_sven]
	bridges := [object.union(bridge_social_registration, {"purposes": ["statistik"]})]
	d := authz.decision with input.identity as user
		with input.action as select_for("sozialplanung")
		with input.resource as {"datasets": ["einwohner", "sozialleistungen"]}
		with input.context as context
		with data.grants as grants
		with data.catalog as catalog
		with data.agreements as agreements
		with data.regime_bridges as bridges
	not d.allow
	rules_of(d) == {"legal_regime.cross_regime_join"}
}

test_public_data_joins_any_regime if {
	user := sven
	context := ctx
	d := authz.decision with input.identity as user
		with input.action as select_for("sozialplanung")
		with input.resource as {"datasets": ["sozialleistungen", "stadtteile"]}
		with input.context as context
	d.allow
}

# A dataset of the sealed-off statistics unit, granted (by mistake) also for an administrative purpose:
# the Rückspielverbot still refuses it.
zensus_catalog := object.union(data.catalog, {"zensus_haushalte": {
	"owner": "Amt für Statistik und Stadtforschung", "classification": "vertraulich",
	"legal_regime": "statistics_secrecy", "purposes": ["statistik", "stadtplanung"], "person_key": null,
	"connector": "demo", "columns": {"stadtteil": {"class": "quasi_identifier", "type": "VARCHAR"}},
}})

zensus_grants := array.concat(data.grants, [
	{
		"id": "test.zensus_statistik", "dataset": "zensus_haushalte", "purpose": "statistik",
		"columns": {"stadtteil": {"op": "plain", "rule": "test.plain"}},
	},
	{
		"id": "test.zensus_planung", "dataset": "zensus_haushalte", "purpose": "stadtplanung",
		"columns": {"stadtteil": {"op": "plain", "rule": "test.plain"}},
	},
])

zensus_agreements := array.concat(data.agreements, [{
	"id": "test.dnv_zensus", "parties": ["Amt für Statistik und Stadtforschung", "Stadtplanungsamt"],
	"datasets": ["zensus_haushalte"], "purposes": ["stadtplanung"],
	"valid_from": "2025-01-01", "valid_until": "2025-12-31",
}])

test_statistics_data_for_statistics if {
	user := anna
	context := ctx
	catalog := zensus_catalog
	grants := zensus_grants
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["zensus_haushalte"]}
		with input.context as context
		with data.catalog as catalog
		with data.grants as grants
	d.allow
}

test_rueckspielverbot_refuses_administrative_purpose if {
	user := paula
	context := ctx
	catalog := zensus_catalog
	grants := zensus_grants
	agreements := zensus_agreements
	d := authz.decision with input.identity as user
		with input.action as select_for("stadtplanung")
		with input.resource as {"datasets": ["zensus_haushalte"]}
		with input.context as context
		with data.catalog as catalog
		with data.grants as grants
		with data.agreements as agreements
	not d.allow
	rules_of(d) == {"legal_regime.rueckspielverbot"}
}

test_unlisted_purpose_counts_as_administrative if {
	authz.purpose_kind("unbekannt") == "administrative"
	authz.purpose_kind("statistik") == "statistics"
}

# ---------------------------------------------------------------------------------------------
# residency: on-premises datasets
# ---------------------------------------------------------------------------------------------

test_on_premises_dataset_from_outside_refused if {
	user := sven
	context := object.union(ctx, {"client_address": "203.0.113.9"})
	d := authz.decision with input.identity as user
		with input.action as select_for("sozialplanung")
		with input.resource as {"datasets": ["sozialleistungen"]}
		with input.context as context
	not d.allow
	rules_of(d) == {"residency.on_premises_only"}
}

test_on_premises_dataset_from_unparseable_address_refused if {
	user := sven
	context := object.union(ctx, {"client_address": "testclient"})
	d := authz.decision with input.identity as user
		with input.action as select_for("sozialplanung")
		with input.resource as {"datasets": ["sozialleistungen"]}
		with input.context as context
	not d.allow
	rules_of(d) == {"residency.on_premises_only"}
}

test_on_premises_dataset_from_inside_allowed_10_0_0_1 if {
	user := sven
	context := object.union(ctx, {"client_address": "10.0.0.1"})
	d := authz.decision with input.identity as user
		with input.action as select_for("sozialplanung")
		with input.resource as {"datasets": ["sozialleistungen"]}
		with input.context as context
	d.allow
}

test_on_premises_dataset_from_inside_allowed_127_0_0_1 if {
	user := sven
	context := object.union(ctx, {"client_address": "127.0.0.1"})
	d := authz.decision with input.identity as user
		with input.action as select_for("sozialplanung")
		with input.resource as {"datasets": ["sozialleistungen"]}
		with input.context as context
	d.allow
}

test_on_premises_dataset_from_inside_allowed_172_31_255_254 if {
	user := sven
	context := object.union(ctx, {"client_address": "172.31.255.254"})
	d := authz.decision with input.identity as user
		with input.action as select_for("sozialplanung")
		with input.resource as {"datasets": ["sozialleistungen"]}
		with input.context as context
	d.allow
}

test_on_premises_dataset_from_inside_allowed_192_168_1_20 if {
	user := sven
	context := object.union(ctx, {"client_address": "192.168.1.20"})
	d := authz.decision with input.identity as user
		with input.action as select_for("sozialplanung")
		with input.resource as {"datasets": ["sozialleistungen"]}
		with input.context as context
	d.allow
}

test_on_premises_dataset_from_inside_allowed_xx1 if {
	user := sven
	context := object.union(ctx, {"client_address": "::1"})
	d := authz.decision with input.identity as user
		with input.action as select_for("sozialplanung")
		with input.resource as {"datasets": ["sozialleistungen"]}
		with input.context as context
	d.allow
}

test_network_edges if {
	authz.in_network("172.16.0.0", "172.16.0.0/12")
	authz.in_network("172.31.255.255", "172.16.0.0/12")
	not authz.in_network("172.32.0.0", "172.16.0.0/12")
	not authz.in_network("172.15.255.255", "172.16.0.0/12")
	not authz.in_network("256.0.0.1", "0.0.0.0/0")
	authz.in_network("8.8.8.8", "0.0.0.0/0")
	not authz.in_network("::2", "::1/128")
}

test_anywhere_dataset_from_outside_allowed if {
	user := anna
	context := object.union(ctx, {"client_address": "203.0.113.9"})
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	d.allow
}

# ---------------------------------------------------------------------------------------------
# retention and time-bound grants (bea, Bürgerreferat: anliegen in office hours)
# ---------------------------------------------------------------------------------------------

test_retention_filter_for_every_query if {
	user := bea
	context := ctx
	d := authz.decision with input.identity as user
		with input.action as select_for("buergerservice")
		with input.resource as {"datasets": ["anliegen"]}
		with input.context as context
	d.allow
	d.datasets.anliegen.row_filters == [{
		"column": "eingegangen_am", "op": "not_before_days", "values": [730], "keep_null": false,
		"rule": "retention.deletion_period",
	}]
	"retention.deletion_period" in {f.rule | some f in d.datasets.anliegen.row_filters}
}

test_retention_filter_also_on_public_data if {
	user := anna
	context := ctx
	retained := object.union(data.catalog.stadtteile, {"retention": {"column": "stadtteil", "days": 10, "category": "t", "keep_null": false}})
	catalog := object.union(data.catalog, {"stadtteile": retained})
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["stadtteile"]}
		with input.context as context
		with data.catalog as catalog
	d.allow
	d.datasets.stadtteile.row_filters[0].rule == "retention.deletion_period"
}

test_office_hours_inside_0700 if {
	user := bea
	context := object.union(ctx, {"local_time": "07:00"})
	d := authz.decision with input.identity as user
		with input.action as select_for("buergerservice")
		with input.resource as {"datasets": ["anliegen"]}
		with input.context as context
	d.allow
}

test_office_hours_inside_1230 if {
	user := bea
	context := object.union(ctx, {"local_time": "12:30"})
	d := authz.decision with input.identity as user
		with input.action as select_for("buergerservice")
		with input.resource as {"datasets": ["anliegen"]}
		with input.context as context
	d.allow
}

test_office_hours_inside_1859 if {
	user := bea
	context := object.union(ctx, {"local_time": "18:59"})
	d := authz.decision with input.identity as user
		with input.action as select_for("buergerservice")
		with input.resource as {"datasets": ["anliegen"]}
		with input.context as context
	d.allow
}

test_office_hours_outside_0659 if {
	user := bea
	context := object.union(ctx, {"local_time": "06:59"})
	d := authz.decision with input.identity as user
		with input.action as select_for("buergerservice")
		with input.resource as {"datasets": ["anliegen"]}
		with input.context as context
	not d.allow
	rules_of(d) == {"time_bound.outside_office_hours"}
}

test_office_hours_outside_1900 if {
	user := bea
	context := object.union(ctx, {"local_time": "19:00"})
	d := authz.decision with input.identity as user
		with input.action as select_for("buergerservice")
		with input.resource as {"datasets": ["anliegen"]}
		with input.context as context
	not d.allow
	rules_of(d) == {"time_bound.outside_office_hours"}
}

test_office_hours_outside_saturday if {
	user := bea
	context := object.union(ctx, {"local_weekday": 6})
	d := authz.decision with input.identity as user
		with input.action as select_for("buergerservice")
		with input.resource as {"datasets": ["anliegen"]}
		with input.context as context
	not d.allow
	rules_of(d) == {"time_bound.outside_office_hours"}
}

test_office_hours_outside_sunday if {
	user := bea
	context := object.union(ctx, {"local_weekday": 7})
	d := authz.decision with input.identity as user
		with input.action as select_for("buergerservice")
		with input.resource as {"datasets": ["anliegen"]}
		with input.context as context
	not d.allow
	rules_of(d) == {"time_bound.outside_office_hours"}
}

test_grant_not_yet_valid if {
	user := bea
	context := object.union(ctx, {"time": "2024-12-31T09:00:00Z", "local_date": "2024-12-31", "local_time": "10:00"})
	d := authz.decision with input.identity as user
		with input.action as select_for("buergerservice")
		with input.resource as {"datasets": ["anliegen"]}
		with input.context as context
	not d.allow
	rules_of(d) == {"time_bound.not_yet_valid"}
}

# ---------------------------------------------------------------------------------------------
# local calendar days: agreement and grant dates are Europe/Berlin days (context.local_date)
# ---------------------------------------------------------------------------------------------

# 00:30 in Wiesbaden on 2025-01-01, DNV-2025-004's first day (still 2024-12-31 in UTC)
test_agreement_in_force_at_0030_local_on_valid_from if {
	user := anna
	context := object.union(ctx, {
		"time": "2024-12-31T23:30:00Z", "local_date": "2025-01-01", "local_weekday": 3,
		"local_time": "00:30",
	})
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	d.allow
	count(d.denials) == 0
}

# 00:30 in Wiesbaden on 2029-01-01, the day after DNV-2025-004's last day (still 2028-12-31 in UTC)
test_no_agreement_at_0030_local_the_day_after_valid_until if {
	user := anna
	context := object.union(ctx, {
		"time": "2028-12-31T23:30:00Z", "local_date": "2029-01-01", "local_weekday": 1,
		"local_time": "00:30",
	})
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	not d.allow
	rules_of(d) == {"sovereignty.no_data_use_agreement"}
}

test_no_local_date_no_agreement if {
	user := anna
	context := object.remove(ctx, ["local_date"])
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
	not d.allow
	"sovereignty.no_data_use_agreement" in rules_of(d)
}

# anna's grant, to be given validity dates (local days, both inclusive); (a rule, not a function: regopy 1.5
# leaves `some g in data.grants` inside a function undefined)
anna_grant := [g | some g in data.grants; g.id == "einwohner.statistik"][0]

anna_at(time, local_date, local_time) := object.union(ctx, {"time": time, "local_date": local_date, "local_time": local_time})

test_grant_valid_on_its_last_local_day if {
	user := anna
	context := anna_at("2025-06-03T21:59:00Z", "2025-06-03", "23:59")
	grant := anna_grant
	grants := [object.union(grant, {"valid_until": "2025-06-03"})]
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
	d.allow
}

test_grant_expired_at_0030_local_the_day_after if {
	user := anna
	context := anna_at("2025-06-03T22:30:00Z", "2025-06-04", "00:30")
	grant := anna_grant
	grants := [object.union(grant, {"valid_until": "2025-06-03"})]
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
	not d.allow
	rules_of(d) == {"time_bound.expired"}
}

test_grant_valid_at_0030_local_on_valid_from if {
	user := anna
	context := anna_at("2025-06-02T22:30:00Z", "2025-06-03", "00:30")
	grant := anna_grant
	grants := [object.union(grant, {"valid_from": "2025-06-03", "valid_until": "2025-06-03"})]
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
	d.allow
}

test_grant_not_yet_valid_the_local_day_before if {
	user := anna
	context := anna_at("2025-06-02T21:59:00Z", "2025-06-02", "23:59")
	grant := anna_grant
	grants := [object.union(grant, {"valid_from": "2025-06-03"})]
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
	not d.allow
	rules_of(d) == {"time_bound.not_yet_valid"}
}

# a validity that is not a plain date (a timestamp, a German date, null) leaves the grant not in force
test_grant_until_timestamp_not_in_force if {
	user := anna
	context := ctx
	grant := anna_grant
	grants := [object.union(grant, {"valid_until": "2099-12-31T23:59:59Z"})]
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
	not d.allow
	rules_of(d) == {"time_bound.expired"}
}

test_grant_until_german_date_not_in_force if {
	user := anna
	context := ctx
	grant := anna_grant
	grants := [object.union(grant, {"valid_until": "31.12.2099"})]
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
	not d.allow
	rules_of(d) == {"time_bound.expired"}
}

test_grant_until_null_not_in_force if {
	user := anna
	context := ctx
	grant := anna_grant
	grants := [object.union(grant, {"valid_until": null})]
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
	not d.allow
	rules_of(d) == {"time_bound.expired"}
}

test_grant_from_timestamp_not_in_force if {
	user := anna
	context := ctx
	grant := anna_grant
	grants := [object.union(grant, {"valid_from": "2025-01-01T00:00:00Z"})]
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
	not d.allow
	rules_of(d) == {"time_bound.not_yet_valid"}
}

test_grant_without_local_date_not_in_force if {
	user := anna
	context := object.remove(ctx, ["local_date"])
	grant := anna_grant
	grants := [object.union(grant, {"valid_until": "2099-12-31"})]
	d := authz.decision with input.identity as user
		with input.action as select_for("statistik")
		with input.resource as {"datasets": ["einwohner"]}
		with input.context as context
		with data.grants as grants
	not d.allow
	"time_bound.expired" in rules_of(d)
}
