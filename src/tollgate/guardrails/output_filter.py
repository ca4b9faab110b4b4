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


Trie = dict[str, "Trie"]
_END = ""  # marks the end of a word in the trie


def _trie_pattern(node: Trie) -> str:
    """A regex for the words under ``node``, factored by common prefixes, so that at each position of the text
    one character is compared per level instead of every word being tried in turn."""
    branches = [tok + _trie_pattern(child) for tok, child in node.items() if tok != _END]
    if not branches:
        return ""
    if _END in node:  # a word may end here: the longer continuations are tried first (greedy)
        return f"(?:{'|'.join(branches)})?"
    return branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"


def _words_pattern(words: tuple[str, ...]) -> tuple[str, int]:
    """One pattern for a category's words, with the whole-word checks shared: an order of magnitude faster
    than one alternative per word when a category lists many words."""
    trie: Trie = {}
    longest = 0
    for word in words:
        parts = word.lower().split()
        if not parts:
            continue
        longest = max(longest, sum(len(p) for p in parts) + 3 * (len(parts) - 1))
        node = trie
        for i, part in enumerate(parts):
            if i:
                node = node.setdefault(_SPACE, {})
            for char in part:
                node = node.setdefault(re.escape(char), {})
        node[_END] = {}
    if not trie:
        return "", 0
    return rf"(?<!\w){_trie_pattern(trie)}(?!\w)", longest


def _pattern_width(pattern: str, unbounded: int) -> int:
    try:
        width = int(_parser.parse(pattern, re.IGNORECASE).getwidth()[1])
    except Exception:  # a parser change must not break start-up: assume the configured bound
        return unbounded
    return unbounded if width >= _UNBOUNDED else width


def _first_chars(items: Any) -> set[str] | None:
    """The characters a parsed pattern's match can start with, or ``None`` when that is not simply known."""
    if not len(items):
        return None
    op, arg = items[0]
    name = str(op)
    if name == "LITERAL":
        return {chr(arg)}
    if name == "IN":
        out: set[str] = set()
        for kind, value in arg:
            if str(kind) == "LITERAL":
                out.add(chr(value))
            elif str(kind) == "RANGE" and value[1] - value[0] < 64:
                out.update(chr(c) for c in range(value[0], value[1] + 1))
            else:
                return None
        return out
    if name == "SUBPATTERN":
        return _first_chars(arg[-1])
    if name == "BRANCH":
        union: set[str] = set()
        for branch in arg[1]:
            got = _first_chars(branch)
            if got is None:
                return None
            union |= got
        return union
    if name in ("MAX_REPEAT", "MIN_REPEAT") and arg[0] >= 1:
        return _first_chars(arg[2])
    return None


def _starts(pattern: str) -> set[str] | None:
    try:
        return _first_chars(_parser.parse(pattern, re.IGNORECASE))
    except Exception:
        return None


class OutputMatcher:
    """The compiled categories. Built once per config version; shared by every request."""

    def __init__(self, categories: dict[str, OutputFilterCategory], max_pattern_chars: int) -> None:
        alternatives: list[str] = []
        self.categories: list[Category] = []
        self.longest = 0
        # Every character a match can start with, when known for all of them: a look-ahead on that set in front
        # lets the engine skip the other positions cheaply (about three times faster on ordinary prose).
        starts: set[str] | None = set()
        for name, cat in categories.items():
            parts: list[str] = []
            words, width = _words_pattern(cat.words)
            if words:
                parts.append(words)
                self.longest = max(self.longest, width)
                if starts is not None:
                    starts.update(w.strip()[0] for w in cat.words if w.strip())
            for pattern in cat.patterns:
                parts.append(f"(?:{pattern})")
                self.longest = max(self.longest, _pattern_width(pattern, max_pattern_chars))
                first = _starts(pattern)
                starts = None if first is None or starts is None else starts | first
            if parts:
                alternatives.append(f"(?P<c{len(self.categories)}>{'|'.join(parts)})")
                self.categories.append(Category(name, cat.action))
        combined = "|".join(alternatives)
        if starts:
            chars = {c for s in starts for c in (s, s.lower(), s.upper()) if len(c) == 1}
            combined = f"(?=[{''.join(sorted(re.escape(c) for c in chars))}])(?:{combined})"
        self.regex = re.compile(combined, re.IGNORECASE) if alternatives else None
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
