"""PIIDetector: every entity type found in context, hard negatives left alone, overlaps resolved."""

from __future__ import annotations

from itertools import pairwise

import pytest

from tollgate.config.guardrails import EntityType
from tollgate.guardrails.pii import Match, PIIDetector, resolve_overlaps

DETECTOR = PIIDetector()
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
KEY_BLOCK = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq2Vx0a1b\n-----END RSA PRIVATE KEY-----"


def found(text: str, detector: PIIDetector = DETECTOR) -> list[tuple[EntityType, str]]:
    return [(m.entity, text[m.start : m.end]) for m in detector.find(text)]


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("write to jane.doe+news@mail.example.co.uk today", "EMAIL", "jane.doe+news@mail.example.co.uk"),
        ("call +44 20 7946 0958 now", "PHONE", "+44 20 7946 0958"),
        ("call (415) 555-2671 now", "PHONE", "(415) 555-2671"),
        ("call 415.555.2671 now", "PHONE", "415.555.2671"),
        ("call 0049 30 12345678 now", "PHONE", "0049 30 12345678"),
        ("ruf an: +4930123456789", "PHONE", "+4930123456789"),
        ("tel:+14155552671", "PHONE", "+14155552671"),
        ("card 4111 1111 1111 1111 exp 09/27", "CREDIT_CARD", "4111 1111 1111 1111"),
        ("amex 3782-822463-10005.", "CREDIT_CARD", "3782-822463-10005"),
        ("SSN 219-09-9998.", "US_SSN", "219-09-9998"),
        ("ssn: 219099998", "US_SSN", "219099998"),
        ("IBAN DE89 3704 0044 0532 0130 00 THANKS", "IBAN", "DE89 3704 0044 0532 0130 00"),
        ("iban GB82WEST12345698765432.", "IBAN", "GB82WEST12345698765432"),
        ("from 192.168.1.20.", "IP_ADDRESS", "192.168.1.20"),
        ("from 2001:db8::8a2e:370:7334 and", "IP_ADDRESS", "2001:db8::8a2e:370:7334"),
        ("I was born on March 3, 1985 in Leeds", "DATE_OF_BIRTH", "March 3, 1985"),
        ("DOB: 03/04/1985", "DATE_OF_BIRTH", "03/04/1985"),
        ("Born 12/05/1990 in Leeds.", "DATE_OF_BIRTH", "12/05/1990"),
        ("NINO AB 12 34 56 C", "UK_NINO", "AB 12 34 56 C"),
        ("passport no. 123456789", "PASSPORT", "123456789"),
        ("ship to 221B Baker Street, London", "STREET_ADDRESS", "221B Baker Street"),
        ("key sk-proj-abcdefghijklmnopqrstuvwxyz123456 ok", "OPENAI_KEY", "sk-proj-abcdefghijklmnopqrstuvwxyz123456"),
        ("key sk-ant-api03-abcdefghijklmnopqrstuvwxyz ok", "ANTHROPIC_KEY", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"),
        ("id AKIAIOSFODNN7EXAMPLE ok", "AWS_ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "AWS_SECRET_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        (
            "GITHUB_TOKEN=ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
            "GITHUB_TOKEN",
            "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
        ),
        (f"Bearer {JWT}", "JWT", JWT),
        (f"key:\n{KEY_BLOCK}\nthanks", "PRIVATE_KEY", KEY_BLOCK),
        ('{"user": "sam", "password": "hunter2!"}', "PASSWORD", "hunter2!"),
        ("db password=s3cr3t host=db", "PASSWORD", "s3cr3t"),
        ("pwd: abc123", "PASSWORD", "abc123"),
        ("DB_PASSWORD=dragon179!", "PASSWORD", "dragon179!"),
        ("mysql -u root --password=kitten-cloud-61 -h db", "PASSWORD", "kitten-cloud-61"),
        ("the wifi password is quartz-cloud-57 (guests)", "PASSWORD", "quartz-cloud-57"),
        ("Passwort: Marathon4440?", "PASSWORD", "Marathon4440?"),
        ("postgres://app_user:Quartz1529%21@db.internal:5432/orders", "PASSWORD", "Quartz1529%21"),
        ("Reisepassnummer K9881VYTT bitte hinterlegen", "PASSPORT", "K9881VYTT"),
        ("numéro de passeport : 57FS13696", "PASSPORT", "57FS13696"),
        ("Geburtsdatum: 8 Dec 1958", "DATE_OF_BIRTH", "8 Dec 1958"),
        ("Employee: NINO HC159739B, born 1949-07-25, London", "DATE_OF_BIRTH", "1949-07-25"),
        ("The accident happened outside 9730 Sycamore Court at 8pm.", "STREET_ADDRESS", "9730 Sycamore Court"),
    ],
)
def test_detects_each_type(text: str, entity: EntityType, value: str) -> None:
    assert (entity, value) in found(text)


