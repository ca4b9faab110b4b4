"""The semantic cache: a request whose last user message is *similar* to a cached one, all else equal, is a hit.

What must match exactly (the *partition*, a SHA-256 like the exact key): the client format, the route, the tenant
scope, every body field the exact key holds (system prompt, tools, parameters …) except the last user message,
which is replaced by a placeholder, so earlier turns match exactly; and three guards read from that message: its
numbers, in order (digits or words: "two nights" is "2 nights"), its time expressions ("today" / "yesterday",
"this week" / "next week"), and whether it is negated ("cancel my order" / "don't cancel my order"). Embeddings
cannot be trusted to tell those apart, and a false hit is worse than a miss. Only the last user message's text
is compared by similarity, within its partition and its embedding space (the model that made the vectors and their
dimension: ``policies/semantic_embedders.py``); a message longer than the embedder takes (MiniLM: 256 word
pieces; a provider: ``embedding_max_chars``) is never compared (the truncated part could differ), nor is one with
non-text parts.

This module only imports numpy (through the index) when a ``SemanticCache`` is built: with the semantic cache
off, nothing of it is loaded.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from tollgate.config.cache import SemanticCacheSettings
from tollgate.routing.resolver import Route
from tollgate.types import JSONObject, JSONValue

if TYPE_CHECKING:
    from tollgate.context import RequestContext
    from tollgate.embeddings import Encoder
    from tollgate.policies.semantic_embedders import Embedder, Embedding, ProviderEmbed
    from tollgate.state.semantic_index import VectorIndex
    from tollgate.state.semantic_redis import RedisVectorLog

log = logging.getLogger("tollgate.cache")

_VERSION = 3  # 2: number words and time expressions joined the guards; 3: units and periods
_IGNORED = frozenset({"model", "stream", "stream_options", "metadata", "user"})
# Numbers written as words count as their digits ("two nights" is "2 nights", never "3 nights"). "first" is left
# out: it is as often "at first" as an ordinal, and the first/last pair is an opposite anyway.
_SMALL_NUMBERS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
_TEENS_AND_TENS = "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety"
_TEENS_AND_TENS_VALUES = ("17", "18", "19", "20", "30", "40", "50", "60", "70", "80", "90")
_ORDINALS = "second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth"
_NUMBER_WORDS: dict[str, str] = {
    **{w: str(i) for i, w in enumerate(_SMALL_NUMBERS.split())},
    **dict(zip(_TEENS_AND_TENS.split(), _TEENS_AND_TENS_VALUES, strict=True)),
    **{w: f"{i}th" for i, w in enumerate(_ORDINALS.split(), 2)},
    "hundred": "100",
    "thousand": "1000",
    "million": "1e6",
    "billion": "1e9",
    "dozen": "12",
    "half": "0.5",
}
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*|\b(?:" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
# When a request is about: "today" / "yesterday", "this week" / "next week", "weekdays" / "weekends", "in March".
# ("may" is left out: it is mostly the verb.)
_TIME = re.compile(
    r"\b(?:(?:this|next|last|previous|past|coming|following)\s+)?"
    r"(?:today|tonight|tomorrow|yesterday|morning|afternoon|evening|night|noon|midnight|weekday|weekend|week|month|"
    r"year|quarter|decade|century|monday|tuesday|wednesday|thursday|friday|saturday|sunday|january|february|march|"
    r"april|june|july|august|september|october|november|december)s?\b",
    re.IGNORECASE,
)
_TIME_SPACE = re.compile(r"\s+")
# Units and periods: "30 seconds" / "30 minutes", "64 GB" / "64 MB", "180°C" / "180°F", "15 euros monthly" /
# "yearly" score 0.96-0.99 with MiniLM. Each spelling maps to one canonical unit, so "64 GB" and "64 gigabytes"
# still match; the units of two messages must be the same (in any order).
_UNIT_SPELLINGS = {
    "ms": "millisecond milliseconds msec",
    "s": "second seconds sec secs",
    "min": "minute minutes min mins",
    "h": "hour hours hr hrs",
    "per-hour": "hourly",
    "per-day": "daily",
    "per-week": "weekly",
    "per-month": "monthly",
    "per-quarter": "quarterly",
    "per-year": "yearly annually annual",
    "kb": "kb kilobyte kilobytes",
    "mb": "mb megabyte megabytes",
    "gb": "gb gigabyte gigabytes",
    "tb": "tb terabyte terabytes",
    "kib": "kib",
    "mib": "mib",
    "gib": "gib",
    "kbit/s": "kbps",
    "mbit/s": "mbps",
    "gbit/s": "gbps",
    "mb/s": "mb/s",
    "c": "celsius °c",
    "f": "fahrenheit °f",
    "k": "kelvin",
    "km": "km kilometer kilometers kilometre kilometres",
    "mi": "mile miles",
    "m": "meter meters metre metres",
    "cm": "cm centimeter centimeters centimetre centimetres",
    "mm": "mm millimeter millimeters millimetre millimetres",
    "ft": "ft foot feet",
    "in": "inch inches",
    "kg": "kg kilogram kilograms kilo kilos",
    "g": "gram grams",
    "lb": "lb lbs pound pounds",
    "oz": "oz ounce ounces",
    "l": "liter liters litre litres",
    "ml": "ml milliliter milliliters millilitre millilitres",
    "gal": "gallon gallons",
    "km/h": "kph km/h",
    "mph": "mph",
    "%": "% percent",
    "eur": "eur euro euros €",
    "usd": "usd dollar dollars $",
    "gbp": "gbp £",
    "jpy": "jpy yen ¥",
}
_UNITS = {spelling: unit for unit, spellings in _UNIT_SPELLINGS.items() for spelling in spellings.split()}
_UNIT = re.compile(
    r"°\s?[cf]\b|[%$€£¥]|\b(?:"
    + "|".join(sorted((re.escape(u) for u in _UNITS if u[0].isalpha()), key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)
_NEGATION = re.compile(
    r"\b(?:no|not|never|none|nothing|nobody|neither|nor|without|cannot|dont|doesnt|didnt|isnt|arent|wasnt|"
    r"werent|wont|cant|shouldnt|wouldnt|couldnt)\b|n't\b|n\u2019t\b",
    re.IGNORECASE,
)


# Pairwise checks between the new message and a similar cached one (MiniLM scores these pairs 0.93-0.998):
# words that make the opposite request, and the order of the same content words ("from Paris to Rome").
_STOPWORDS = frozenset(
    """a an the is are was were be been being am do does did doing done have has had having i me my mine we us our
    you your yours he him his she her it its they them their this that these those what whats which who whom whose
    when where why how can could would should will shall may might must to of in on at by for with from into onto
    about as and or but if so than then there here please tell give show let lets make get explain describe some any
    one also just really very much many way thing things s t m re ve ll d""".split()  # noqa: SIM905
)
_OPPOSITE_PAIRS = """more/less more/fewer most/least before/after longer/shorter older/younger higher/lower
    increase/decrease increase/reduce raise/lower rising/falling rise/fall up/down above/below over/under first/last
    best/worst better/worse minimum/maximum min/max enable/disable start/stop begin/end open/close import/export
    add/remove add/subtract include/exclude lock/unlock upgrade/downgrade upload/download buy/sell buy/rent lend/borrow
    send/receive win/lose gain/lose positive/negative pros/cons advantages/disadvantages benefits/drawbacks
    ascending/descending formal/informal expand/summarize expand/shorten left/right north/south east/west true/false
    accept/reject allow/deny approve/decline pass/fail synonym/opposite synonym/antonym cause/consequence
    cause/effect encrypt/decrypt compress/decompress encode/decode zip/unzip follow/unfollow subscribe/unsubscribe
    hot/cold cheap/expensive fast/slow faster/slower big/small bigger/smaller larger/smaller old/new early/late
    earlier/later light/dark input/output inbound/outbound private/public internal/external male/female men/women
    same/different similarity/difference connect/disconnect install/uninstall mount/unmount show/hide join/leave
    arrive/depart arrival/departure plus/minus multiply/divide maximize/minimize allowed/forbidden allowed/prohibited
    permitted/forbidden permitted/prohibited allow/forbid allow/prohibit mandatory/optional required/optional
    always/never including/except including/excluding include/except during/after since/before since/until
    current/whole current/entire current/all single/all single/whole selected/all i/we my/our me/us mine/ours i/our
    my/we""".split()  # noqa: SIM905
_OPPOSITES: dict[str, frozenset[str]] = {}
for _pair in _OPPOSITE_PAIRS:
    _x, _y = _pair.split("/")
    _OPPOSITES[_x] = _OPPOSITES.get(_x, frozenset()) | {_y}
    _OPPOSITES[_y] = _OPPOSITES.get(_y, frozenset()) | {_x}
_WORD = re.compile(r"[a-z0-9]+")
# A message that swaps a single content word for another ("dogs"/"cats", "key"/"value") is the typical near miss
# that still scores high: such a pair needs at least this similarity (docs/caching.md).
SUBSTITUTION_SIMILARITY = 0.95


def _stem(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _words(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(text.lower().replace("'s", "").replace("\u2019s", ""))]


_NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non")


def _negated_by_prefix(words: set[str], others: set[str]) -> bool:
    """A word of ``words`` is a word of ``others`` with a negating prefix (not "into" / "to": stopwords aside)."""
    for word in words:
        for prefix in _NEGATING_PREFIXES:
            rest = word[len(prefix) :]
            if word.startswith(prefix) and len(rest) > 2 and rest in others and rest not in _STOPWORDS:
                return True
    return False


# A name: a word with a capital letter that is not just the first word of a sentence ("Word", "Google Docs",
# "Christmas Eve", "PostgreSQL"), or that has a capital after its first letter anywhere ("iPhone", "SQL").
_NAME_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9+#.'\u2019-]*[A-Za-z0-9+#]|[A-Z]")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n)\s*[\"'(\[]*$")


def names(text: str) -> list[str]:
    """The names a message mentions (products, places, people, days), as written."""
    found: list[str] = []
    for m in _NAME_TOKEN.finditer(text):
        token = m.group(0)
        if token.split("'")[0].split("\u2019")[0] == "I" or not any(c.isupper() for c in token):
            continue
        if not any(c.isupper() for c in token[1:]) and _SENTENCE_START.search(text, 0, m.start()):
            continue  # "What ..." / "Explain ...": capitalised only because a sentence starts there
        found.append(token)
    return found


def _names_covered(text: str, other_words: set[str]) -> bool:
    """Every name in ``text`` also occurs, in any case, among ``other_words``."""
    return all(set(_words(name)) <= other_words for name in names(text))


def compatible(query: str, cached: str, similarity: float) -> bool:
    """Whether a cached message similar to ``query`` may answer it (beyond the threshold and the partition)."""
    wq, wc = _words(query), _words(cached)
    sq, sc = set(wq), set(wc)
    if not (_names_covered(query, sc) and _names_covered(cached, sq)):
        return False  # another product, place, person or day: "in Word" / "in Google Docs", "Christmas Day" / "Eve"
    only_q, only_c = sq - sc, sc - sq
    for word in only_q:
        if _OPPOSITES.get(word, frozenset()) & only_c:
            return False
    if _negated_by_prefix(only_q, only_c) or _negated_by_prefix(only_c, only_q):
        return False  # "safe" / "unsafe", "edible" / "inedible", "like" / "dislike"
    cq = [w for w in wq if w not in _STOPWORDS]
    cc = [w for w in wc if w not in _STOPWORDS]
    if set(cq) == set(cc) and cq != cc:
        return False  # the same content words in another order: "from Paris to Rome" / "from Rome to Paris"
    if len(set(cq) - set(cc)) == 1 and len(set(cc) - set(cq)) == 1:
        return similarity >= SUBSTITUTION_SIMILARITY
    return True


@dataclass(slots=True)
class SemanticQuery:
    """A request's semantic part: the partition it may hit in, the text compared, the threshold, its vector."""

    partition: str
    text: str
    threshold: float
    embedding: Embedding | None = None  # once embedded (None also when it could not be)
    embedded: bool = False
    similarity: float | None = None
    caller: RequestContext | None = None  # whose request it is: a provider embedder's call is recorded for them


