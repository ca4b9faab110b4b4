"""Routing rules and data residency, compiled from real config and applied to real routes (no I/O)."""

from __future__ import annotations

import pytest

from tollgate.config.loader import ConfigError, parse_config
from tollgate.context import Principal
from tollgate.core.snapshot import Snapshot
from tollgate.routing.explain import explain
from tollgate.routing.resolver import Route
from tollgate.routing.rules import RequestFacts
from tollgate.routing.strategies import RoutingState
from tollgate.types import JSONObject

PROVIDERS = """
providers:
  openai: {api_key: sk-o, base_url: 'http://127.0.0.1:1/v1'}
  azure-eu: {type: openai, api_key: sk-a, base_url: 'http://127.0.0.1:2/v1'}
  anthropic: {api_key: sk-c}
models:
  smart:
    deployments:
      - {provider: openai, model: gpt-4o, region: us, tags: [gold]}
      - {provider: azure-eu, model: gpt-4o, region: eu-west-1, tags: [gold]}
      - {provider: anthropic, model: claude-sonnet-4-5, region: us}
      - {provider: azure-eu, model: gpt-4o-mini, region: eu-central-1}
  cheap:
    strategy: lowest_cost
    deployments:
      - {provider: openai, model: gpt-4o-mini, region: us}
      - {provider: azure-eu, model: gpt-4o-mini, region: eu-central-1}
"""


def snapshot(rules: str = "", residency: str = "") -> Snapshot:
    text = PROVIDERS + "routing:\n"
    text += ("  rules:\n" + rules) if rules else ""
    text += ("  residency:\n" + residency) if residency else ""
    if not rules and not residency:
        text = PROVIDERS
    return Snapshot(parse_config(text, "<test>", {}), env={})


def facts(
    headers: dict[str, str] | None = None,
    principal: Principal | None = None,
    metadata: JSONObject | None = None,
    prompt_tokens: int = 10,
    stream: bool = False,
    body: JSONObject | None = None,
) -> RequestFacts:
    raw = {k.lower().encode(): v.encode() for k, v in (headers or {}).items()}
    return RequestFacts(raw, principal, metadata, prompt_tokens, stream, body)


def route(snap: Snapshot, model: str, f: RequestFacts) -> Route:
    return snap.rules.apply(snap.resolve(model), f)


def keys(r: Route) -> list[str]:
    return [c.key for c in r.plan]


def caller(**metadata: str) -> Principal:
    return Principal("k1", "app", "user", team_id="t-research", org_id="o-acme", metadata=dict(metadata))


def test_without_rules_or_residency_tags_the_route_is_untouched() -> None:
    snap = snapshot()
    base = snap.resolve("smart")
    assert route(snap, "smart", facts({"x-workload": "bulk"}, caller(), {"user": "u1"})) is base


def test_a_header_rule_sends_bulk_work_to_another_logical_model() -> None:
    snap = snapshot("    - {name: bulk, match: {headers: {x-workload: bulk}}, action: {model: cheap}}\n")
    r = route(snap, "smart", facts({"X-Workload": "BULK"}))
    assert r.target == "cheap" and r.rules == ("bulk",) and r.requested == "smart"
    assert r.strategy == "lowest_cost"
    assert keys(r) == ["openai/gpt-4o-mini", "azure-eu/gpt-4o-mini"]
    assert [d.label for d in r.candidates] == keys(r)
    assert route(snap, "smart", facts({"x-workload": "interactive"})) is snap.resolve("smart")
    assert route(snap, "smart", facts()) is snap.resolve("smart")


def test_header_wildcard_list_of_values_and_model_scope() -> None:
    snap = snapshot(
        "    - name: tiers\n      match: {models: [smart], headers: {x-user-tier: [premium, gold]}}\n"
        "      action: {tags: [gold]}\n"
        "    - name: any-region-header\n      match: {headers: {x-region: '*'}}\n      action: {providers: [openai]}\n"
    )
    r = route(snap, "smart", facts({"x-user-tier": "gold"}))
    assert keys(r) == ["openai/gpt-4o", "azure-eu/gpt-4o"] and r.rules == ("tiers",)
    assert route(snap, "cheap", facts({"x-user-tier": "gold"})) is snap.resolve("cheap")  # scoped to smart
    r = route(snap, "cheap", facts({"x-region": "anything"}))
    assert keys(r) == ["openai/gpt-4o-mini"] and r.rules == ("any-region-header",)


def test_restrictions_add_up_and_excluded_candidates_say_why() -> None:
    snap = snapshot(
        "    - {name: gold-only, match: {headers: {x-user-tier: premium}}, action: {tags: [gold]}}\n"
        "    - {name: eu-header, match: {headers: {x-region: eu}}, action: {regions: [eu-west-1, eu-central-1]}}\n"
    )
    r = route(snap, "smart", facts({"x-user-tier": "premium", "x-region": "eu"}))
    assert keys(r) == ["azure-eu/gpt-4o"] and r.rules == ("gold-only", "eu-header")
    why = {e.candidate.key: e.reason for e in r.excluded}
    assert {e.by for e in r.excluded} == {"rule"}
    assert "needs tags ['gold']" in why["anthropic/claude-sonnet-4-5"]
    assert "allows only regions" in why["openai/gpt-4o"] and "region: us" in why["openai/gpt-4o"]
    assert set(why) == {"openai/gpt-4o", "anthropic/claude-sonnet-4-5", "azure-eu/gpt-4o-mini"}


