"""JSON Schema → the subset Gemini's function declarations accept (its ``Schema``, an OpenAPI 3.0 subset)."""

from __future__ import annotations

from collections.abc import Mapping

from tollgate.types import JSONObject

# The fields of Gemini's ``Schema`` (an OpenAPI 3.0 subset). Its request parser rejects the whole request
# on any other key ("Unknown name ... Cannot find field"), so everything else is dropped — notably
# $schema, $id, $defs/definitions (inlined where referenced), additionalProperties, patternProperties,
# propertyNames, unevaluatedProperties, const (turned into enum), oneOf (turned into anyOf), allOf (a single
# member is merged, more are dropped), not, if/then/else, exclusiveMinimum/exclusiveMaximum, multipleOf,
# uniqueItems, contains, examples, readOnly/writeOnly, deprecated and strict.
_SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "default",
        "example",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "propertyOrdering",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "anyOf",
    }
)
# Gemini accepts only these ``format`` values (per type); others are rejected, so they are dropped.
_FORMATS: Mapping[str, frozenset[str]] = {
    "string": frozenset({"enum", "date-time"}),
    "integer": frozenset({"int32", "int64"}),
    "number": frozenset({"float", "double"}),
}
_MAX_SCHEMA_DEPTH = 32  # bounds $ref expansion of recursive schemas


def clean_schema(schema: JSONObject) -> JSONObject:
    """A JSON Schema reduced to what Gemini's ``Schema`` accepts (``_SCHEMA_KEYS`` says what is dropped)."""
    defs: JSONObject = {}
    for key in ("$defs", "definitions"):
        found = schema.get(key)
        if isinstance(found, dict):
            defs.update({f"#/{key}/{name}": value for name, value in found.items()})
    return _clean(schema, defs, 0)


def _clean(schema: JSONObject, defs: JSONObject, depth: int) -> JSONObject:
    if depth > _MAX_SCHEMA_DEPTH:
        return {"type": "object"}
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref)
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        return _clean({**target, **siblings} if isinstance(target, dict) else siblings, defs, depth + 1)
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
        schema = {**all_of[0], **{k: v for k, v in schema.items() if k != "allOf"}}
        return _clean(schema, defs, depth + 1)
    out: JSONObject = {}
    for key, value in schema.items():
        if key == "const":
            if isinstance(value, str):
                out["enum"] = [value]
        elif key == "oneOf" and "anyOf" not in schema:
            out["anyOf"] = value
        elif key in _SCHEMA_KEYS:
            out[key] = value
    _clean_type(out)
    _clean_children(out, defs, depth)
    enum = out.get("enum")
    if enum is not None and not (isinstance(enum, list) and all(isinstance(v, str) for v in enum)):
        del out["enum"]  # Gemini's enum holds strings only
    fmt = out.get("format")
    if fmt is not None and fmt not in _FORMATS.get(str(out.get("type")), frozenset()):
        del out["format"]
    return out


def _clean_type(out: JSONObject) -> None:
    """``type: [t, "null"]`` → ``type: t, nullable: true``; several non-null types become ``anyOf``."""
    kind = out.get("type")
    if not isinstance(kind, list):
        return
    kinds = [k for k in kind if isinstance(k, str) and k != "null"]
    if len(kinds) != len(kind):
        out["nullable"] = True
    if len(kinds) == 1:
        out["type"] = kinds[0]
    else:
        del out["type"]
        if kinds:
            out["anyOf"] = [{"type": k} for k in kinds]


def _clean_children(out: JSONObject, defs: JSONObject, depth: int) -> None:
    props = out.get("properties")
    if isinstance(props, dict):
        cleaned = {k: _clean(v, defs, depth + 1) for k, v in props.items() if isinstance(v, dict)}
        if cleaned:
            out["properties"] = dict(cleaned)
            required = out.get("required")
            if isinstance(required, list):
                out["required"] = [r for r in required if isinstance(r, str) and r in cleaned]
        else:
            out.pop("properties")
            out.pop("required", None)
    elif "properties" in out:
        del out["properties"]
    items = out.get("items")
    if isinstance(items, list):  # tuple validation has no Gemini form: keep the first item's schema
        items = items[0] if items else None
    if isinstance(items, dict):
        out["items"] = _clean(items, defs, depth + 1)
    elif "items" in out:
        del out["items"]
    any_of = out.get("anyOf")
    if isinstance(any_of, list):
        members = [_clean(m, defs, depth + 1) for m in any_of if isinstance(m, dict)]
        # Optional[X] arrives as anyOf [X, {type: null}]: Gemini says that with nullable.
        non_null = [m for m in members if m.get("type") != "null"]
        if len(non_null) != len(members):
            out["nullable"] = True
        if len(non_null) == 1 and "type" not in out:
            del out["anyOf"]
            out.update({k: v for k, v in non_null[0].items() if k not in out})
        elif non_null:
            out["anyOf"] = list(non_null)
        else:
            del out["anyOf"]
