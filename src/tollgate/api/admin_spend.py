"""``GET /admin/spend``: the chargeback report (by user, team, org, model, key or day) as JSON or CSV."""

from __future__ import annotations

from tollgate.api.http import Request, send_bytes, send_json
from tollgate.context import RequestContext
from tollgate.core.gateway import Gateway
from tollgate.errors import InvalidRequestError, PermissionDeniedError
from tollgate.reports import ReportError, date_range, parse_by, parse_format, spend_report

# Gateway-wide spend is for admins and for the read-only viewer role (the "viewer: reports").
# A team_admin would need team-scoped aggregates, which the ledger does not keep (yet).
SPEND_READERS = ("admin", "viewer")


async def spend(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    principal = await gw.authenticate(ctx, request.headers)
    if principal.role not in SPEND_READERS:
        raise PermissionDeniedError(
            f"The spend report needs a key with role {' or '.join(SPEND_READERS)}; this key has role "
            f"'{principal.role}'.",
            code="insufficient_role",
        )
    query = request.query
    try:
        by = parse_by(query.get("by", "user"))
        since, until = date_range(query.get("since"), query.get("until"))
        fmt = parse_format(query.get("format", "json"), ("json", "csv"))
    except ReportError as exc:
        raise InvalidRequestError(str(exc)) from None
    report = await spend_report(gw.storage.ledger, by, since, until)
    if fmt == "csv":
        filename = f"spend-by-{by}-{since}-{until}.csv"
        headers = [
            (b"content-type", b"text/csv; charset=utf-8"),
            (b"content-disposition", f'attachment; filename="{filename}"'.encode()),
            *ctx.response_headers(),
        ]
        await send_bytes(request.send, 200, report.to_csv().encode(), headers)
        return
    await send_json(request.send, 200, report.to_json(), ctx.response_headers())
