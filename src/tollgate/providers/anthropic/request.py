"""Canonical chat request → Anthropic Messages request body (pure functions, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping

from tollgate.errors import InvalidRequestError
from tollgate.providers.base import tool_arguments
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import max_output_tokens, text_of

# Anthropic requires max_tokens; OpenAI clients usually omit it. Large enough for a normal answer,
# small enough to be accepted by every current Claude model.
DEFAULT_MAX_TOKENS = 4096

# Parameters with no Anthropic equivalent: a 400 naming them, or a drop when the deployment allows it.
UNSUPPORTED: Mapping[str, str] = {
    "n": "Anthropic returns a single choice per request",
    "logprobs": "Anthropic does not return log probabilities",
    "top_logprobs": "Anthropic does not return log probabilities",
    "logit_bias": "Anthropic has no logit bias",
    "presence_penalty": "Anthropic has no presence penalty",
    "frequency_penalty": "Anthropic has no frequency penalty",
    "seed": "Anthropic has no deterministic sampling seed",
    "response_format": "Anthropic has no JSON mode; describe the format in the prompt or use a tool",
    "functions": "legacy function calling is not translated; use 'tools'",
    "function_call": "legacy function calling is not translated; use 'tool_choice'",
    "audio": "Anthropic models do not produce audio",
    "modalities": "Anthropic models answer in text only",
    "prediction": "Anthropic has no predicted outputs",
    "web_search_options": "OpenAI web search options have no Anthropic equivalent",
    "reasoning_effort": "OpenAI reasoning effort is not translated to Anthropic extended thinking",
}

# Anthropic's own parameters that OpenAI clients send as extra body fields to reach Claude features;
# forwarded as they are. Any other field OpenAI does not define is not forwarded: Anthropic rejects
# unknown fields, so one client extension meant for another provider would fail every request.
ANTHROPIC_EXTRAS = ("top_k", "thinking")

_TOOL_CHOICES: Mapping[str, str] = {"auto": "auto", "required": "any", "none": "none"}


def _err(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def effective_params(body: JSONObject) -> JSONObject:
    """The body with values that ask for nothing unusual removed, so ``check_params`` does not reject them.

    ``n: 1``, ``logprobs: false``, ``response_format: {"type": "text"}`` and ``modalities: ["text"]``
    are the defaults OpenAI clients often send explicitly; Anthropic behaves that way already.
    """
    harmless = (
        ("n", body.get("n") == 1),
        ("logprobs", body.get("logprobs") is False),
        ("response_format", body.get("response_format") == {"type": "text"}),
        ("modalities", body.get("modalities") == ["text"]),
    )
    drop = {name for name, ok in harmless if ok}
    if not drop:
        return body
    return {k: v for k, v in body.items() if k not in drop}


def build_body(body: JSONObject, model: str) -> JSONObject:
    """Translate the known OpenAI parameters; fields Anthropic would not know are not forwarded."""
    system, messages = convert_messages(body.get("messages"))
    out: JSONObject = {"model": model}
    if system:
        out["system"] = system
    out["messages"] = messages
    limit = max_output_tokens(body)
    out["max_tokens"] = DEFAULT_MAX_TOKENS if limit is None else limit
    for name in ("temperature", "top_p", *ANTHROPIC_EXTRAS):
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = stop
    tools = body.get("tools")
    if tools:
        out["tools"] = convert_tools(tools)
    choice = convert_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"), bool(tools))
    if choice is not None:
        out["tool_choice"] = choice
    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if body.get("stream") is True:
        out["stream"] = True
    return out


def convert_messages(raw: JSONValue) -> tuple[str, list[JSONValue]]:
    """OpenAI messages → (system prompt, alternating Anthropic messages).

    System and developer messages are hoisted into the top-level ``system`` (Anthropic has no system
    role). Consecutive messages of one role are merged into one turn, because Anthropic requires
    alternation; tool results become ``tool_result`` blocks of a user turn and go first in it, as the
    API requires right after a ``tool_use``.
    """
    if not isinstance(raw, list):
        raise _err("'messages' must be an array.", "messages")
    system: list[str] = []
    turns: list[_Turn] = []
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict):
            raise _err(f"'messages[{i}]' must be an object.", f"messages[{i}]")
        role = msg.get("role")
        if role in ("system", "developer"):
            text = text_of(msg.get("content"))
            if text:
                system.append(text)
            continue
        if role == "user":
            _turn(turns, "user").blocks.extend(_user_blocks(msg.get("content"), f"messages[{i}].content"))
        elif role == "assistant":
            blocks = _assistant_blocks(msg, i)
            if blocks:  # Anthropic rejects an empty assistant turn; an empty OpenAI one says nothing
                _turn(turns, "assistant").blocks.extend(blocks)
        elif role == "tool":
            _turn(turns, "user").results.append(_tool_result(msg, i))
        else:
            raise _err(
                f"'messages[{i}].role' {role!r} cannot be sent to an Anthropic model; "
                "use 'tool' messages for tool results.",
                f"messages[{i}].role",
            )
    return "\n\n".join(system), [t.render() for t in turns]


class _Turn:
    """One Anthropic message being assembled from one or more OpenAI messages."""

    __slots__ = ("blocks", "results", "role")

    def __init__(self, role: str) -> None:
        self.role = role
        self.results: list[JSONValue] = []
        self.blocks: list[JSONValue] = []

    def render(self) -> JSONObject:
        blocks = self.results + self.blocks
        if len(blocks) == 1 and isinstance(blocks[0], dict) and blocks[0].get("type") == "text":
            # A lone text block is sent as a plain string: the shape every Anthropic example uses.
            return {"role": self.role, "content": blocks[0]["text"]}
        return {"role": self.role, "content": blocks}


def _turn(turns: list[_Turn], role: str) -> _Turn:
    if not turns or turns[-1].role != role:
        turns.append(_Turn(role))
    return turns[-1]


def _user_blocks(content: JSONValue, where: str) -> list[JSONValue]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _err(f"'{where}' must be a string or an array of content parts.", where)
    return [_part(part, f"{where}[{j}]") for j, part in enumerate(content)]


def _part(part: JSONValue, where: str) -> JSONObject:
    if not isinstance(part, dict):
        raise _err(f"'{where}' must be an object.", where)
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": str(part.get("text") or "")}
    if kind == "image_url":
        return _image(part.get("image_url"), where)
    raise _err(f"'{where}': content part type {kind!r} cannot be sent to an Anthropic model.", where)


def _image(spec: JSONValue, where: str) -> JSONObject:
    """``data:`` URLs become base64 sources; http(s) URLs become url sources (Anthropic fetches them)."""
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str):
        raise _err(f"'{where}.image_url.url' must be a string.", f"{where}.image_url")
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type:
            raise _err(
                f"'{where}.image_url.url' must be a base64 data URL (data:image/png;base64,...).",
                f"{where}.image_url",
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _err(f"'{where}.image_url.url' must be an http(s) or data: URL.", f"{where}.image_url")


def _assistant_blocks(msg: JSONObject, index: int) -> list[JSONValue]:
    where = f"messages[{index}]"
    content = msg.get("content")
    blocks: list[JSONValue] = []
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif isinstance(content, list):
        for j, part in enumerate(content):
            # An assistant's earlier refusal is replayed as what it said.
            if isinstance(part, dict) and part.get("type") == "refusal":
                part = {"type": "text", "text": part.get("refusal")}
            block = _part(part, f"{where}.content[{j}]")
            if block.get("type") == "text" and not block.get("text"):
                continue
            blocks.append(block)
    elif content is not None:
        raise _err(f"'{where}.content' must be a string or an array of content parts.", f"{where}.content")
    if msg.get("function_call") is not None:
        raise _err(
            f"'{where}.function_call' (legacy) cannot be sent to an Anthropic model; use 'tool_calls'.",
            f"{where}.function_call",
        )
    calls = msg.get("tool_calls")
    if isinstance(calls, list):
        blocks.extend(_tool_use(call, f"{where}.tool_calls[{j}]") for j, call in enumerate(calls))
    return blocks


def _tool_use(call: JSONValue, where: str) -> JSONObject:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or not isinstance(fn, dict):
        raise _err(f"'{where}' must be a function tool call.", where)
    call_id, name = call.get("id"), fn.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise _err(f"'{where}' needs a string 'id' and 'function.name'.", where)
    return {
        "type": "tool_use",
        "id": call_id,
        "name": name,
        "input": tool_arguments(fn.get("arguments"), f"{where}.function.arguments"),
    }


def _tool_result(msg: JSONObject, index: int) -> JSONObject:
    where = f"messages[{index}]"
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _err(f"'{where}.tool_call_id' is required for a tool message.", f"{where}.tool_call_id")
    content = msg.get("content")
    result: JSONObject = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        result["content"] = content
    elif isinstance(content, list):
        result["content"] = [_part(p, f"{where}.content[{j}]") for j, p in enumerate(content)]
    elif content is not None:
        raise _err(f"'{where}.content' must be a string or an array of content parts.", f"{where}.content")
    return result


def convert_tools(tools: JSONValue) -> list[JSONValue]:
    if not isinstance(tools, list):
        raise _err("'tools' must be an array.", "tools")
    out: list[JSONValue] = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            raise _err(f"'tools[{i}]': only function tools can be sent to an Anthropic model.", f"tools[{i}]")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise _err(f"'tools[{i}].function.name' is required.", f"tools[{i}].function.name")
        schema = fn.get("parameters")
        # OpenAI allows a tool without parameters; Anthropic requires an object schema.
        converted: JSONObject = {
            "name": name,
            "input_schema": schema if isinstance(schema, dict) else {"type": "object", "properties": {}},
        }
        if isinstance(fn.get("description"), str):
            converted["description"] = fn["description"]
        if fn.get("strict") is True:
            # Only when asked: false is the default, and older API versions do not know the field.
            converted["strict"] = True
        out.append(converted)
    return out


def convert_tool_choice(choice: JSONValue, parallel: JSONValue, has_tools: bool) -> JSONObject | None:
    """OpenAI ``tool_choice`` + ``parallel_tool_calls`` → Anthropic's single ``tool_choice`` object."""
    out: JSONObject
    if choice is None:
        if parallel is not False or not has_tools:
            return None
        out = {"type": "auto"}
    elif isinstance(choice, str) and choice in _TOOL_CHOICES:
        out = {"type": _TOOL_CHOICES[choice]}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")  # type: ignore[union-attr]
        if not isinstance(name, str):
            raise _err("'tool_choice.function.name' must be a string.", "tool_choice")
        out = {"type": "tool", "name": name}
    else:
        raise _err("'tool_choice' must be 'auto', 'required', 'none' or {'type': 'function', ...}.", "tool_choice")
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out
