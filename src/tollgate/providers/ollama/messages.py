"""Canonical (OpenAI) chat messages → Ollama ``/api/chat`` messages.

Ollama's message is ``{role, content, images?, tool_calls?, tool_name?}``: content is one string, images
are bare base64 strings, tool-call arguments are JSON objects (not strings) and a tool result names the
tool rather than the call id. Anything that cannot be expressed is a 400 naming the offending field.
"""

from __future__ import annotations

from tollgate.errors import InvalidRequestError, UnsupportedParameterError
from tollgate.providers.base import tool_arguments
from tollgate.types import JSONObject, JSONValue

# OpenAI's "developer" role is a system prompt for newer models; Ollama knows only "system".
_ROLE_MAP = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}


def convert_messages(messages: list[JSONObject], provider: str) -> list[JSONValue]:
    """Translate every message; tool results get the tool's name from the call they answer."""
    names_by_call_id: dict[str, str] = {}
    out: list[JSONValue] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        role = msg.get("role")
        if role == "function":
            # The legacy function-result message already names the function.
            converted: JSONObject = {"role": "tool", "content": _text(msg.get("content"), where, provider)[0]}
            if isinstance(msg.get("name"), str):
                converted["tool_name"] = msg["name"]
            out.append(converted)
            continue
        text, images = _text(msg.get("content"), where, provider)
        converted = {"role": _ROLE_MAP.get(str(role), "user"), "content": text}
        if images:
            converted["images"] = images
        if role == "assistant":
            calls = _tool_calls(msg.get("tool_calls"), where, names_by_call_id)
            if calls:
                converted["tool_calls"] = calls
        elif role == "tool":
            name = names_by_call_id.get(str(msg.get("tool_call_id")))
            if name is not None:
                converted["tool_name"] = name
        out.append(converted)
    return out


def _text(content: JSONValue, where: str, provider: str) -> tuple[str, list[JSONValue]]:
    """(joined text, base64 images) of a string or content-part list."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise InvalidRequestError(f"'{where}.content' must be a string or an array.", param=f"{where}.content")
    texts: list[str] = []
    images: list[JSONValue] = []
    for j, part in enumerate(content):
        pw = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise InvalidRequestError(f"'{pw}' must be an object with a 'type'.", param=pw)
        kind = part.get("type")
        if kind in ("text", "input_text") and isinstance(part.get("text"), str):
            texts.append(str(part["text"]))
        elif kind == "image_url":
            images.append(_base64_image(part.get("image_url"), pw, provider))
        elif kind == "refusal":
            continue  # a refusal the model gave earlier carries no content to replay
        else:
            raise UnsupportedParameterError(
                f"Content part type {kind!r} in '{pw}' is not supported by provider '{provider}' "
                "(Ollama takes text and base64 images only).",
                param=pw,
            )
    # Parts are separate paragraphs to the client; joining them without a separator would glue words.
    return "\n".join(texts), images


def _base64_image(image: JSONValue, where: str, provider: str) -> str:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise InvalidRequestError(f"'{where}.image_url.url' must be a string.", param=f"{where}.image_url")
    header, sep, data = url.partition(",")
    if url.startswith("data:") and sep and header.endswith(";base64") and data:
        return data
    shown = url if len(url) <= 80 else url[:77] + "..."
    raise UnsupportedParameterError(
        f"Image '{shown}' in '{where}' cannot be sent to provider '{provider}': Ollama accepts only inline "
        "base64 images. Send it as a 'data:image/...;base64,...' URL.",
        param=f"{where}.image_url",
    )


def _tool_calls(raw: JSONValue, where: str, names_by_call_id: dict[str, str]) -> list[JSONValue]:
    if not isinstance(raw, list):
        return []
    out: list[JSONValue] = []
    for k, call in enumerate(raw):
        cw = f"{where}.tool_calls[{k}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequestError(f"'{cw}' must be a function call with a 'name'.", param=cw)
        name = str(fn["name"])
        if isinstance(call.get("id"), str):
            names_by_call_id[str(call["id"])] = name
        out.append(
            {"function": {"name": name, "arguments": tool_arguments(fn.get("arguments"), f"{cw}.function.arguments")}}
        )
    return out
