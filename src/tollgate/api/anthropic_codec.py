"""Anthropic Messages ⇄ canonical: decode a client's Messages request, encode answers and streams back.

The inverse direction (canonical → an Anthropic provider) lives in ``providers/anthropic``.
"""

from __future__ import annotations

import secrets

import orjson

from tollgate.api.errors import anthropic_error
from tollgate.errors import InvalidRequestError, TollgateError
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import ChatRequest, Usage, chat_request_from_body
from tollgate.wire.sse import encode_event

# finish_reason (canonical) → stop_reason (Anthropic)
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _err(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def _text_blocks(content: JSONValue, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, block in enumerate(content):
            if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
                raise _err(f"'{where}[{i}]' must be a text block.", f"{where}[{i}]")
            texts.append(block["text"])
        return "\n".join(texts)  # type: ignore[arg-type]
    raise _err(f"'{where}' must be a string or an array of text blocks.", where)


def _image_part(block: JSONObject, where: str) -> JSONObject:
    source = block.get("source")
    if isinstance(source, dict):
        if source.get("type") == "base64" and isinstance(source.get("data"), str):
            url = f"data:{source.get('media_type', 'image/png')};base64,{source['data']}"
            return {"type": "image_url", "image_url": {"url": url}}
        if source.get("type") == "url" and isinstance(source.get("url"), str):
            return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise _err(f"'{where}.source' must be a base64 or url image source.", f"{where}.source")


def _convert_message(index: int, msg: JSONValue) -> list[JSONObject]:
    where = f"messages[{index}]"
    if not isinstance(msg, dict):
        raise _err(f"'{where}' must be an object with 'role' and 'content'.", where)
    role = msg.get("role")
    if role not in ("user", "assistant"):
        raise _err(f"'{where}.role' must be 'user' or 'assistant'.", f"{where}.role")
    content = msg.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _err(f"'{where}.content' must be a string or an array of content blocks.", f"{where}.content")
    parts: list[JSONValue] = []
    tool_calls: list[JSONValue] = []
    tool_results: list[JSONObject] = []
    for j, block in enumerate(content):
        bw = f"{where}.content[{j}]"
        if not isinstance(block, dict):
            raise _err(f"'{bw}' must be a content block object.", bw)
        kind = block.get("type")
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise _err(f"'{bw}.text' must be a string.", f"{bw}.text")
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_part(block, bw))
        elif kind == "tool_use" and role == "assistant":
            name, call_id = block.get("name"), block.get("id")
            if not isinstance(name, str) or not isinstance(call_id, str):
                raise _err(f"'{bw}' needs string 'id' and 'name'.", bw)
            arguments = orjson.dumps(block.get("input", {})).decode()
            tool_calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
        elif kind == "tool_result" and role == "user":
            call_id = block.get("tool_use_id")
            if not isinstance(call_id, str):
                raise _err(f"'{bw}.tool_use_id' must be a string.", f"{bw}.tool_use_id")
            result = block.get("content", "")
            text = _tool_result_text(result, bw)
            if block.get("is_error") is True:
                text = f"Error: {text}"
            tool_results.append({"role": "tool", "tool_call_id": call_id, "content": text})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # earlier reasoning is not replayed to non-Anthropic models
        else:
            raise _err(
                f"'{bw}': content block type {kind!r} is not supported for this model "
                "(it is forwarded unchanged only to Anthropic models).",
                bw,
            )
    out: list[JSONObject] = list(tool_results)
    if role == "assistant":
        text = "".join(str(p["text"]) for p in parts if isinstance(p, dict) and p.get("type") == "text")
        message: JSONObject = {"role": "assistant", "content": text or None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        out.append(message)
    elif parts:
        only_text = all(isinstance(p, dict) and p.get("type") == "text" for p in parts)
        if only_text and len(parts) == 1:
            out.append({"role": "user", "content": parts[0]["text"]})  # type: ignore[index,call-overload]
        else:
            out.append({"role": "user", "content": parts})
    return out


def _tool_result_text(result: JSONValue, where: str) -> str:
    if isinstance(result, str):
        return result
    if isinstance(result, list):
        return "\n".join(str(b.get("text", "")) for b in result if isinstance(b, dict) and b.get("type") == "text")
    raise _err(f"'{where}.content' must be a string or an array of blocks.", f"{where}.content")


def _convert_tools(tools: JSONValue) -> list[JSONValue]:
    if not isinstance(tools, list):
        raise _err("'tools' must be an array.", "tools")
    out: list[JSONValue] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise _err(f"'tools[{i}]' must be an object with a 'name'.", f"tools[{i}]")
        if tool.get("type") not in (None, "custom"):
            raise _err(
                f"'tools[{i}]': server tool {tool.get('type')!r} is only available on Anthropic models.",
                f"tools[{i}]",
            )
        fn: JSONObject = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
        if isinstance(tool.get("description"), str):
            fn["description"] = tool["description"]
        out.append({"type": "function", "function": fn})
    return out


def _convert_tool_choice(choice: JSONValue, body: JSONObject) -> None:
    if not isinstance(choice, dict):
        raise _err("'tool_choice' must be an object.", "tool_choice")
    kind = choice.get("type")
    if kind == "auto":
        body["tool_choice"] = "auto"
    elif kind == "any":
        body["tool_choice"] = "required"
    elif kind == "none":
        body["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        body["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise _err("'tool_choice.type' must be auto, any, tool (with a name) or none.", "tool_choice")
    if choice.get("disable_parallel_tool_use") is True:
        body["parallel_tool_calls"] = False


def decode_request(body: JSONObject) -> ChatRequest:
    """An Anthropic Messages request → the canonical request (raises 400s in Anthropic's terms)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _err("'model' is required and must be a non-empty string.", "model")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _err("'max_tokens' is required and must be a positive integer.", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _err("'messages' is required and must be a non-empty array.", "messages")
    canonical: list[JSONValue] = []
    system = body.get("system")
    if system is not None:
        canonical.append({"role": "system", "content": _text_blocks(system, "system")})
    for i, msg in enumerate(messages):
        canonical.extend(_convert_message(i, msg))
    out: JSONObject = {"model": model, "messages": canonical, "max_tokens": max_tokens}
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _err("'stop_sequences' must be an array of strings.", "stop_sequences")
        out["stop"] = stops
    if body.get("tools") is not None:
        out["tools"] = _convert_tools(body["tools"])
    if body.get("tool_choice") is not None:
        _convert_tool_choice(body["tool_choice"], out)
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _err("'stream' must be a boolean.", "stream")
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return chat_request_from_body(out)


def message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def _tool_input(arguments: JSONValue) -> JSONValue:
    if isinstance(arguments, str):
        try:
            value = orjson.loads(arguments) if arguments.strip() else {}
        except orjson.JSONDecodeError:
            return {"_raw_arguments": arguments}
        return value if isinstance(value, dict) else {"value": value}
    return arguments if isinstance(arguments, dict) else {}


def anthropic_usage(usage: Usage | None) -> JSONObject:
    u = usage or Usage()
    out: JSONObject = {
        "input_tokens": u.prompt_tokens - u.cached_tokens,
        "output_tokens": u.completion_tokens,
    }
    if u.cached_tokens:
        out["cache_read_input_tokens"] = u.cached_tokens
    return out


def encode_response(data: JSONObject, usage: Usage | None, model: str) -> JSONObject:
    """A canonical ``chat.completion`` → an Anthropic ``message`` (the first choice)."""
    choices = data.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice, dict) else None
    message = message if isinstance(message, dict) else {}
    content: list[JSONValue] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                fn = call["function"]
                content.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id") or "toolu_" + secrets.token_hex(12),
                        "name": fn.get("name"),  # type: ignore[union-attr]
                        "input": _tool_input(fn.get("arguments")),  # type: ignore[union-attr]
                    }
                )
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    return {
        "id": message_id(),
        "type": "message",
        "role": "assistant",
        "model": str(data.get("model") or model),
        "content": content,
        "stop_reason": STOP_REASONS.get(str(finish), "end_turn"),
        "stop_sequence": None,
        "usage": anthropic_usage(usage),
    }


class AnthropicStreamEncoder:
    """Canonical chunks → the Messages event sequence: message_start, content_block_start/delta/stop
    (text and tool_use blocks), message_delta (stop_reason, usage), message_stop."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.block_index = -1
        self.block_kind: str | None = None  # "text" or "tool:<k>"
        self.stop_reason: str | None = None
        self.usage: Usage | None = None

    def _start(self, chunk: JSONObject) -> bytes:
        self.started = True
        message: JSONObject = {
            "id": message_id(),
            "type": "message",
            "role": "assistant",
            "model": str(chunk.get("model") or self.model),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return encode_event("message_start", {"type": "message_start", "message": message})

    def _close_block(self) -> bytes:
        if self.block_kind is None:
            return b""
        self.block_kind = None
        return encode_event("content_block_stop", {"type": "content_block_stop", "index": self.block_index})

    def _open_block(self, kind: str, block: JSONObject) -> bytes:
        out = self._close_block()
        self.block_index += 1
        self.block_kind = kind
        start: JSONObject = {"type": "content_block_start", "index": self.block_index, "content_block": block}
        return out + encode_event("content_block_start", start)

    def _delta(self, delta: JSONObject) -> bytes:
        body: JSONObject = {"type": "content_block_delta", "index": self.block_index, "delta": delta}
        return encode_event("content_block_delta", body)

    def encode(self, chunks: list[JSONObject]) -> bytes:
        out = b""
        for chunk in chunks:
            if not self.started:
                out += self._start(chunk)
            usage = Usage.from_openai(chunk.get("usage"))
            if usage is not None:
                self.usage = usage
            choices = chunk.get("choices")
            if not isinstance(choices, list):
                continue
            for choice in choices:
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue  # the Messages API has one answer: n > 1 streams only the first
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    out += self._encode_delta(delta)
                finish = choice.get("finish_reason")
                if isinstance(finish, str):
                    self.stop_reason = STOP_REASONS.get(finish, "end_turn")
        return out

    def _encode_delta(self, delta: JSONObject) -> bytes:
        out = b""
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self.block_kind != "text":
                out += self._open_block("text", {"type": "text", "text": ""})
            out += self._delta({"type": "text_delta", "text": text})
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                if not isinstance(call, dict):
                    continue
                kind = f"tool:{call.get('index', 0)}"
                fn = call.get("function") if isinstance(call.get("function"), dict) else {}
                assert isinstance(fn, dict)
                if self.block_kind != kind:
                    block: JSONObject = {
                        "type": "tool_use",
                        "id": call.get("id") or "toolu_" + secrets.token_hex(12),
                        "name": fn.get("name") or "",
                        "input": {},
                    }
                    out += self._open_block(kind, block)
                args = fn.get("arguments")
                if isinstance(args, str) and args:
                    out += self._delta({"type": "input_json_delta", "partial_json": args})
        return out

    def end(self) -> bytes:
        out = b"" if self.started else self._start({})
        out += self._close_block()
        delta: JSONObject = {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": None}
        out += encode_event(
            "message_delta", {"type": "message_delta", "delta": delta, "usage": anthropic_usage(self.usage)}
        )
        return out + encode_event("message_stop", {"type": "message_stop"})

    def error(self, err: TollgateError) -> bytes:
        return encode_event("error", anthropic_error(err))
