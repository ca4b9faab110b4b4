"""RESPOND: answers to ``response_format: {type: json_schema}`` requests are validated against the schema.

A non-streamed answer that is not valid JSON, or does not satisfy the schema, becomes a 502
``output_schema_invalid`` naming the problem (where in the document, which keyword of the schema), never the
content; while the request has ``retries`` left the error is marked retryable and the front door asks for the
answer again (``Gateway.answer``). A stream is validated per choice when its finish chunk arrives (its text has
gone out already): by default the stream then ends with a terminal error event instead of the finish chunk;
with ``stream_action: flag`` the decision is only recorded. An answer that failed is never cached.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections import OrderedDict
from typing import Any

import orjson

from tollgate.config.guardrails import OutputSchemaConfig
from tollgate.config.loader import ConfigError
from tollgate.context import GuardrailDecision, RequestContext
from tollgate.errors import UpstreamError
from tollgate.types import JSONObject, JSONValue

GUARDRAIL = "output_schema"
log = logging.getLogger("tollgate.guardrails")
_MAX_VALIDATORS = 256  # compiled validators kept, by schema


class SchemaViolation(UpstreamError):
    """The model's answer does not satisfy the schema the request asked for. ``retryable``: the front door may
    ask for the answer again (``Gateway.answer``); the policy sets it while the request has retries left."""

    code = "output_schema_invalid"


def requested_schema(body: JSONObject | None) -> JSONObject | None:
    """The JSON schema of a chat request's ``response_format``, or ``None``."""
    fmt = body.get("response_format") if body is not None else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else None


def _path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class OutputSchemaPolicy:
    """Built once per config version. Compiled validators are kept per schema (a bounded LRU)."""

    def __init__(self, config: OutputSchemaConfig) -> None:
        try:  # an optional dependency (the schema extra), untyped: used through Any
            self._jsonschema: Any = importlib.import_module("jsonschema")
        except ImportError:  # pragma: no cover - the dev install has it
            raise ConfigError(
                "guardrails.output_schema", ["needs the jsonschema package: pip install 'tollgate[schema]'"]
            ) from None
        self.config = config
        self._validators: OrderedDict[bytes, Any] = OrderedDict()
        self._retried: dict[int, int] = {}  # id(ctx) -> answers already refused (non-streamed), until FINALIZE
        self.failures = 0

    def _validator(self, schema: JSONObject) -> Any | None:
        """The compiled validator of ``schema``; ``None`` for a schema that is itself invalid (the provider
        accepted it, so the answer is passed on unvalidated and a warning logged)."""
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
        cached = self._validators.get(key)
        if cached is not None:
            self._validators.move_to_end(key)
            return cached
        js = self._jsonschema
        cls = js.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except js.exceptions.SchemaError as exc:
            log.warning("guardrail=output_schema: the request's schema is invalid, not validating: %s", exc.message)
            return None
        validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
        self._validators[key] = validator
        if len(self._validators) > _MAX_VALIDATORS:
            self._validators.popitem(last=False)
        return validator

    def problem(self, validator: Any, text: str) -> tuple[str, str] | None:
        """What is wrong with ``text`` (rule id, description without the content), or ``None`` when valid."""
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return "json", f"the answer is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        error = self._jsonschema.exceptions.best_match(validator.iter_errors(document))
        if error is None:
            return None
        expected = orjson.dumps(error.validator_value).decode()
        if len(expected) > 120:
            expected = expected[:117] + "..."
        return (
            f"schema.{error.validator}",
            f"at {_path(error.absolute_path)} the answer fails the schema's '{error.validator}' ({expected})",
        )

    def check(self, ctx: RequestContext) -> Any | None:
        """The validator for this request, or ``None`` when it asked for no schema (or the guard cannot apply)."""
        if ctx.front_door != "openai" or ctx.endpoint != "chat":
            return None
        schema = requested_schema(ctx.body)
        return self._validator(schema) if schema is not None else None

    def fail(
        self, ctx: RequestContext, action: str, rule: str, detail: str, text: str, finished: str
    ) -> SchemaViolation:
        self.failures += 1
        digest = hashlib.sha256(text.encode()).hexdigest()
        ctx.guardrail_decisions.append(GuardrailDecision(GUARDRAIL, action, "output", (rule,), 1, digest))
        hint = " (the answer was cut off at max_tokens)" if finished == "length" else ""
        return SchemaViolation(
            f"The model's answer does not match the requested JSON schema: {detail}{hint}. "
            "Retry the request, or relax the schema.",
            code="output_schema_invalid",
        )

    def respond(self, ctx: RequestContext, completion: JSONObject) -> JSONObject | None:
        """RESPOND (non-streamed): ``None`` for a valid answer; an invalid one raises a 502."""
        validator = self.check(ctx)
        choices = completion.get("choices")
        if validator is None or not isinstance(choices, list):
            return None
        for choice in choices:
            message = choice.get("message") if isinstance(choice, dict) else None
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(content, str):
                continue  # a refusal or tool calls: nothing was answered in the format
            found = self.problem(validator, content)
            if found is not None:
                assert isinstance(choice, dict)
                reason = choice.get("finish_reason")
                tried = self._retried.get(id(ctx), 0)
                retry = tried < self.config.retries
                finished = reason if isinstance(reason, str) else ""
                error = self.fail(ctx, "retry" if retry else "block", found[0], found[1], content, finished)
                if retry:
                    self._retried[id(ctx)] = tried + 1
                    error.retryable = True
                raise error
        return None

    def on_finalize(self, ctx: RequestContext) -> None:
        """Forget the request's retry count. Never raises."""
        self._retried.pop(id(ctx), None)

    def stream_filter(self, ctx: RequestContext) -> OutputSchemaStream | None:
        validator = self.check(ctx) if ctx.stream else None
        return OutputSchemaStream(self, ctx, validator) if validator is not None else None


class OutputSchemaStream:
    """Collects each choice's streamed text and validates it when the choice finishes (or the stream ends)."""

    def __init__(self, policy: OutputSchemaPolicy, ctx: RequestContext, validator: Any) -> None:
        self._policy = policy
        self._ctx = ctx
        self._validator = validator
        self._texts: dict[int, list[str]] = {}
        self._checked: set[int] = set()
        self.done = False
        self.no_store = False  # an answer that failed is not cached, even when only flagged

    def _validate(self, index: int, finished: str) -> None:
        if index in self._checked:
            return
        self._checked.add(index)
        text = "".join(self._texts.get(index, ()))
        policy = self._policy
        found = policy.problem(self._validator, text)
        if found is None:
            return
        self.no_store = True
        action = "block" if policy.config.stream_action == "error" else "flag"
        error = policy.fail(self._ctx, action, found[0], found[1], text, finished)
        if action == "block":
            self.done = True
            raise error

    def feed(self, chunks: list[JSONObject]) -> list[JSONObject]:
        for chunk in chunks:
            choices = chunk.get("choices")
            if not isinstance(choices, list):
                continue
            for choice in choices:
                if not isinstance(choice, dict):
                    continue
                index = choice.get("index", 0)
                key = index if isinstance(index, int) else 0
                delta: JSONValue = choice.get("delta")
                content = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(content, str):
                    self._texts.setdefault(key, []).append(content)
                reason = choice.get("finish_reason")
                if isinstance(reason, str) and key in self._texts:
                    self._validate(key, reason)
        return chunks

    def flush(self) -> list[JSONObject]:
        for index in list(self._texts):
            self._validate(index, "")
        return []
