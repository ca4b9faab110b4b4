"""CACHE_LOOKUP and its store: the exact response cache — key building, client control, lookup, store, replay, stats.

The key is the SHA-256 of a canonical JSON serialisation (sorted keys, ``null`` fields dropped) of:
the client format (``openai`` or ``anthropic``), the resolved route's candidates (provider, upstream
model) in order, the tenant scope id, and the request body without the fields that do not change the
answer (``model``, replaced by the route; ``stream``, ``stream_options``, ``metadata``, ``user``).
Everything else in the body is in the key: messages (single-text-part contents collapsed to a string,
``cache_control`` hints dropped), tools, tool_choice, response_format, temperature, top_p, seed,
max tokens, stop, n, and any field the gateway does not know (a false hit is worse than a miss).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import orjson

from tollgate.config.cache import CacheModelOverride, CacheSettings
from tollgate.context import Principal, RequestContext
from tollgate.errors import TollgateError
from tollgate.pricing import NANOS_PER_USD, PriceBook
from tollgate.routing.resolver import Route
from tollgate.state.cache import ALL, ResponseCacheStore, StoreStats
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import Usage

if TYPE_CHECKING:
    from tollgate.policies.semantic_cache import SemanticCache, SemanticQuery

ClientFormat = Literal["openai", "anthropic"]
CacheStatus = Literal["hit", "miss", "skip", "semantic-hit"]

# Body fields that do not change the answer (the route replaces ``model``).
IGNORED_FIELDS = frozenset({"model", "stream", "stream_options", "metadata", "user"})
TTL_METADATA_KEY = "tollgate_cache_ttl"
MAX_TTL_SECONDS = 30 * 24 * 3600
_ENTRY_VERSION = 1


class PieceSource(Protocol):
    """A canonical chunk stream (``ChunkStream``, ``FilteredStream``)."""

    @property
    def usage(self) -> Usage | None: ...

    def __aiter__(self) -> AsyncIterator[list[JSONObject]]: ...

    async def aclose(self) -> None: ...


class SharedCounts(Protocol):
    """Hit and miss counts summed over every replica (``state/cache_stats_redis.py``)."""

    def add(self, model: str, scope_id: str, counter: str, n: int = 1) -> None: ...

    async def read(self) -> JSONObject: ...


@dataclass(slots=True)
class CachePlan:
    """What the cache does for one request: whether to look up and to store, under which key and tags."""

    key: str
    lookup: bool
    store: bool
    ttl_seconds: float
    tags: tuple[str, ...]
    model: str
    scope_id: str
    status: CacheStatus = "skip"
    semantic: SemanticQuery | None = None  # set when the semantic cache applies to this request

    @property
    def header(self) -> tuple[bytes, bytes]:
        return (b"x-tollgate-cache", self.status.encode())


@dataclass(frozen=True, slots=True)
class WarmEntry:
    """A prepared answer: the request it answers (model, messages, parameters such as temperature) and the text."""

    model: str
    messages: tuple[JSONObject, ...]
    answer: str
    params: JSONObject = field(default_factory=dict)


@dataclass(slots=True)
class WarmReport:
    stored: int = 0
    skipped: list[JSONObject] = field(default_factory=list)  # {"index": i, "reason": ...}


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A stored answer: a canonical ``chat.completion`` and its usage."""

    completion: JSONObject
    usage: Usage | None


@dataclass(slots=True)
class Tally:
    hits: int = 0
    misses: int = 0
    stores: int = 0
    skips: int = 0
    semantic_hits: int = 0
    tokens_saved: int = 0
    nanos_saved: int = 0

    def to_json(self) -> JSONObject:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "stores": self.stores,
            "skips": self.skips,
            "semantic_hits": self.semantic_hits,
            "tokens_saved": self.tokens_saved,
            "usd_saved": round(self.nanos_saved / NANOS_PER_USD, 9),
        }


