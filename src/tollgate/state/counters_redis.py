"""Redis ``CounterStore``: the same sliding logs as the memory store, in Lua scripts, shared by every replica.

Layout, per counter ``K`` (all under ``key_prefix``, default ``tollgate:rl:``):

* ``K:log``: sorted set, reservation id → time in ms (rolling counters only);
* ``K:amt``: hash, reservation id → amount, plus the field ``#`` holding the counter's total.

Every reservation and settlement is one ``EVALSHA`` of a script (loaded once, reloaded if Redis forgot it),
so it is atomic across replicas: Redis runs scripts one at a time. Time comes from Redis's own clock
(``TIME``) so replicas with skewed clocks agree. Both keys of a rolling counter expire one window after its
last write, cumulative counters after their ``ttl_ms``: nothing is left behind by keys nobody uses.
The keys of one reservation may live on different cluster slots, so Redis Cluster is not supported.

When Redis cannot be reached (connection refused, timeout):

* ``fail_open=True`` (default): reservations fall back to an in-process ``MemoryCounterStore``, so each
  replica enforces the limits on its own share of the traffic (N replicas may admit up to N times the
  limit between them). A warning is logged at most once a minute and ``fallbacks`` counts the operations
  served locally (for metrics). Redis is tried again after ``retry_interval`` seconds; reservations taken
  locally are settled locally.
* ``fail_open=False``: ``reserve`` raises ``CounterStoreUnavailableError``; the policy answers 503.

A settlement that cannot reach Redis is dropped (and counted in ``errors``): its entries then count until
they leave their window (a parallel slot until its lease ends).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tollgate.state.counters import Charge, CounterStoreUnavailableError, Decision, Level, Settlement
from tollgate.state.counters_memory import RETRY_WALK, MemoryCounterStore

log = logging.getLogger("tollgate.ratelimit")

_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_WARN_EVERY = 60.0
_LOCAL_IDS = 100_000

# Shared by both scripts: the time, integer formatting (Lua 5.1 prints big doubles as 1e+15), expiry.
_PRELUDE = """
local function fmt(x) return string.format('%d', x) end
local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[2])
end
local rid = ARGV[1]
local n = #KEYS / 2
local function expire(log, amt, window)
  local cutoff = now - window
  while true do
    local old = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff, 'LIMIT', 0, 500)
    if #old == 0 then return end
    local amounts = redis.call('HMGET', amt, unpack(old))
    local freed = 0
    for j = 1, #amounts do freed = freed + (tonumber(amounts[j]) or 0) end
    redis.call('ZREM', log, unpack(old))
    redis.call('HDEL', amt, unpack(old))
    redis.call('HINCRBY', amt, '#', fmt(-freed))
  end
end
local function add(log, amt, window, id, amount)
  redis.call('ZADD', log, fmt(now), id)
  redis.call('HSET', amt, id, fmt(amount))
  redis.call('HINCRBY', amt, '#', fmt(amount))
  redis.call('PEXPIRE', log, fmt(window + 1000))
  redis.call('PEXPIRE', amt, fmt(window + 1000))
end
"""

# KEYS: log and amt of each charge. ARGV: rid, now ('' = Redis clock), then amount, limit, window, ttl per charge.
# Returns {allowed, refused (1-based, 0 = none), retry_ms, used_1, reset_1, used_2, reset_2, ...}.
_RESERVE = (
    _PRELUDE
    + """
local used, refused, retry = {}, 0, 0
for i = 1, n do
  local log, amt, a = KEYS[2 * i - 1], KEYS[2 * i], 2 + 4 * (i - 1)
  local amount, limit, window = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  if window > 0 then expire(log, amt, window) end
  local total = tonumber(redis.call('HGET', amt, '#') or '0')
  used[i] = total
  if total + amount > limit then
    if refused == 0 then refused = i end
    local wait = 0
    if window > 0 then
      wait = -1
      if amount > limit then
        wait = window
      else
        local need, freed = total + amount - limit, 0
        local head = redis.call('ZRANGE', log, 0, WALK - 1, 'WITHSCORES')
        if #head > 0 then
          local ids = {}
          for k = 1, #head, 2 do ids[#ids + 1] = head[k] end
          local amounts = redis.call('HMGET', amt, unpack(ids))
          for k = 1, #ids do
            freed = freed + (tonumber(amounts[k]) or 0)
            if freed >= need then
              wait = tonumber(head[2 * k]) + window - now
              break
            end
          end
        end
        if wait < 0 then
          local last = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
          wait = 0
          if #last > 0 then wait = tonumber(last[2]) + window - now end
        end
      end
    end
    if wait > retry then retry = wait end
  end
