"""Cleaning tool-parameter JSON Schemas down to the subset Gemini's function declarations accept."""

from __future__ import annotations

from tollgate.providers.gemini.schema import clean_schema
from tollgate.types import JSONObject, JSONValue

# Keys Gemini's Schema has no field for: any of them anywhere fails the whole request with a 400.
REJECTED = {
    "$schema", "$id", "$defs", "$ref", "definitions", "additionalProperties", "patternProperties",
    "propertyNames", "unevaluatedProperties", "const", "oneOf", "allOf", "not", "if", "then", "else",
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "uniqueItems", "contains", "examples",
    "readOnly", "writeOnly", "deprecated", "strict",
}  # fmt: skip


def keys_anywhere(schema: JSONValue) -> set[str]:
    """Every schema keyword used at any depth (property names themselves are not keywords)."""
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            found.add(key)
            if key == "properties" and isinstance(value, dict):
                for sub in value.values():
                    found |= keys_anywhere(sub)
            else:
                found |= keys_anywhere(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= keys_anywhere(item)
    return found


def test_rejected_keys_are_removed_at_every_depth() -> None:
    schema: JSONObject = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:tool",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "additionalProperties": {"type": "string", "description": "a property with an awkward name"},
            "count": {"type": "integer", "exclusiveMinimum": 0, "multipleOf": 2, "minimum": 1},
            "tags": {
                "type": "array",
                "uniqueItems": True,
                "items": {
                    "type": "object",
                    "properties": {"k": {"type": "string"}},
                    "additionalProperties": False,
                },
            },
            "meta": {"type": "object", "propertyNames": {"pattern": "^x"}, "patternProperties": {"^x": {}}},
            "mode": {"const": "fast", "examples": ["fast"], "readOnly": True},
        },
        "if": {"properties": {"count": {"const": 1}}},
        "then": {"required": ["tags"]},
    }
    cleaned = clean_schema(schema)
    assert not keys_anywhere(cleaned) & REJECTED
    props = cleaned["properties"]
    assert isinstance(props, dict)
    assert props["additionalProperties"] == {
        "type": "string",
        "description": "a property with an awkward name",
    }
    assert props["count"] == {"type": "integer", "minimum": 1}
    assert props["tags"] == {
        "type": "array",
        "items": {"type": "object", "properties": {"k": {"type": "string"}}},
    }
    assert props["meta"] == {"type": "object"}
    assert props["mode"] == {"enum": ["fast"]}


def test_input_schema_is_not_changed() -> None:
    schema: JSONObject = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "additionalProperties": False,
    }
    clean_schema(schema)
    assert schema == {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "additionalProperties": False,
    }


def test_refs_to_defs_are_inlined() -> None:
    schema: JSONObject = {
        "type": "object",
        "properties": {
            "home": {"$ref": "#/$defs/Address", "description": "Where they live"},
            "work": {"$ref": "#/definitions/Address"},
        },
        "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        "definitions": {"Address": {"$ref": "#/$defs/Address"}},
    }
    address = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    assert clean_schema(schema)["properties"] == {
        "home": {**address, "description": "Where they live"},
        "work": address,
    }


def test_a_recursive_schema_is_cut_off_instead_of_looping() -> None:
    schema: JSONObject = {
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
        "$ref": "#/$defs/Node",
    }
    cleaned = clean_schema(schema)
    depth = 0
    node: JSONValue = cleaned
    while isinstance(node, dict) and isinstance(node.get("properties"), dict):
        node = node["properties"]["child"]  # type: ignore[index]
        depth += 1
    assert 0 < depth <= 40
    assert node == {"type": "object"}


def test_nullable_types_and_optional_any_of() -> None:
    schema: JSONObject = {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None, "title": "B"},
            "c": {"type": ["string", "integer"]},
            "d": {"oneOf": [{"type": "string"}, {"type": "boolean"}]},
            "e": {"allOf": [{"type": "number", "maximum": 5}], "description": "capped"},
        },
    }
    props = clean_schema(schema)["properties"]
    assert props == {
        "a": {"type": "string", "nullable": True},
        "b": {"type": "integer", "nullable": True, "default": None, "title": "B"},
        "c": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "d": {"anyOf": [{"type": "string"}, {"type": "boolean"}]},
        "e": {"type": "number", "maximum": 5, "description": "capped"},
    }


def test_formats_and_enums_gemini_does_not_accept_are_dropped() -> None:
    schema: JSONObject = {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "mail": {"type": "string", "format": "email"},
            "big": {"type": "integer", "format": "int64"},
            "level": {"type": "integer", "enum": [1, 2, 3]},
            "colour": {"type": "string", "enum": ["red", "blue"]},
        },
        "required": ["when", "gone"],
    }
    cleaned = clean_schema(schema)
    assert cleaned["properties"] == {
        "when": {"type": "string", "format": "date-time"},
        "mail": {"type": "string"},
        "big": {"type": "integer", "format": "int64"},
        "level": {"type": "integer"},
        "colour": {"type": "string", "enum": ["red", "blue"]},
    }
    assert cleaned["required"] == ["when"]  # Gemini rejects required names that are not properties


def test_empty_properties_are_removed() -> None:
    cleaned = clean_schema({"type": "object", "properties": {"o": {"type": "object", "properties": {}}}})
    assert cleaned == {"type": "object", "properties": {"o": {"type": "object"}}}
