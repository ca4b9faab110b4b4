"""Secret references in the config: ``${file:...}`` and ``${vault:...}`` through the real ``hvac`` client.

No Vault binary is installable from the registries this project reaches, so Vault is the KV v2 fake in
tests/fakes/vault_server.py (Vault's wire format: data.data, data.metadata.version, {"errors": [...]}).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.harness import FakeServer, free_port, serve
from tests.fakes.vault_server import VaultState, make_app
from tollgate.cli import main
from tollgate.config.loader import ConfigError, load_config_file, parse_config
from tollgate.secrets import SecretRef, SecretStore

KEY = "sk-vault-7f3a9c01"  # a value that must never show up in a message
OTHER = "sk-other-55e2"


@pytest.fixture
def vault() -> Iterator[tuple[FakeServer, VaultState]]:
    state = VaultState()
    state.put("secret", "tollgate/openai", {"api_key": KEY, "org": "org-1"})
    state.add_token("tok-root")
    with serve(make_app(state)) as server:
        yield server, state


def provider_yaml(api_key: str, extra: str = "") -> str:
    return f"""
{extra}
providers:
  up:
    type: openai
    base_url: http://127.0.0.1:1/v1
    api_key: "{api_key}"
"""


def vault_env(server: FakeServer, token: str = "tok-root") -> dict[str, str]:
    return {"VAULT_ADDR": server.base_url, "VAULT_TOKEN": token}


def api_key(config_text: str, env: dict[str, str]) -> str | None:
    return parse_config(config_text, "<test>", env).providers["up"].api_key


# -- files ---------------------------------------------------------------------------------------------


def test_a_file_secret_is_read_without_its_trailing_newline_and_may_sit_inside_a_string(tmp_path: Path) -> None:
    key = tmp_path / "openai-key"
    key.write_text(KEY + "\n")
    text = provider_yaml(f"${{file:{key}}}") + f'    headers: {{X-Auth: "Token ${{file:{key}}}; $${{file:x}}"}}\n'
    config = parse_config(text, "<test>", {})
    assert config.providers["up"].api_key == KEY
    assert config.providers["up"].headers["X-Auth"] == f"Token {KEY}; ${{file:x}}"
    assert config.secret_store is not None
    assert config.secret_store.tracked == {SecretRef("file", str(key))}


def test_a_missing_file_is_a_located_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(provider_yaml(f"${{file:{tmp_path}/absent}}"), "<test>", {})
    assert f"providers.up.api_key: file:{tmp_path}/absent: cannot read the file: No such file" in str(err.value)


def test_env_defaults_keep_working_for_a_variable_named_file() -> None:
    assert api_key(provider_yaml("${file:-fallback}"), {}) == "fallback"


# -- Vault ---------------------------------------------------------------------------------------------


def test_token_auth_reads_kv_v2_in_the_api_and_the_cli_path_forms(vault: tuple[FakeServer, VaultState]) -> None:
    server, state = vault
    env = vault_env(server)
    assert api_key(provider_yaml("${vault:secret/data/tollgate/openai#api_key}"), env) == KEY
    assert api_key(provider_yaml("${vault:secret/tollgate/openai#api_key}"), env) == KEY
    # Two fields of one secret: one read of its path.
    before = state.reads
    text = provider_yaml("${vault:secret/data/tollgate/openai#api_key}") + (
        '    headers: {OpenAI-Organization: "${vault:secret/data/tollgate/openai#org}"}\n'
    )
    config = parse_config(text, "<test>", env)
    assert config.providers["up"].headers["OpenAI-Organization"] == "org-1"
    assert state.reads == before + 1
    assert server.last.headers["X-Vault-Token"] == "tok-root"


def test_the_vault_section_sets_address_namespace_and_a_token_file(
    vault: tuple[FakeServer, VaultState], tmp_path: Path
) -> None:
    server, state = vault
    state.namespace = "team-a"
    token_file = tmp_path / "token"
    token_file.write_text("tok-root\n")
    section = f"""
secrets:
  vault:
    address: {server.base_url}
    namespace: team-a
    auth: {{token_file: {token_file}}}
