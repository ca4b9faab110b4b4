"""The spend ledger: one row per request, daily aggregates for reports, and the ``LedgerStore`` protocol.

Money is integer nano-dollars (1e-9 USD) everywhere in storage, so that any sum is exact and a report's
total equals the sum of the ledger rows it covers, to the last nano-dollar.

Aggregates: for every UTC day and every dimension (``key``, ``user``, ``team``, ``org``, ``model``, plus
``all`` for per-day totals) one row per value, updated in the same transaction that inserts the ledger
rows, and only for rows actually inserted (a replayed batch adds nothing). Each ledger row counts once
in every dimension, so grouping any dimension over a date range adds up to the same total.

Latency per aggregate: the sum of the rows' latencies (exact integer microseconds, for the mean) and how
many rows fell in each of ``LATENCY_BOUNDS_MS``'s buckets (for percentiles). A percentile read from them is
an estimate, linear within the bucket it falls in (as PromQL's ``histogram_quantile``): exact to the
bucket, not to the millisecond.

Cache hits cost 0; ``cost_saved_nanos`` is what the answer would have cost at the model's price (set by
the response cache, policies/cache.py), summed like the cost.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal, Protocol

import orjson

from tollgate.types import JSONObject

# The endpoint of a shadow call's row (policies/shadow.py): recorded, but never part of spend reports.
SHADOW_ENDPOINT = "shadow"

GroupBy = Literal["key", "user", "team", "org", "model", "day"]
GROUP_BYS: tuple[GroupBy, ...] = ("user", "team", "org", "model", "key", "day")
# Dimensions stored in the aggregate table; "day" reports read the "all" dimension.
DIMENSIONS = ("all", "key", "user", "team", "org", "model")
NONE_VALUE = ""  # the aggregate value for "no user/team/org"; reports show it as "(none)"

_EPOCH = date(1970, 1, 1)
MAX_TAGS = 16
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 256

# Upper bounds (ms, inclusive) of the aggregates' latency buckets, plus one bucket for anything slower:
# from cache hits to long generations. Part of the schema (one column each): changing them is a migration.
LATENCY_BOUNDS_MS: tuple[int, ...] = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
LATENCY_COLUMNS: tuple[str, ...] = (
    *(f"latency_le_{b}ms" for b in LATENCY_BOUNDS_MS),
    f"latency_gt_{LATENCY_BOUNDS_MS[-1]}ms",
)
_BUCKETS = len(LATENCY_COLUMNS)


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 4x more, and this one is built per request
class LedgerRow:
    """What one request did and cost. ``id`` is the gateway's own unique id for this row (the key that
    makes batch writes idempotent); ``request_id`` may come from the client and is not trusted to be unique."""

    id: str
    request_id: str
    ts: float  # wall clock (epoch seconds) when the request started
    endpoint: str
    key_id: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    org_id: str | None = None
    requested_model: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    input_tokens: int = 0  # prompt tokens, cached ones included
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_nanos: int = 0
    latency_ms: float = 0.0
    status: int = 200
    error_type: str | None = None
    cache_hit: bool = False
    stream: bool = False
    client_disconnected: bool = False
    usage_estimated: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    cost_saved_nanos: int = 0  # a cache hit: what the answer would have cost (its own cost is 0)

    @property
    def cost_usd(self) -> float:
        return self.cost_nanos / 1e9

    @property
    def day(self) -> date:
        # Float arithmetic, like the range scans' comparisons with midnight (day_bounds), so a row is
        # never counted in one day by the aggregates and in another by a scan.
        return _EPOCH + timedelta(days=int(self.ts // 86_400))

    def model_label(self) -> str:
        """The model a report groups by: what was used upstream, else what was asked for."""
        if self.provider and self.upstream_model:
            return f"{self.provider}/{self.upstream_model}"
        return self.requested_model or NONE_VALUE

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def to_dict(self) -> JSONObject:
        return {
            "id": self.id,
            "request_id": self.request_id,
            "ts": self.ts,
            "endpoint": self.endpoint,
            "key_id": self.key_id,
            "user_id": self.user_id,
            "team_id": self.team_id,
            "org_id": self.org_id,
            "requested_model": self.requested_model,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "cost_nanos": self.cost_nanos,
            "latency_ms": self.latency_ms,
            "status": self.status,
            "error_type": self.error_type,
            "cache_hit": self.cache_hit,
            "stream": self.stream,
            "client_disconnected": self.client_disconnected,
            "usage_estimated": self.usage_estimated,
            "tags": {k: v for k, v in self.tags.items()},
            "cost_saved_nanos": self.cost_saved_nanos,
        }

    @classmethod
    def from_json(cls, raw: bytes | str) -> LedgerRow:
        """Read a row written by ``to_json`` (the spool's format); raises ``ValueError`` on anything else."""
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("a ledger row must be a JSON object")
        try:
            tags = data.get("tags") or {}
            return cls(
                id=str(data["id"]),
                request_id=str(data["request_id"]),
                ts=float(data["ts"]),
                endpoint=str(data["endpoint"]),
                key_id=_opt(data.get("key_id")),
                user_id=_opt(data.get("user_id")),
                team_id=_opt(data.get("team_id")),
                org_id=_opt(data.get("org_id")),
                requested_model=_opt(data.get("requested_model")),
                provider=_opt(data.get("provider")),
                upstream_model=_opt(data.get("upstream_model")),
                input_tokens=int(data["input_tokens"]),
                output_tokens=int(data["output_tokens"]),
                cached_tokens=int(data["cached_tokens"]),
                cost_nanos=int(data["cost_nanos"]),
                latency_ms=float(data["latency_ms"]),
                status=int(data["status"]),
                error_type=_opt(data.get("error_type")),
                cache_hit=bool(data["cache_hit"]),
                stream=bool(data["stream"]),
                client_disconnected=bool(data["client_disconnected"]),
                usage_estimated=bool(data.get("usage_estimated", False)),
                tags=clean_tags(tags) if isinstance(tags, dict) else {},
                cost_saved_nanos=int(data.get("cost_saved_nanos", 0)),  # absent from rows spooled before it existed
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a ledger row: {exc}") from exc


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def clean_tags(metadata: JSONObject | None) -> dict[str, str]:
    """Tags from a request's metadata: string values only, bounded in count and size (it is client input)."""
    if not metadata:
        return {}
    tags: dict[str, str] = {}
    for key, value in metadata.items():
        if len(tags) >= MAX_TAGS:
            break
        if isinstance(value, str) and key:
            tags[key[:MAX_TAG_KEY]] = value[:MAX_TAG_VALUE]
    return tags


@dataclass(slots=True)
class SpendLine:
    """One line of a spend report (or a total)."""

    group: str
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_nanos: int = 0
    cache_hits: int = 0
    cost_saved_nanos: int = 0
    latency_us_sum: int = 0  # every request's latency in microseconds, summed (mean = sum / requests)
    latency_buckets: list[int] = field(default_factory=lambda: [0] * _BUCKETS)  # per LATENCY_COLUMNS

    @property
    def cost_usd(self) -> float:
        return self.cost_nanos / 1e9

    def add(self, other: SpendLine) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        self.cost_nanos += other.cost_nanos
        self.cache_hits += other.cache_hits
        self.cost_saved_nanos += other.cost_saved_nanos
        self.latency_us_sum += other.latency_us_sum
        self.latency_buckets = [a + b for a, b in zip(self.latency_buckets, other.latency_buckets, strict=True)]

    def values(self) -> tuple[int, ...]:
        """Every sum in storage order (``SUM_COLUMNS``): what an aggregate row holds."""
        return (
            self.requests,
            self.errors,
            self.input_tokens,
            self.output_tokens,
            self.cached_tokens,
            self.cost_nanos,
            self.cache_hits,
            self.cost_saved_nanos,
            self.latency_us_sum,
            *self.latency_buckets,
        )

    @classmethod
    def of(cls, group: str, values: Sequence[int]) -> SpendLine:
        """The line of stored sums in ``SUM_COLUMNS`` order (the inverse of ``values``)."""
        v = values
        return cls(group, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], list(v[9 : 9 + _BUCKETS]))

    @property
    def latency_mean_ms(self) -> float | None:
        return round(self.latency_us_sum / self.requests / 1000, 3) if self.requests else None

    def latency_quantile_ms(self, q: float) -> float | None:
        """The q-quantile of the requests' latency, estimated from the buckets: linear within the bucket
        it falls in, from 0 for the first; in the open top bucket, that bucket's lower bound."""
        count = sum(self.latency_buckets)
        if not count:
            return None
        rank = q * count
        below, lower = 0, 0.0
        for n, upper in zip(self.latency_buckets, LATENCY_BOUNDS_MS, strict=False):
            if n and below + n >= rank:
                return round(lower + (upper - lower) * max(0.0, rank - below) / n, 3)
            below += n
            lower = float(upper)
        return lower


# The sums an aggregate row stores, in ``SpendLine.values`` order: the columns of ``spend_daily`` after
# (dim, day, value), and of every report read from it.
SUM_COLUMNS: tuple[str, ...] = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost_nanos",
    "cache_hits",
    "cost_saved_nanos",
    "latency_us_sum",
    *LATENCY_COLUMNS,
)


