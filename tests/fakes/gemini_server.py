"""A fake Gemini API (generateContent, streamGenerateContent?alt=sse, batchEmbedContents) with scenarios.

It speaks the real wire shapes: ``x-goog-api-key`` authentication (403 PERMISSION_DENIED when missing,
400 INVALID_ARGUMENT / API_KEY_INVALID when wrong — a key in ``?key=`` is ignored, so only the header
works), ``{"error": {"code", "message", "status", "details"}}`` bodies, SSE events separated by CRLF CRLF,
and ``usageMetadata`` that grows over a stream. Scenarios come from the model name (see harness.py), plus
``safety`` (the candidate is blocked with finishReason SAFETY), ``blocked`` (the prompt is blocked),
``503`` (UNAVAILABLE), ``403`` (PERMISSION_DENIED) and ``unfinished_stream`` (the body ends cleanly
before any finishReason).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
from aiohttp import web

from tests.fakes.harness import scenario_of

API_KEY = "gemini-upstream-secret"
ANSWER_PIECES = ("Hello", " from the", " fake Gemini.")
ANSWER = "".join(ANSWER_PIECES)
EMBEDDING = (0.5, 0.25, 0.125, 0.0625)  # exact in float32, so base64-packed vectors compare exactly
THOUGHT_TOKENS = 4
OUTPUT_TOKENS = 6
_SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
]


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def _error(code: int, status: str, message: str, details: list[object] | None = None) -> web.Response:
    error: dict[str, object] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return _json({"error": error}, code)


def _bad_key() -> web.Response:
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
    return _error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [info])


def _check_key(request: web.Request) -> web.Response | None:
    key = request.headers.get("x-goog-api-key")
    if key is None:
        return _error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )
    return None if key == API_KEY else _bad_key()


async def _failure(scenario: str) -> web.Response | None:
    if scenario == "429_retry_after":
        retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
        message = "You exceeded your current quota, please check your plan and billing details."
        return _error(429, "RESOURCE_EXHAUSTED", message, [retry])
    if scenario == "500":
        return _error(500, "INTERNAL", "An internal error has occurred. Please retry or report it.")
    if scenario == "503":
        return _error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    if scenario == "401":
        return _bad_key()  # what Gemini answers for a key it does not know
    if scenario == "403":
        return _error(403, "PERMISSION_DENIED", "Permission denied: Consumer has been suspended.")
    if scenario == "400":
        return _error(400, "INVALID_ARGUMENT", "* GenerateContentRequest.generation_config.temperature: must be <= 2")
    if scenario == "timeout_before_headers":
        await asyncio.sleep(30)
    if scenario == "garbage":
        return web.Response(status=200, body=b"<html>upstream proxy error</html>", content_type="text/html")
    return None


def _prompt_tokens(body: dict) -> int:  # type: ignore[type-arg]
    return len(orjson.dumps(body.get("contents", []))) // 4 + 1


def _usage(body: dict, scenario: str, *, final: bool) -> dict | None:  # type: ignore[type-arg]
    if scenario == "no_usage":
        return None
    if scenario == "malformed_usage":
        return {"promptTokenCount": "many", "candidatesTokenCount": None}
    prompt = _prompt_tokens(body)
    if not final or scenario in ("safety", "blocked"):
        return {"promptTokenCount": prompt, "totalTokenCount": prompt}
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": OUTPUT_TOKENS,
        "thoughtsTokenCount": THOUGHT_TOKENS,
        "totalTokenCount": prompt + OUTPUT_TOKENS + THOUGHT_TOKENS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }


def _function_call(body: dict) -> dict | None:  # type: ignore[type-arg]
    """Call the first declared function unless told not to or the last turn already answers a call."""
    tools = body.get("tools") or []
    decls = [d for t in tools for d in t.get("functionDeclarations", [])]
    mode = body.get("toolConfig", {}).get("functionCallingConfig", {}).get("mode", "AUTO")
    if not decls or mode == "NONE":
        return None
    last = body["contents"][-1]
    if any("functionResponse" in p for p in last.get("parts", [])):
        return None
    return {"name": decls[0]["name"], "args": {"city": "Paris"}}


def _answer_text(body: dict) -> str:  # type: ignore[type-arg]
    last = body["contents"][-1]
    results = [p["functionResponse"] for p in last.get("parts", []) if "functionResponse" in p]
    if results:
        return "The tool said: " + orjson.dumps(results[0]["response"]).decode()
    if body.get("generationConfig", {}).get("responseMimeType") == "application/json":
        return orjson.dumps({"answer": ANSWER}).decode()
    return ANSWER


def _response(candidates: Sequence[object] | None, usage: dict | None, model: str) -> dict:  # type: ignore[type-arg]
    out: dict[str, object] = {"modelVersion": model, "responseId": "fakeResp123"}
    if candidates is not None:
        out["candidates"] = candidates
    if usage is not None:
        out["usageMetadata"] = usage
    return out


def _candidate(parts: list[object] | None, finish: str | None, index: int = 0) -> dict[str, object]:
    cand: dict[str, object] = {"index": index}
    if parts is not None:
        cand["content"] = {"parts": parts, "role": "model"}
    if finish is not None:
        cand["finishReason"] = finish
    if finish == "SAFETY":
        cand["safetyRatings"] = _SAFETY_RATINGS
    return cand


def _events(body: dict, model: str, scenario: str) -> list[dict]:  # type: ignore[type-arg]
    """The GenerateContentResponse objects of a stream; a non-streamed answer is their merge."""
    if scenario == "blocked":
        feedback = {"blockReason": "SAFETY", "safetyRatings": _SAFETY_RATINGS}
        return [{**_response(None, _usage(body, scenario, final=True), model), "promptFeedback": feedback}]
    if scenario == "safety":
        return [_response([_candidate(None, "SAFETY")], _usage(body, scenario, final=True), model)]
    call = _function_call(body)
    if call is not None:
        return [_response([_candidate([{"functionCall": call}], "STOP")], _usage(body, scenario, final=True), model)]
    text = _answer_text(body)
    pieces = list(ANSWER_PIECES) if text == ANSWER else [text[: len(text) // 2], text[len(text) // 2 :]]
    count = body.get("generationConfig", {}).get("candidateCount", 1)
    events = []
    for i, piece in enumerate(pieces):
        final = i == len(pieces) - 1
        candidates = [_candidate([{"text": piece}], "STOP" if final else None, k) for k in range(count)]
        events.append(_response(candidates, _usage(body, scenario, final=final), model))
    return events


def _merge(events: list[dict]) -> dict:  # type: ignore[type-arg]
    merged = dict(events[-1])
    if "candidates" in merged:
        candidates = []
        for k, last in enumerate(merged["candidates"]):
            parts = [p for e in events for p in e["candidates"][k].get("content", {}).get("parts", [])]
            text = "".join(p.get("text", "") for p in parts)
            calls = [p for p in parts if "functionCall" in p]
            cand = dict(last)
            if "content" in last:
                cand["content"] = {"parts": ([{"text": text}] if text else []) + calls, "role": "model"}
            candidates.append(cand)
        merged["candidates"] = candidates
    return merged


async def models(request: web.Request) -> web.StreamResponse:
    model, _, method = request.match_info["call"].partition(":")
    denied = _check_key(request)
    if denied is not None:
        return denied
    failed = await _failure(scenario_of(model))
    if failed is not None:
        return failed
    body = orjson.loads(await request.read())
    if method == "generateContent":
        return _json(_merge(_events(body, model, scenario_of(model))))
    if method == "streamGenerateContent":
        return await _stream(request, body, model)
    if method == "batchEmbedContents":
        return _embed(body, model)
    return _error(404, "NOT_FOUND", f"Method '{method}' is not found for models/{model}.")


async def _stream(request: web.Request, body: dict, model: str) -> web.StreamResponse:  # type: ignore[type-arg]
    if request.query.get("alt") != "sse":
        return _error(400, "INVALID_ARGUMENT", "This fake only streams with alt=sse.")
    scenario = scenario_of(model)
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    events = _events(body, model, scenario)
    for i, event in enumerate(events):
        if scenario == "cut_stream" and i == len(events) - 1:
            assert request.transport is not None
            request.transport.close()  # drop the connection before the event that carries finishReason
            return resp
        if scenario == "stall_mid_stream" and i == len(events) - 1:
            await asyncio.sleep(30)
        if scenario == "unfinished_stream" and i == len(events) - 1:
            break  # a clean end of the body, but no event ever carried a finishReason
        if scenario == "slow_stream":
            await asyncio.sleep(0.05)
        await resp.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
    await resp.write_eof()
    return resp


def _embed(body: dict, model: str) -> web.Response:  # type: ignore[type-arg]
    embeddings = []
    for i, item in enumerate(body["requests"]):
        if item.get("model") != f"models/{model}":
            return _error(
                400,
                "INVALID_ARGUMENT",
                f"Model name in requests[{i}] ({item.get('model')}) must match the model in the URL.",
            )
        size = item.get("outputDimensionality") or 3
        embeddings.append({"values": [EMBEDDING[k % len(EMBEDDING)] for k in range(size)]})
    return _json({"embeddings": embeddings})


def make_app() -> web.Application:
    app = web.Application()
    # "{model}:{method}" is one path segment; aiohttp matches it whole and the handler splits on ':'.
    app.router.add_post("/v1beta/models/{call}", models)
    return app
