"""A fake Langfuse server: the public ingestion endpoint ``POST /api/public/ingestion``.

It speaks the real API's shapes: HTTP basic auth with the project's public key (user) and secret key
(password), 401 with ``{"message": ...}`` on wrong keys, and for a batch a 207 multi-status answer
``{"successes": [{"id", "status": 201}], "errors": [{"id", "status": 400, "message", "error"}]}`` with one
entry per event (by the envelope id). Each event is checked as the server checks it: an envelope with
``id``, ``type``, ``timestamp`` and ``body``, a known type, and for ``trace-create`` / ``generation-create``
the fields' types (ids and times strings, ``usageDetails`` and ``costDetails`` maps of numbers, ``level``
one of DEBUG, DEFAULT, WARNING, ERROR). Accepted events are kept in ``state.events``.

Test knobs on ``LangfuseState``: ``fail_next`` answers that many requests with 503 first (the sender must
retry), ``reject_types`` refuses every event of those types in the 207 body, ``delay`` holds each answer.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.harness import FakeServer, serve

PUBLIC_KEY = "pk-lf-test-0123"
SECRET_KEY = "sk-lf-test-4567"
EVENT_TYPES = {
    "trace-create",
    "span-create",
    "span-update",
    "generation-create",
    "generation-update",
    "event-create",
    "score-create",
    "sdk-log",
}
LEVELS = {"DEBUG", "DEFAULT", "WARNING", "ERROR"}
_STRING_FIELDS = {
    "trace-create": ("id", "timestamp", "name", "userId", "sessionId"),
    "generation-create": ("id", "traceId", "name", "startTime", "endTime", "completionStartTime", "model"),
}


@dataclass
class LangfuseState:
    events: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0
    reject_types: set[str] = field(default_factory=set)
    delay: float = 0.0
    answered: list[int] = field(default_factory=list)  # the status of every ingestion request

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e["body"] for e in self.events if e["type"] == kind]


def _problem(event: Any) -> str | None:
    if not isinstance(event, dict):
        return "event must be an object"
    for name in ("id", "type", "timestamp"):
        if not isinstance(event.get(name), str) or not event[name]:
            return f"{name} must be a non-empty string"
    if event["type"] not in EVENT_TYPES:
        return f"unknown event type {event['type']!r}"
    body = event.get("body")
    if not isinstance(body, dict):
        return "body must be an object"
    for name in _STRING_FIELDS.get(event["type"], ()):
        if name in body and body[name] is not None and not isinstance(body[name], str):
            return f"body.{name} must be a string"
    if event["type"] == "trace-create" and not body.get("id"):
        return "body.id is required"
    if event["type"] == "generation-create":
        for name in ("usageDetails", "costDetails"):
            value = body.get(name)
            if value is not None and not (
                isinstance(value, dict)
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value.values())
            ):
                return f"body.{name} must map names to numbers"
        if body.get("level") is not None and body["level"] not in LEVELS:
            return "body.level is not a level"
    return None


def make_app(state: LangfuseState) -> web.Application:
    expected = "Basic " + base64.b64encode(f"{PUBLIC_KEY}:{SECRET_KEY}".encode()).decode()

    async def ingest(request: web.Request) -> web.Response:
        if state.delay:
            await asyncio.sleep(state.delay)
        if request.headers.get("Authorization") != expected:
            state.answered.append(401)
            return web.json_response(
                {"message": "Invalid credentials. Confirm that you've configured the correct host."}, status=401
            )
        if state.fail_next > 0:
            state.fail_next -= 1
            state.answered.append(503)
            return web.json_response({"message": "Service Unavailable"}, status=503)
        try:
            payload = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            state.answered.append(400)
            return web.json_response({"message": "Invalid JSON"}, status=400)
        batch = payload.get("batch") if isinstance(payload, dict) else None
        if not isinstance(batch, list):
            state.answered.append(400)
            return web.json_response({"message": "Invalid request data", "error": "batch is required"}, status=400)
        successes, errors = [], []
        for event in batch:
            event_id = event.get("id") if isinstance(event, dict) else None
            problem = _problem(event)
            if problem is None and event["type"] in state.reject_types:
                problem = f"{event['type']} refused by this test"
            if problem is not None:
                errors.append(
                    {"id": event_id or "", "status": 400, "message": "Invalid request data", "error": problem}
                )
            else:
                successes.append({"id": event_id, "status": 201})
                state.events.append(event)
        state.answered.append(207)
        return web.json_response({"successes": successes, "errors": errors}, status=207)

    app = web.Application()
    app.router.add_post("/api/public/ingestion", ingest)
    return app


@contextmanager
def serve_langfuse(state: LangfuseState | None = None) -> Iterator[tuple[FakeServer, LangfuseState]]:
    state = state or LangfuseState()
    with serve(make_app(state)) as server:
        yield server, state
