"""The sso: section: off by default, and complete (domains included) before it can be turned on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tollgate.config.schema import TollgateConfig
from tollgate.config.sso import SsoConfig

FULL = {
    "enabled": True,
    "issuer": "https://idp.example.com/realms/acme",
    "client_id": "tollgate",
    "redirect_url": "https://gw.example.com/auth/sso/callback",
    "allowed_domains": ["Example.com", "@acme.io"],
}


def test_off_by_default() -> None:
    assert TollgateConfig().sso.enabled is False


def test_a_complete_section_is_accepted_and_domains_are_normalised() -> None:
    sso = SsoConfig.model_validate(FULL)
    assert sso.allowed_domains == ["example.com", "acme.io"]
    assert sso.role == "viewer" and sso.session_seconds == 8 * 3600


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"allowed_domains": []}, "sso.enabled needs sso.allowed_domains"),
        ({"issuer": None}, "sso.enabled needs sso.issuer"),
        ({"allowed_domains": ["not a domain"]}, "is not a domain name"),
        ({"issuer": "idp.example.com"}, "sso.issuer must be an https:// URL"),
        ({"role": "team_admin"}, "role"),
        ({"session_seconds": 7 * 24 * 3600}, "less than or equal to 86400"),
        ({"scopes": ["email"]}, "must include 'openid'"),
        ({"clientid": "typo"}, "Extra inputs are not permitted"),
    ],
)
def test_incomplete_or_wrong_sections_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SsoConfig.model_validate({**FULL, **change})
