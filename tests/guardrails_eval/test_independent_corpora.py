"""The independent (blind) evaluation sets are deterministic, large enough, and their values are what they claim:
positives carry valid checksums, the checksum hard negatives fail them, and every span lies inside its text."""

from __future__ import annotations

import base64
import json
import re

from tests.guardrails_eval import independent_injection, independent_pii
from tests.guardrails_eval.independent_pii import iban_valid, luhn_valid


def test_injection_set_shape() -> None:
    cases = independent_injection.generate()
    assert cases == independent_injection.generate()
    attacks = [c for c in cases if c.attack]
    benign = [c for c in cases if not c.attack]
    assert len(attacks) >= 200 and len(benign) >= 200
    assert {c.category for c in attacks if c.source == "indirect"} == set(independent_injection.INDIRECT)
    assert {c.obfuscation for c in attacks} >= set(independent_injection.OBFUSCATIONS)
    assert len({c.text for c in cases}) == len(cases)  # no text is both an attack and benign, or counted twice


def test_coded_obfuscations_decode_to_a_plain_attack() -> None:
    plain = {t for ts in independent_injection.ATTACKS.values() for t in ts}
    for case in independent_injection.generate():
        if case.obfuscation == "base64":
            assert base64.b64decode(case.text.rsplit(" ", 1)[1]).decode() in plain
        elif case.obfuscation == "hex":
            assert bytes.fromhex(case.text.rsplit(" ", 1)[1]).decode() in plain
        elif case.obfuscation == "zero_width":
            assert case.text.replace("\u200b", "") in plain


def test_pii_set_shape_and_spans() -> None:
    samples = independent_pii.generate()
    assert samples == independent_pii.generate()
    positives = [s for s in samples if s.spans]
    negatives = [s for s in samples if not s.spans]
    assert len(positives) >= 300 and len(negatives) >= 150
    assert {t for s in positives for _, _, t in s.spans} == set(independent_pii.POSITIVE)
    for sample in samples:
        for start, end, _ in sample.spans:
            assert 0 <= start < end <= len(sample.text)
            assert sample.text[start:end] == sample.text[start:end].strip()


def test_pii_values_carry_valid_checksums() -> None:
    for sample in independent_pii.generate():
        for start, end, entity in sample.spans:
            value = sample.text[start:end]
            if entity == "CREDIT_CARD":
                assert luhn_valid(re.sub(r"[ -]", "", value)), value
            elif entity == "IBAN":
                assert iban_valid(value), value
            elif entity == "JWT":
                header = value.split(".")[0]
                assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["typ"] == "JWT"
            elif entity == "PRIVATE_KEY":
                assert value.startswith("-----BEGIN ") and value.endswith(" PRIVATE KEY-----")


def test_checksum_hard_negatives_fail_their_checksum() -> None:
    for sample in independent_pii.generate():
        if sample.kind == "NEGATIVE:bad_luhn":
            number = re.search(r"\d[\d -]{12,}\d", sample.text)
            assert number and not luhn_valid(re.sub(r"[ -]", "", number.group())), sample.text
        elif sample.kind == "NEGATIVE:bad_iban":
            iban = re.search(r"[A-Z]{2}\d{2}[A-Z0-9 ]{10,}[A-Z0-9]", sample.text)
            assert iban and not iban_valid(iban.group()), sample.text
