"""Allow-lists of several levels combine into one that a request must pass at every level."""

from __future__ import annotations

import pytest

from tollgate.policies.model_access import intersect_allow_lists, model_allowed


def test_no_level_restricting_allows_everything() -> None:
    assert intersect_allow_lists((), (), ()) == ()
    assert model_allowed((), "anything/at-all")


def test_one_level_is_its_own_list() -> None:
    assert intersect_allow_lists((), ("gpt-4o*",), ()) == ("gpt-4o*",)


@pytest.mark.parametrize(
    ("levels", "model", "allowed"),
    [
        ((("gpt-4o*",), ("openai/*",)), "openai/gpt-4o-mini", True),
        ((("gpt-4o*",), ("openai/*",)), "azure/gpt-4o", False),
        ((("gpt-4o*",), ("openai/*",)), "gpt-4o", False),
        ((("gpt-4o*",), ("claude-*",)), "openai/gpt-4o", False),  # disjoint: nothing passes
        ((("*",), ("gpt-4o",)), "openai/gpt-4o", True),
        ((("openai/gpt-4o",), ("gpt-4o*",)), "openai/gpt-4o", True),
        ((("openai/gpt-4o",), ("claude*",)), "openai/gpt-4o", False),
        ((("a*", "b*"), ("*x", "*y"), ("ax", "by", "bx")), "ax", True),
        ((("a*", "b*"), ("*x", "*y"), ("ax", "by", "bx")), "ay", False),
    ],
)
def test_intersection(levels: tuple[tuple[str, ...], ...], model: str, allowed: bool) -> None:
    combined = intersect_allow_lists(*levels)
    assert combined  # never empty when some level restricts: empty would mean "everything"
    assert model_allowed(combined, model) is allowed
    assert all(model_allowed(level, model) for level in levels) is allowed


def test_exact_qualified_names_simplify() -> None:
    assert intersect_allow_lists(("openai/gpt-4o",), ("gpt-4o*",)) == ("openai/gpt-4o",)
    assert intersect_allow_lists(("gpt-4o*",), ("gpt-4o*", "*")) == ("gpt-4o*",)
