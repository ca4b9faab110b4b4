"""langfuse.* in the config: off by default, and an enabled export without keys is refused at load time."""

from __future__ import annotations

import pytest

from tollgate.config.loader import ConfigError, parse_config


def test_off_by_default_with_the_cloud_host() -> None:
    lf = parse_config("", "<test>", {}).langfuse
    assert lf.enabled is False and lf.host == "https://cloud.langfuse.com" and lf.capture_content is False


def test_keys_come_from_the_environment() -> None:
    text = "langfuse: {enabled: true, public_key: '${PK}', secret_key: '${SK}'}\n"
    lf = parse_config(text, "<test>", {"PK": "pk-lf-1", "SK": "sk-lf-2"}).langfuse
    assert (lf.public_key, lf.secret_key) == ("pk-lf-1", "sk-lf-2")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("langfuse: {enabled: true, public_key: pk-lf-1}\n", "secret_key"),
        ("langfuse: {enabled: true, public_key: a, secret_key: b, host: 'cloud.langfuse.com'}\n", "http"),
        ("langfuse: {batch_size: 0}\n", "batch_size"),
        ("langfuse: {flush_interval: 1}\n", "flush_interval"),
    ],
)
def test_bad_settings_are_refused_with_the_key_named(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "<test>", {})
    assert says in str(err.value) and "langfuse" in str(err.value)
