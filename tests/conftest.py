"""Shared fixtures: fake providers and a running gateway wired to them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import openai_server
from tests.fakes.harness import FakeServer, serve


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeServer]:
    with serve(openai_server.make_app()) as server:
        yield server
