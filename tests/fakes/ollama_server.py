"""A fake Ollama server speaking the native API: /api/chat (NDJSON streams), /api/embed and /api/tags.

It checks request shapes the way Ollama's Go decoder does (a tool-call ``arguments`` string or a
non-string ``content`` is a 400), so a translation mistake fails here as it would against a real server.
Scenarios come from the model name (see ``tests.fakes.harness``); besides the shared ones it knows
``404`` (model not found) and ``error_mid_stream``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
from aiohttp import web

from tests.fakes.harness import scenario_of

ANSWER_PIECES = ("Hello", " from", " the", " fake", " Ollama.")
ANSWER = "".join(ANSWER_PIECES)
EMBEDDING = [0.25, -0.5, 0.125]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"error": message}), content_type="application/json")


def _shape_error(body: dict) -> str | None:  # type: ignore[type-arg]
    """What Ollama's strict JSON decoding would reject in a chat request."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model is required"
    if not isinstance(body.get("messages"), list):
        return "json: cannot unmarshal messages"
    for msg in body["messages"]:
        if msg.get("role") not in ("system", "user", "assistant", "tool"):
            return f"invalid role {msg.get('role')!r}"
        if not isinstance(msg.get("content", ""), str):
            return "json: cannot unmarshal array into Go struct field Message.messages.content of type string"
        if not all(isinstance(i, str) for i in msg.get("images", [])):
            return "json: cannot unmarshal images"
        for call in msg.get("tool_calls", []):
            if not isinstance(call.get("function", {}).get("arguments"), dict):
                return "json: cannot unmarshal string into Go value of type api.ToolCallFunctionArguments"
    if "options" in body and not isinstance(body["options"], dict):
        return "json: cannot unmarshal options"
    return None


def _tool_call(body: dict) -> dict | None:  # type: ignore[type-arg]
    tools = body.get("tools")
    if not tools or body["messages"][-1].get("role") == "tool":
        return None
    fn = tools[0]["function"]
    return {"function": {"index": 0, "name": fn["name"], "arguments": {"city": "Paris"}}}


def _sample(schema: dict) -> object:  # type: ignore[type-arg]
    kind = schema.get("type")
    if kind == "object":
        return {k: _sample(v) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [_sample(schema.get("items", {}))]
    return {"integer": 42, "number": 1.5, "boolean": True}.get(str(kind), "fake")


def _answer_pieces(body: dict) -> tuple[str, ...]:  # type: ignore[type-arg]
    fmt = body.get("format")
    if fmt == "json":
        return ('{"answer": ', '"Hello"}')
    if isinstance(fmt, dict):
        return (orjson.dumps(_sample(fmt)).decode(),)
    last = body["messages"][-1]
    if last.get("role") == "tool":
        return ("The tool said: ", last.get("content", ""), f" ({last.get('tool_name', '?')})")
    return ANSWER_PIECES


def _final(model: str, body: dict, pieces: int, reason: str) -> dict:  # type: ignore[type-arg]
    prompt = sum(len(m.get("content", "")) for m in body["messages"]) // 4 + 1
    return {
        "model": model,
        "created_at": _now(),
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": reason,
        "total_duration": 4_883_583_458,
        "load_duration": 1_334_875,
        "prompt_eval_count": prompt,
        "prompt_eval_duration": 342_546_000,
        "eval_count": pieces,
        "eval_duration": 4_535_599_000,
    }


async def _failure(scenario: str, model: str) -> web.Response | None:
    if scenario == "500":
        return _error(500, "llama runner process has terminated: exit status 2")
    if scenario == "404":
        return _error(404, f'model "{model}" not found, try pulling it first')
    if scenario == "timeout_before_headers":
        await asyncio.sleep(30)
    if scenario == "garbage":
        return web.Response(status=200, body=b"<html>502 Bad Gateway</html>", content_type="text/html")
    return None


async def chat(request: web.Request) -> web.StreamResponse:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _error(400, "invalid character in request body")
    problem = _shape_error(body)
    if problem is not None:
        return _error(400, problem)
    model = body["model"]
    scenario = scenario_of(model)
    failed = await _failure(scenario, model)
    if failed is not None:
        return failed
    call = _tool_call(body)
    pieces = () if call else _answer_pieces(body)
    limit = (body.get("options") or {}).get("num_predict")
    reason = "stop"
    if isinstance(limit, int) and 0 < limit < len(pieces):
        pieces, reason = pieces[:limit], "length"
    if body.get("stream", True) is False:
        out = _final(model, body, len(pieces) or 1, reason)
        out["message"] = {"role": "assistant", "content": "".join(pieces)}
        if call:
            out["message"]["tool_calls"] = [call]
        return web.Response(body=orjson.dumps(out), content_type="application/json")
    resp = web.StreamResponse(headers={"content-type": "application/x-ndjson"})
    await resp.prepare(request)
    lines = [
        {"model": model, "created_at": _now(), "message": {"role": "assistant", "content": p}, "done": False}
        for p in pieces
    ]
    if call:
        lines.append(
            {
                "model": model,
                "created_at": _now(),
                "done": False,
                "message": {"role": "assistant", "content": "", "tool_calls": [call]},
            }
        )
    lines.append(_final(model, body, len(pieces) or 1, reason))
    for i, line in enumerate(lines):
        if scenario == "cut_stream" and i == 2:
            assert request.transport is not None
            request.transport.close()  # drop the connection before the done object
            return resp
        if scenario == "error_mid_stream" and i == 2:
            await resp.write(orjson.dumps({"error": "an error was encountered while running the model"}) + b"\n")
            break
        await resp.write(orjson.dumps(line) + b"\n")
    await resp.write_eof()
    return resp


async def embed(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    model = body.get("model", "")
    failed = await _failure(scenario_of(model), model)
    if failed is not None:
        return failed
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    if not all(isinstance(i, str) for i in inputs):
        return _error(400, "invalid input type")
    out = {
        "model": model,
        "embeddings": [EMBEDDING for _ in inputs],
        "total_duration": 14_143_917,
        "load_duration": 1_019_500,
        "prompt_eval_count": 4 * len(inputs),
    }
    return web.Response(body=orjson.dumps(out), content_type="application/json")


async def tags(request: web.Request) -> web.Response:
    models = [
        {
            "name": name,
            "model": name,
            "modified_at": "2025-01-01T00:00:00Z",
            "size": 2_019_393_189,
            "details": {"family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
        }
        for name in ("llama3.2:latest", "nomic-embed-text:latest")
    ]
    return web.Response(body=orjson.dumps({"models": models}), content_type="application/json")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/embed", embed)
    app.router.add_get("/api/tags", tags)
    return app
