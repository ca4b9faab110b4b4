"""Render gateway errors in each client's format (OpenAI and Anthropic error shapes)."""

from __future__ import annotations

from tollgate.errors import TollgateError
from tollgate.types import JSONObject

# Anthropic's error types by HTTP status (their API reference); anything else is an api_error.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def openai_error(err: TollgateError) -> JSONObject:
    return {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}


def anthropic_error(err: TollgateError) -> JSONObject:
    return {
        "type": "error",
        "error": {"type": _ANTHROPIC_TYPES.get(err.status, "api_error"), "message": err.message},
    }