@pytest.mark.parametrize(
    "text",
    [
        "Order #48213975 has shipped; order 482139751 too.",
        "Upgrade to version 2.14.3 (v10.0.1) today.",
        "request id 123e4567-e89b-12d3-a456-426614174000",
        "It costs $1,299.00, or 1299,00 €.",
        "The release is on 2024-03-15; invoice dated 3/15/2024.",
        "Fixed in commit 3f2a9c1b7d0e4a5b6c7d8e9f0a1b2c3d4e5f6a7b.",
        "Tracking 1Z999AA10123456784 and USPS 9400 1000 0000 0000 0000 00.",
        "ISBN 978-3-16-148410-0, at 10:30:45 UTC on localhost:8080.",
        "The project was born on 2015-06-01 at a hackathon.",
        "Password: required. Password: ********. The passport office opens at 9.",
        "We tested 5 Main Street cafes; Wall Street fell 12 points.",
        "risk-assessment and task-runner are documented; sk- alone is nothing.",
        "card 4111 1111 1111 1112 fails Luhn; IBAN DE89 3704 0044 0532 0130 01 fails mod-97",
        "SSN 666-12-3456 and 000-12-3456 are never issued",
        "version 300.1.2.3 and 256.1.1.1 are not addresses",
        "last_seen=1725810673 and 1723254781 kernel: eth0 link up",
        "SKU 35 4823 1974 and catalogue item 31542-29559 are in stock.",
        "Change password=<your password> and postgres://app:${DB_PASSWORD}@db:5432/x to your own values.",
        "The password is case-sensitive and your password is at least 12 characters.",
    ],
)
def test_hard_negatives_are_not_detected(text: str) -> None:
    assert found(text) == []


def test_a_secret_beats_a_longer_email_shaped_span() -> None:
    text = "git clone https://ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789@github.com/acme/app.git"
    assert found(text) == [("GITHUB_TOKEN", "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789")]


def test_anthropic_key_is_not_an_openai_key() -> None:
    assert [e for e, _ in found("sk-ant-api03-abcdefghijklmnopqrstuvwxyz")] == ["ANTHROPIC_KEY"]


def test_overlaps_keep_the_longest_then_the_most_specific() -> None:
    a = Match(0, 10, "PHONE")
    b = Match(5, 20, "STREET_ADDRESS")
    c = Match(30, 40, "PHONE")
    d = Match(30, 40, "IP_ADDRESS")
    assert resolve_overlaps([a, b, c, d]) == [b, d]


def test_matches_are_in_text_order_and_disjoint() -> None:
    text = "a@b.io, 4111 1111 1111 1111, 10.0.0.1, x@y.org, +1 415 555 2671"
    ms = DETECTOR.find(text)
    assert [m.entity for m in ms] == ["EMAIL", "CREDIT_CARD", "IP_ADDRESS", "EMAIL", "PHONE"]
    assert all(x.end <= y.start for x, y in pairwise(ms))


def test_only_enabled_types_are_looked_for() -> None:
    detector = PIIDetector(["EMAIL"])
    assert found("mail a@b.io or call +44 20 7946 0958", detector) == [("EMAIL", "a@b.io")]


def test_national_phone_formats_follow_the_configured_regions() -> None:
    text = "ruf an: 030 12345678"
    assert found(text, PIIDetector(phone_regions=["US"])) == []
    assert found(text, PIIDetector(phone_regions=["DE"])) == [("PHONE", "030 12345678")]


def test_short_text_and_text_without_candidates() -> None:
    assert DETECTOR.find("") == []
    assert DETECTOR.find("hello") == []
    assert DETECTOR.find("Just a plain sentence without anything sensitive in it.") == []
