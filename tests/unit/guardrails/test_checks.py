"""Checksums and validity rules: Luhn, card prefixes, IBAN mod-97 and lengths, SSN ranges, JWT headers."""

from __future__ import annotations

import pytest

from tollgate.guardrails.checks import card_prefix_ok, iban_ok, jwt_header_ok, luhn_ok, ssn_ok


@pytest.mark.parametrize("number", ["4111111111111111", "5500005555555559", "378282246310005", "6011000990139424"])
def test_luhn_accepts_valid_card_numbers(number: str) -> None:
    assert luhn_ok(number)
    assert card_prefix_ok(number)


def test_luhn_rejects_a_changed_digit() -> None:
    assert not luhn_ok("4111111111111112")


@pytest.mark.parametrize("number", ["1234567812345670", "9111111111111111", "37828224631000"])
def test_unknown_prefix_or_wrong_length_is_no_card(number: str) -> None:
    assert not card_prefix_ok(number) or not luhn_ok(number)


@pytest.mark.parametrize(
    "iban", ["DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606", "NL91ABNA0417164300"]
)
def test_iban_checksum(iban: str) -> None:
    assert iban_ok(iban)
    flipped = iban[:-1] + ("1" if iban[-1] != "1" else "2")
    assert not iban_ok(flipped)


def test_iban_length_must_match_the_country() -> None:
    assert not iban_ok("DE8937040044053201300")
    assert not iban_ok("XX89370400440532013000")


@pytest.mark.parametrize(
    ("ssn", "ok"),
    [
        ("123-45-6789", True),
        ("000-12-3456", False),
        ("666-12-3456", False),
        ("912-12-3456", False),
        ("123-00-4567", False),
        ("123-45-0000", False),
        ("078-05-1120", False),
    ],
)
def test_ssn_ranges(ssn: str, ok: bool) -> None:
    area, group, serial = ssn.split("-")
    assert ssn_ok(area, group, serial) is ok


def test_jwt_header_must_be_json_with_alg() -> None:
    assert jwt_header_ok("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9")
    assert not jwt_header_ok("eyJ0eXAiOiJKV1QifQ")  # {"typ":"JWT"}: no alg
    assert not jwt_header_ok("eyJub3QganNvbg")
