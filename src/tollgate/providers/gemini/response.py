"""Gemini ``GenerateContentResponse`` → canonical ``chat.completion``, and the pieces streams share."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from tollgate.errors import ProviderProtocolError
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import Usage, chat_completion, completion_id

# Candidate.finishReason → finish_reason; others (OTHER, LANGUAGE, MALFORMED_FUNCTION_CALL...) are "stop".
FINISH_REASONS: Mapping[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


def finish_reason(raw: str, has_calls: bool) -> str:
    """Gemini says STOP after function calls too; OpenAI clients look for ``tool_calls``."""
    mapped = FINISH_REASONS.get(raw, "stop")
    return "tool_calls" if mapped == "stop" and has_calls else mapped


def protocol_error(provider: str, what: str) -> ProviderProtocolError:
    return ProviderProtocolError(f"Provider '{provider}' returned {what}.", provider=provider)


def load_object(body: bytes, provider: str) -> JSONObject:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise protocol_error(provider, "a body that is not JSON") from None
    if not isinstance(data, dict):
        raise protocol_error(provider, "a non-object JSON body")
    return data


def usage_of(meta: JSONValue) -> Usage | None:
    """``usageMetadata`` → Usage. Thinking tokens are billed as output, and tool-use prompt tokens (results
    of Gemini's own tools, such as search) as input, so both are counted."""
    if not isinstance(meta, dict):
        return None
    prompt = meta.get("promptTokenCount")
    if not isinstance(prompt, int):
        return None

    def count(name: str) -> int:
        value = meta.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return Usage(
        prompt_tokens=prompt + count("toolUsePromptTokenCount"),
        completion_tokens=count("candidatesTokenCount") + count("thoughtsTokenCount"),
        cached_tokens=count("cachedContentTokenCount"),
    )


def tool_call_id(response_id: str, name: str, args: JSONValue, index: int) -> str:
    """Gemini's API rarely gives calls an id; derive a stable one so a retried or streamed answer agrees."""
    key = orjson.dumps([response_id, name, args, index], option=orjson.OPT_SORT_KEYS)
    return "call_" + hashlib.sha256(key).hexdigest()[:24]


@dataclass(slots=True)
class CandidateParts:
    """What one candidate (or one streamed piece of it) says: visible text and function calls."""

    text: str = ""
    calls: list[JSONObject] = field(default_factory=list)


def read_parts(candidate: JSONObject, response_id: str, first_call_index: int, provider: str) -> CandidateParts:
    """Text (thought summaries skipped) and function calls as canonical ``tool_calls`` entries."""
    out = CandidateParts()
    content = candidate.get("content")
    if content is None:
        return out  # a blocked candidate carries no content
    parts = content.get("parts") if isinstance(content, dict) else None
    if parts is None:
        return out
    if not isinstance(parts, list):
        raise protocol_error(provider, "a candidate whose 'content.parts' is not an array")
    texts: list[str] = []
    for part in parts:
        if not isinstance(part, dict) or part.get("thought") is True:
            continue
        text = part.get("text")
        if isinstance(text, str):
            texts.append(text)
        call = part.get("functionCall")
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            index = first_call_index + len(out.calls)
            args = call.get("args") if isinstance(call.get("args"), dict) else {}
            call_id = call.get("id")
            if not isinstance(call_id, str) or not call_id:
                call_id = tool_call_id(response_id, str(call["name"]), args, index)
            out.calls.append(
                {
                    "index": index,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": call["name"], "arguments": orjson.dumps(args).decode()},
                }
            )
    out.text = "".join(texts)
    return out


def candidates_of(data: JSONObject, provider: str) -> list[JSONObject]:
    """The candidates ordered by index; a prompt blocked before generation has none."""
    raw = data.get("candidates")
    if raw is None:
        if isinstance(data.get("promptFeedback"), dict) or isinstance(data.get("usageMetadata"), dict):
            return []
        raise protocol_error(provider, "a response without 'candidates'")
    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
        raise protocol_error(provider, "'candidates' that are not an array of objects")
    found: list[JSONObject] = [c for c in raw if isinstance(c, dict)]
    return sorted(found, key=candidate_index)


def candidate_index(candidate: JSONObject) -> int:
    index = candidate.get("index")
    return index if isinstance(index, int) else 0


def prompt_blocked(data: JSONObject) -> bool:
    feedback = data.get("promptFeedback")
    return isinstance(feedback, dict) and isinstance(feedback.get("blockReason"), str)


def parse_response(data: JSONObject, model: str, provider: str) -> tuple[JSONObject, Usage | None]:
    """A whole ``GenerateContentResponse`` → a ``chat.completion``, one choice per candidate."""
    response_id = data.get("responseId")
    response_id = response_id if isinstance(response_id, str) else ""
    choices: list[JSONValue] = []
    for position, candidate in enumerate(candidates_of(data, provider)):
        parts = read_parts(candidate, response_id, 0, provider)
        message: JSONObject = {"role": "assistant", "content": parts.text or (None if parts.calls else "")}
        if parts.calls:
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in parts.calls]
        reason = candidate.get("finishReason")
        choices.append(
            {
                "index": candidate_index(candidate) if "index" in candidate else position,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(reason if isinstance(reason, str) else "STOP", bool(parts.calls)),
            }
        )
    if not choices:
        if not prompt_blocked(data):
            raise protocol_error(provider, "a response without candidates")
        blocked: JSONObject = {"role": "assistant", "content": ""}
        choices.append({"index": 0, "message": blocked, "logprobs": None, "finish_reason": "content_filter"})
    usage = usage_of(data.get("usageMetadata"))
    version = data.get("modelVersion")
    completion = chat_completion(
        id=f"chatcmpl-{response_id}" if response_id else completion_id(),
        model=version if isinstance(version, str) and version else model,
        choices=choices,
        usage=usage,
    )
    return completion, usage
