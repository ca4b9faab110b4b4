"""A fake Anthropic Messages API: validates requests like the real one, answers in its wire format.

Scenarios come from the model name (see ``tests.fakes.harness``), plus two of Anthropic's own:
``529`` (overloaded) and ``error_mid_stream`` (an ``overloaded_error`` event after the stream began).
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from tests.fakes.harness import scenario_of
from tollgate.types import JSONObject, JSONValue

ANSWER = "Hello from the fake Anthropic."
ANSWER_PIECES = ("Hello", " from", " the", " fake", " Anthropic.")
TOOL_ID = "toolu_fake123"
TOOL_INPUT_PIECES = ('{"city', '": "Par', 'is"}')
MESSAGE_ID = "msg_fake1"
CACHE_READ = 3

# Top-level fields of the Messages API this fake knows; the real API rejects anything else.
KNOWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
        "output_config",
        "cache_control",
        "inference_geo",
        "speed",
    }
)
BLOCK_TYPES = frozenset(
    {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking", "search_result"}
)
TOOL_FIELDS = frozenset({"name", "description", "input_schema", "type", "cache_control", "strict"})


def _error(status: int, etype: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_fake"}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def _invalid(message: str) -> web.Response:
    return _error(400, "invalid_request_error", message)


def _validate(body: object) -> str | None:
    """The first problem the real API would report for this body, or ``None``."""
    if not isinstance(body, dict):
        return "body: Input should be an object"
    for name in body:
        if name not in KNOWN_FIELDS:
            return f"{name}: Extra inputs are not permitted"
    for name in ("model", "messages", "max_tokens"):
        if name not in body:
            return f"{name}: Field required"
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 0:
        return "max_tokens: Input should be a valid integer"
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        return "temperature: Input should be less than or equal to 1"
    if body.get("system") is not None and not isinstance(body["system"], str | list):
        return "system: Input should be a valid string or list"
    if body.get("metadata") is not None and set(body["metadata"]) - {"user_id"}:
        return "metadata: Extra inputs are not permitted"
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        return "stop_sequences: Input should be a valid list of strings"
    return _validate_messages(body["messages"]) or _validate_tools(body)


def _validate_messages(messages: object) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    pending: set[str] = set()  # tool_use ids of the previous assistant turn, each needing a result now
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if set(msg) - {"role", "content"}:
            return f"messages.{i}: Extra inputs are not permitted"
        content = msg.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list) or not content:
            return f"messages.{i}.content: Input should be a valid string or a non-empty list"
        problem = _validate_blocks(i, msg["role"], content, pending)
        if problem is not None:
            return problem
        if pending:
            return f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after"
        pending = {b["id"] for b in content if b.get("type") == "tool_use"}
    return None


def _validate_blocks(i: int, role: str, content: list[JSONValue], pending: set[str]) -> str | None:
    """Checks the blocks of one message; removes the tool_use ids it answers from ``pending``."""
    other_seen = False
    for j, block in enumerate(content):
        where = f"messages.{i}.content.{j}"
        if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
            return f"{where}: Input tag does not match any of the expected tags"
        kind = block["type"]
        if kind == "tool_use" and (role != "assistant" or not isinstance(block.get("input"), dict)):
            return f"{where}: tool_use blocks need an object 'input' in an assistant message"
        if kind == "tool_result":
            if other_seen:
                return f"{where}: tool_result blocks must come first in the message content"
            if block.get("tool_use_id") not in pending:
                unknown = block.get("tool_use_id")
                return f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: {unknown}"
            pending.discard(str(block["tool_use_id"]))
        else:
            other_seen = True
        if kind == "text" and not block.get("text"):
            return f"{where}: text content blocks must be non-empty"
        if kind == "image" and (block.get("source") or {}).get("type") not in ("base64", "url"):
            return f"{where}.source: Input tag does not match any of the expected tags"
    return None


def _validate_tools(body: JSONObject) -> str | None:
    tools = body.get("tools")
    if tools is not None:
        for i, tool in enumerate(tools):
            extra = set(tool) - TOOL_FIELDS
            if extra:
                return f"tools.{i}.{sorted(extra)[0]}: Extra inputs are not permitted"
            if not isinstance(tool.get("name"), str) or not isinstance(tool.get("input_schema"), dict):
                return f"tools.{i}: 'name' and 'input_schema' are required"
    choice = body.get("tool_choice")
    if choice is not None:
        if choice.get("type") not in ("auto", "any", "tool", "none"):
            return "tool_choice.type: Input tag does not match any of the expected tags"
        if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
            return "tool_choice.name: Field required"
    return None


async def _failure(scenario: str) -> web.Response | None:
    if scenario == "429_retry_after":
        return _error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            {"retry-after": "7"},
        )
    if scenario == "500":
        return _error(500, "api_error", "Internal server error")
    if scenario == "529":
        return _error(529, "overloaded_error", "Overloaded")
    if scenario == "401":
        return _error(401, "authentication_error", "invalid x-api-key")
    if scenario == "400":
        return _invalid("messages: text content blocks must be non-empty")
    if scenario == "timeout_before_headers":
        await asyncio.sleep(30)
    if scenario == "garbage":
        return web.Response(status=200, body=b"<html>upstream proxy error</html>", content_type="text/html")
    return None


def _wants_tool(body: JSONObject) -> bool:
    if not body.get("tools") or (body.get("tool_choice") or {}).get("type") == "none":
        return False
    last = body["messages"][-1]["content"]
    answered = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
    return not answered


def _usage(body: JSONObject, output: int) -> JSONObject:
    chars = len(orjson.dumps(body["messages"])) + len(str(body.get("system") or ""))
    return {
        "input_tokens": chars // 4 + 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": CACHE_READ,
        "output_tokens": output,
    }


def _event(name: str, payload: JSONObject) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


async def messages(request: web.Request) -> web.StreamResponse:
    if not request.headers.get("x-api-key"):
        return _error(401, "authentication_error", "x-api-key header is required")
    if not request.headers.get("anthropic-version"):
        return _invalid("anthropic-version: header is required")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _invalid("There was an issue with your request body: invalid JSON")
    problem = _validate(body)
    if problem is not None:
        return _invalid(problem)
    model = body["model"]
    scenario = scenario_of(model)
    failed = await _failure(scenario)
    if failed is not None:
        return failed
    tool = _wants_tool(body)
    tool_name = body["tools"][0]["name"] if tool else ""
    if not body.get("stream"):
        content: list[JSONValue] = (
            [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": TOOL_ID, "name": tool_name, "input": {"city": "Paris"}},
            ]
            if tool
            else [{"type": "text", "text": ANSWER}]
        )
        out = {
            "id": MESSAGE_ID,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "tool_use" if tool else "end_turn",
            "stop_sequence": None,
            "usage": _usage(body, 5),
        }
        return web.Response(body=orjson.dumps(out), content_type="application/json")
    return await _stream(request, body, tool_name if tool else None, scenario)


async def _stream(request: web.Request, body: JSONObject, tool_name: str | None, scenario: str) -> web.StreamResponse:
    usage = _usage(body, 1)
    start = {
        "id": MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    parts = [
        _event("message_start", {"type": "message_start", "message": start}),
        _event("ping", {"type": "ping"}),
    ]

    def block(index: int, content_block: JSONObject, deltas: list[JSONObject]) -> None:
        parts.append(
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": content_block},
            )
        )
        for delta in deltas:
            parts.append(_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        parts.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))

    if tool_name is not None:
        block(0, {"type": "text", "text": ""}, [{"type": "text_delta", "text": "Let me check."}])
        block(
            1,
            {"type": "tool_use", "id": TOOL_ID, "name": tool_name, "input": {}},
            [{"type": "input_json_delta", "partial_json": ""}]
            + [{"type": "input_json_delta", "partial_json": p} for p in TOOL_INPUT_PIECES],
        )
    else:
        block(0, {"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in ANSWER_PIECES])
    parts.append(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use" if tool_name else "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
        )
    )
    parts.append(_event("message_stop", {"type": "message_stop"}))

    resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
    await resp.prepare(request)
    for i, part in enumerate(parts):
        if i == 4 and scenario in ("cut_stream", "stall_mid_stream", "error_mid_stream"):
            # Let the first events reach the gateway on their own, so the failure comes after it committed.
            await asyncio.sleep(0.05)
            if scenario == "error_mid_stream":
                await resp.write(
                    _event(
                        "error",
                        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                    )
                )
                await resp.write_eof()
                return resp
            if scenario == "stall_mid_stream":
                await asyncio.sleep(30)
            assert request.transport is not None
            request.transport.close()  # drop the connection without message_stop
            return resp
        await resp.write(part)
    await resp.write_eof()
    return resp


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    return app
