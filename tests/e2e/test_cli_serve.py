"""The real command line: zero-config `tollgate serve` in a fresh folder, keys made by the CLI, check-config."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.fakes.harness import free_port

pytestmark = pytest.mark.slow

CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_", "AZURE_", "OLLAMA_", "TOLLGATE_"))
}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tollgate", *args],
        cwd=cwd,
        env=CLEAN_ENV,
        text=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    folder = tmp_path_factory.mktemp("fresh")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tollgate", "serve", "--port", str(port)],
        cwd=folder,
        env=CLEAN_ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    banner = ""
    deadline = time.monotonic() + 20
    while "Try:" not in banner and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        banner += line
    try:
        match = re.search(r"tg-master-[\w-]+", banner)
        assert match, banner
        yield folder, f"http://127.0.0.1:{port}", match.group(0)
    finally:
        proc.terminate()
        proc.wait(10)


def test_zero_config_start_prints_url_and_a_stored_master_key(served: tuple[Path, str, str]) -> None:
    folder, base, master = served
    key_file = folder / ".tollgate" / "master.key"
    assert key_file.read_text().strip() == master
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (folder / ".tollgate" / "tollgate.db").exists()
    client = openai.OpenAI(base_url=base + "/v1", api_key=master, max_retries=0)
    answer = client.chat.completions.create(model="demo/tollgate-demo", messages=[{"role": "user", "content": "hi"}])
    assert "demo" in (answer.choices[0].message.content or "")


def test_keys_made_by_the_cli_work_and_revocation_propagates(served: tuple[Path, str, str]) -> None:
    folder, base, _ = served
    for args in (
        ("orgs", "create", "--id", "acme", "--name", "Acme"),
        ("teams", "create", "--id", "research", "--org", "acme", "--name", "Research", "--budget-usd", "50"),
        ("users", "create", "--id", "alice", "--team", "research", "--email", "alice@example.com"),
    ):
        made = _cli(*args, cwd=folder)
        assert made.returncode == 0, made.stderr
    teams = _cli("teams", "list", "--json", cwd=folder)
    assert '"research"' in teams.stdout and '"limit_usd": 50.0' in teams.stdout
    created = _cli(
        "keys",
        "create",
        "--name",
        "ci-key",
        "--user",
        "alice",
        "--team",
        "research",
        "--rpm",
        "100",
        "--budget-usd",
        "5",
        "--budget-period",
        "monthly",
        "--metadata",
        "cost_center=42",
        cwd=folder,
    )
    assert created.returncode == 0, created.stderr
    key = re.search(r"tg-[\w-]{20,}", created.stdout).group(0)  # type: ignore[union-attr]
    key_id = re.search(r"key_[0-9a-f]+", created.stdout).group(0)  # type: ignore[union-attr]
    listed = _cli("keys", "list", cwd=folder)
    assert key_id in listed.stdout and key not in listed.stdout and "active" in listed.stdout
    client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model="demo/tollgate-demo", messages=[{"role": "user", "content": "x"}])
    rotated = _cli("keys", "rotate", key_id, cwd=folder)
    assert rotated.returncode == 0, rotated.stderr
    new_key = re.search(r"tg-[\w-]{20,}", rotated.stdout).group(0)  # type: ignore[union-attr]
    assert new_key != key
    client = openai.OpenAI(base_url=base + "/v1", api_key=new_key, max_retries=0)
    _wait_until_accepted(client)
    assert _cli("keys", "revoke", key_id, cwd=folder).returncode == 0
    deadline = time.monotonic() + 10
    while True:
        try:
            client.chat.completions.create(model="demo/tollgate-demo", messages=[{"role": "user", "content": "x"}])
        except openai.AuthenticationError:
            break
        assert time.monotonic() < deadline, "revocation by another process was not seen within 10 s"
        time.sleep(0.5)


def _wait_until_accepted(client: openai.OpenAI) -> None:
    """Another process changed the key: this gateway sees it within its cache TTL (5 s)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            client.chat.completions.create(model="demo/tollgate-demo", messages=[{"role": "user", "content": "x"}])
            return
        except openai.AuthenticationError:
            assert time.monotonic() < deadline, "a rotation by another process was not seen within 10 s"
            time.sleep(0.5)


def test_teams_deleted_by_the_cli_stop_their_keys(served: tuple[Path, str, str]) -> None:
    folder, base, _ = served
    assert _cli("orgs", "create", "--id", "globex", "--name", "Globex", cwd=folder).returncode == 0
    assert _cli("teams", "create", "--id", "doomed", "--org", "globex", "--name", "Doomed", cwd=folder).returncode == 0
    created = _cli("keys", "create", "--name", "k", "--team", "doomed", cwd=folder)
    key = re.search(r"tg-[\w-]{20,}", created.stdout).group(0)  # type: ignore[union-attr]
    client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model="demo/tollgate-demo", messages=[{"role": "user", "content": "x"}])
    assert _cli("teams", "delete", "doomed", cwd=folder).returncode == 0
    deadline = time.monotonic() + 10
    refusal = ""
    while not refusal:
        try:
            client.chat.completions.create(model="demo/tollgate-demo", messages=[{"role": "user", "content": "x"}])
        except openai.AuthenticationError as exc:
            refusal = str(exc)
        else:
            assert time.monotonic() < deadline, "a team deleted by another process still worked after 10 s"
            time.sleep(0.5)
    assert "team 'doomed'" in refusal and "deleted" in refusal
    listed = _cli("teams", "list", cwd=folder)
    assert "doomed" not in listed.stdout


def test_second_start_reuses_the_master_key_without_printing_it(served: tuple[Path, str, str]) -> None:
    folder, _, master = served
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tollgate", "serve", "--port", str(port)],
        cwd=folder,
        env=CLEAN_ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        banner = ""
        while "Try:" not in banner:
            line = proc.stderr.readline()
            if not line:
                break
            banner += line
        assert master not in banner and "Master key:" in banner
    finally:
        proc.terminate()
        proc.wait(10)


def test_check_config(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("models:\n  m:\n    deployments: [{provider: demo, model: tollgate-demo}]\n")
    result = _cli("check-config", str(good), cwd=tmp_path)
    assert result.returncode == 0 and "OK" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: seventy\n")
    result = _cli("check-config", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert "bad.yaml" in result.stderr and "server.port" in result.stderr
    assert "Traceback" not in result.stderr