@dataclass(slots=True)
class CacheStats:
    """Counts of this process (the store's entries are shared when it is Redis)."""

    total: Tally = field(default_factory=Tally)
    by_model: dict[str, Tally] = field(default_factory=dict)
    by_scope: dict[str, Tally] = field(default_factory=dict)

    def tallies(self, model: str, scope_id: str) -> tuple[Tally, Tally, Tally]:
        by_model = self.by_model.get(model) or self.by_model.setdefault(model, Tally())
        by_scope = self.by_scope.get(scope_id) or self.by_scope.setdefault(scope_id, Tally())
        return self.total, by_model, by_scope


def _normalise(value: JSONValue) -> JSONValue:
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items() if v is not None and k != "cache_control"}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _normalise_messages(messages: JSONValue) -> JSONValue:
    if not isinstance(messages, list):
        return _normalise(messages)
    out: list[JSONValue] = []
    for msg in messages:
        norm = _normalise(msg)
        if isinstance(norm, dict):
            content = norm.get("content")
            if (
                isinstance(content, list)
                and len(content) == 1
                and isinstance(content[0], dict)
                and content[0].get("type") == "text"
                and set(content[0]) == {"type", "text"}
            ):
                norm["content"] = content[0]["text"]
        out.append(norm)
    return out


def _normalise_field(name: str, value: JSONValue) -> JSONValue:
    return _normalise_messages(value) if name in ("messages", "system") else _normalise(value)


def cache_key(fmt: ClientFormat, route: Route, scope_id: str, body: Mapping[str, JSONValue]) -> str:
    """The exact-cache key of a request (see the module docstring for what is in it)."""
    material: JSONObject = {
        "v": _ENTRY_VERSION,
        "format": fmt,
        "route": [[d.provider, d.model] for d in route.candidates],
        "scope": scope_id,
        "body": {
            k: (_normalise_messages(v) if k in ("messages", "system") else _normalise(v))
            for k, v in body.items()
            if k not in IGNORED_FIELDS and v is not None
        },
    }
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


def is_deterministic(body: Mapping[str, JSONValue]) -> bool:
    """Temperature 0, or a seed. An unset temperature is sampling (providers default to 1)."""
    seed = body.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        return True
    temperature = body.get("temperature")
    return isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature == 0


def scope_id_of(scope: str, principal: Principal | None) -> str:
    """The tenant an entry belongs to; a caller without the configured scope falls back to its own key."""
    if scope == "global":
        return "global"
    if principal is None:
        return "anonymous"
    if scope == "org" and principal.org_id:
        return "org:" + principal.org_id
    if scope == "team" and principal.team_id:
        return "team:" + principal.team_id
    return "key:" + principal.key_id


def _client_control(headers: Mapping[bytes, bytes]) -> tuple[bool, bool]:
    """(lookup, store) as the client asked: ``Cache-Control: no-cache|no-store``, ``x-tollgate-cache: skip|refresh``."""
    lookup = store = True
    control = headers.get(b"cache-control")
    if control:
        directives = {d.strip() for d in control.decode("latin-1").lower().split(",")}
        if "no-store" in directives:
            lookup = store = False
        elif "no-cache" in directives:
            lookup = False
    mode = headers.get(b"x-tollgate-cache")
    if mode:
        value = mode.decode("latin-1").strip().lower()
        if value == "skip":
            lookup = store = False
        elif value == "refresh":
            lookup = False
    return lookup, store


def _ttl_from_metadata(metadata: JSONValue, default: float) -> float:
    if isinstance(metadata, dict):
        ttl = metadata.get(TTL_METADATA_KEY)
        if isinstance(ttl, str):
            try:
                ttl = float(ttl)
            except ValueError:
                return default
        if isinstance(ttl, int | float) and not isinstance(ttl, bool):
            return float(min(max(ttl, 0), MAX_TTL_SECONDS))
    return default


def encode_entry(completion: JSONObject, usage: Usage | None) -> bytes:
    return orjson.dumps({"v": _ENTRY_VERSION, "completion": completion, "usage": usage.to_openai() if usage else None})


def decode_entry(raw: bytes) -> CachedAnswer | None:
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(entry, dict) or entry.get("v") != _ENTRY_VERSION or not isinstance(entry.get("completion"), dict):
        return None
    return CachedAnswer(entry["completion"], Usage.from_openai(entry.get("usage")))