def last_user_text(messages: JSONValue) -> tuple[str, list[JSONValue]] | None:
    """The last message's text if it is a user message of text only, and the messages before it."""
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    content = last.get("content")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list) and content:
        parts: list[str] = []
        for part in content:
            piece = part.get("text") if isinstance(part, dict) and part.get("type") == "text" else None
            if not isinstance(piece, str):
                return None
            parts.append(piece)
        text = "\n".join(parts)
    else:
        return None
    text = text.strip()
    if not text:
        return None
    rest = {k: v for k, v in last.items() if k != "content"}
    return text, [*messages[:-1], {**rest, "content": "\x00semantic\x00"}]


def guards(text: str) -> JSONObject:
    """What must be equal between two messages beyond similarity: the numbers (digits or words, in order), the
    time expressions (in order), the units and periods (in any order), and negation."""
    numbers: list[JSONValue] = [_NUMBER_WORDS.get(n.lower(), n) for n in _NUMBER.findall(text)]
    times: list[JSONValue] = [" ".join(_TIME_SPACE.split(t.lower().rstrip("s"))) for t in _TIME.findall(text)]
    units: list[JSONValue] = list(sorted(_UNITS[u.lower().replace(" ", "")] for u in _UNIT.findall(text)))
    return {"numbers": numbers, "times": times, "units": units, "negated": bool(_NEGATION.search(text))}


