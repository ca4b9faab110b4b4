"""Canonical (OpenAI Chat Completions) request → Gemini ``GenerateContentRequest`` body.

Gemini's shape differs in every layer: the system prompt is ``systemInstruction``; turns are ``contents``
with roles ``user``/``model`` holding ``parts``; tool results are ``functionResponse`` parts in a user turn,
named after the function (not an id); sampling settings sit in ``generationConfig``.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from urllib.parse import urlsplit

import orjson

from tollgate.errors import InvalidRequestError, UnsupportedParameterError
from tollgate.providers.base import tool_arguments
from tollgate.providers.gemini.schema import clean_schema
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import max_output_tokens, text_of

# Parameters Gemini cannot honour: check_params rejects them (400) or drops them when configured to.
UNSUPPORTED: Mapping[str, str] = {
    "logprobs": "token log probabilities are not translated for Gemini",
    "top_logprobs": "token log probabilities are not translated for Gemini",
    "logit_bias": "Gemini has no token biasing",
    "functions": "use 'tools' instead of the legacy 'functions'",
    "function_call": "use 'tool_choice' instead of the legacy 'function_call'",
    "prediction": "Gemini has no predicted outputs",
    "audio": "audio output is not translated for Gemini",
    "web_search_options": "web search is not translated for Gemini",
}

# Accepted but not sent, because they do not change the answer or have no Gemini form that could:
# user, metadata, store, service_tier, stream_options (Gemini streams always carry usage), modalities and
# parallel_tool_calls (Gemini has no switch; it is a permission, so not honouring "false" strictly is
# preferred over rejecting every Anthropic-client request that disables parallel tool use).

# OpenAI parameter → generationConfig field, for values copied as they are.
_GENERATION_FIELDS: tuple[tuple[str, str], ...] = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("n", "candidateCount"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)

# The thinking budgets Google documents for ``reasoning_effort`` on its own OpenAI-compatible endpoint.
_THINKING_BUDGETS: Mapping[str, int] = {"none": 0, "minimal": 0, "low": 1024, "medium": 8192, "high": 24576}

_TOOL_MODES: Mapping[str, str] = {"auto": "AUTO", "required": "ANY", "none": "NONE"}


def build_body(body: JSONObject) -> JSONObject:
    """The Gemini request body for a canonical chat body (already stripped of unsupported parameters)."""
    system, contents = _contents(body["messages"])
    out: JSONObject = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        out["tools"] = [{"functionDeclarations": _function_declarations(tools)}]
        tool_config = _tool_config(body.get("tool_choice"))
        if tool_config is not None:
            out["toolConfig"] = tool_config
    config = _generation_config(body)
    if config:
        out["generationConfig"] = config
    return out


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


# -- messages -------------------------------------------------------------------------------------------


def _contents(messages: JSONValue) -> tuple[list[JSONValue], list[JSONValue]]:
    """System parts and merged turns. Gemini wants alternating turns, so consecutive same-role turns merge."""
    assert isinstance(messages, list)  # validated by wire.openai
    system: list[JSONValue] = []
    turns: list[JSONObject] = []
    call_names: dict[str, str] = {}  # tool_call_id → function name, from earlier assistant turns

    def add(role: str, parts: list[JSONValue]) -> None:
        if not parts:
            return  # Gemini rejects a turn without parts
        if turns and turns[-1]["role"] == role:
            previous = turns[-1]["parts"]
            assert isinstance(previous, list)
            previous.extend(parts)
        else:
            turns.append({"role": role, "parts": parts})

    for i, msg in enumerate(messages):
        assert isinstance(msg, dict)
        role = msg.get("role")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            text = text_of(msg.get("content"))
            if text:
                system.append({"text": text})
        elif role == "user":
            add("user", _user_parts(msg.get("content"), where))
        elif role == "assistant":
            add("model", _assistant_parts(msg, where, call_names))
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            called = call_names.get(call_id) if isinstance(call_id, str) else None
            if called is None:
                raise _bad(
                    f"'{where}.tool_call_id' ({call_id!r}) matches no tool call of an earlier assistant "
                    "message; Gemini needs the function's name for every tool result.",
                    f"{where}.tool_call_id",
                )
            add("user", [_function_response(called, msg.get("content"))])
        elif role == "function":  # the legacy shape carries the name itself
            name = msg.get("name")
            if not isinstance(name, str) or not name:
                raise _bad(f"'{where}.name' is required for role 'function'.", f"{where}.name")
            add("user", [_function_response(name, msg.get("content"))])
    return system, list(turns)


def _user_parts(content: JSONValue, where: str) -> list[JSONValue]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[JSONValue] = []
    if isinstance(content, list):
        for j, part in enumerate(content):
            assert isinstance(part, dict)  # validated by wire.openai
            converted = _content_part(part, f"{where}.content[{j}]")
            if converted is not None:
                parts.append(converted)
    return parts


def _content_part(part: JSONObject, where: str) -> JSONObject | None:
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise _bad(f"'{where}.text' must be a string.", f"{where}.text")
        return {"text": text} if text else None
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise _bad(f"'{where}.image_url.url' must be a string.", f"{where}.image_url")
        return _media_part(url, where, "image/jpeg")
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
            raise _bad(f"'{where}.input_audio' needs base64 'data' and a 'format'.", f"{where}.input_audio")
        return {"inlineData": {"mimeType": f"audio/{audio.get('format') or 'wav'}", "data": audio["data"]}}
    if kind == "file":
        file = part.get("file")
        data = file.get("file_data") if isinstance(file, dict) else None
        if not isinstance(data, str):
            raise UnsupportedParameterError(
                f"'{where}.file': Gemini needs the file inline as 'file_data' (a data: URL); "
                "uploaded file ids are not supported.",
                param=f"{where}.file",
            )
        return _media_part(data, where, "application/pdf")
    raise UnsupportedParameterError(
        f"'{where}': content part type {kind!r} is not supported by Gemini.", param=f"{where}.type"
    )


def _media_part(url: str, where: str, default_type: str) -> JSONObject:
    """``data:`` URLs travel inline; http(s) URLs as ``fileData`` (Gemini fetches them)."""
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        mime, _, encoding = header.partition(";")
        if not sep or encoding != "base64":
            raise _bad(f"'{where}': a data: URL must be base64-encoded ('data:<type>;base64,...').", where)
        return {"inlineData": {"mimeType": mime or default_type, "data": data}}
    if url.startswith(("https://", "http://")):
        guessed, _ = mimetypes.guess_type(urlsplit(url).path)
        return {"fileData": {"mimeType": guessed or default_type, "fileUri": url}}
    raise _bad(f"'{where}': the URL must be a data: URL or an http(s) URL.", where)


def _assistant_parts(msg: JSONObject, where: str, call_names: dict[str, str]) -> list[JSONValue]:
    parts: list[JSONValue] = []
    text = text_of(msg.get("content"))
    if text:
        parts.append({"text": text})
    calls = msg.get("tool_calls")
    if isinstance(calls, list):
        for j, call in enumerate(calls):
            cw = f"{where}.tool_calls[{j}]"
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(call, dict) or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise _bad(f"'{cw}' must be a function call with a 'function.name'.", cw)
            name = str(fn["name"])
            if isinstance(call.get("id"), str):
                call_names[str(call["id"])] = name
            parts.append(
                {"functionCall": {"name": name, "args": tool_arguments(fn.get("arguments"), f"{cw}.arguments")}}
            )
    legacy = msg.get("function_call")
    if isinstance(legacy, dict) and isinstance(legacy.get("name"), str):
        args = tool_arguments(legacy.get("arguments"), f"{where}.function_call.arguments")
        parts.append({"functionCall": {"name": legacy["name"], "args": args}})
    return parts


def _function_response(name: str, content: JSONValue) -> JSONObject:
    """A tool's JSON-object output is the response itself; anything else is wrapped as ``{"content": text}``
    (Gemini's ``response`` must be an object; it accepts any keys)."""
    text = text_of(content)
    try:
        parsed = orjson.loads(text) if text.lstrip().startswith("{") else None
    except orjson.JSONDecodeError:
        parsed = None
    response: JSONObject = parsed if isinstance(parsed, dict) else {"content": text}
    return {"functionResponse": {"name": name, "response": response}}


# -- tools ----------------------------------------------------------------------------------------------


def _function_declarations(tools: list[JSONValue]) -> list[JSONValue]:
    out: list[JSONValue] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise UnsupportedParameterError(
                f"'{where}': tool type {kind!r} is not supported by Gemini; only 'function' tools are.",
                param=where,
            )
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(f"'{where}.function.name' is required.", f"{where}.function")
        decl: JSONObject = {"name": fn["name"]}
        if isinstance(fn.get("description"), str):
            decl["description"] = fn["description"]
        params = fn.get("parameters")
        if isinstance(params, dict):
            cleaned = clean_schema(params)
            # Gemini rejects an OBJECT schema with empty properties; a function without arguments has none.
            if cleaned.get("properties") or cleaned.get("type") not in (None, "object"):
                decl["parameters"] = cleaned
        out.append(decl)
    return out


def _tool_config(choice: JSONValue) -> JSONObject | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _TOOL_MODES:
        return {"functionCallingConfig": {"mode": _TOOL_MODES[choice]}}
    fn = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(fn, dict) and isinstance(fn.get("name"), str):
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [fn["name"]]}}
    raise _bad(
        "'tool_choice' must be 'auto', 'required', 'none' or {'type': 'function', 'function': {'name'}}.",
        "tool_choice",
    )


