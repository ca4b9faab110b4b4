"""Shared helpers of the deployment-file tests: where the files are, their parsers, and the optional validators."""

from __future__ import annotations

import importlib
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = DEPLOY / "compose.yaml"
CHART = DEPLOY / "helm" / "tollgate"

# Names of variables, settings and keys that hold secrets.
SECRET_NAME = re.compile(r"(KEY|SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL)", re.IGNORECASE)
# Values that look like a real credential: provider key prefixes, cloud keys, private keys.
SECRET_VALUE = re.compile(
    r"(sk-[A-Za-z0-9_-]{16,}|sk-ant-[A-Za-z0-9_-]{8,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{30,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----|tg-[A-Za-z0-9_-]{20,})"
)


def require_module(name: str) -> ModuleType:
    """Import a validator from the ``dev`` extra; skip without it, except in CI where that fails."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        message = f"{name} is not installed ({exc}); pip install -e '.[dev]'"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this cannot be skipped)")
        pytest.skip(message)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# ---- Dockerfile ----


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # the rest of the (joined) line
    stage: int  # index of the build stage it belongs to
    line: int


@dataclass
class Dockerfile:
    instructions: list[Instruction]
    stage_names: list[str] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)  # ARGs declared before the first FROM, with defaults

    def final(self, keyword: str) -> list[Instruction]:
        """Instructions of the final stage (the image that runs) with this keyword."""
        last = len(self.stage_names) - 1
        return [i for i in self.instructions if i.stage == last and i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """ENV of the final stage, ``KEY=VALUE`` pairs (the legacy ``ENV KEY VALUE`` form too)."""
        result: dict[str, str] = {}
        for ins in self.final("ENV"):
            words = shlex.split(ins.args)
            if words and "=" not in words[0]:
                result[words[0]] = " ".join(words[1:])
                continue
            for word in words:
                name, _, value = word.partition("=")
                result[name] = value
        return result


def parse_dockerfile(text: str) -> Dockerfile:
    """Split a Dockerfile into instructions: comments dropped, backslash continuations joined."""
    instructions: list[Instruction] = []
    stage_names: list[str] = []
    global_args: dict[str, str] = {}
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        line = (pending + stripped).strip()
        pending = ""
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = args.split()
            stage_names.append(words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stage_names)))
        elif keyword == "ARG" and not stage_names:
            name, _, default = args.partition("=")
            global_args[name] = default
        instructions.append(Instruction(keyword, args, len(stage_names) - 1, start))
    assert not pending, "the Dockerfile ends inside a continued line"
    return Dockerfile(instructions, stage_names, global_args)


def exec_form(args: str) -> list[str] | None:
    """``["a", "b"]`` (JSON exec form) as a list, else None (shell form)."""
    import json

    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list)
        return [str(v) for v in value]
    return None


# ---- compose variable interpolation (the compose spec's ${VAR}, ${VAR:-default}, ${VAR:?error}) ----

_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def compose_variables(text: str) -> dict[str, str | None]:
    """Every variable a compose file interpolates, mapped to its operator (``:-``, ``:?``, ...) or None."""
    found: dict[str, str | None] = {}
    for match in _INTERPOLATION.finditer(text):
        name = match.group(1) or match.group(4)
        if name:
            found[name] = match.group(2)
    return found


def read_env_file(path: Path) -> dict[str, str]:
    result: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            result[name.strip()] = value.strip()
    return result
