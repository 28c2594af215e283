"""Statistical disclosure control for aggregate-only data (docs/sdc.md).

* :mod:`gateway.sdc.rollup` - secondary suppression of ROLLUP margins;
* :mod:`gateway.sdc.differencing` - the differencing guard (populations remembered per user and dataset);
* :mod:`gateway.sdc.dp` - differential privacy (OpenDP's discrete Laplace mechanism);
* :mod:`gateway.sdc.budget` - the persisted privacy-budget ledger;
* :mod:`gateway.sdc.controls` - the hooks the pipeline calls before and after a query.

The dominance rule and the hidden columns these use are added to the SQL by gateway/sql/aggregate.py and
applied to the result by gateway/masking/disclosure.py.
"""
