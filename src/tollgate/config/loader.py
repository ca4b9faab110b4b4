"""Load a YAML config file: ``${VAR}`` / ``${VAR:-default}`` interpolation, secret references
(``${file:PATH}``, ``${vault:MOUNT/data/PATH#FIELD}``: tollgate/secrets), then validation with located errors."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import get_args

import yaml
from pydantic import ValidationError

from tollgate.config.schema import ProviderType, TollgateConfig
from tollgate.config.secrets import SecretsConfig, vault_settings
from tollgate.secrets.store import SecretError, SecretRef, SecretStore
from tollgate.types import JSONValue

_VAR = re.compile(
    r"\$\{(?P<kind>file|vault):(?P<target>(?!-)[^}]*)\}"
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|\$\$"
)

# Resolves one secret reference found at a key path; None where references are not allowed.
Resolve = Callable[[SecretRef, str], str] | None


class ConfigError(Exception):
    """A config that cannot be used; the message names the file, the key path and what is wrong."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: invalid configuration:\n{lines}")


def _interpolate(
    value: JSONValue, path: str, env: Mapping[str, str], problems: list[str], resolve: Resolve = None
) -> JSONValue:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            kind = m.group("kind")
            if kind is not None:
                ref = SecretRef("file" if kind == "file" else "vault", m.group("target"))
                if resolve is None:
                    problems.append(f"{path}: secret references (${{{ref}}}) cannot be used in this section")
                    return ""
                return resolve(ref, path or "<root>")
            name, default = m.group("name"), m.group("default")
            got = env.get(name)
            if got is not None and (got != "" or default is None):
                return got
            if default is not None:
                return default
            problems.append(
                f"{path or '<root>'}: environment variable {name} is not set (use ${{{name}:-default}} "
                "to give a default)"
            )
            return ""

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), env, problems, resolve) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env, problems, resolve) for i, v in enumerate(value)]
    return value


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def parse_config(
    text: str, source: str, env: Mapping[str, str] | None = None, secrets: SecretStore | None = None
) -> TollgateConfig:
    """Parse YAML text into a validated config; raises ``ConfigError`` listing every problem found.

    Secret references are resolved through ``secrets`` (a new store when None; a reload passes the running
    gateway's, so Vault values come from its cache). Errors name the reference, never a value."""
    env = os.environ if env is None else env
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"{where}YAML syntax error: {problem}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, ["<root>: the file must contain a mapping (key: value pairs)"])
    problems: list[str] = []
    store = SecretStore() if secrets is None else secrets
    # The secrets section first (it says where Vault is); it cannot reference secrets itself.
    section = _interpolate(raw.get("secrets"), "secrets", env, problems)
    with contextlib.suppress(ValidationError):  # reported, located, by the full validation below
        store.configure_vault(vault_settings(SecretsConfig.model_validate(section or {}), env))
    refs: list[SecretRef] = []

    def resolve(ref: SecretRef, path: str) -> str:
        try:
            value = store.resolve(ref)
        except SecretError as exc:
            problems.append(f"{path}: {exc}")
            return ""
        refs.append(ref)
        return value

    data: dict[str, JSONValue] = {
        str(k): section if k == "secrets" else _interpolate(v, str(k), env, problems, resolve) for k, v in raw.items()
    }
    if problems:
        raise ConfigError(source, problems)
    try:
        config = TollgateConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(err) for err in exc.errors()]) from None
    _check_references(config, source)
    store.track(refs)
    config._secret_store = store
    return config


def _describe(err: Mapping[str, object]) -> str:
    loc = _loc(tuple(err.get("loc", ())))  # type: ignore[arg-type]
    kind = err.get("type")
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (check the spelling; see docs/configuration.md for every key)"
    return f"{loc}: {err.get('msg')}"


def _check_references(config: TollgateConfig, source: str) -> None:
    from tollgate.config.env import ENV_PROVIDER_NAMES

    known = set(config.providers) | ENV_PROVIDER_NAMES | {"demo"}
    problems = []
    for name, model in config.models.items():
        for i, dep in enumerate(model.deployments):
            if dep.provider not in known:
                problems.append(
                    f"models.{name}.deployments[{i}].provider: unknown provider {dep.provider!r} "
                    f"(declared: {', '.join(sorted(config.providers)) or 'none'})"
                )
        if model.shadow is not None and model.shadow.deployment.partition("/")[0] not in known:
            problems.append(
                f"models.{name}.shadow.deployment: unknown provider {model.shadow.deployment.partition('/')[0]!r} "
                f"(declared: {', '.join(sorted(config.providers)) or 'none'})"
            )
    types = get_args(ProviderType)
    for name, prov in config.providers.items():
        if prov.type is None and name not in types:
            problems.append(
                f"providers.{name}.type: required, since {name!r} is not a known provider type ({', '.join(types)})"
            )
    if problems:
        raise ConfigError(source, problems)


def load_config_file(
    path: str | Path, env: Mapping[str, str] | None = None, secrets: SecretStore | None = None
) -> TollgateConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read the file: {exc.strerror or exc}"]) from None
    return parse_config(text, str(p), env, secrets)
