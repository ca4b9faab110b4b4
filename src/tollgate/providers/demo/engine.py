"""What the demo model answers: a pure function of the request, so tests and first-time users get stable output.

It honours the parameters a client would check: ``n``, ``max_tokens``, ``stop``, ``tools``/``tool_choice``,
``response_format`` (json_object and json_schema) and ``stream`` with ``stream_options.include_usage``.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field

import orjson

from tollgate.types import JSONObject, JSONValue

DEMO_NOTICE = "This is the Tollgate demo model: no real provider was called."


@dataclass(slots=True)
class DemoReply:
    status: int
    body: bytes = b""
    parts: list[bytes] = field(default_factory=list)
    content_type: str = "application/json"


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _text(content: JSONValue) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p["text"]) for p in content if isinstance(p, dict) and p.get("text"))
    return ""


def _sample(schema: JSONValue, depth: int = 0) -> JSONValue:
    """A value that satisfies a (simple) JSON schema: first enum value, else a placeholder by type."""
    if not isinstance(schema, dict) or depth > 6:
        return "demo"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        return {k: _sample(v, depth + 1) for k, v in props.items()}
    if kind == "array":
        return [_sample(schema.get("items"), depth + 1)]
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(str(kind), "demo")


def _answer_text(messages: list[JSONValue]) -> str:
    last = messages[-1] if messages else {}
    if isinstance(last, dict) and last.get("role") == "tool":
        return f"{DEMO_NOTICE} The tool returned: {_text(last.get('content'))[:200]}"
    user = next(
        (_text(m.get("content")) for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"),
        "",
    )
    return f'{DEMO_NOTICE} You said: "{user[:200]}"'


def _pick_tool(body: JSONObject) -> JSONObject | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    messages = body.get("messages")
    if not isinstance(tools, list) or not tools or choice == "none":
        return None
    if (
        isinstance(messages, list)
        and messages
        and isinstance(messages[-1], dict)
        and messages[-1].get("role") == "tool"
    ):
        return None  # the tool already answered: now the model speaks
    wanted = None
    if isinstance(choice, dict):
        fn = choice.get("function")
        wanted = fn.get("name") if isinstance(fn, dict) else None
    for tool in tools:
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            fn = tool["function"]
            if wanted is None or fn.get("name") == wanted:  # type: ignore[union-attr]
                return fn  # type: ignore[return-value]
    return None


def _choice_content(body: JSONObject, text: str) -> tuple[str, str]:
    """(content, finish_reason) after response_format, stop and max_tokens are applied."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return orjson.dumps(_sample(schema if schema is not None else {"type": "object"})).decode(), "stop"
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return orjson.dumps({"answer": text, "demo": True}).decode(), "stop"
    stop = body.get("stop")
    stops = (
        [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)] if isinstance(stop, list) else []
    )
    for s in stops:
        if s and s in text:
            return text[: text.index(s)], "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and limit > 0 and _tokens(text) > limit:
        return text[: limit * 4], "length"
    return text, "stop"


def _tool_call(fn: JSONObject, seed: str, index: int) -> JSONObject:
    args = orjson.dumps(_sample(fn.get("parameters") or {"type": "object", "properties": {}})).decode()
    call_id = "call_" + hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:24]
    return {"id": call_id, "type": "function", "function": {"name": fn.get("name"), "arguments": args}}