AggregateKey = tuple[str, str, str]  # (dimension, ISO day, value)


# Within one team (the team_admin's report), grouping by team or org would say nothing new.
TEAM_GROUP_BYS: tuple[GroupBy, ...] = ("user", "model", "key", "day")


def caller_dimensions(key: str | None, user: str | None, team: str | None) -> tuple[tuple[str, str], ...]:
    """The (dimension, value) pairs naming the caller: its key and user, gateway-wide and within its team."""
    key_value, user_value = key or NONE_VALUE, user or NONE_VALUE
    if not team:
        return (("key", key_value), ("user", user_value))
    # The same aggregates within the row's team, so a team's own report reads a handful of aggregate
    # rows too (never the ledger). Dimension names: "<dim>@team:<team id>".
    return (
        ("key", key_value),
        ("user", user_value),
        (f"key@team:{team}", key_value),
        (f"user@team:{team}", user_value),
    )


def shared_dimensions(team: str | None, org: str | None, model: str) -> tuple[tuple[str, str], ...]:
    """The (dimension, value) pairs many callers share: the day's total, team, org and model."""
    dims = (("all", NONE_VALUE), ("team", team or NONE_VALUE), ("org", org or NONE_VALUE), ("model", model))
    if not team:
        return dims
    return (*dims, (f"all@team:{team}", NONE_VALUE), (f"model@team:{team}", model))


