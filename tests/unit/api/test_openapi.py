"""The OpenAPI document: valid OpenAPI 3.1, and in step with the routes the app serves and admin.ROUTES."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate

from tollgate.api import admin
from tollgate.api.app import served_routes
from tollgate.api.openapi import OPERATIONS, ROLES_EXTENSION, document

HOW = "describe it with an Op in OPERATIONS in src/tollgate/api/openapi.py (see docs/admin-api.md#openapi)"


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m.upper(), path): op for path, item in doc["paths"].items() for m, op in item.items()}


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises with the offending location when the document is not valid OpenAPI


def test_every_served_route_is_described_and_every_description_is_served() -> None:
    served = served_routes()
    described = set(_operations(document()))
    undocumented = sorted(served - described)
    assert not undocumented, f"routes without a description: {undocumented}; {HOW}"
    stale = sorted(described - served)
    assert not stale, f"described but not served (remove or fix the entry in OPERATIONS): {stale}"
    assert set(OPERATIONS) == described


def test_admin_routes_take_roles_status_and_body_from_the_route_table() -> None:
    ops = _operations(document())
    for route in admin.ROUTES:
        op = ops[(route.method, route.path)]
        assert op[ROLES_EXTENSION] == list(route.roles), route.path
        assert str(route.status) in op["responses"], route.path
        assert ("requestBody" in op) == route.reads_body, f"{route.method} {route.path}: body described iff read"
        assert op["security"] == [{"bearer": []}]


def test_every_admin_operation_needs_a_key_and_says_which_roles() -> None:
    for (method, path), op in _operations(document()).items():
        if (path.startswith("/admin/") and path != "/admin/openapi.json") or path == "/v1/route/explain":
            assert op["security"] == [{"bearer": []}], (method, path)
            assert op[ROLES_EXTENSION], (method, path)
            assert {"401", "403"} <= set(op["responses"]), (method, path)
            assert op["responses"]["403"] == {"$ref": "#/components/responses/E403"}
    ops = _operations(document())
    for open_path in ("/health", "/health/ready", "/metrics", "/admin/openapi.json"):
        assert ops[("GET", open_path)]["security"] == []


def test_templated_paths_declare_their_parameters() -> None:
    for (method, path), op in _operations(document()).items():
        names = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
        declared = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
        assert declared == names, (method, path)


def test_operation_ids_are_unique() -> None:
    ids = [op["operationId"] for op in _operations(document()).values()]
    assert len(ids) == len(set(ids))