"""
    assert api_key(provider_yaml("${vault:secret/data/tollgate/openai#api_key}", section), {}) == KEY
    assert server.last.headers["X-Vault-Namespace"] == "team-a"
    # Another namespace is refused, as Vault refuses a token outside its namespace.
    with pytest.raises(ConfigError) as err:
        parse_config(
            provider_yaml("${vault:secret/data/tollgate/openai#api_key}", section.replace("team-a", "team-b")),
            "<t>",
            {},
        )
    assert "refused secret/data/tollgate/openai: permission denied" in str(err.value)


def test_kubernetes_auth_logs_in_with_the_service_account_token_and_again_when_the_token_expires(
    vault: tuple[FakeServer, VaultState], tmp_path: Path
) -> None:
    server, state = vault
    jwt = tmp_path / "sa-token"
    jwt.write_text("eyJ.service-account.jwt")
    state.add_role("tollgate", "eyJ.service-account.jwt", "secret/data/tollgate/")
    section = f"""
secrets:
  vault:
    address: {server.base_url}
    auth: {{method: kubernetes, role: tollgate, jwt_path: {jwt}}}
"""
    config = parse_config(provider_yaml("${vault:secret/data/tollgate/openai#api_key}", section), "<test>", {})
    assert config.providers["up"].api_key == KEY
    assert state.logins == 1
    login = next(r for r in server.requests if r.path == "/v1/auth/kubernetes/login")
    assert login.method == "POST" and b'"role": "tollgate"' in login.body.replace(b'":"', b'": "')
    store = config.secret_store
    assert store is not None
    state.revoke_all()  # the Vault token ran out
    state.put("secret", "tollgate/openai", {"api_key": OTHER, "org": "org-1"})
    assert store.refresh() == [SecretRef("vault", "secret/data/tollgate/openai#api_key")]
    assert state.logins == 2
    assert store.resolve(SecretRef("vault", "secret/data/tollgate/openai#api_key")) == OTHER


def test_kubernetes_auth_with_a_wrong_role_says_so(vault: tuple[FakeServer, VaultState], tmp_path: Path) -> None:
    server, _ = vault
    jwt = tmp_path / "sa-token"
    jwt.write_text("eyJ.jwt")
    section = f"""
secrets:
  vault: {{address: "{server.base_url}", auth: {{method: kubernetes, role: nobody, jwt_path: "{jwt}"}}}}