def test_last_stops_evaluation_and_the_first_model_wins() -> None:
    snap = snapshot(
        "    - {name: first, match: {headers: {x-workload: bulk}}, action: {model: cheap}}\n"
        "    - {name: second, match: {headers: {x-workload: bulk}}, action: {model: smart}, last: true}\n"
        "    - {name: third, match: {headers: {x-workload: bulk}}, action: {providers: [openai]}}\n"
    )
    r = route(snap, "smart", facts({"x-workload": "bulk"}))
    assert r.target == "cheap" and r.rules == ("first", "second")
    assert keys(r) == ["openai/gpt-4o-mini", "azure-eu/gpt-4o-mini"]  # 'third' never ran
    trace = snap.rules.trace("smart", facts({"x-workload": "bulk"}))
    assert [t["matched"] for t in trace] == [True, True, False]  # type: ignore[index]
    assert "not evaluated" in trace[2]["why"]  # type: ignore[index]


def test_caller_metadata_team_and_org_conditions() -> None:
    snap = snapshot(
        "    - {name: research, match: {teams: [t-research], principal: {tier: premium}}, action: {tags: [gold]}}\n"
        "    - {name: acme, match: {orgs: [o-acme]}, action: {providers: [azure-eu]}}\n"
    )
    r = route(snap, "smart", facts(principal=caller(tier="Premium")))
    assert r.rules == ("research", "acme") and keys(r) == ["azure-eu/gpt-4o"]
    r = route(snap, "smart", facts(principal=caller(tier="basic")))
    assert r.rules == ("acme",) and keys(r) == ["azure-eu/gpt-4o", "azure-eu/gpt-4o-mini"]
    assert route(snap, "smart", facts()) is snap.resolve("smart")  # no principal: no match


def test_request_tags_from_metadata_and_the_tags_header_which_wins() -> None:
    snap = snapshot("    - {name: batch, match: {tags: {workload: batch}}, action: {model: cheap}}\n")
    assert route(snap, "smart", facts(metadata={"workload": "batch"})).target == "cheap"
    assert route(snap, "smart", facts({"x-tollgate-tags": "team=a, workload=batch"})).target == "cheap"
    f = facts({"x-tollgate-tags": "workload=chat"}, metadata={"workload": "batch"})
    assert route(snap, "smart", f).target is None
    assert facts({"x-tollgate-tags": "flag, k = V "}).tags == {"flag": "true", "k": "v"}
    assert facts(metadata={"n": 3, "s": "x"}).tags == {"s": "x"}  # only string values are tags
    assert facts(metadata={"tollgate_workload": "Batch"}).tags == {"workload": "batch"}


def test_request_properties_prompt_size_tools_images_stream() -> None:
    snap = snapshot(
        "    - {name: long, match: {min_prompt_tokens: 1000}, action: {providers: [anthropic]}}\n"
        "    - {name: short, match: {max_prompt_tokens: 50}, action: {model: cheap}}\n"
        "    - {name: tools, match: {has_tools: true}, action: {providers: [openai]}}\n"
        "    - {name: vision, match: {has_images: true}, action: {tags: [gold]}}\n"
        "    - {name: streams, match: {stream: true}, action: {regions: [us]}}\n"
    )
    assert route(snap, "smart", facts(prompt_tokens=5000)).rules == ("long",)
    assert route(snap, "smart", facts(prompt_tokens=20)).rules == ("short",)
    assert route(snap, "smart", facts(prompt_tokens=500)).rules == ()
    tools: JSONObject = {"messages": [], "tools": [{"type": "function", "function": {"name": "f"}}]}
    assert route(snap, "smart", facts(prompt_tokens=500, body=tools)).rules == ("tools",)
    assert route(snap, "smart", facts(prompt_tokens=500, body={"messages": [], "tools": []})).rules == ()
    openai_image: JSONObject = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {}}]}
        ]
    }
    anthropic_image: JSONObject = {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}
    text_only: JSONObject = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert route(snap, "smart", facts(prompt_tokens=500, body=openai_image)).rules == ("vision",)
    assert route(snap, "smart", facts(prompt_tokens=500, body=anthropic_image)).rules == ("vision",)
    assert route(snap, "smart", facts(prompt_tokens=500, body=text_only)).rules == ()
    r = route(snap, "smart", facts(prompt_tokens=500, stream=True))
    assert r.rules == ("streams",) and keys(r) == ["openai/gpt-4o", "anthropic/claude-sonnet-4-5"]


