"""Guardrail profiles in config: a profile states only how it differs; bad names and references are refused."""

from __future__ import annotations

import pytest

from tollgate.config.guardrails import GuardrailAssignConfig, GuardrailsConfig, merged
from tollgate.config.loader import ConfigError, parse_config

ENV = {"TOLLGATE_MASTER_KEY": "tg-master-test-key-0123456789"}


def guardrails(yaml_text: str) -> GuardrailsConfig:
    return parse_config(yaml_text, "<test>", ENV).guardrails


def test_a_profile_is_the_default_set_with_its_differences_laid_over() -> None:
    g = guardrails(
        """
guardrails:
  pii: {enabled: true, actions: {EMAIL: hash, PHONE: redact}, phone_regions: [US, GB]}
  injection: {enabled: true, direct: {threshold: 0.6}}
  profiles:
    strict:
      pii: {default_action: block, actions: {EMAIL: mask}, phone_regions: [DE]}
      injection: {indirect: {action: flag}}
"""
    )
    strict = g.profile("strict")
    # Mappings merge key by key: PHONE keeps the default set's action, EMAIL takes the profile's.
    assert strict.pii.actions == {"EMAIL": "mask", "PHONE": "redact"}
    assert strict.pii.default_action == "block" and strict.pii.enabled
    assert strict.pii.phone_regions == ("DE",)  # lists replace
    assert strict.injection.direct.threshold == 0.6 and strict.injection.indirect.action == "flag"
    assert g.profile("default") is g and g.profile_names() == ("default", "strict")
    # The default set itself is untouched.
    assert g.pii.default_action == "mask" and g.injection.indirect.action == "block"


def test_merge_lays_mappings_over_mappings_and_replaces_everything_else() -> None:
    assert merged({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"c": 3}, "d": [2]}) == {"a": {"b": 1, "c": 3}, "d": [2]}
    assert merged({"a": 1}, {"a": {"x": 1}}) == {"a": {"x": 1}}


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("  profiles:\n    default: {}\n", "'default' is not a usable profile name"),
        ("  profiles:\n    'a b': {}\n", "'a b' is not a usable profile name"),
        ("  profiles:\n    x: {audit: {enabled: false}}\n", "profiles.x: audit cannot be set per profile"),
        ("  profiles:\n    x: {pii: {default_action: shout}}\n", "profiles.x.pii.default_action"),
        ("  profiles:\n    x: {webhook: {enabled: true}}\n", "profiles.x"),  # a profile is validated whole
        ("  assign:\n    teams: {research: nosuch}\n", "assign.teams.research: no profile named 'nosuch'"),
    ],
)
def test_bad_profiles_are_refused_with_where_and_why(yaml_text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        guardrails("guardrails:\n" + yaml_text)
    assert message in str(info.value)


def test_the_most_specific_assignment_wins() -> None:
    assign = GuardrailAssignConfig(orgs={"acme": "o"}, teams={"research": "t"}, keys={"key_1": "k"})
    assert assign.decide("key_1", "research", "acme") == ("k", "key", "key_1")
    assert assign.decide("key_2", "research", "acme") == ("t", "team", "research")
    assert assign.decide("key_2", "support", "acme") == ("o", "org", "acme")
    assert assign.decide("key_2", None, None) == ("default", "default", None)
    # Assigning "default" explicitly exempts a team from its org's profile.
    assert (
        GuardrailAssignConfig(orgs={"acme": "o"}, teams={"research": "default"}).decide(None, "research", "acme")[0]
        == "default"
    )
