"""Chargeback reports: spend by user, team, org, model, key or day, as a table, CSV or JSON.

Read from the ledger's daily aggregates (fast at any ledger size); money is summed as integer
nano-dollars and printed as exact decimals, so the total is exactly the sum of the lines and of the
ledger rows in the range. Cache hits cost 0 and carry what they saved (``cost_saved``); latency per line
is the mean and the p50 / p95 estimated from the aggregates' buckets (see state/ledger.py).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

import orjson

from tollgate.state.ledger import GROUP_BYS, NONE_VALUE, TEAM_GROUP_BYS, GroupBy, LedgerStore, SpendLine
from tollgate.types import JSONObject, JSONValue

ReportFormat = Literal["table", "csv", "json"]
FORMATS: tuple[ReportFormat, ...] = ("table", "csv", "json")
NONE_LABEL = "(none)"


class ReportError(ValueError):
    """Bad report parameters; the message is meant for the person who asked."""


def usd(nanos: int) -> str:
    """Exact decimal dollars from nano-dollars: 1500 → '0.000001500'."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), 1_000_000_000)
    return f"{sign}{whole}.{frac:09d}"


def parse_day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ReportError(f"'{name}' must be a date as YYYY-MM-DD, not {text!r}.") from None


def parse_by(text: str, team: str | None = None) -> GroupBy:
    """``by`` checked; within one team (``team`` given) only the groupings that split a team are allowed."""
    allowed = GROUP_BYS if team is None else TEAM_GROUP_BYS
    if text not in allowed:
        within = "" if team is None else f" within team '{team}'"
        raise ReportError(f"'by' must be one of {', '.join(allowed)}{within}, not {text!r}.")
    return text


def parse_format(text: str, allowed: tuple[ReportFormat, ...] = FORMATS) -> ReportFormat:
    if text not in allowed:
        raise ReportError(f"'format' must be one of {', '.join(allowed)}, not {text!r}.")
    return text


def date_range(since: str | None, until: str | None, today: date | None = None) -> tuple[date, date]:
    """Both days included, UTC. Defaults: from the first of this month until today."""
    today = today or datetime.now(UTC).date()
    first = parse_day(since, "since") if since else today.replace(day=1)
    last = parse_day(until, "until") if until else today
    if first > last:
        raise ReportError(f"'since' ({first}) is after 'until' ({last}).")
    return first, last


@dataclass(frozen=True, slots=True)
class SpendReport:
    by: GroupBy
    since: date
    until: date
    lines: list[SpendLine]
    total: SpendLine
    team: str | None = None  # the report covers this team's requests only

    def to_json(self) -> JSONObject:
        return {
            "object": "spend_report",
            "by": self.by,
            "team": self.team,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "currency": "USD",
            "data": [_line_json(line, self.by) for line in self.lines],
            "total": _line_json(self.total, None),
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        # Columns added after the first release go last, so readers of the first columns keep working.
        head = [self.by, "requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "cost_usd"]
        writer.writerow([*head, "cache_hits", "cost_saved_usd"])
        for line in [*self.lines, self.total]:
            label = "TOTAL" if line is self.total else _label(line.group)
            writer.writerow(
                [
                    label,
                    line.requests,
                    line.errors,
                    line.input_tokens,
                    line.output_tokens,
                    line.cached_tokens,
                    usd(line.cost_nanos),
                    line.cache_hits,
                    usd(line.cost_saved_nanos),
                ]
            )
        return out.getvalue()

    def to_table(self) -> str:
        head = (
            self.by.upper(),
            "REQUESTS",
            "ERRORS",
            "INPUT TOK",
            "OUTPUT TOK",
            "CACHED TOK",
            "COST (USD)",
            "CACHE HITS",
            "SAVED (USD)",
        )
        body = [_cells(_label(line.group), line) for line in self.lines]
        total = _cells("TOTAL", self.total)
        widths = [max(len(r[i]) for r in [head, *body, total]) for i in range(len(head))]

        def fmt(cells: tuple[str, ...]) -> str:
            first = cells[0].ljust(widths[0])
            return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

        rule = "  ".join("-" * w for w in widths)
        within = "" if self.team is None else f" within team {self.team}"
        title = f"Spend by {self.by}{within}, {self.since} to {self.until} (UTC, both days included)"
        return "\n".join([title, "", fmt(head), rule, *(fmt(r) for r in body), rule, fmt(total)]) + "\n"

    def render(self, fmt: ReportFormat) -> str:
        if fmt == "csv":
            return self.to_csv()
        if fmt == "json":
            return orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n"
        return self.to_table()


def _cells(label: str, line: SpendLine) -> tuple[str, ...]:
    return (
        label,
        f"{line.requests:,}",
        f"{line.errors:,}",
        f"{line.input_tokens:,}",
        f"{line.output_tokens:,}",
        f"{line.cached_tokens:,}",
        usd(line.cost_nanos),
        f"{line.cache_hits:,}",
        usd(line.cost_saved_nanos),
    )


def _label(group: str) -> str:
    return NONE_LABEL if group == NONE_VALUE else group


def _line_json(line: SpendLine, by: GroupBy | None) -> JSONObject:
    out: JSONObject = {}
    if by is not None:
        group: JSONValue = None if line.group == NONE_VALUE else line.group
        out[by] = group
    out.update(
        {
            "requests": line.requests,
            "errors": line.errors,
            "input_tokens": line.input_tokens,
            "output_tokens": line.output_tokens,
            "cached_tokens": line.cached_tokens,
            "cost_usd": usd(line.cost_nanos),  # a decimal string: exact, unlike a JSON float
            "cost_nanousd": line.cost_nanos,
            "cache_hits": line.cache_hits,
            "cost_saved_usd": usd(line.cost_saved_nanos),  # what cache hits would have cost
            "cost_saved_nanousd": line.cost_saved_nanos,
            **latency_json(line),
        }
    )
    return out


def latency_json(line: SpendLine) -> JSONObject:
    """The mean latency, and p50 / p95 estimated from the aggregates' buckets (``None`` without requests)."""
    return {
        "latency_mean_ms": line.latency_mean_ms,
        "latency_p50_ms": line.latency_quantile_ms(0.5),
        "latency_p95_ms": line.latency_quantile_ms(0.95),
    }


async def spend_report(
    store: LedgerStore, by: GroupBy, since: date, until: date, team: str | None = None
) -> SpendReport:
    """Spend per ``by`` (within ``team`` when given: check ``by`` with ``parse_by(text, team)`` first)."""
    lines = await store.spend(by, since, until, team)
    total = SpendLine("total")
    for line in lines:
        total.add(line)
    return SpendReport(by, since, until, lines, total, team)
