"""Block lists on answers: words, phrases and patterns in named categories, found in whole texts or in streams.

``OutputMatcher`` compiles every category into one case-insensitive regular expression and knows the longest
text a match can span. ``StreamScanner`` scans a text that arrives in pieces: it holds back only the tail that
could still be the start of a match (at most the longest match, plus one character for the word-boundary
check after it), so a match split across chunks is found while everything before it goes out at once.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tollgate.config.guardrails import OutputAction, OutputFilterCategory

_parser: Any = importlib.import_module("re._parser")  # the regex parser, for the widest match of a pattern
_UNBOUNDED = 1 << 32
_SPACE = r"\s{1,3}"  # a space in a listed phrase matches up to three whitespace characters


@dataclass(frozen=True, slots=True)
class Category:
    name: str
    action: OutputAction


@dataclass(slots=True)
class Hit:
    """What one category found: how many matches, and which action applies; never the matched text."""

    category: Category
    count: int = 0


def _word_pattern(word: str) -> tuple[str, int]:
    parts = word.split()
    body = _SPACE.join(re.escape(p) for p in parts)
    width = sum(len(p) for p in parts) + 3 * (len(parts) - 1)
    return rf"(?<!\w){body}(?!\w)", width


def _pattern_width(pattern: str, unbounded: int) -> int:
    try:
        width = int(_parser.parse(pattern, re.IGNORECASE).getwidth()[1])
    except Exception:  # a parser change must not break start-up: assume the configured bound
        return unbounded
    return unbounded if width >= _UNBOUNDED else width


class OutputMatcher:
    """The compiled categories. Built once per config version; shared by every request."""

    def __init__(self, categories: dict[str, OutputFilterCategory], max_pattern_chars: int) -> None:
        alternatives: list[str] = []
        self.categories: list[Category] = []
        self.longest = 0
        for name, cat in categories.items():
            parts: list[str] = []
            for word in cat.words:
                if word.strip():
                    pattern, width = _word_pattern(word)
                    parts.append(pattern)
                    self.longest = max(self.longest, width)
            for pattern in cat.patterns:
                parts.append(f"(?:{pattern})")
                self.longest = max(self.longest, _pattern_width(pattern, max_pattern_chars))
            if parts:
                alternatives.append(f"(?P<c{len(self.categories)}>{'|'.join(parts)})")
                self.categories.append(Category(name, cat.action))
        self.regex = re.compile("|".join(alternatives), re.IGNORECASE) if alternatives else None
        # Held back at the end of a stream's text: the longest match, and one character after it for (?!\w).
        self.hold = self.longest + 1 if alternatives else 0

    def category_of(self, match: re.Match[str]) -> Category:
        group = match.lastgroup
        assert group is not None
        return self.categories[int(group[1:])]

    def apply(
        self, text: str, hits: dict[str, Hit], placeholder: str, start: int = 0, limit: int | None = None
    ) -> tuple[str, int, Category | None]:
        """Scan ``text`` from ``start`` for matches that begin before ``limit`` (default: the end).

        Returns the text from ``start`` up to the cut (the limit, or the end of the last match found, if later)
        with masked matches replaced, the cut, and the first category whose action is ``block`` (then the
        caller refuses the answer and the text is of no use). ``hits`` counts matches per category."""
        end = len(text) if limit is None else limit
        regex = self.regex
        if regex is None or start >= len(text):
            return text[start:end], max(end, start), None
        out: list[str] = []
        pos = start
        cut = end
        for match in regex.finditer(text, start):
            if match.start() >= end:
                break
            category = self.category_of(match)
            hit = hits.get(category.name)
            if hit is None:
                hit = hits[category.name] = Hit(category)
            hit.count += 1
            if category.action == "block":
                return "", cut, category
            cut = max(cut, match.end())
            if category.action == "mask":
                out.append(text[pos : match.start()])
                out.append(placeholder.replace("{category}", category.name))
                pos = match.end()
        out.append(text[pos:cut])
        return "".join(out), cut, None


@dataclass(slots=True)
class StreamScanner:
    """One streamed text (one choice of one answer): pieces in, the text that is safe to send out."""

    matcher: OutputMatcher
    placeholder: str
    hits: dict[str, Hit] = field(default_factory=dict)
    held: str = ""
    before: str = ""  # the last character sent, for the word-boundary check at the start of the held text

    def feed(self, piece: str, final: bool = False) -> tuple[str, Category | None]:
        """What may go out now; with ``final`` everything held is scanned and released."""
        text = self.before + self.held + piece
        start = len(self.before)
        limit = None if final else len(text) - self.matcher.hold
        if limit is not None and limit <= start:
            self.held += piece
            return "", None
        out, cut, blocked = self.matcher.apply(text, self.hits, self.placeholder, start, limit)
        if blocked is not None:
            return "", blocked
        self.before = text[cut - 1 : cut] if cut > 0 else ""
        self.held = text[cut:]
        return out, None


def merged(hits: Iterable[dict[str, Hit]]) -> dict[str, Hit]:
    """The hits of several scanners (the choices of one answer), added up per category."""
    total: dict[str, Hit] = {}
    for one in hits:
        for name, hit in one.items():
            got = total.get(name)
            if got is None:
                total[name] = Hit(hit.category, hit.count)
            else:
                got.count += hit.count
    return total
