"""The Dockerfile builds a slim, non-root image with no secrets and a working healthcheck.

No Docker engine runs here: the Dockerfile is parsed and its promises checked, and the HEALTHCHECK command
itself is run against a real gateway on loopback.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib

import pytest

from tests.deploy.files import (
    CHART,
    COMPOSE,
    DOCKERFILE,
    DOCKERIGNORE,
    ROOT,
    SECRET_NAME,
    SECRET_VALUE,
    Dockerfile,
    exec_form,
    load_yaml,
    parse_dockerfile,
)
from tests.fakes.harness import free_port
from tests.gateway import run_gateway
from tollgate.cli import build_parser


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


def test_the_parser_joins_continuations_and_tracks_stages() -> None:
    parsed = parse_dockerfile(
        "ARG BASE=python:3.11-slim\nFROM ${BASE} AS build\nRUN a \\\n    # note\n    && b\n"
        'FROM ${BASE}\nENV A=1 \\\n    B="two words"\nUSER 10001\n'
    )
    assert parsed.args == {"BASE": "python:3.11-slim"}
    assert parsed.stage_names == ["build", "1"]
    assert [i.keyword for i in parsed.instructions] == ["ARG", "FROM", "RUN", "FROM", "ENV", "USER"]
    assert parsed.instructions[2].args == "a && b"
    assert parsed.env() == {"A": "1", "B": "two words"}
    assert [i.args for i in parsed.final("USER")] == ["10001"]


def test_base_image_is_slim_python_311(dockerfile: Dockerfile) -> None:
    for ins in dockerfile.final("FROM") + [i for i in dockerfile.instructions if i.keyword == "FROM"]:
        image = ins.args.split()[0]
        for name, default in dockerfile.args.items():
            image = image.replace("${" + name + "}", default).replace("$" + name, default)
        assert image.startswith("python:3.11-slim"), image
    assert len(dockerfile.stage_names) == 2, "a build stage and a runtime stage"


def _final_uid(dockerfile: Dockerfile) -> int:
    users = dockerfile.final("USER")
    assert users, "the runtime stage must switch to an unprivileged USER"
    user = users[-1].args.split(":")[0]
    assert user.isdigit(), "USER must be numeric so Kubernetes' runAsNonRoot can verify it"
    return int(user)


def test_runs_as_a_numeric_non_root_user_matching_the_chart(dockerfile: Dockerfile) -> None:
    uid = _final_uid(dockerfile)
    assert uid != 0
    # Nothing after USER switches back to root.
    last_user_line = dockerfile.final("USER")[-1].line
    assert not [i for i in dockerfile.final("RUN") if i.line > last_user_line]
    values = load_yaml(CHART / "values.yaml")
    assert values["podSecurityContext"]["runAsUser"] == uid
    assert values["securityContext"]["runAsUser"] == uid


def test_no_secret_is_baked_in(dockerfile: Dockerfile) -> None:
    env = dockerfile.env()
    for name, value in env.items():
        assert not SECRET_NAME.search(name), f"ENV {name} looks like a secret: pass it at run time"
        assert not SECRET_VALUE.search(value)
    for ins in dockerfile.instructions:
        if ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            assert not (SECRET_NAME.search(name) and default), f"ARG {name} has a secret-looking default"
        assert not SECRET_VALUE.search(ins.args), f"line {ins.line} holds something like a credential"
        if ins.keyword in ("COPY", "ADD") and "--from=" not in ins.args:
            for source in shlex.split(ins.args)[:-1]:
                assert not source.endswith((".env", ".key", ".pem")), source


def test_listens_on_all_interfaces_on_the_exposed_port(dockerfile: Dockerfile) -> None:
    env = dockerfile.env()
    assert env["TOLLGATE_HOST"] == "0.0.0.0"
    exposed = [word.split("/")[0] for ins in dockerfile.final("EXPOSE") for word in ins.args.split()]
    assert exposed == [env["TOLLGATE_PORT"]]
    # The same port everywhere the image is run.
    assert load_yaml(CHART / "values.yaml")["port"] == int(env["TOLLGATE_PORT"])
    assert load_yaml(COMPOSE)["services"]["gateway"]["expose"] == [env["TOLLGATE_PORT"]]


def test_the_data_folder_is_a_volume(dockerfile: Dockerfile) -> None:
    volumes = [v for ins in dockerfile.final("VOLUME") for v in (exec_form(ins.args) or ins.args.split())]
    assert dockerfile.env()["TOLLGATE_DATA_DIR"] in volumes


def test_entrypoint_is_the_installed_cli_and_serve_parses(dockerfile: Dockerfile) -> None:
    entrypoint = exec_form(dockerfile.final("ENTRYPOINT")[-1].args)
    cmd = exec_form(dockerfile.final("CMD")[-1].args)
    assert entrypoint is not None and cmd is not None, "exec form, so the gateway is PID 1 and receives SIGTERM"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint[0] in scripts
    args = build_parser().parse_args(cmd)
    assert args.func.__name__ == "cmd_serve"


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it: relative to the context root, `*` within one path
    segment, `**` across any number of them."""
    out = ""
    i = 0
    pattern = pattern.strip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last matching pattern decides, and a
    matched folder takes its contents with it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _dockerignore_regex(pattern.removeprefix("!"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            result = not negate
    return result


def test_dockerignore_matching_follows_docker_semantics() -> None:
    assert dockerignored("tests/unit/x.py", ["tests"])
    assert not dockerignored("src/tests/x.py", ["tests"])  # anchored at the context root, unlike .gitignore
    assert dockerignored("a/b/.env", ["**/.env"]) and dockerignored(".env", ["**/.env"])
    assert not dockerignored("src/x.key", ["*.key"]) and dockerignored("x.key", ["*.key"])
    assert not dockerignored("docs/keep.md", ["docs", "!docs/keep.md"])


def test_copied_sources_exist_and_are_not_ignored(dockerfile: Dockerfile) -> None:
    patterns = [p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")]

    def ignored(path: str) -> bool:
        return dockerignored(path, patterns)

    copied = [
        source
        for ins in dockerfile.instructions
        if ins.keyword == "COPY" and "--from=" not in ins.args
        for source in shlex.split(ins.args)[:-1]
    ]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the build context"
        assert not ignored(source), f"COPY {source}: excluded by .dockerignore"
    # pyproject's readme must be in the context, or `pip install .` fails in the build stage.
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"] in copied
    for private in (".git", ".env", "deploy/.env", "tests/conftest.py", ".tollgate/master.key", "src/stray.key"):
        assert ignored(private), f"{private} would be sent to the Docker daemon"


def _healthcheck_argv(dockerfile: Dockerfile) -> list[str]:
    (check,) = dockerfile.final("HEALTHCHECK")
    words = shlex.split(check.args)
    options = [w for w in words[: words.index("CMD")] if w.startswith("--")]
    assert {o.split("=")[0] for o in options} >= {"--interval", "--timeout", "--retries"}
    command = check.args.split("CMD", 1)[1].strip()
    argv = exec_form(command) or shlex.split(command)
    assert "curl" not in argv and "wget" not in argv, "the slim image has neither: use the standard library"
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def test_healthcheck_passes_against_a_live_gateway_and_fails_without_one(dockerfile: Dockerfile) -> None:
    argv = _healthcheck_argv(dockerfile)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    with run_gateway() as gw:
        port = gw.base_url.rsplit(":", 1)[1]
        ok = subprocess.run(argv, env={**clean, "TOLLGATE_PORT": port}, capture_output=True, timeout=20)
        assert ok.returncode == 0, ok.stderr.decode()
    down = subprocess.run(argv, env={**clean, "TOLLGATE_PORT": str(free_port())}, capture_output=True, timeout=20)
    assert down.returncode != 0
    assert b"Connection refused" in down.stderr or b"URLError" in down.stderr
