"""The semantic cache's provider embedder: the gateway calling an embeddings model through its own routing.

``provider_embed`` builds the async function ``policies/semantic_embedders.ProviderEmbedder`` is given. Each call
is an internal request: its own ``RequestContext`` (endpoint ``cache_embedding``, request id ``<caller's
id>:cache-embedding``), resolved by the live snapshot (so a reloaded ``models:`` entry applies), sent by the
dispatcher (the model's deployments in the strategy's order, retries, fallbacks, breakers, the pooled
transport), and recorded in the ledger as a row of its own, **attributed to the caller** (its key, user, team
and org) with the tag ``tollgate_cache_embedding_for: <caller's request id>``: the caller's request is what
needed the vector, so the cost lands in that tenant's spend reports. It is not drawn from budgets or rate
limits (it is a fraction of the chat call it guards; see docs/caching.md). Without a caller (none today: warm-up
passes its target principal) the row names no key, user, team or org.
"""

from __future__ import annotations

import asyncio
import secrets

from tollgate.context import RequestContext
from tollgate.core.gateway import Gateway
from tollgate.errors import ProviderProtocolError, TollgateError
from tollgate.policies.ledger import CACHE_EMBEDDING_ENDPOINT, CACHE_EMBEDDING_FOR_TAG, LedgerPolicy
from tollgate.policies.semantic_embedders import ProviderEmbed
from tollgate.types import JSONObject


def _vector(data: JSONObject, provider: str) -> list[float]:
    rows = data.get("data")
    first = rows[0] if isinstance(rows, list) and rows else None
    vector = first.get("embedding") if isinstance(first, dict) else None
    if not isinstance(vector, list) or not vector or not all(isinstance(v, int | float) for v in vector):
        raise ProviderProtocolError(f"Provider '{provider}' returned no embedding vector.", provider=provider)
    return [float(v) for v in vector if isinstance(v, int | float)]


def provider_embed(gateway: Gateway, model: str, ledger: LedgerPolicy | None) -> ProviderEmbed:
    """The embeddings call of ``model`` (an alias of ``models:``, or provider/model) through ``gateway``."""

    async def embed(text: str, caller: RequestContext | None) -> tuple[str, list[float]]:
        snapshot = gateway.snapshot
        request_id = f"{caller.request_id}:cache-embedding" if caller else f"cache-embedding-{secrets.token_hex(6)}"
        ctx = RequestContext(request_id, "internal", CACHE_EMBEDDING_ENDPOINT, snapshot.version)
        ctx.principal = caller.principal if caller is not None else None
        ctx.requested_model = model
        tags: JSONObject = dict(caller.metadata) if caller is not None and caller.metadata else {}
        if caller is not None:
            tags[CACHE_EMBEDDING_FOR_TAG] = caller.request_id
        ctx.metadata = tags
        ctx.estimated_prompt_tokens = len(text) // 4 + 1
        try:
            route = snapshot.resolve(model)
            data, usage = await gateway.dispatcher.embeddings(ctx, {"model": model, "input": [text]}, route)
            ctx.usage = usage
            dep = ctx.deployment
            provider = dep.provider if dep is not None else model
            return f"{provider}/{dep.model if dep is not None else ''}", _vector(data, provider)
        except TollgateError as exc:
            ctx.status, ctx.error_type = exc.status, exc.type
            raise
        except asyncio.CancelledError:
            ctx.status, ctx.error_type = 504, "timeout"  # the embedder's deadline (or shutdown) cut the call
            raise
        except BaseException:
            ctx.status, ctx.error_type = 500, "api_error"
            raise
        finally:
            if ledger is not None:
                ledger.on_finalize(ctx)

    return embed