def test_residency_tag_keeps_only_compliant_regions() -> None:
    snap = snapshot(residency="    zones: {eu: [eu-west-1, eu-central-1]}\n")
    r = route(snap, "smart", facts(metadata={"data-residency": "EU"}))
    assert r.residency == ("eu",) and keys(r) == ["azure-eu/gpt-4o", "azure-eu/gpt-4o-mini"]
    why = {e.candidate.key: e.reason for e in r.excluded}
    assert {e.by for e in r.excluded} == {"residency"}
    assert why["openai/gpt-4o"].startswith("data residency 'eu' allows regions ['eu-central-1', 'eu-west-1']")
    assert keys(route(snap, "smart", facts({"x-tollgate-tags": "data-residency=eu"}))) == keys(r)
    assert keys(route(snap, "smart", facts(metadata={"tollgate_data-residency": "eu"}))) == keys(r)
    assert keys(route(snap, "smart", facts(metadata={"Data-Residency": " EU "}))) == keys(r)
    # A zone not listed is complied with by the region of the same name only: nothing here.
    assert keys(route(snap, "smart", facts(metadata={"data-residency": "us"}))) == [
        "openai/gpt-4o",
        "anthropic/claude-sonnet-4-5",
    ]
    assert keys(route(snap, "smart", facts(metadata={"data-residency": "ch"}))) == []
    # A direct provider/model address has no region: a pinned request cannot use it.
    assert keys(route(snap, "openai/gpt-4o", facts(metadata={"data-residency": "eu"}))) == []


def test_caller_metadata_pins_residency_and_a_request_cannot_loosen_it() -> None:
    snap = snapshot(residency="    zones: {eu: [eu-west-1, eu-central-1]}\n")
    pinned = caller(**{"data-residency": "eu"})
    assert keys(route(snap, "cheap", facts(principal=pinned))) == ["azure-eu/gpt-4o-mini"]
    assert keys(route(snap, "cheap", facts(principal=caller(**{"Data-Residency": "EU"})))) == keys(
        route(snap, "cheap", facts(principal=pinned))
    )
    r = route(snap, "cheap", facts(principal=pinned, metadata={"data-residency": "us"}))
    assert r.residency == ("eu", "us") and keys(r) == []  # both apply: nothing complies with both


def test_a_rule_can_pin_residency_and_a_custom_tag_name() -> None:
    snap = snapshot(
        "    - {name: eu-header, match: {headers: {x-region: eu}}, action: {residency: eu}}\n",
        "    tag: residency\n    zones: {eu: [eu-west-1, eu-central-1]}\n",
    )
    r = route(snap, "smart", facts({"x-region": "eu"}))
    assert r.residency == ("eu",) and r.rules == ("eu-header",) and len(keys(r)) == 2
    assert keys(route(snap, "smart", facts(metadata={"residency": "eu"}))) == keys(r)
    assert route(snap, "smart", facts(metadata={"data-residency": "eu"})) is snap.resolve("smart")


def test_shaped_routes_are_built_once_per_outcome() -> None:
    snap = snapshot("    - {name: bulk, match: {headers: {x-workload: bulk}}, action: {model: cheap}}\n")
    first = route(snap, "smart", facts({"x-workload": "bulk"}))
    assert route(snap, "smart", facts({"x-workload": "bulk"})) is first


def test_explain_lists_excluded_candidates_with_their_reasons() -> None:
    snap = snapshot(
        "    - {name: gold-only, match: {headers: {x-user-tier: premium}}, action: {tags: [gold]}}\n",
        "    zones: {eu: [eu-west-1, eu-central-1]}\n",
    )
    r = route(snap, "smart", facts({"x-user-tier": "premium"}, metadata={"data-residency": "eu"}))
    out = explain(r, RoutingState(snap.routing), prompt_tokens=10, output_tokens=10, stream=False, config_version="v")
    assert out["chosen"] == "azure-eu/gpt-4o" and out["rules_matched"] == ["gold-only"]
    assert out["residency"] == ["eu"]
    skipped = {c["deployment"]: c for c in out["candidates"] if c["skipped"]}  # type: ignore[union-attr,index]
    assert skipped["openai/gpt-4o"]["excluded_by"] == "residency"
    assert skipped["azure-eu/gpt-4o-mini"]["excluded_by"] == "rule"
    assert "gold-only" in skipped["azure-eu/gpt-4o-mini"]["skip_reason"]
    none = route(snap, "smart", facts(metadata={"data-residency": "mars"}))
    out = explain(none, RoutingState(snap.routing), prompt_tokens=1, output_tokens=1, stream=False, config_version="v")
    assert out["outcome"] == "fail_fast_503" and out["error_code"] == "no_compliant_deployment"


@pytest.mark.parametrize(
    ("rules", "problem"),
    [
        ("    - {name: a, action: {model: nope}}\n", "unknown logical model 'nope'"),
        ("    - {name: a, action: {}}\n", "must set at least one of"),
        ("    - {name: a, action: {tags: [x]}}\n    - {name: a, action: {tags: [y]}}\n", "used by another rule"),
        ("    - {name: a, match: {headres: {}}, action: {tags: [x]}}\n", "unknown key"),
    ],
)
def test_bad_rules_are_config_errors(rules: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(PROVIDERS + "routing:\n  rules:\n" + rules, "<test>", {})
    assert problem in str(info.value)