def handle_chat(body: JSONObject) -> DemoReply:
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    model = str(body.get("model") or "tollgate-demo")
    prompt_text = " ".join(_text(m.get("content")) for m in messages if isinstance(m, dict))
    seed = hashlib.sha256(orjson.dumps(messages)).hexdigest()
    n_raw = body.get("n")
    n = n_raw if isinstance(n_raw, int) and n_raw > 0 else 1
    created = int(time.time())
    cid = "chatcmpl-demo" + seed[:20]
    tool = _pick_tool(body)
    choices: list[JSONObject] = []
    completion = 0
    for i in range(n):
        if tool is not None:
            call = _tool_call(tool, seed, i)
            completion += _tokens(orjson.dumps(call["function"]).decode())
            msg: JSONObject = {"role": "assistant", "content": None, "tool_calls": [call]}
            choices.append({"index": i, "message": msg, "logprobs": None, "finish_reason": "tool_calls"})
        else:
            content, finish = _choice_content(body, _answer_text(messages))
            completion += _tokens(content)
            msg = {"role": "assistant", "content": content, "refusal": None}
            choices.append({"index": i, "message": msg, "logprobs": None, "finish_reason": finish})
    usage: JSONObject = {
        "prompt_tokens": _tokens(prompt_text),
        "completion_tokens": completion,
        "total_tokens": _tokens(prompt_text) + completion,
    }
    if body.get("stream") is True:
        opts = body.get("stream_options")
        with_usage = isinstance(opts, dict) and opts.get("include_usage") is True
        return DemoReply(
            200,
            parts=_stream(cid, model, created, choices, usage if with_usage else None),
            content_type="text/event-stream",
        )
    out = {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage,
        "system_fingerprint": "tollgate-demo",
    }
    return DemoReply(200, body=orjson.dumps(out))


def _event(obj: JSONObject) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _stream(cid: str, model: str, created: int, choices: list[JSONObject], usage: JSONObject | None) -> list[bytes]:
    base: JSONObject = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}

    def chunk(index: int, delta: JSONObject, finish: str | None = None) -> bytes:
        return _event(
            {**base, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        )

    parts: list[bytes] = []
    for choice in choices:
        i = choice["index"]
        msg = choice["message"]
        assert isinstance(i, int) and isinstance(msg, dict)
        parts.append(chunk(i, {"role": "assistant", "content": ""}))
        calls = msg.get("tool_calls")
        if isinstance(calls, list):
            for k, call in enumerate(calls):
                assert isinstance(call, dict) and isinstance(call["function"], dict)
                args = str(call["function"]["arguments"])
                head = {
                    "index": k,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""},
                }
                parts.append(chunk(i, {"tool_calls": [head]}))
                mid = len(args) // 2
                for piece in (args[:mid], args[mid:]):
                    parts.append(chunk(i, {"tool_calls": [{"index": k, "function": {"arguments": piece}}]}))
        else:
            text = str(msg.get("content") or "")
            words = text.split(" ")
            for w, word in enumerate(words):
                parts.append(chunk(i, {"content": word if w == 0 else " " + word}))
        parts.append(chunk(i, {}, str(choice["finish_reason"])))
    if usage is not None:
        parts.append(_event({**base, "choices": [], "usage": usage}))
    parts.append(b"data: [DONE]\n\n")
    return parts


def handle_embeddings(body: JSONObject) -> DemoReply:
    raw = body.get("input")
    inputs: list[JSONValue] = raw if isinstance(raw, list) else [raw]
    dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) else 16
    data: list[JSONValue] = []
    total = 0
    for i, item in enumerate(inputs):
        text = item if isinstance(item, str) else orjson.dumps(item).decode()
        total += _tokens(text)
        digest = hashlib.sha256(text.encode()).digest()
        vec = [(digest[j % 32] - 127.5) / 127.5 for j in range(dims)]  # type: ignore[arg-type]
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        data.append({"object": "embedding", "index": i, "embedding": [round(v / norm, 6) for v in vec]})
    out = {
        "object": "list",
        "data": data,
        "model": body.get("model") or "tollgate-demo",
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }
    return DemoReply(200, body=orjson.dumps(out))


def handle(path: str, body: JSONObject) -> DemoReply:
    if path.endswith("/chat/completions"):
        return handle_chat(body)
    if path.endswith("/embeddings"):
        return handle_embeddings(body)
    error = {
        "error": {
            "message": f"The demo provider does not serve {path}.",
            "type": "invalid_request_error",
            "param": None,
            "code": "unsupported_endpoint",
        }
    }
    return DemoReply(404, body=orjson.dumps(error))
