"""Validation of admin API bodies: each malformed or out-of-range field is a 400 that names it."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Collection
from datetime import UTC, datetime
from typing import cast

import orjson

from tollgate.errors import InvalidRequestError
from tollgate.policies.model_access import ALL_OF
from tollgate.state.tenants import BUDGET_PERIODS, LIMIT_FIELDS, ROLES, BudgetSpec, LimitSpec, Role
from tollgate.types import JSONObject, JSONValue

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
# Ceilings far above any real use, so a typo (an extra three zeros) or garbage is refused, not stored.
LIMIT_CEILINGS = {
    "rpm": 10_000_000,
    "tpm": 10_000_000_000,
    "input_tpm": 10_000_000_000,
    "output_tpm": 10_000_000_000,
    "max_parallel": 100_000,
}
MAX_BUDGET_USD = 1_000_000_000.0
MAX_EXPIRY_SECONDS = 10 * 365 * 86400
_MAX_MODELS = 256
_MAX_METADATA_BYTES = 16 * 1024


def _bad(field: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"'{field}' {message}", param=field)


class Body:
    """A JSON object read field by field; fields it does not know are refused (they are usually typos)."""

    def __init__(self, data: JSONObject, allowed: Collection[str]) -> None:
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise InvalidRequestError(
                f"Unknown field '{unknown[0]}'. Allowed fields: {', '.join(sorted(allowed))}.", param=unknown[0]
            )
        self.data = data

    def has(self, name: str) -> bool:
        return name in self.data

    def text(self, name: str, *, required: bool = False, max_len: int = 200) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise _bad(name, "is required and must be a non-empty string.")
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > max_len:
            raise _bad(name, f"must be a non-empty string of at most {max_len} characters.")
        return value.strip()

    def ident(self, name: str, *, required: bool = False) -> str | None:
        value = self.text(name, required=required, max_len=64)
        if value is not None and not _ID.fullmatch(value):
            raise _bad(name, "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit.")
        return value

    def email(self, name: str = "email") -> str | None:
        value = self.text(name, max_len=320)
        if value is not None and not _EMAIL.fullmatch(value):
            raise _bad(name, "must be an email address.")
        return value

    def role(self, name: str = "role") -> Role | None:
        value = self.data.get(name)
        if value is None:
            return None
        if value not in ROLES:
            raise _bad(name, f"must be one of {', '.join(ROLES)}.")
        return value

    def models(self, name: str = "allowed_models") -> tuple[str, ...] | None:
        value = self.data.get(name)
        if value is None:
            return None
        if (
            not isinstance(value, list)
            or len(value) > _MAX_MODELS
            or not all(isinstance(m, str) and m.strip() and len(m) <= 256 and ALL_OF not in m for m in value)
        ):
            raise _bad(
                name,
                f"must be an array of at most {_MAX_MODELS} model names or patterns (such as 'gpt-4o*'), "
                f"without '{ALL_OF}'.",
            )
        return tuple(dict.fromkeys(cast(list[str], value)))

    def metadata(self, name: str = "metadata") -> JSONObject | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, dict) or len(orjson.dumps(value)) > _MAX_METADATA_BYTES:
            raise _bad(name, f"must be an object of at most {_MAX_METADATA_BYTES // 1024} KB of JSON.")
        return value

    def limits(self, name: str = "limits") -> LimitSpec | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise _bad(name, f"must be an object with any of {', '.join(LIMIT_FIELDS)}.")
        unknown = sorted(set(value) - set(LIMIT_FIELDS))
        if unknown:
            raise _bad(f"{name}.{unknown[0]}", f"is not a limit; use {', '.join(LIMIT_FIELDS)}.")
        parsed: dict[str, int | None] = {}
        for field in LIMIT_FIELDS:
            v = value.get(field)
            if v is None:
                parsed[field] = None
                continue
            ceiling = LIMIT_CEILINGS[field]
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= ceiling:
                raise _bad(f"{name}.{field}", f"must be a whole number from 1 to {ceiling:,} (or null for no limit).")
            parsed[field] = v
        return LimitSpec(**parsed)

    def budget(self, name: str = "budget") -> BudgetSpec | None:
        """The budget, or None when absent or null (``has`` tells the two apart for updates)."""
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise _bad(name, 'must be an object like {"limit_usd": 100, "period": "monthly"}, or null.')
        unknown = sorted(set(value) - {"limit_usd", "period"})
        if unknown:
            raise _bad(f"{name}.{unknown[0]}", "is not a budget field; use limit_usd and period.")
        limit = value.get("limit_usd")
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int | float)
            or not math.isfinite(limit)
            or not 0 <= limit <= MAX_BUDGET_USD
        ):
            raise _bad(f"{name}.limit_usd", f"must be a number of US dollars from 0 to {MAX_BUDGET_USD:,.0f}.")
        period = value.get("period", "monthly")
        if period not in BUDGET_PERIODS:
            raise _bad(f"{name}.period", f"must be one of {', '.join(BUDGET_PERIODS)}.")
        return BudgetSpec(float(limit), period)

    def expiry(self, now: float | None = None) -> float | None:
        """``expires_in_seconds`` (relative) or ``expires_at`` (Unix time); None for a key that never expires."""
        now = time.time() if now is None else now
        if self.data.get("expires_in_seconds") is not None and self.data.get("expires_at") is not None:
            raise _bad("expires_at", "cannot be combined with 'expires_in_seconds'; send one of them.")
        rel = self.data.get("expires_in_seconds")
        if rel is not None:
            if isinstance(rel, bool) or not isinstance(rel, int | float) or not 0 < rel <= MAX_EXPIRY_SECONDS:
                raise _bad("expires_in_seconds", f"must be a positive number of seconds up to {MAX_EXPIRY_SECONDS}.")
            return now + float(rel)
        at = self.data.get("expires_at")
        if at is not None:
            if isinstance(at, bool) or not isinstance(at, int | float) or not now < at <= now + MAX_EXPIRY_SECONDS:
                raise _bad("expires_at", "must be a Unix time in the future (seconds), at most ten years ahead.")
            return float(at)
        return None


def query_time(query: dict[str, str], name: str) -> float | None:
    """A query parameter holding a Unix time or an ISO 8601 date-time (UTC when no zone is given)."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(name, "must be a Unix time or an ISO 8601 date-time such as 2026-01-31T00:00:00Z.") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def query_int(query: dict[str, str], name: str, default: int, ceiling: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= ceiling:
        raise _bad(name, f"must be a whole number from 1 to {ceiling}.")
    return int(raw)


def query_flag(query: dict[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("1", "true", "yes")


def json_list(items: list[JSONObject]) -> JSONObject:
    data: list[JSONValue] = list(items)
    return {"object": "list", "data": data}
