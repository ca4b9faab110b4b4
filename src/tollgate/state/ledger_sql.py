"""SQL the SQLite and PostgreSQL ledgers share: the row sums behind every aggregate column, and the
migrations that backfill aggregates from the ledger rows already stored.

Written once for both dialects (standard SQL both accept); a dialect's differences (its day expression,
its 64-bit integer type) are parameters.
"""

from __future__ import annotations

from tollgate.state.ledger import LATENCY_BOUNDS_MS, LATENCY_COLUMNS, SHADOW_ENDPOINT, SUM_COLUMNS


def _row_sums() -> dict[str, str]:
    """SQL expressions summing ledger rows into each of the ``SUM_COLUMNS``, in order, for either dialect."""
    bounds = (None, *LATENCY_BOUNDS_MS)
    buckets = []
    for lower, upper in zip(bounds, (*LATENCY_BOUNDS_MS, None), strict=True):
        conds = (f"latency_ms > {lower}" if lower else "", f"latency_ms <= {upper}" if upper else "")
        cond = " AND ".join(c for c in conds if c)
        buckets.append(f"SUM(CASE WHEN {cond} THEN 1 ELSE 0 END)")
    exprs = (
        "COUNT(*)",
        "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END)",
        "SUM(input_tokens)",
        "SUM(output_tokens)",
        "SUM(cached_tokens)",
        "SUM(cost_nanos)",
        "SUM(CASE WHEN cache_hit THEN 1 ELSE 0 END)",
        "SUM(cost_saved_nanos)",
        # As aggregate() rounds: latencies are stored to the microsecond, so this is exact.
        "SUM(CAST(ROUND(latency_ms * 1000) AS BIGINT))",
        *buckets,
    )
    return dict(zip(SUM_COLUMNS, exprs, strict=True))


ROW_SUMS_SQL = _row_sums()


# A row's model label (LedgerRow.model_label) in SQL.
_MODEL_SQL = (
    "CASE WHEN COALESCE(provider, '') <> '' AND COALESCE(upstream_model, '') <> '' "
    "THEN provider || '/' || upstream_model ELSE COALESCE(requested_model, '') END"
)


def team_aggregates_backfill(day: str) -> str:
    """SQL (statements split by ';') adding the per-team aggregates of every ledger row already stored,
    for a database written before they existed. ``day`` is the dialect's expression for a row's UTC day.
    The values are computed as ``aggregate`` computes them; the migration runs before any writer.
    Frozen: it is migration ``ledger_0002``, run against the columns of its time."""
    model = _MODEL_SQL
    sums = (
        "COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(input_tokens), SUM(output_tokens), "
        "SUM(cached_tokens), SUM(cost_nanos)"
    )
    values = (("all", "''"), ("key", "COALESCE(key_id, '')"), ("user", "COALESCE(user_id, '')"), ("model", model))
    statements = []
    for dim, value in values:
        statements.append(
            "INSERT INTO spend_daily (dim, day, value, requests, errors, input_tokens, output_tokens, "
            f"cached_tokens, cost_nanos) SELECT '{dim}@team:' || team_id, {day}, {value}, {sums} "
            "FROM ledger WHERE COALESCE(team_id, '') <> '' GROUP BY 1, 2, 3"
        )
    return ";\n".join(statements)


# The aggregate columns ledger_0003 added, and those it backfills (rows before it saved nothing). Spelled
# out, not derived from SUM_COLUMNS: a migration must not change when later columns are added.
_LEDGER_0003_COLUMNS = ("cache_hits", "cost_saved_nanos", "latency_us_sum", *LATENCY_COLUMNS)
_BACKFILLED = ("cache_hits", "latency_us_sum", *LATENCY_COLUMNS)


def latency_columns_migration(integer: str, day: str) -> str:
    """SQL of migration ``ledger_0003``: ``cost_saved_nanos`` on ledger rows; cache hits, savings and
    latency (sum and buckets) on the aggregates, backfilled from the ledger rows already stored.

    ``integer`` is the dialect's 64-bit integer type, ``day`` its expression for a row's UTC day. The
    rows are summed once per distinct (day, key, user, team, org, model), as ``aggregate`` does, and every
    dimension is then read from those sums. Aggregates whose rows retention already deleted keep 0
    (their latency is unknown). The migration runs before any writer, so it sets rather than adds."""
    statements = [f"ALTER TABLE ledger ADD COLUMN cost_saved_nanos {integer} NOT NULL DEFAULT 0"]
    statements += [f"ALTER TABLE spend_daily ADD COLUMN {c} {integer} NOT NULL DEFAULT 0" for c in _LEDGER_0003_COLUMNS]
    sums = ", ".join(f"{ROW_SUMS_SQL[c]} AS {c}" for c in _BACKFILLED)
    statements.append(
        f"CREATE TEMP TABLE ledger_0003_groups AS SELECT {day} AS day, COALESCE(key_id, '') AS k, "
        f"COALESCE(user_id, '') AS u, COALESCE(team_id, '') AS t, COALESCE(org_id, '') AS o, {_MODEL_SQL} AS m, "
        f"{sums} FROM ledger WHERE endpoint <> '{SHADOW_ENDPOINT}' GROUP BY 1, 2, 3, 4, 5, 6"
    )
    dims = [(f"'{dim}'", value, "") for dim, value in (("all", "''"), ("key", "k"), ("user", "u"), ("team", "t"))]
    dims += [("'org'", "o", ""), ("'model'", "m", "")]
    dims += [(f"'{dim}@team:' || t", value, "WHERE t <> ''") for dim, value in (("all", "''"), ("key", "k"))]
    dims += [("'user@team:' || t", "u", "WHERE t <> ''"), ("'model@team:' || t", "m", "WHERE t <> ''")]
    assign = ", ".join(f"{c} = g.{c}" for c in _BACKFILLED)
    picked = ", ".join(f"SUM({c}) AS {c}" for c in _BACKFILLED)
    for dim, value, where in dims:
        statements.append(
            f"UPDATE spend_daily SET {assign} FROM (SELECT {dim} AS dim, day, {value} AS value, {picked} "
            f"FROM ledger_0003_groups {where} GROUP BY 1, 2, 3) AS g "
            "WHERE spend_daily.dim = g.dim AND spend_daily.day = g.day AND spend_daily.value = g.value"
        )
    statements.append("DROP TABLE ledger_0003_groups")
    return ";\n".join(statements)
