"""Block lists on tool-call arguments: JSON text screened as a reader of the JSON sees it, masked so it stays JSON.

A tool call's ``arguments`` is JSON text, streamed in pieces. ``ArgsScanner`` decodes the escapes inside its
strings before matching (``"line\\nsecret"`` must find ``secret`` after a line break, which the raw text hides
behind the ``n`` of ``\\n``), holds back the same tail as the text scanner, and maps each match back to the raw
text. A masked match inside one string becomes the JSON-escaped placeholder; a match that is a whole number
token becomes the placeholder as a JSON string; any other mask match (across quotes, keys and values, or
structure) cannot be masked without breaking the JSON, so it blocks the answer instead.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field

import orjson

from tollgate.guardrails.output_filter import Category, Hit, OutputMatcher

_SPECIAL = re.compile(r'["\\]')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_NUMBER_CHARS = frozenset("0123456789+-.eE")


@dataclass(slots=True)
class _Decoded:
    """One window of raw argument text, decoded: what a reader sees, and the way back to the raw text."""

    view: str
    end: int  # raw characters decoded (fewer than the window when it ends inside an escape)
    marks: list[int]  # view positions of decoded escapes, ascending
    extra: list[int]  # raw characters those escapes and all before them took beyond one each
    strings: list[tuple[int, int]]  # view spans of string contents: [start, end], end at the closing quote

    def raw_at(self, pos: int) -> int:
        k = bisect_left(self.marks, pos)
        return pos + (self.extra[k - 1] if k else 0)

    def string_of(self, start: int, end: int) -> bool:
        """Whether view[start:end] lies inside the contents of one string."""
        return any(a <= start and end <= b for a, b in self.strings)

    def in_string(self, pos: int) -> bool:
        """Whether the lexer is inside a string right before view[pos] (for the next window)."""
        return any(a <= pos <= b for a, b in self.strings)


def _decode(raw: str, in_string: bool) -> _Decoded:
    """Decode the escapes of the strings in ``raw``; quotes and everything outside strings stay as they are."""
    parts: list[str] = []
    marks: list[int] = []
    extra: list[int] = []
    strings: list[tuple[int, int]] = []
    opened = 0  # view position where the current string's contents start
    size = 0  # view characters so far
    added = 0  # raw characters beyond one per view character so far
    pos = 0
    end = len(raw)
    while True:
        found = _SPECIAL.search(raw, pos)
        if found is None:
            parts.append(raw[pos:])
            size += end - pos
            break
        i = found.start()
        parts.append(raw[pos:i])
        size += i - pos
        if raw[i] == '"':
            if in_string:
                strings.append((opened, size))
            else:
                opened = size + 1
            in_string = not in_string
            parts.append('"')
            size += 1
            pos = i + 1
            continue
        if not in_string:  # a backslash outside a string is not JSON: keep it as it is
            parts.append("\\")
            size += 1
            pos = i + 1
            continue
        if i + 1 >= end or (raw[i + 1] == "u" and i + 6 > end):
            end = i  # the escape is not complete yet: decoded with the next piece
            break
        if raw[i + 1] == "u":
            try:
                char, width = chr(int(raw[i + 2 : i + 6], 16)), 6
            except ValueError:
                char, width = "u", 2
        else:
            char, width = _ESCAPES.get(raw[i + 1], raw[i + 1]), 2
        parts.append(char)
        added += width - 1
        marks.append(size)
        extra.append(added)
        size += 1
        pos = i + width
    if in_string:
        strings.append((opened, size))
    return _Decoded("".join(parts), end, marks, extra, strings)


@dataclass(slots=True)
class ArgsScanner:
    """One tool call's streamed arguments: raw JSON pieces in, the raw JSON that is safe to send out."""

    matcher: OutputMatcher
    placeholder: str
    hits: dict[str, Hit] = field(default_factory=dict)
    held: str = ""  # raw text not yet sent
    before: str = ""  # the last character sent, as the reader sees it, for the word-boundary check
    in_string: bool = False  # whether the held text starts inside a string

    def feed(self, piece: str, final: bool = False) -> tuple[str, Category | None]:
        """What may go out now; with ``final`` everything held is scanned and released. A category is returned
        when the answer must be blocked (a blocking match, or a mask match that cannot be masked in JSON)."""
        raw = self.held + piece
        # Without a backslash the reader's text is the raw text: the string spans are only worked out when a
        # mask needs them (most pieces), which halves the cost per argument delta.
        decoded = _decode(raw, self.in_string) if "\\" in raw else None
        view = raw if decoded is None else decoded.view
        text = self.before + view
        start = len(self.before)
        limit = len(text) if final else len(text) - self.matcher.hold
        regex = self.matcher.regex
        if limit <= start and not final:
            self.held = raw
            return "", None
        out: list[str] = []
        pos = 0  # raw position copied up to
        cut = limit
        if regex is not None:
            for match in regex.finditer(text, start):
                if match.start() >= limit:
                    break
                category = self.matcher.category_of(match)
                hit = self.hits.get(category.name)
                if hit is None:
                    hit = self.hits[category.name] = Hit(category)
                hit.count += 1
                if category.action == "block":
                    return "", category
                cut = max(cut, match.end())
                if category.action != "mask":
                    continue
                first, last = match.start() - start, match.end() - start
                mask = self.placeholder.replace("{category}", category.name)
                if decoded is None:
                    decoded = _decode(raw, self.in_string)
                if decoded.string_of(first, last):
                    replacement = orjson.dumps(mask).decode()[1:-1]
                elif self._number(text, match, final):
                    replacement = orjson.dumps(mask).decode()
                else:
                    return "", Category(category.name, "block")
                out.append(raw[pos : decoded.raw_at(first)])
                out.append(replacement)
                pos = decoded.raw_at(last)
        view_cut = cut - start
        if decoded is None:
            raw_cut = len(raw) if final else view_cut
            self.in_string = self.in_string != (raw.count('"', 0, raw_cut) % 2 == 1)  # no escaped quotes here
        else:
            raw_cut = len(raw) if final else decoded.raw_at(view_cut)
            self.in_string = decoded.in_string(view_cut)
        out.append(raw[pos:raw_cut])
        self.before = text[cut - 1 : cut] if cut > 0 else ""
        self.held = raw[raw_cut:]
        return "".join(out), None

    @staticmethod
    def _number(text: str, match: re.Match[str], final: bool) -> bool:
        """Whether a match outside strings is one whole number token (then a string may take its place)."""
        if _NUMBER.fullmatch(match.group()) is None:
            return False
        before = text[match.start() - 1] if match.start() else ""
        after = text[match.end()] if match.end() < len(text) else ""
        if not after and not final:
            return False  # the number may go on in the next piece
        return before not in _NUMBER_CHARS and after not in _NUMBER_CHARS
