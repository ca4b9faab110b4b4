"""Mask sessions (placeholders, redact, hash, counts) and the streaming placeholder restorer."""

from __future__ import annotations

import hashlib

import pytest

from tollgate.guardrails.masking import REDACTED, MaskSession, PlaceholderRestorer
from tollgate.guardrails.pii import PIIDetector

DETECTOR = PIIDetector()
TEXT = "Mail ann@example.com and bob@example.com; ann@example.com again, card 4111 1111 1111 1111."


def masked(session: MaskSession, text: str = TEXT) -> str:
    return session.apply(text, DETECTOR.find(text))


def test_mask_numbers_placeholders_per_type_and_reuses_them_for_the_same_value() -> None:
    session = MaskSession({}, reversible=True)
    out = masked(session)
    assert out == "Mail <EMAIL_1> and <EMAIL_2>; <EMAIL_1> again, card <CREDIT_CARD_1>."
    assert session.counts == {"EMAIL": 3, "CREDIT_CARD": 1}
    assert session.originals == {
        "<EMAIL_1>": "ann@example.com",
        "<EMAIL_2>": "bob@example.com",
        "<CREDIT_CARD_1>": "4111 1111 1111 1111",
    }
    assert session.restore(out) == TEXT


def test_numbering_continues_across_texts_of_one_request() -> None:
    session = MaskSession({})
    assert masked(session, "a@b.io") == "<EMAIL_1>"
    assert masked(session, "c@d.io then a@b.io") == "<EMAIL_2> then <EMAIL_1>"


def test_without_reversible_mode_no_original_is_kept() -> None:
    session = MaskSession({})
    out = masked(session)
    assert session.originals == {}
    assert session.restore(out) == out


def test_redact_hash_and_allow() -> None:
    session = MaskSession({"EMAIL": "hash", "CREDIT_CARD": "redact"}, salt=b"pepper")
    out = masked(session)
    digest = hashlib.sha256(b"pepper" + b"ann@example.com").hexdigest()[:12]
    assert out.startswith(f"Mail <EMAIL:{digest}> and <EMAIL:")
    assert out.endswith(f"card {REDACTED}.")
    assert "example.com" not in out
    other_salt = MaskSession({"EMAIL": "hash"}, salt=b"salt2")
    assert digest not in masked(other_salt)
    allowing = MaskSession({"EMAIL": "allow"}, default_action="redact")
    assert masked(allowing) == TEXT.replace("4111 1111 1111 1111", REDACTED)
    assert allowing.counts["EMAIL"] == 3


def test_restore_leaves_unknown_placeholders() -> None:
    session = MaskSession({}, reversible=True)
    masked(session, "a@b.io")
    assert session.restore("<EMAIL_1> and <EMAIL_9> and <PHONE_1>") == "a@b.io and <EMAIL_9> and <PHONE_1>"


MAPPING = {"<EMAIL_1>": "ann@example.com", "<CREDIT_CARD_12>": "4111 1111 1111 1111", "<PHONE_2>": "+1 415 555 2671"}
ANSWER = "Dear <EMAIL_1>, your card <CREDIT_CARD_12> (call <PHONE_2>) is a < b <EMAIL_1><EMAIL_1> done <PHONE_"
RESTORED = (
    "Dear ann@example.com, your card 4111 1111 1111 1111 (call +1 415 555 2671) is a < b "
    "ann@example.comann@example.com done <PHONE_"
)


@pytest.mark.parametrize("cut", range(len(ANSWER) + 1))
def test_restorer_handles_a_split_at_every_position(cut: int) -> None:
    restorer = PlaceholderRestorer(MAPPING)
    out = restorer.feed(ANSWER[:cut]) + restorer.feed(ANSWER[cut:]) + restorer.flush()
    assert out == RESTORED


def test_restorer_one_character_at_a_time_and_hold_back_bound() -> None:
    restorer = PlaceholderRestorer(MAPPING)
    assert restorer.hold_back == len("<CREDIT_CARD_12>") - 1
    out = []
    for ch in ANSWER:
        out.append(restorer.feed(ch))
        assert restorer.held <= restorer.hold_back
    out.append(restorer.flush())
    assert "".join(out) == RESTORED


def test_restorer_emits_plain_text_at_once() -> None:
    restorer = PlaceholderRestorer(MAPPING)
    assert restorer.feed("no placeholders < here") == "no placeholders < here"
    assert restorer.feed("ends with <EM") == "ends with "
    assert restorer.feed("AIL_1> ok") == "ann@example.com ok"
    assert restorer.flush() == ""
    assert PlaceholderRestorer({}).feed("<EMAIL_1") == "<EMAIL_1"