class CachePolicy:
    """The exact cache of one config version, over a ``ResponseCacheStore`` (fails open: a store error is a miss)."""

    def __init__(
        self,
        store: ResponseCacheStore,
        settings: CacheSettings,
        prices: PriceBook | None = None,
        clock: Callable[[], float] = time.time,
        semantic: SemanticCache | None = None,
        shared_counts: SharedCounts | None = None,
    ) -> None:
        self.store = store
        self.shared_counts = shared_counts  # with a Redis store: the counts of every replica
        self.settings = settings
        self.prices = prices
        self.clock = clock
        self.semantic = semantic
        self.stats = CacheStats()
        self._pending: set[asyncio.Task[None]] = set()

    def plan(
        self,
        ctx: RequestContext,
        fmt: ClientFormat,
        body: Mapping[str, JSONValue],
        route: Route,
        headers: Mapping[bytes, bytes],
    ) -> CachePlan | None:
        """``None``: the cache does not apply (off for this model). Otherwise the plan, with the client's control."""
        settings = self.settings
        override = settings.models.get(route.requested)
        principal = ctx.principal
        # Each field: the team's setting, else the model's, else the section's.
        team = settings.teams.get(principal.team_id) if settings.teams and principal and principal.team_id else None
        enabled = override.enabled if override is not None and override.enabled is not None else settings.enabled
        if team is not None and team.enabled is not None:
            enabled = team.enabled
        if not enabled:
            return None
        nondet_ok = settings.cache_nondeterministic
        ttl: float = settings.ttl_seconds
        if override is not None:
            nondet_ok = override.cache_nondeterministic if override.cache_nondeterministic is not None else nondet_ok
            ttl = override.ttl_seconds or ttl
        if team is not None:
            nondet_ok = team.cache_nondeterministic if team.cache_nondeterministic is not None else nondet_ok
            ttl = team.ttl_seconds or ttl
        ttl = _ttl_from_metadata(ctx.metadata if ctx.metadata is not None else body.get("metadata"), ttl)
        lookup, store = _client_control(headers)
        if not (nondet_ok or is_deterministic(body)):
            lookup = store = False
        if ttl <= 0:
            store = False
        scope_id = scope_id_of(settings.scope, principal)
        if not (lookup or store):
            # Most traffic (sampled requests) never touches the cache: no key to hash, no tags to build.
            return CachePlan("", False, False, ttl, (), route.requested, scope_id)
        tags = [f"model:{route.requested}", scope_id]
        if principal is not None:
            for tag in (f"org:{principal.org_id}", f"team:{principal.team_id}", f"key:{principal.key_id}"):
                if not tag.endswith(":None") and tag not in tags:
                    tags.append(tag)
        # Callers under different guardrail profiles never share answers: one profile's output guards may
        # refuse what another's let through, and a hit skips RESPOND.
        keyed = scope_id if ctx.guard_profile is None else f"{scope_id}|guards:{ctx.guard_profile}"
        key = cache_key(fmt, route, keyed, body)
        plan = CachePlan(key, lookup, store, ttl, tuple(tags), route.requested, scope_id)
        if self.semantic is not None:
            plan.semantic = self._semantic_query(ctx, fmt, route, keyed, body, override)
        return plan

    def semantic_setting(self, model: CacheModelOverride | None, team_id: str | None) -> tuple[bool, float]:
        """Whether semantic lookups apply, and the threshold: the team's setting, else the model's, else the
        section's (each field on its own: a team may set only a threshold and keep the model's on/off)."""
        semantic = self.settings.semantic
        enabled, threshold = semantic.enabled, semantic.threshold
        if model is not None:
            enabled = model.semantic if model.semantic is not None else enabled
            threshold = model.semantic_threshold or threshold
        team = self.settings.teams.get(team_id) if team_id is not None else None
        if team is not None:
            enabled = team.semantic if team.semantic is not None else enabled
            threshold = team.semantic_threshold or threshold
        return enabled, threshold

    def _semantic_query(
        self,
        ctx: RequestContext,
        fmt: ClientFormat,
        route: Route,
        scope_id: str,
        body: Mapping[str, JSONValue],
        override: CacheModelOverride | None,
    ) -> SemanticQuery | None:
        from tollgate.policies.semantic_cache import semantic_query

        team_id = ctx.principal.team_id if ctx.principal is not None else None
        enabled, threshold = self.semantic_setting(override, team_id)
        if not enabled:
            return None
        query = semantic_query(fmt, route, scope_id, body, threshold, _normalise_field)
        if query is not None:
            query.caller = ctx
        return query

    async def lookup(self, ctx: RequestContext, plan: CachePlan, route: Route) -> CachedAnswer | None:
        """CACHE_LOOKUP: a hit sets ``ctx.cache_hit``, ``ctx.usage`` and ``ctx.cost_saved_nanos`` (the ledger
        records it at cost 0, with what the cached usage would have cost at the route's first model's price)."""
        tallies = self.stats.tallies(plan.model, plan.scope_id)
        shared = self.shared_counts
        if not plan.lookup:
            plan.status = "skip"
            for t in tallies:
                t.skips += 1
            if shared is not None:
                shared.add(plan.model, plan.scope_id, "skips")
            return None
        raw = await self.store.get(plan.key)
        answer = decode_entry(raw) if raw is not None else None
        if answer is None and plan.semantic is not None:
            answer = await self._semantic_lookup(ctx, plan)
        if answer is None:
            plan.status = "miss"
            for t in tallies:
                t.misses += 1
            if shared is not None:
                shared.add(plan.model, plan.scope_id, "misses")
            return None
        if plan.status == "semantic-hit":
            for t in tallies:
                t.semantic_hits += 1
            if shared is not None:
                shared.add(plan.model, plan.scope_id, "semantic_hits")
        else:
            plan.status = "hit"
        if shared is not None:
            shared.add(plan.model, plan.scope_id, "hits")
        ctx.cache_hit = True
        ctx.usage = answer.usage
        usage = answer.usage
        saved_tokens = usage.total_tokens if usage else 0
        saved_nanos = self.prices.cost_nanos(route.candidates[0], usage) if self.prices and route.candidates else 0
        ctx.cost_saved_nanos = saved_nanos
        for t in tallies:
            t.hits += 1
            t.tokens_saved += saved_tokens
            t.nanos_saved += saved_nanos
        return answer

    async def _semantic_lookup(self, ctx: RequestContext, plan: CachePlan) -> CachedAnswer | None:
        """The most similar stored answer of the request's partition, at or above its threshold."""
        semantic, query = self.semantic, plan.semantic
        if semantic is None or query is None:
            return None
        for key, similarity in await semantic.search(query):
            raw = await self.store.get(key)
            answer = decode_entry(raw) if raw is not None else None
            if answer is None:
                semantic.forget(key)  # invalidated, evicted or expired in the store
                continue
            plan.status = "semantic-hit"
            query.similarity = similarity
            ctx.extra_headers.append((b"x-tollgate-cache-similarity", f"{similarity:.4f}".encode()))
            return answer
        return None

    async def save(self, plan: CachePlan, completion: JSONObject, usage: Usage | None) -> None:
        """Store a successful, complete answer (the caller guarantees it is one)."""
        if not plan.store or not _storable(completion):
            return
        value = encode_entry(completion, usage)
        if len(value) > self.settings.max_entry_bytes:
            return
        await self.store.set(plan.key, value, plan.ttl_seconds, plan.tags)
        for t in self.stats.tallies(plan.model, plan.scope_id):
            t.stores += 1
        if self.shared_counts is not None:
            self.shared_counts.add(plan.model, plan.scope_id, "stores")
        if self.semantic is not None and plan.semantic is not None:
            await self.semantic.remember(plan.semantic, plan.key, plan.ttl_seconds)

    def save_later(self, plan: CachePlan, completion: JSONObject, usage: Usage | None) -> None:
        """``save`` off the response path (the last bytes of a stream must not wait for the store)."""
        task = asyncio.get_running_loop().create_task(self.save(plan, completion, usage))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def warm(
        self, entries: Sequence[WarmEntry], route_of: Callable[[str], Route], principal: Principal | None
    ) -> WarmReport:
        """Store prepared answers as if ``principal`` had asked the OpenAI-compatible endpoint for them.

        Each entry gets the key a real request with the same messages and parameters gets (and, with the
        semantic cache on, its vector), in the scope ``principal`` belongs to under ``cache.scope``."""
        report = WarmReport()
        now = int(self.clock())
        for index, entry in enumerate(entries):
            try:
                route = route_of(entry.model)
            except TollgateError as exc:
                report.skipped.append({"index": index, "reason": exc.message})
                continue
            body: JSONObject = {"model": entry.model, "messages": list(entry.messages), **entry.params}
            ctx = RequestContext(request_id=f"warm-{index}", front_door="openai", endpoint="chat", config_version="")
            ctx.principal = principal
            plan = self.plan(ctx, "openai", body, route, {})
            if plan is None or not plan.store:
                reason = (
                    f"the cache is off for model '{route.requested}'"
                    if plan is None
                    else "the request would not be cached (sampled: give temperature 0 or a seed)"
                )
                report.skipped.append({"index": index, "reason": reason})
                continue
            completion: JSONObject = {
                "id": f"chatcmpl-warm-{index}",
                "object": "chat.completion",
                "created": now,
                "model": route.candidates[0].model if route.candidates else entry.model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": entry.answer}, "finish_reason": "stop"}
                ],
            }
            prompt = len(orjson.dumps(body["messages"])) // 4 + 1
            usage = Usage(prompt, len(entry.answer.encode()) // 4 + 1, estimated=True)
            await self.save(plan, completion, usage)
            report.stored += 1
        return report

    async def invalidate(self, tag: str) -> int:
        if self.semantic is not None and tag == ALL:
            await self.semantic.clear()  # other tags: the index drops entries whose answer is gone when it meets them
        return await self.store.invalidate(tag)

    async def report(self) -> JSONObject:
        stored: StoreStats = await self.store.stats()
        return {
            "backend": stored.backend,
            "entries": stored.entries,
            "bytes": stored.bytes,
            "process": self.stats.total.to_json(),
            "by_model": {k: v.to_json() for k, v in sorted(self.stats.by_model.items())},
            "by_scope": {k: v.to_json() for k, v in sorted(self.stats.by_scope.items())},
            "semantic": self.semantic.report() if self.semantic is not None else None,
            "cluster": await self._cluster_counts(),
        }

    async def _cluster_counts(self) -> JSONObject | None:
        """Every replica's hits, misses, semantic hits, stores and skips (``None`` without a shared store)."""
        if self.shared_counts is None:
            return None
        try:
            return await self.shared_counts.read()
        except Exception as exc:  # the stats page must answer with Redis down: say why the counts are missing
            return {"error": f"{type(exc).__name__}: {exc}"[:300]}

    async def drain(self) -> None:
        """Wait for stores in flight (tests, shutdown)."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


def _storable(completion: JSONObject) -> bool:
    """Every choice finished, none blocked by a content filter."""
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            return False
        finish = choice.get("finish_reason")
        if not isinstance(finish, str) or not finish or finish == "content_filter":
            return False
    return True


def replay_chunks(answer: CachedAnswer) -> list[JSONObject]:
    """A cached completion as canonical stream chunks: one content chunk per choice, the finish chunk, usage."""
    completion = answer.completion
    base: JSONObject = {
        "id": completion.get("id") or "chatcmpl-cache",
        "object": "chat.completion.chunk",
        "created": completion.get("created") or int(time.time()),
        "model": completion.get("model") or "",
    }
    deltas: list[JSONValue] = []
    finishes: list[JSONValue] = []
    choices = completion.get("choices")
    for choice in choices if isinstance(choices, list) else []:
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", 0)
        message = choice.get("message")
        message = message if isinstance(message, dict) else {}
        delta: JSONObject = {"role": "assistant", "content": message.get("content") or ""}
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls:
            delta["tool_calls"] = [
                {**call, "index": i} if isinstance(call, dict) else call for i, call in enumerate(calls)
            ]
        if message.get("refusal"):
            delta["refusal"] = message["refusal"]
        deltas.append({"index": index, "delta": delta, "logprobs": None, "finish_reason": None})
        finishes.append({"index": index, "delta": {}, "logprobs": None, "finish_reason": choice.get("finish_reason")})
    chunks: list[JSONObject] = [{**base, "choices": deltas}, {**base, "choices": finishes}]
    if answer.usage is not None:
        chunks.append({**base, "choices": [], "usage": answer.usage.to_openai()})
    return chunks


class ReplayStream:
    """A cache hit served as a stream: the replayed chunks in one piece."""

    def __init__(self, answer: CachedAnswer) -> None:
        self._chunks = replay_chunks(answer)
        self.usage = answer.usage

    async def __aiter__(self) -> AsyncIterator[list[JSONObject]]:
        yield self._chunks

    async def aclose(self) -> None:
        return None


class RecordingStream:
    """Passes a canonical stream through and, once it ended cleanly and was not cut, stores what it built.

    An error or a client that left ends the iteration early (nothing stored); ``cut`` tells whether a
    stream filter ended the stream (a budget cut), which is not the answer the request asked for."""

    def __init__(
        self,
        inner: PieceSource,
        cut: Callable[[], bool],
        on_complete: Callable[[JSONObject, Usage | None], None],
    ) -> None:
        self._inner = inner
        self._cut = cut
        self._on_complete = on_complete

    @property
    def usage(self) -> Usage | None:
        return self._inner.usage

    async def __aiter__(self) -> AsyncIterator[list[JSONObject]]:
        acc = CompletionAccumulator()
        async for chunks in self._inner:
            acc.feed(chunks)
            yield chunks
        if not self._cut():
            self._on_complete(acc.completion(), self._inner.usage)

    async def aclose(self) -> None:
        await self._inner.aclose()


class CompletionAccumulator:
    """Builds a ``chat.completion`` from canonical stream chunks: content, tool calls, finish_reason per choice."""

    def __init__(self) -> None:
        self.id: JSONValue = None
        self.model: JSONValue = None
        self.created: JSONValue = None
        self._choices: dict[int, JSONObject] = {}
        self._calls: dict[int, dict[int, JSONObject]] = {}
        self._text: dict[int, list[str]] = {}

    def feed(self, chunks: list[JSONObject]) -> None:
        for chunk in chunks:
            self.id = self.id or chunk.get("id")
            self.model = self.model or chunk.get("model")
            self.created = self.created or chunk.get("created")
            choices = chunk.get("choices")
            if not isinstance(choices, list):
                continue
            for choice in choices:
                if isinstance(choice, dict):
                    self._feed_choice(choice)

    def _feed_choice(self, choice: JSONObject) -> None:
        index = choice.get("index", 0)
        if not isinstance(index, int):
            return
        state = self._choices.setdefault(index, {"index": index, "finish_reason": None})
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str):
                self._text.setdefault(index, []).append(content)
            if isinstance(delta.get("refusal"), str):
                state["refusal"] = str(state.get("refusal") or "") + str(delta["refusal"])
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    if isinstance(call, dict):
                        self._feed_call(index, call)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            state["finish_reason"] = finish

    def _feed_call(self, index: int, call: JSONObject) -> None:
        position = call.get("index", 0)
        if not isinstance(position, int):
            return
        calls = self._calls.setdefault(index, {})
        state = calls.setdefault(position, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        if call.get("id"):
            state["id"] = call["id"]
        fn = call.get("function")
        target = state["function"]
        if isinstance(fn, dict) and isinstance(target, dict):
            if isinstance(fn.get("name"), str):
                target["name"] = str(target.get("name") or "") + str(fn["name"])
            if isinstance(fn.get("arguments"), str):
                target["arguments"] = str(target.get("arguments") or "") + str(fn["arguments"])

    def completion(self) -> JSONObject:
        choices: list[JSONValue] = []
        for index in sorted(self._choices):
            state = self._choices[index]
            text = "".join(self._text.get(index, []))
            message: JSONObject = {"role": "assistant", "content": text or None}
            calls = self._calls.get(index)
            if calls:
                message["tool_calls"] = [calls[i] for i in sorted(calls)]
            if state.get("refusal"):
                message["refusal"] = state["refusal"]
            choices.append({"index": index, "message": message, "finish_reason": state["finish_reason"]})
        return {
            "id": self.id or "chatcmpl-cache",
            "object": "chat.completion",
            "created": self.created or int(time.time()),
            "model": self.model or "",
            "choices": choices,
        }