"""
    with pytest.raises(ConfigError) as err:
        parse_config(provider_yaml("${vault:secret/data/tollgate/openai#api_key}", section), "<test>", {})
    assert "refused the Kubernetes login (role 'nobody', auth mount 'kubernetes'): invalid role name" in str(err.value)
    assert "eyJ.jwt" not in str(err.value)


@pytest.mark.parametrize(
    ("ref", "token", "expected"),
    [
        ("secret/data/tollgate/absent#api_key", "tok-root", "has no secret at secret/data/tollgate/absent"),
        ("secret/data/tollgate/openai#apikey", "tok-root", "has no field 'apikey' (fields: api_key, org)"),
        ("secret/data/tollgate/openai#api_key", "tok-wrong", "refused secret/data/tollgate/openai: permission denied"),
        ("secret/data/tollgate/openai", "tok-root", "name the field to use after '#'"),
        ("kv2/data/x#a", "tok-root", 'no handler for route "kv2/data/x"'),
    ],
)
def test_vault_errors_name_the_reference_and_never_a_value(
    vault: tuple[FakeServer, VaultState], ref: str, token: str, expected: str
) -> None:
    server, _ = vault
    with pytest.raises(ConfigError) as err:
        parse_config(provider_yaml(f"${{vault:{ref}}}"), "<test>", vault_env(server, token))
    message = str(err.value)
    assert f"providers.up.api_key: vault:{ref}" in message
    assert expected in message
    assert "{" not in message  # Vault's JSON error bodies are read, not pasted
    assert KEY not in message and "org-1" not in message and token not in message


def test_vault_unreachable_at_start_is_a_clear_start_up_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tollgate.yaml"
    path.write_text(provider_yaml("${vault:secret/data/tollgate/openai#api_key}"))
    env = {"VAULT_ADDR": f"http://127.0.0.1:{free_port()}", "VAULT_TOKEN": "tok-root"}
    with pytest.raises(ConfigError) as err:
        load_config_file(path, env)
    assert (
        f"providers.up.api_key: vault:secret/data/tollgate/openai#api_key: Vault at {env['VAULT_ADDR']} is "
        "unreachable (reading secret/data/tollgate/openai)"
    ) in str(err.value)


def test_check_config_reports_a_missing_vault_setup_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    path = tmp_path / "tollgate.yaml"
    path.write_text(provider_yaml("${vault:secret/data/tollgate/openai#api_key}"))
    assert main(["check-config", str(path)]) == 2
    assert "Vault is not configured: add a secrets.vault section (address, auth) or set VAULT_ADDR" in (
        capsys.readouterr().err
    )


def test_the_secrets_section_cannot_reference_secrets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"secrets:\n  vault:\n    address: ${{file:{tmp_path}/addr}}\n", "<test>", {})
    assert "secrets.vault.address: secret references" in str(err.value)


# -- refresh -------------------------------------------------------------------------------------------


def test_refresh_finds_rotated_values_and_keeps_the_last_good_one_when_vault_is_down(
    vault: tuple[FakeServer, VaultState], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server, state = vault
    key_file = tmp_path / "anthropic-key"
    key_file.write_text("sk-ant-file-1")
    text = provider_yaml("${vault:secret/data/tollgate/openai#api_key}") + (
        f'    headers: {{X-Other: "${{file:{key_file}}}"}}\n'
    )
    config = parse_config(text, "<test>", vault_env(server))
    store = config.secret_store
    assert isinstance(store, SecretStore)
    vault_ref = SecretRef("vault", "secret/data/tollgate/openai#api_key")
    file_ref = SecretRef("file", str(key_file))
    assert store.refresh() == []

    state.put("secret", "tollgate/openai", {"api_key": OTHER, "org": "org-1"})
    key_file.write_text("sk-ant-file-2\n")
    assert store.refresh() == sorted([vault_ref, file_ref], key=str)
    assert store.resolve(vault_ref) == OTHER

    state.sealed = True
    key_file.unlink()
    assert store.refresh() == []
    assert store.failures == 2
    assert store.resolve(vault_ref) == OTHER  # the last good value, from the cache
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("secret vault:secret/data/tollgate/openai#api_key could not be refreshed" in w for w in warnings)
    assert any("Vault is sealed" in w and "keeping the value read" in w for w in warnings)
    assert any(f"secret file:{key_file} could not be refreshed" in w for w in warnings)
    for record in caplog.records:
        text_logged = record.getMessage()
        assert KEY not in text_logged and OTHER not in text_logged and "sk-ant-file" not in text_logged

    state.sealed = False
    state.put("secret", "tollgate/openai", {"api_key": KEY, "org": "org-1"})
    assert store.refresh() == [vault_ref]
    assert store.resolve(vault_ref) == KEY


def test_a_token_file_is_read_again_when_vault_refuses_the_token(
    vault: tuple[FakeServer, VaultState], tmp_path: Path
) -> None:
    server, state = vault
    token_file = tmp_path / "token"
    token_file.write_text("tok-root\n")
    section = f"secrets:\n  vault: {{address: '{server.base_url}', auth: {{token_file: '{token_file}'}}}}\n"
    config = parse_config(provider_yaml("${vault:secret/data/tollgate/openai#api_key}", section), "<test>", {})
    store = config.secret_store
    assert store is not None
    # A Vault Agent renewed the token: the old one is gone, the file holds the new one.
    state.revoke_all()
    state.add_token("tok-renewed", "secret/data/tollgate/")
    token_file.write_text("tok-renewed\n")
    state.put("secret", "tollgate/openai", {"api_key": OTHER})
    assert store.refresh() == [SecretRef("vault", "secret/data/tollgate/openai#api_key")]
    assert server.last.headers["X-Vault-Token"] == "tok-renewed"
    assert store.failures == 0


def test_a_field_removed_in_a_new_version_keeps_the_old_value_in_force(
    vault: tuple[FakeServer, VaultState], caplog: pytest.LogCaptureFixture
) -> None:
    server, state = vault
    config = parse_config(provider_yaml("${vault:secret/data/tollgate/openai#api_key}"), "<test>", vault_env(server))
    store = config.secret_store
    assert store is not None
    state.put("secret", "tollgate/openai", {"apikey": OTHER})  # a typo in the new version
    for _ in range(2):  # and again: the refresher keeps going
        assert store.refresh() == []
    assert store.failures == 2
    assert any("has no field 'api_key' (fields: apikey)" in r.getMessage() for r in caplog.records)
    assert all(OTHER not in r.getMessage() and KEY not in r.getMessage() for r in caplog.records)
    state.put("secret", "tollgate/openai", {"api_key": OTHER})
    assert store.refresh() == [SecretRef("vault", "secret/data/tollgate/openai#api_key")]
