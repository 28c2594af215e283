"""Differential privacy for count, sum and avg on aggregate-only data.

The noise comes from OpenDP (``opendp``, the OpenDP Library's vetted Rust implementation of the discrete
Laplace mechanism, cryptographically secure randomness). Sums are noised in integer units of
``RESOLUTION`` (cents), so no floating-point mechanism is needed.

gateway/sql/aggregate.py prepares the SQL: every person contributes at most ``max_contributions`` rows,
summed values are clamped to the policy's bounds ``[L, U]``, and hidden columns say which outputs get
noise. With ``q`` noisy quantities per query (every count and sum one, every avg two, plus the person
count that decides small-cell suppression) each gets ``epsilon_per_query / q`` (sequential composition).
Cells of one query are disjoint, so a person changes at most ``max_contributions`` rows in total
(parallel composition over the cells):

* count: sensitivity ``m``, scale ``m * q / epsilon``;
* sum: sensitivity ``m * max(|L|, |U|)``, scale ``m * max(|L|, |U|) * q / epsilon``;
* avg: noisy clamped sum / noisy count (post-processing);
* the person count: sensitivity 1; small-cell suppression then uses the noisy count (post-processing).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import pyarrow as pa

from gateway.policy.decision import DpRule
from gateway.sql.aggregate import DP_PREFIX, PERSONS_COLUMN

RESOLUTION = 100  # sums are noised in cents
NOISE_SCALE_PREFIX = "_noise_scale_"
_HIDDEN = re.compile(rf"^{DP_PREFIX}(count|sum|avg|avgn)_(\d+)$")


class DpUnavailable(RuntimeError):
    pass


@functools.lru_cache(maxsize=256)
def _laplace(scale: float) -> Any:
    try:
        import opendp.prelude as dp
    except ImportError as exc:  # fail closed: no noise, no answer
        raise DpUnavailable("the OpenDP library is not installed") from exc
    dp.enable_features("contrib")
    return dp.m.make_laplace(dp.atom_domain(T=int), dp.absolute_distance(T=int), scale=scale)


def noisy_int(value: int, scale: float) -> int:
    """``value`` plus discrete Laplace noise of ``scale`` (OpenDP)."""
    return int(_laplace(float(scale))(int(value)))


def apply_noise(table: pa.Table, dp: DpRule) -> pa.Table:
    """Replace the prepared aggregates by noisy ones; add ``_noise_scale_<output>`` columns."""
    names = table.column_names
    specs: dict[int, dict[str, str]] = {}
    for name in names:
        match = _HIDDEN.match(name)
        if match:
            specs.setdefault(int(match.group(2)), {})[match.group(1)] = name
    person_columns = [n for n in names if n.startswith(PERSONS_COLUMN)]
    quantities = 1 + sum(2 if "avg" in spec else 1 for spec in specs.values())
    epsilon = dp.epsilon_per_query / quantities
    m = dp.max_contributions
    scales: list[tuple[str, pa.Array]] = []
    for name in person_columns:
        values = [max(0, noisy_int(v or 0, 1.0 / epsilon)) for v in table.column(name).to_pylist()]
        table = table.set_column(names.index(name), name, pa.array(values, type=pa.int64()))
    for index, spec in sorted(specs.items()):
        output = names[index]
        column = table.column(index).to_pylist()
        if "count" in spec:
            scale = m / epsilon
            noisy: list[Any] = [max(0, noisy_int(v or 0, scale)) for v in column]
            table = table.set_column(index, output, pa.array(noisy, type=pa.int64()))
            scales.append((output, pa.array([scale] * len(noisy), type=pa.float64())))
            continue
        kind = "sum" if "sum" in spec else "avg"
        bounds = table.column(spec[kind]).to_pylist()
        bound = float(bounds[0]) if bounds else 0.0
        scale = m * bound / epsilon
        sums = [noisy_int(round(float(v or 0) * RESOLUTION), scale * RESOLUTION) / RESOLUTION for v in column]
        if kind == "sum":
            table = table.set_column(index, output, pa.array(sums, type=pa.float64()))
            scales.append((output, pa.array([scale] * len(sums), type=pa.float64())))
            continue
        counts = table.column(spec["avgn"]).to_pylist()
        noisy_counts = [max(1, noisy_int(c or 0, m / epsilon)) for c in counts]
        means = [s / c for s, c in zip(sums, noisy_counts, strict=True)]
        table = table.set_column(index, output, pa.array(means, type=pa.float64()))
        # the scale of the mean's numerator noise divided by the (noisy) count: an approximation
        scales.append((output, pa.array([scale / c for c in noisy_counts], type=pa.float64())))
    for name in [n for n in table.column_names if _HIDDEN.match(n)]:
        table = table.drop_columns([name])
    for output, values in scales:
        table = table.append_column(f"{NOISE_SCALE_PREFIX}{output}", values)
    return table


def laplace_std(scale: float) -> float:
    """Standard deviation of Laplace noise of ``scale`` (for reports)."""
    return math.sqrt(2.0) * scale
