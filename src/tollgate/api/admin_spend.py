"""``GET /admin/spend``: the chargeback report (by user, team, org, model, key or day) as JSON or CSV."""

from __future__ import annotations

from tollgate.api.http import Request, send_bytes, send_json
from tollgate.context import RequestContext
from tollgate.core.gateway import Gateway
from tollgate.errors import InvalidRequestError, PermissionDeniedError
from tollgate.reports import ReportError, date_range, parse_by, parse_format, spend_report

# Gateway-wide spend is for admins and for the read-only viewer role (the "viewer: reports");
# a team_admin reads its own team's spend (the ledger keeps per-team aggregates for it).
SPEND_READERS = ("admin", "viewer", "team_admin")


async def spend(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    principal = await gw.authenticate(ctx, request.headers)
    if principal.role not in SPEND_READERS:
        raise PermissionDeniedError(
            f"The spend report needs a key with role {' or '.join(SPEND_READERS)}; this key has role "
            f"'{principal.role}'.",
            code="insufficient_role",
        )
    query = request.query
    team = query.get("team") or None
    if principal.role == "team_admin":
        own = principal.team_id
        if own is None:
            raise PermissionDeniedError(
                "This team_admin key belongs to no team, so it has no team spend to read.", code="insufficient_role"
            )
        if team is not None and team != own:
            raise PermissionDeniedError(
                f"A team_admin key can read the spend of its own team ('{own}') only.", code="insufficient_role"
            )
        team = own
    try:
        by = parse_by(query.get("by", "user"), team)
        since, until = date_range(query.get("since"), query.get("until"))
        fmt = parse_format(query.get("format", "json"), ("json", "csv"))
    except ReportError as exc:
        raise InvalidRequestError(str(exc)) from None
    report = await spend_report(gw.storage.ledger, by, since, until, team)
    if fmt == "csv":
        within = "" if team is None else f"-team-{_safe(team)}"
        filename = f"spend-by-{by}{within}-{since}-{until}.csv"
        headers = [
            (b"content-type", b"text/csv; charset=utf-8"),
            (b"content-disposition", f'attachment; filename="{filename}"'.encode()),
            *ctx.response_headers(),
        ]
        await send_bytes(request.send, 200, report.to_csv().encode(), headers)
        return
    await send_json(request.send, 200, report.to_json(), ctx.response_headers())


def _safe(name: str) -> str:
    """A team id as it may appear in a download's file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64]
