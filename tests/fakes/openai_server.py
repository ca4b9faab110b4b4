"""A fake OpenAI API (also serves Azure's deployment URLs): chat completions, streams, embeddings, completions."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time

import orjson
from aiohttp import web

from tests.fakes.harness import scenario_of

ANSWER = "Hello from the fake OpenAI."

# How slow_stream responses ended: a gateway that cancels upstream when its client leaves shows "aborted".
STREAM_OUTCOMES: list[str] = []


def _error(
    status: int, message: str, etype: str, code: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": etype, "param": None, "code": code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def _usage(body: dict, scenario: str) -> dict | None:  # type: ignore[type-arg]
    if scenario == "no_usage":
        return None
    if scenario == "malformed_usage":
        return {"prompt_tokens": "many", "completion_tokens": None}
    prompt = sum(len(str(m.get("content") or "")) for m in body.get("messages", [])) // 4 + 1
    return {
        "prompt_tokens": prompt,
        "completion_tokens": 5,
        "total_tokens": prompt + 5,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


async def _failure(scenario: str) -> web.Response | None:
    if scenario == "429_retry_after":
        return _error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded", {"retry-after": "7"})
    if scenario == "500":
        return _error(500, "The server had an error while processing your request.", "server_error")
    if scenario == "401":
        return _error(401, "Incorrect API key provided: sk-up***ream.", "invalid_request_error", "invalid_api_key")
    if scenario == "400":
        return _error(400, "Invalid value for 'temperature': must be <= 2.", "invalid_request_error")
    if scenario == "context_length":
        return _error(
            400,
            "This model's maximum context length is 128000 tokens.",
            "invalid_request_error",
            "context_length_exceeded",
        )
    if scenario == "content_filter":
        return _error(
            400,
            "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
            "invalid_request_error",
            "content_filter",
        )
    if scenario == "timeout_before_headers":
        await asyncio.sleep(30)
    if scenario == "garbage":
        return web.Response(status=200, body=b"<html>upstream proxy error</html>", content_type="text/html")
    return None


def _tool_call(body: dict) -> dict | None:  # type: ignore[type-arg]
    tools = body.get("tools")
    if not tools or body.get("tool_choice") == "none":
        return None
    if body["messages"][-1].get("role") == "tool":
        return None
    fn = tools[0]["function"]
    return {
        "id": "call_fake123",
        "type": "function",
        "function": {"name": fn["name"], "arguments": '{"city": "Paris"}'},
    }


async def chat(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    model = body.get("model") or request.match_info.get("deployment", "")
    scenario = scenario_of(model)
    failed = await _failure(scenario)
    if failed is not None:
        return failed
    call = _tool_call(body)
    created = int(time.time())
    answer = ANSWER
    if scenario == "echo":  # the last user message back, as a model that repeats names and places would
        last = next(m for m in reversed(body["messages"]) if m.get("role") == "user")["content"]
        answer = "You wrote: " + (last if isinstance(last, str) else str(last))
    if not body.get("stream"):
        message = {"role": "assistant", "content": None if call else answer, "refusal": None}
        if call:
            message["tool_calls"] = [call]
        out = {
            "id": "chatcmpl-fake1",
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if call else "stop",
                }
            ],
            "system_fingerprint": "fp_fake",
            "service_tier": "default",
        }
        usage = _usage(body, scenario)
        if usage is not None:
            out["usage"] = usage
        return web.Response(body=orjson.dumps(out), content_type="application/json")
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    include_usage = (body.get("stream_options") or {}).get("include_usage") is True
    base = {
        "id": "chatcmpl-fake1",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_fake",
    }
    if include_usage:
        base["usage"] = None

    def event(delta: dict, finish: str | None = None) -> bytes:  # type: ignore[type-arg]
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    parts = [event({"role": "assistant", "content": "", "refusal": None})]
    if call:
        head = {
            "index": 0,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        parts.append(event({"tool_calls": [head]}))
        for piece in ('{"city', '": "Par', 'is"}'):
            parts.append(event({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        parts.append(event({}, "tool_calls"))
    else:
        words = ("Hello", " from", " the", " fake", " OpenAI.")
        if scenario == "echo":  # pieces of 7 characters: placeholders are split across chunks
            words = tuple(answer[i : i + 7] for i in range(0, len(answer), 7))
        for word in words:
            parts.append(event({"content": word}))
        parts.append(event({}, "stop"))
    usage = _usage(body, scenario)
    if include_usage and usage is not None:
        parts.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n")
    parts.append(b"data: [DONE]\n\n")
    if scenario == "slow_stream":
        try:
            for part in parts * 20:  # long enough that the client leaves first
                await asyncio.sleep(0.05)
                await resp.write(part)
        except (ConnectionResetError, asyncio.CancelledError):
            STREAM_OUTCOMES.append("aborted")
            raise
        STREAM_OUTCOMES.append("completed")
        return resp
    for i, part in enumerate(parts):
        if scenario in ("cut_stream", "stall_mid_stream") and i == 3:
            if scenario == "stall_mid_stream":
                await asyncio.sleep(30)
            assert request.transport is not None
            request.transport.close()  # drop the connection mid-stream, no terminating chunk
            return resp
        await resp.write(part)
    await resp.write_eof()
    return resp


_WORD = re.compile(r"[a-z0-9]+")
_FILLER = frozenset("a an the is are do does did i me my can could how what whats please tell to of for you".split())  # noqa: SIM905


def hashed_bag_of_words(text: str, dimensions: int = 256) -> list[float]:
    """A deterministic embedding in which texts sharing words are similar: each content word (a plural's "s"
    dropped) adds +1 or -1 to a dimension chosen by its hash; the sum is L2-normalised. "How do I reset my
    password?" and "How can I reset my password?" score 1.0; unrelated questions near 0."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        if word in _FILLER:
            continue
        word = word[:-1] if len(word) > 3 and word.endswith("s") else word
        digest = hashlib.sha256(word.encode()).digest()
        vector[int.from_bytes(digest[:4], "big") % dimensions] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


async def embeddings(request: web.Request) -> web.Response:
    """Model names containing ``hashed`` get ``hashed_bag_of_words`` vectors (``dimensions`` honoured, else
    256); others the fixed vector [0.1, 0.2, 0.3]. Usage counts about four characters a token."""
    body = orjson.loads(await request.read())
    model = body.get("model") or request.match_info.get("deployment", "")
    failed = await _failure(scenario_of(model))
    if failed is not None:
        return failed
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    hashed = "hashed" in model
    dimensions = body.get("dimensions") or 256
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": hashed_bag_of_words(str(text), dimensions) if hashed else [0.1, 0.2, 0.3],
        }
        for i, text in enumerate(inputs)
    ]
    tokens = sum(len(str(text)) // 4 + 1 for text in inputs) if hashed else 4
    out = {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return web.Response(body=orjson.dumps(out), content_type="application/json")


async def completions(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    model = body.get("model", "")
    out = {
        "id": "cmpl-fake1",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"text": " world", "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
    }
    if not body.get("stream"):
        return web.Response(body=orjson.dumps(out), content_type="application/json")
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(b"data: " + orjson.dumps(out) + b"\n\ndata: [DONE]\n\n")
    await resp.write_eof()
    return resp


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/completions", completions)
    # Azure OpenAI serves the same bodies under a per-deployment path.
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", chat)
    app.router.add_post("/openai/deployments/{deployment}/embeddings", embeddings)
    return app