end
if refused == 0 then
  for i = 1, n do
    local log, amt, a = KEYS[2 * i - 1], KEYS[2 * i], 2 + 4 * (i - 1)
    local amount, window, ttl = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
    if amount ~= 0 then
      if window > 0 then
        add(log, amt, window, rid, amount)
      else
        redis.call('HINCRBY', amt, '#', fmt(amount))
        if ttl > 0 then redis.call('PEXPIRE', amt, fmt(ttl)) end
      end
      used[i] = used[i] + amount
    end
  end
end
local out = {refused == 0 and 1 or 0, refused, retry}
for i = 1, n do
  local log, amt = KEYS[2 * i - 1], KEYS[2 * i]
  local amount, window = tonumber(ARGV[2 + 4 * (i - 1) + 1]), tonumber(ARGV[2 + 4 * (i - 1) + 3])
  local reset = 0
  if window > 0 and refused == 0 and amount ~= 0 then
    reset = window  -- the entry just added is the newest
  elseif window > 0 then
    local last = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
    if #last > 0 then reset = math.max(0, tonumber(last[2]) + window - now) end
  else
    reset = math.max(0, redis.call('PTTL', amt))
  end
  out[#out + 1] = used[i]
  out[#out + 1] = reset
end
return out
""".replace("WALK", str(RETRY_WALK))
)

# KEYS: log and amt of each settlement. ARGV: rid, now ('' = Redis clock), then reserved, actual, window, ttl each.
_SETTLE = (
    _PRELUDE
    + """
for i = 1, n do
  local log, amt, a = KEYS[2 * i - 1], KEYS[2 * i], 2 + 4 * (i - 1)
  local reserved, actual = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local window, ttl = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  if window > 0 then
    local old = redis.call('HGET', amt, rid)
    local alive = false
    if old then
      old = tonumber(old)
      local at = redis.call('ZSCORE', log, rid)
      alive = at ~= false and tonumber(at) > now - window
      if alive and actual > 0 then
        redis.call('HSET', amt, rid, fmt(actual))
        redis.call('HINCRBY', amt, '#', fmt(actual - old))
      else
        redis.call('ZREM', log, rid)
        redis.call('HDEL', amt, rid)
        redis.call('HINCRBY', amt, '#', fmt(-old))
      end
    end
    if not alive and actual > reserved then add(log, amt, window, rid, actual - reserved) end
  elseif actual ~= reserved then
    redis.call('HINCRBY', amt, '#', fmt(actual - reserved))
    if ttl > 0 then redis.call('PEXPIRE', amt, fmt(ttl)) end
  end
end
return 1
"""
)


class RedisCounterStore:
    """Counters shared by every replica through one Redis. ``clock`` (seconds) replaces Redis's ``TIME``
    for tests only: in production, leave it ``None`` so all replicas share Redis's clock."""

    def __init__(
        self,
        url: str,
        *,
        fail_open: bool = True,
        timeout_seconds: float = 0.5,
        key_prefix: str = "tollgate:rl:",
        retry_interval: float = 1.0,
        max_connections: int = 64,
        clock: Callable[[], float] | None = None,
    ) -> None:
        # A burst beyond max_connections waits for a free connection (redis-py's default pool would raise,
        # which would look like an outage). No client-side retries: a retry with backoff would hold the
        # request far longer than falling back does.
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=max(2.0, timeout_seconds),
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
        )
        self._redis = redis.Redis.from_pool(pool)
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)
        self._prefix = key_prefix
        self._clock = clock
        self._fail_open = fail_open
        self._retry_interval = retry_interval
        self._down_until = 0.0
        self._last_warning = -_WARN_EVERY
        pool_kwargs = self._redis.connection_pool.connection_kwargs
        # Where Redis is, for log lines: never the URL, which may carry a password.
        self._where = str(pool_kwargs.get("path") or f"{pool_kwargs.get('host')}:{pool_kwargs.get('port')}")
        self.fallback = MemoryCounterStore()
        # Reservations the fallback took, to settle there. One reservation may be settled more than once (rate
        # limits and budgets share one reservation id, each settling its own counters), so ids are not
        # forgotten at their first settlement: the newest _LOCAL_IDS are kept, which outlasts any request.
        self._local: OrderedDict[str, None] = OrderedDict()
        self.fallbacks = 0  # operations served by the in-process fallback while Redis was unreachable
        self.errors = 0  # Redis calls that failed because it was unreachable

    def _keys_and_now(self, rid: str, names: Sequence[str]) -> tuple[list[str], list[str]]:
        keys: list[str] = []
        for name in names:
            keys.append(f"{self._prefix}{name}:log")
            keys.append(f"{self._prefix}{name}:amt")
        now = "" if self._clock is None else str(round(self._clock() * 1000))
        return keys, [rid, now]

    async def reserve(self, rid: str, charges: Sequence[Charge]) -> Decision:
        if not charges:
            return Decision(True, ())
        if self._down_until > time.monotonic():
            return await self._unavailable(rid, charges, None)
        keys, args = self._keys_and_now(rid, [c.key for c in charges])
        for c in charges:
            args += (str(c.amount), str(c.limit), str(c.window_ms), str(c.ttl_ms))
        try:
            raw = await self._reserve(keys=keys, args=args)
        except _UNREACHABLE as exc:
            return await self._unavailable(rid, charges, exc)
        return _decision(raw, len(charges))

    async def settle(self, rid: str, settlements: Sequence[Settlement]) -> None:
        if rid in self._local:
            await self.fallback.settle(rid, settlements)
            return
        if not settlements:
            return
        keys, args = self._keys_and_now(rid, [s.key for s in settlements])
        for s in settlements:
            args += (str(s.reserved), str(s.actual), str(s.window_ms), str(s.ttl_ms))
        try:
            await self._settle(keys=keys, args=args)
        except _UNREACHABLE as exc:
            self._went_down(exc)

    async def settle_many(self, batch: Sequence[tuple[str, Sequence[Settlement]]]) -> None:
        """All of ``batch`` in one pipelined round trip (each settlement still its own atomic script)."""
        remote: list[tuple[str, Sequence[Settlement]]] = []
        for rid, settlements in batch:
            if rid in self._local:
                await self.fallback.settle(rid, settlements)
            elif settlements:
                remote.append((rid, settlements))
        if not remote:
            return
        pipe = self._redis.pipeline(transaction=False)
        for rid, settlements in remote:
            keys, args = self._keys_and_now(rid, [s.key for s in settlements])
            for s in settlements:
                args += (str(s.reserved), str(s.actual), str(s.window_ms), str(s.ttl_ms))
            await self._settle(keys=keys, args=args, client=pipe)
        try:
            await pipe.execute()
        except _UNREACHABLE as exc:
            self._went_down(exc)

    async def close(self) -> None:
        await self._redis.aclose()
        await self.fallback.close()

    async def ping(self) -> None:
        """Raise if Redis cannot be reached (readiness)."""
        await self._redis.ping()

    def _went_down(self, exc: BaseException) -> None:
        self.errors += 1
        self._down_until = time.monotonic() + self._retry_interval
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY:
            self._last_warning = now
            mode = (
                "rate limits are enforced per process only until it is back (fail_open)"
                if self._fail_open
                else "rate-limited requests are refused with 503 until it is back (fail closed)"
            )
            log.warning(
                "RATE LIMITER DEGRADED: Redis at %s is unreachable (%s: %s); %s. %d operations served locally so far.",
                self._where,
                type(exc).__name__,
                exc,
                mode,
                self.fallbacks,
            )

    async def _unavailable(self, rid: str, charges: Sequence[Charge], exc: BaseException | None) -> Decision:
        if exc is not None:
            self._went_down(exc)
        if not self._fail_open:
            raise CounterStoreUnavailableError(f"the rate-limit store (Redis at {self._where}) is unreachable")
        self.fallbacks += 1
        decision = await self.fallback.reserve(rid, charges)
        if decision.allowed:
            local = self._local
            local[rid] = None
            if len(local) > _LOCAL_IDS:
                local.popitem(last=False)
        return decision


def _decision(raw: object, n: int) -> Decision:
    if not isinstance(raw, list) or len(raw) != 3 + 2 * n or not all(isinstance(v, int) for v in raw):
        raise RuntimeError(f"unexpected reply from the rate-limit script: {raw!r}")
    values: list[int] = raw
    levels = tuple(Level(values[3 + 2 * i], values[4 + 2 * i]) for i in range(n))
    return Decision(values[0] == 1, levels, values[1] - 1, values[2])