AggregateDelta = list[int]  # the sums an aggregate row gains, in SUM_COLUMNS order
_FIRST_BUCKET = len(SUM_COLUMNS) - _BUCKETS
_Group = tuple[int, str | None, str | None, str | None, str | None, str]  # (day number, key, user, team, org, model)


def _column_sums(vectors: list[list[int]]) -> list[int]:
    # In C (zip + sum), one list for all: cheaper than adding lists pairwise. Never changed in place later.
    return vectors[0] if len(vectors) == 1 else list(map(sum, zip(*vectors, strict=True)))


def aggregate(rows: Iterable[LedgerRow]) -> list[tuple[AggregateKey, AggregateDelta]]:
    """The increments a set of newly inserted rows adds to the daily aggregates (``SUM_COLUMNS`` order),
    sorted by key so that concurrent writers lock aggregate rows in the same order (no deadlocks between
    replicas). Each row counts once in every dimension: all, key, user, team, org, model, and within its
    team all, key, user, model. Shadow calls count in none.

    This is the writer's hot loop, so it sums in stages: rows per distinct (day, key, user, team, org,
    model) first (a batch holds many requests of few callers), then those per (day, team, org, model) for
    the dimensions many callers share (all, team, org, model), so a wide aggregate row (latency buckets
    included) is added up from a few dozen partial sums, not from every caller's."""
    groups: dict[_Group, list[int]] = {}
    width = len(SUM_COLUMNS)
    for row in rows:
        if row.endpoint == SHADOW_ENDPOINT:
            continue  # the operator's experiment (policies/shadow.py), not the tenant's spend
        # The day number as LedgerRow.day computes it (cheaper than a date per row).
        group = (int(row.ts // 86_400), row.key_id, row.user_id, row.team_id, row.org_id, row.model_label())
        v = groups.get(group)
        if v is None:
            v = groups[group] = [0] * width
        v[0] += 1
        if row.status >= 400:
            v[1] += 1
        v[2] += row.input_tokens
        v[3] += row.output_tokens
        v[4] += row.cached_tokens
        v[5] += row.cost_nanos
        if row.cache_hit:
            v[6] += 1
        v[7] += row.cost_saved_nanos
        latency = row.latency_ms
        v[8] += int(latency * 1000 + 0.5)
        v[_FIRST_BUCKET + bisect_left(LATENCY_BOUNDS_MS, latency)] += 1
    days: dict[int, str] = {}
    acc: dict[AggregateKey, list[list[int]]] = {}
    shared: dict[tuple[int, str | None, str | None, str], list[list[int]]] = {}
    for (day_number, key, user, team, org, model), sums in groups.items():
        day = days.get(day_number)
        if day is None:
            day = days[day_number] = (_EPOCH + timedelta(days=day_number)).isoformat()
        for dim, value in caller_dimensions(key, user, team):
            found = acc.get((dim, day, value))
            if found is None:
                acc[(dim, day, value)] = [sums]
            else:
                found.append(sums)
        part = shared.get((day_number, team, org, model))
        if part is None:
            shared[(day_number, team, org, model)] = [sums]
        else:
            part.append(sums)
    for (day_number, team, org, model), parts in shared.items():
        sums = _column_sums(parts)
        day = days[day_number]
        for dim, value in shared_dimensions(team, org, model):
            found = acc.get((dim, day, value))
            if found is None:
                acc[(dim, day, value)] = [sums]
            else:
                found.append(sums)
    return sorted(((key, _column_sums(vectors)) for key, vectors in acc.items()), key=lambda item: item[0])


def unique_rows(rows: Sequence[LedgerRow]) -> list[LedgerRow]:
    """Drop repeated ids within one batch (a row spooled twice by a retry), keeping the first."""
    seen: set[str] = set()
    out: list[LedgerRow] = []
    for row in rows:
        if row.id not in seen:
            seen.add(row.id)
            out.append(row)
    return out


def dimension_for(by: GroupBy, team: str | None = None) -> str:
    """The aggregate dimension a report by ``by`` reads, within ``team`` if one is given."""
    dim = "all" if by == "day" else by
    if team is None:
        return dim
    if by not in TEAM_GROUP_BYS:
        raise ValueError(f"a report within one team groups by {', '.join(TEAM_GROUP_BYS)}, not {by!r}")
    return f"{dim}@team:{team}"


def sort_lines(lines: list[SpendLine], by: GroupBy) -> list[SpendLine]:
    """Days in date order; everything else by cost, largest first (what chargeback readers look for)."""
    if by == "day":
        return sorted(lines, key=lambda line: line.group)
    return sorted(lines, key=lambda line: (-line.cost_nanos, line.group))


class LedgerStore(Protocol):
    """Where ledger rows and their daily aggregates live. Nothing on the request path reads it."""

    async def write_batch(self, rows: Sequence[LedgerRow]) -> int:
        """Insert rows whose ``id`` is not stored yet, and their aggregates, atomically; returns how many
        were new. Idempotent: writing the same batch again adds nothing (retries and spool replays rely on it)."""
        ...

    async def spend(self, by: GroupBy, since: date, until: date, team: str | None = None) -> list[SpendLine]:
        """Spend per ``by`` over UTC days ``since``..``until`` (both included), read from the aggregates;
        with ``team``, only that team's requests (``by`` one of ``TEAM_GROUP_BYS``)."""
        ...

    async def scan_totals(self, since: date, until: date) -> SpendLine:
        """The same totals summed from the ledger rows themselves (a full range scan: audits and tests);
        shadow rows excluded, as from the aggregates."""
        ...

    async def rows_for_request(self, request_id: str) -> list[LedgerRow]:
        """Every row recorded under a request id (exactly one, unless clients reused the id)."""
        ...


def day_bounds(since: date, until: date) -> tuple[float, float]:
    """Epoch seconds of the first instant of ``since`` and of the day after ``until`` (UTC)."""
    start = datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp()
    end = datetime(until.year, until.month, until.day, tzinfo=UTC).timestamp() + 86_400
    return start, end
