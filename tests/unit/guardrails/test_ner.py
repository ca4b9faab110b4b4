"""The spaCy NER backend on the real model: labels, trimming, merging with the patterns, the policy, config errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.ner import backend, require_model
from tollgate.api.app import create_app
from tollgate.cli import main
from tollgate.config.guardrails import NERConfig, PIIGuardConfig
from tollgate.config.loader import ConfigError, parse_config
from tollgate.context import RequestContext
from tollgate.errors import PermissionDeniedError
from tollgate.guardrails.ner import SpacyNER, _pieces, check_installed
from tollgate.guardrails.pii import Match, PIIDetector, merge_names
from tollgate.policies.pii import PIIPolicy
from tollgate.types import JSONObject


def values(ner: SpacyNER, text: str) -> list[tuple[str, str]]:
    return [(text[m.start : m.end], m.entity) for m in ner.find(text)]


def ctx() -> RequestContext:
    return RequestContext(request_id="r1", front_door="openai", endpoint="chat", config_version="v1")


def chat(*texts: str) -> JSONObject:
    return {"model": "m", "messages": [{"role": "user", "content": t} for t in texts]}


def test_people_and_places_are_found_and_mapped_to_two_types() -> None:
    ner = backend()
    text = "Maria Gonzalez flew from Berlin to Paris and met John Smith at Heathrow Airport."
    found = values(ner, text)
    assert ("Maria Gonzalez", "PERSON") in found and ("John Smith", "PERSON") in found
    assert ("Berlin", "LOCATION") in found and ("Paris", "LOCATION") in found  # GPE
    assert ("Heathrow Airport", "LOCATION") in found  # FAC


def test_organisations_dates_and_numbers_are_not_reported() -> None:
    ner = backend()
    found = values(ner, "Apple and Microsoft released version 3.11.4 last week for $1,299.")
    assert found == []
    # The model reads "Order 48213975" in this sentence as a person; a name has no digits.
    text = "Order 48213975 from 2024-03-15 failed at $1,299.00 because of a timeout."
    assert values(ner, text) == []


def test_spans_are_trimmed_to_the_name() -> None:
    ner = backend()
    text = "I read John Smith's report about the United States."
    found = values(ner, text)
    assert ("John Smith", "PERSON") in found
    assert ("United States", "LOCATION") in found  # without "the"
    code = "# TODO(Kevin Nguyen): remove this workaround"
    assert values(ner, code) == [("Kevin Nguyen", "PERSON")]  # not "TODO(Kevin Nguyen"


def test_entities_ignore_and_min_chars() -> None:
    text = "Maria Gonzalez moved from Berlin to Paris."
    assert [e for _, e in values(backend(entities=["PERSON"]), text)] == ["PERSON"]
    assert ("Berlin", "LOCATION") not in values(backend(ignore=["berlin"]), text)
    assert values(backend(min_chars=20), text) == []


def test_texts_without_letters_skip_the_model_and_results_are_cached() -> None:
    ner = backend()
    assert ner.find_many(["4111 1111 1111 1111", "", "{}: 42"]) == [(), (), ()]
    assert ner.analysed == 0
    lower = "maria gonzalez lives in berlin now."  # chat without capitals is analysed too
    assert values(ner, lower) == [("maria gonzalez", "PERSON"), ("berlin", "LOCATION")]
    ner = backend()
    text = "Maria Gonzalez lives in Berlin."
    first = ner.find(text)
    assert ner.analysed == 1 and first
    assert ner.find(text) == first and ner.analysed == 1  # the second time from the cache
    uncached = backend(cache_entries=0)
    uncached.find(text)
    uncached.find(text)
    assert uncached.analysed == 2


async def test_find_all_runs_in_the_worker_thread_and_keeps_order() -> None:
    ner = backend()
    texts = ["Maria Gonzalez", "nothing", "Paris is lovely."]
    found = await ner.find_all(texts)
    assert [[m.entity for m in spans] for spans in found] == [["PERSON"], [], ["LOCATION"]]
    assert await ner.find_all(["12 + 30 = 42"]) == [()]
    await ner.close()


def test_long_texts_are_cut_at_whitespace_with_offsets_kept() -> None:
    text = ("word " * 30_000) + "end"
    pieces = list(_pieces(text))
    assert len(pieces) == 2 and all(len(p) <= 100_000 for _, p in pieces)
    assert "".join(p for _, p in pieces) == text
    assert all(text[off : off + len(p)] == p for off, p in pieces)


def test_patterns_win_over_names_and_placeholders_are_never_masked() -> None:
    text = "Write to paris.hilton@example.com, <PERSON_1> and Anna Berg; [REDACTED] too."
    found = PIIDetector().find(text)
    at = text.index("paris")
    names = [
        Match(at, at + 5, "LOCATION"),  # inside the email
        Match(text.index("<PERSON_1>") + 1, text.index("<PERSON_1>") + 9, "PERSON"),  # inside a placeholder
        Match(text.index("Anna"), text.index("Anna") + 9, "PERSON"),
        Match(text.index("[REDACTED]") + 1, text.index("[REDACTED]") + 9, "PERSON"),
    ]
    merged = merge_names(found, names, text)
    assert [(text[m.start : m.end], m.entity) for m in merged] == [
        ("paris.hilton@example.com", "EMAIL"),
        ("Anna Berg", "PERSON"),
    ]
    assert merge_names(found, [], text) is found


async def test_policy_masks_names_and_reversible_mode_restores_them() -> None:
    require_model()
    config = PIIGuardConfig(enabled=True, reversible=True, ner=NERConfig(enabled=True))
    policy = PIIPolicy(config, ner=backend())
    c = ctx()
    body = chat("Book a table for Maria Gonzalez in Paris; mail maria@example.com.", "Maria Gonzalez again.")
    out = await policy.inspect(c, body)
    first = out["messages"][0]["content"]  # type: ignore[index,call-overload]
    second = out["messages"][1]["content"]  # type: ignore[index,call-overload]
    assert first == "Book a table for <PERSON_1> in <LOCATION_1>; mail <EMAIL_1>."
    assert second == "<PERSON_1> again."  # the same name, the same placeholder across messages
    assert policy.restore(c, "Done for <PERSON_1> in <LOCATION_1>.") == "Done for Maria Gonzalez in Paris."
    assert policy.summary(c).count("PERSON") == 2 and policy.summary(c).count("LOCATION") == 1
    assert {d.rules for d in c.guardrail_decisions} >= {("PERSON",), ("LOCATION",)}
    policy.on_finalize(c)
    assert body["messages"][0]["content"].startswith("Book a table for Maria")  # type: ignore[index,call-overload,union-attr]


async def test_policy_actions_apply_to_names() -> None:
    require_model()
    config = PIIGuardConfig(enabled=True, actions={"PERSON": "block"}, ner=NERConfig(enabled=True))
    with pytest.raises(PermissionDeniedError) as info:
        await PIIPolicy(config, ner=backend()).inspect(ctx(), chat("Call Maria Gonzalez."))
    assert "PERSON" in str(info.value) and "Maria" not in str(info.value)
    allowed = PIIGuardConfig(enabled=True, actions={"LOCATION": "allow"}, ner=NERConfig(enabled=True))
    out = await PIIPolicy(allowed, ner=backend(entities=["PERSON"])).inspect(ctx(), chat("Maria Gonzalez in Paris."))
    assert out["messages"][0]["content"] == "<PERSON_1> in Paris."  # type: ignore[index,call-overload]


async def test_without_ner_names_pass_and_the_model_is_not_loaded() -> None:
    policy = PIIPolicy(PIIGuardConfig(enabled=True))
    assert policy.ner is None
    body = chat("Maria Gonzalez in Paris.")
    assert await policy.inspect(ctx(), body) is body
    # Names allowed: the model is not even loaded.
    allowed = PIIGuardConfig(
        enabled=True, actions={"PERSON": "allow", "LOCATION": "allow"}, ner=NERConfig(enabled=True)
    )
    assert PIIPolicy(allowed).ner is None


def test_a_missing_model_is_a_config_error_naming_the_install_command() -> None:
    require_model()
    config = NERConfig(enabled=True, model="en_core_web_not_installed")
    with pytest.raises(ConfigError) as info:
        SpacyNER(config)
    assert "guardrails.pii.ner" in str(info.value) and "pip install 'tollgate[ner]'" in str(info.value)
    with pytest.raises(ConfigError, match="is not installed"):
        check_installed(config)
    check_installed(NERConfig(enabled=True))  # the default model is installed
    check_installed(NERConfig(enabled=False, model="anything"))  # off: nothing is checked


def test_a_gateway_without_ner_never_imports_spacy() -> None:
    code = (
        "import sys\n"
        "from tollgate.api.app import create_app\n"
        "from tollgate.config.loader import parse_config\n"
        "env = {'TOLLGATE_MASTER_KEY': 'tg-master-test-key-0123456789', 'TOLLGATE_DATABASE_URL': 'memory://'}\n"
        "create_app(parse_config('guardrails:\\n  pii: {enabled: true}\\n', '<t>', env), env)\n"
        "assert 'spacy' not in sys.modules and 'tollgate.guardrails.ner' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_check_config_reports_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_model()
    path = tmp_path / "tollgate.yaml"
    path.write_text("guardrails:\n  pii: {enabled: true, ner: {enabled: true, model: en_core_web_not_installed}}\n")
    assert main(["check-config", str(path)]) == 2
    assert "guardrails.pii.ner" in capsys.readouterr().err
    path.write_text("guardrails:\n  pii: {enabled: true, ner: {enabled: true}}\n")
    assert main(["check-config", str(path)]) == 0


def test_profiles_and_reloads_share_one_loaded_model() -> None:
    # Every guardrail profile (and every config version a reload composes) that names a model uses the same
    # loaded pipeline and thread: a model costs ~110 MB and a second to load.
    require_model()
    env = {"TOLLGATE_MASTER_KEY": "tg-master-test-key-0123456789", "TOLLGATE_DATABASE_URL": "memory://"}
    config = parse_config(
        "guardrails:\n  pii: {enabled: true, ner: {enabled: true}}\n"
        "  profiles:\n    places_only: {pii: {ner: {entities: [LOCATION]}}}\n",
        "<test>",
        env,
    )
    app, _, _ = create_app(config, env)
    gw = app.gateway
    assert gw.compose is not None
    again = gw.compose(config.guardrails)  # what a reload builds
    detectors = [
        p.ner
        for pipelines in (gw.pipelines, again)
        for pipeline in pipelines.by_profile.values()
        for p in pipeline.inspect
        if isinstance(p, PIIPolicy)
    ]
    assert len(detectors) == 4 and all(d is not None for d in detectors)
    assert len({id(d.nlp) for d in detectors if d is not None}) == 1
    assert {d.entities for d in detectors if d is not None} == {
        frozenset({"PERSON", "LOCATION"}),
        frozenset({"LOCATION"}),
    }
