"""Which functions an analyst's query may call.

An allow-list over sqlglot's function classes (so the decision is made on what the function *is*,
whatever the dialect spells it), plus a short list of dialect-neutral names that sqlglot leaves as
``exp.Anonymous``. Everything else is refused: file and network access (``read_csv``, ``pg_read_file``,
``dblink``), dynamic SQL (``query()``, ``query_to_xml``), settings (``current_setting``,
``set_config``), timing (``pg_sleep``), catalog introspection, and aggregates that return a raw
value of one row (``arg_max``, ``mode``, ``histogram``, ``string_agg`` ...) on aggregate-only data.
"""

from __future__ import annotations

from sqlglot import exp

from gateway.errors import AccessDenied, InvalidQuery


def _classes(*names: str) -> frozenset[type[exp.Expr]]:
    found = {getattr(exp, n) for n in names if hasattr(exp, n)}
    return frozenset(found)


#: aggregates that summarise many rows into one figure (safe on aggregate-only data)
SUMMARY_AGGREGATES = _classes(
    "Count",
    "CountIf",
    "Sum",
    "Avg",
    "Stddev",
    "StddevPop",
    "StddevSamp",
    "Variance",
    "VariancePop",
    "Corr",
    "CovarPop",
    "CovarSamp",
    "ApproxDistinct",
)

#: aggregates and window functions that return the raw value of a single row
ROW_VALUE_AGGREGATES = _classes(
    "Min",
    "Max",
    "AnyValue",
    "ArgMax",
    "ArgMin",
    "First",
    "Last",
    "FirstValue",
    "LastValue",
    "NthValue",
    "Median",
    "Quantile",
    "PercentileCont",
    "PercentileDisc",
    "ApproxQuantile",
    "Mode",
    "GroupConcat",
    "ArrayAgg",
    "Lag",
    "Lead",
)

SCALAR_FUNCTIONS = _classes(
    # logic and conditionals
    "And",
    "Exists",
    "Or",
    "Xor",
    "Case",
    "If",
    "Coalesce",
    "Nullif",
    "Greatest",
    "Least",
    "Nvl2",
    # casts
    "Cast",
    "TryCast",
    # numbers
    "Abs",
    "Round",
    "Floor",
    "Ceil",
    "Sqrt",
    "Cbrt",
    "Pow",
    "Ln",
    "Log",
    "Exp",
    "Sign",
    "Trunc",
    "SafeDivide",
    "Pi",
    # strings
    "Upper",
    "Lower",
    "Length",
    "Substring",
    "Trim",
    "Concat",
    "ConcatWs",
    "Left",
    "Right",
    "StrPosition",
    "Initcap",
    "Pad",
    "Replace",
    "Reverse",
    "StartsWith",
    "EndsWith",
    "Contains",
    "SplitPart",
    "Repeat",
    "Translate",
    # dates and times
    "Extract",
    "DateTrunc",
    "TimestampTrunc",
    "DatetimeTrunc",
    "TimeTrunc",
    "CurrentDate",
    "CurrentTimestamp",
    "CurrentTime",
    "DateAdd",
    "DateSub",
    "DateDiff",
    "TimestampAdd",
    "TimestampSub",
    "TimestampDiff",
    "DatetimeAdd",
    "DatetimeSub",
    "DatetimeDiff",
    "Year",
    "Quarter",
    "Month",
    "Week",
    "WeekOfYear",
    "Day",
    "DayOfMonth",
    "DayOfWeek",
    "DayOfWeekIso",
    "DayOfYear",
    "Hour",
    "Minute",
    "Second",
    "Date",
    "Timestamp",
    "TsOrDsToDate",
    "TsOrDsAdd",
    "TsOrDsDiff",
    "StrToDate",
    "StrToTime",
    "TimeToStr",
    "ToChar",
    "LastDay",
    "AddMonths",
    "MonthsBetween",
    "MakeInterval",
    "DateFromParts",
    # window ranking
    "RowNumber",
    "Rank",
    "DenseRank",
    "Ntile",
    "PercentRank",
    "CumeDist",
    # grouping helpers
    "Grouping",
    "GroupingId",
)

#: names sqlglot leaves anonymous that are harmless in every supported engine
ANONYMOUS_ALLOWED = frozenset({"age", "date_part", "datepart", "strftime", "to_date", "to_timestamp"})


_ALLOWED_AGGREGATE_ONLY = SUMMARY_AGGREGATES | SCALAR_FUNCTIONS
_ALLOWED = _ALLOWED_AGGREGATE_ONLY | ROW_VALUE_AGGREGATES


def check_functions(ast: exp.Expr, *, aggregate_only: bool = False) -> None:
    """Refuse any function not on the allow-list; with ``aggregate_only`` also row-value aggregates."""
    allowed = _ALLOWED_AGGREGATE_ONLY if aggregate_only else _ALLOWED
    for node in ast.find_all(exp.Func):
        if isinstance(node, exp.Anonymous):
            name = str(node.name).lower()
            if name in ANONYMOUS_ALLOWED:
                continue
            raise InvalidQuery(
                f"function {name}() is not allowed; see the analyst guide (docs/analyst.md) for the "
                "functions you can use",
                code="function_not_allowed",
                extra={"function": name},
            )
        if type(node) in allowed:
            continue
        name = node.sql_name().lower() if hasattr(node, "sql_name") else node.key
        if aggregate_only and type(node) in ROW_VALUE_AGGREGATES:
            raise AccessDenied(
                f"{name}() returns the value of a single row, which aggregate-only access does not "
                "release; use count, sum or avg",
                code="aggregate_not_allowed",
                extra={"function": name},
            )
        raise InvalidQuery(
            f"function {name}() is not allowed; see the analyst guide (docs/analyst.md) for the "
            "functions you can use",
            code="function_not_allowed",
            extra={"function": name},
        )
