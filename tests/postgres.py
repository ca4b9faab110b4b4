"""The real PostgreSQL for tests (127.0.0.1:5432, trust auth, database ``test``), one throwaway schema at a time."""

from __future__ import annotations

import asyncio
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import pytest

POSTGRES_URL = os.environ.get("TOLLGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def _problem(url: str) -> str | None:
    try:
        conn = await asyncpg.connect(url, timeout=2)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


def require_postgres() -> str:
    """The URL of the real PostgreSQL; skips when it does not answer, except in CI (``CI`` set), where that fails."""
    # In a thread of its own: callable from sync fixtures and from inside a running test loop alike.
    with ThreadPoolExecutor(1) as pool:
        problem = pool.submit(asyncio.run, _problem(POSTGRES_URL)).result()
    if problem is not None:
        message = (
            f"PostgreSQL at {POSTGRES_URL} does not answer ({problem}); start it (trust auth, database 'test') "
            "or set TOLLGATE_TEST_POSTGRES_URL to run the PostgreSQL backend"
        )
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this cannot be skipped)")
        pytest.skip(message)
    return POSTGRES_URL


def new_schema() -> str:
    """A schema name of this test alone (dropped by whoever made it)."""
    return f"tg_test_{uuid.uuid4().hex[:16]}"