# -- generationConfig -----------------------------------------------------------------------------------


def _generation_config(body: JSONObject) -> JSONObject:
    config: JSONObject = {}
    for name, field in _GENERATION_FIELDS:
        value = body.get(name)
        if value is not None:
            config[field] = value
    limit = max_output_tokens(body)
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = body.get("stop")
    if isinstance(stop, str):
        config["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        config["stopSequences"] = stop
    _response_format(body.get("response_format"), config)
    effort = body.get("reasoning_effort")
    if effort is not None:
        if not isinstance(effort, str) or effort not in _THINKING_BUDGETS:
            raise _bad(f"'reasoning_effort' must be one of {', '.join(_THINKING_BUDGETS)}.", "reasoning_effort")
        config["thinkingConfig"] = {"thinkingBudget": _THINKING_BUDGETS[effort]}
    return config


def _response_format(fmt: JSONValue, config: JSONObject) -> None:
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return
    if kind == "json_object":
        config["responseMimeType"] = "application/json"
        return
    if kind == "json_schema":
        spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise _bad("'response_format.json_schema.schema' must be an object.", "response_format")
        # responseJsonSchema takes standard JSON Schema ($ref, additionalProperties...), so no cleaning.
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = schema
        return
    raise _bad("'response_format.type' must be 'text', 'json_object' or 'json_schema'.", "response_format")