def partition_of(text: str, exact_material: JSONObject) -> str:
    material = {"v": _VERSION, "exact": exact_material, "guards": guards(text)}
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


def semantic_query(
    fmt: str,
    route: Route,
    scope_id: str,
    body: Mapping[str, JSONValue],
    threshold: float,
    normalise: Callable[[str, JSONValue], JSONValue],
) -> SemanticQuery | None:
    """The request's ``SemanticQuery``, or ``None`` when it has no last user text message to compare."""
    split = last_user_text(body.get("messages"))
    if split is None:
        return None
    text, earlier = split
    exact: JSONObject = {
        "format": fmt,
        "route": [[d.provider, d.model] for d in route.candidates],
        "scope": scope_id,
        "body": {
            k: normalise(k, earlier if k == "messages" else v)
            for k, v in body.items()
            if k not in _IGNORED and v is not None
        },
    }
    return SemanticQuery(partition_of(text, exact), text, threshold)


class SemanticCache:
    """The embedder, one index per embedding space, and (with Redis) one shared stream per space."""

    def __init__(
        self,
        settings: SemanticCacheSettings,
        *,
        redis_url: str | None = None,
        key_prefix: str = "tollgate:cache:",
        timeout_seconds: float = 0.2,
        data_dir: Path | None = None,
        encoder: Encoder | None = None,
        embed_call: ProviderEmbed | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from tollgate.policies.semantic_embedders import MiniLMEmbedder, ProviderEmbedder

        self.settings = settings
        self.clock = clock
        self.embedder: Embedder
        if settings.embedder == "provider":
            if embed_call is None:
                raise ValueError("the provider embedder needs the gateway's embeddings call")
            self.embedder = ProviderEmbedder(settings, embed_call)
        else:
            cache_dir = Path(settings.model_cache_dir) if settings.model_cache_dir else None
            if cache_dir is None and data_dir is not None:
                cache_dir = data_dir / "embeddings"
            self.embedder = MiniLMEmbedder(settings, cache_dir, encoder)
        # One index (and stream) per embedding space, made when its first vector arrives: a provider's dimension
        # is known only then, and vectors of two models must never be compared.
        self.indexes: dict[str, VectorIndex] = {}
        self.logs: dict[str, RedisVectorLog] = {}
        self._redis_url = redis_url
        self._key_prefix = key_prefix
        self._timeout = timeout_seconds
        self._started = False

    @property
    def ready(self) -> bool:
        return self.embedder.ready

    def embedding_failures(self) -> int:
        """Failed provider embeddings calls (each a miss); always 0 with MiniLM, whose failures are load errors."""
        return int(getattr(self.embedder, "failures", 0))

    def index_for(self, space: str, dim: int) -> VectorIndex:
        """The index of ``space`` (created, and with Redis its stream followed, on first use)."""
        index = self.indexes.get(space)
        if index is not None:
            return index
        from tollgate.state.semantic_index import VectorIndex

        index = self.indexes[space] = VectorIndex(dim, max_entries=self.settings.max_entries, clock=self.clock)
        if self._redis_url is not None:
            from tollgate.state.semantic_redis import RedisVectorLog

            log_ = self.logs[space] = RedisVectorLog(
                self._redis_url,
                index,
                key_prefix=self._key_prefix,
                space=space,
                max_entries=self.settings.max_entries,
                timeout_seconds=self._timeout,
            )
            if self._started:  # a space met while serving: read what other replicas stored, in the background
                log_.start_soon()
        return index

    async def start(self) -> None:
        """Start the embedder; with MiniLM (whose space is known) also load the shared index."""
        await self.embedder.start()
        from tollgate.policies.semantic_embedders import MiniLMEmbedder

        embedder = self.embedder
        if isinstance(embedder, MiniLMEmbedder) and embedder.encoder is not None:
            from tollgate.embeddings import DIMENSIONS
            from tollgate.policies.semantic_embedders import space_of

            self.index_for(space_of("minilm." + embedder.encoder.name, DIMENSIONS), DIMENSIONS)
        elif self._redis_url is not None:
            # A provider's spaces are known once a vector arrives; those other replicas already filled are
            # loaded now, so this replica's first lookups can hit. (A space first met later is followed from then
            # on: that first lookup misses.)
            from tollgate.state.semantic_redis import shared_spaces

            for space, dim in await shared_spaces(self._redis_url, self._key_prefix, self._timeout):
                self.index_for(space, dim)
        for log_ in self.logs.values():
            await log_.start()
        self._started = True

    async def stop(self) -> None:
        for log_ in self.logs.values():
            await log_.aclose()
        await self.embedder.stop()

    async def embed(self, query: SemanticQuery) -> Embedding | None:
        """The query's vector (computed once per request: a failed call is not repeated for the store)."""
        if not query.embedded:
            query.embedded = True
            query.embedding = await self.embedder.embed(query.text, query.caller)
        return query.embedding

    async def search(self, query: SemanticQuery) -> list[tuple[str, float]]:
        """Keys of cached answers that may serve ``query``, most similar first."""
        found = await self.embed(query)
        if found is None:
            return []
        index = self.indexes.get(found.space)
        if index is None:
            self.index_for(found.space, int(found.vector.shape[0]))
            return []
        matches = index.search(query.partition, found.vector, query.threshold)
        return [(m.key, m.similarity) for m in matches if compatible(query.text, m.text, m.similarity)]

    def forget(self, key: str) -> None:
        for index in self.indexes.values():
            index.remove(key)

    async def remember(self, query: SemanticQuery, key: str, ttl_seconds: float) -> None:
        found = await self.embed(query)
        if found is None:
            return
        expires_at = self.clock() + ttl_seconds
        self.index_for(found.space, int(found.vector.shape[0])).add(
            query.partition, key, found.vector, expires_at, query.text
        )
        log_ = self.logs.get(found.space)
        if log_ is not None:
            await log_.publish(query.partition, key, found.vector, expires_at, query.text)

    async def clear(self) -> int:
        count = sum(index.clear() for index in self.indexes.values())
        for log_ in self.logs.values():
            await log_.clear()
        return count

    def report(self) -> JSONObject:
        spaces: JSONObject = {}
        totals = {"entries": 0, "partitions": 0, "bytes": 0}
        for space, index in self.indexes.items():
            stats = index.stats()
            spaces[space] = {k: int(v) for k, v in stats.items()}
            for k in totals:
                totals[k] += int(stats[k])
        return {
            **self.embedder.report(),
            "threshold": self.settings.threshold,
            "shared": self._redis_url is not None,
            **totals,
            "spaces": spaces,
        }
