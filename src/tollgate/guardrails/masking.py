"""The actions on detected values (mask, redact, hash) and the reverse mapping that restores masked values."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from tollgate.config.guardrails import Action, EntityType
from tollgate.guardrails.pii import Match

REDACTED = "[REDACTED]"
HASH_HEX_CHARS = 12
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*_\d+>")


def placeholder(entity: EntityType, number: int) -> str:
    return f"<{entity}_{number}>"


@dataclass(slots=True)
class MaskSession:
    """The masking state of one request: placeholder numbers per type, counts, and (reversible) the originals.

    The same value gets the same placeholder everywhere in the request, so the model can still tell two
    people's emails apart and refer back to one. Never shared between requests."""

    actions: Mapping[EntityType, Action]
    default_action: Action = "mask"
    salt: bytes = b""
    reversible: bool = False
    counts: dict[EntityType, int] = field(default_factory=dict)
    originals: dict[str, str] = field(default_factory=dict)  # placeholder -> value, kept only when reversible
    _assigned: dict[tuple[EntityType, str], str] = field(default_factory=dict)
    _numbers: dict[EntityType, int] = field(default_factory=dict)

    def action_for(self, entity: EntityType) -> Action:
        return self.actions.get(entity, self.default_action)

    def replacement(self, entity: EntityType, value: str) -> str | None:
        """What replaces ``value`` (``None``: leave it); counts it either way."""
        self.counts[entity] = self.counts.get(entity, 0) + 1
        action = self.action_for(entity)
        if action == "mask":
            key = (entity, value)
            ph = self._assigned.get(key)
            if ph is None:
                number = self._numbers.get(entity, 0) + 1
                self._numbers[entity] = number
                ph = self._assigned[key] = placeholder(entity, number)
                if self.reversible:
                    self.originals[ph] = value
            return ph
        if action == "redact":
            return REDACTED
        if action == "hash":
            digest = hashlib.sha256(self.salt + value.encode()).hexdigest()[:HASH_HEX_CHARS]
            return f"<{entity}:{digest}>"
        return None  # allow; block is decided by the caller before anything is rewritten

    def apply(self, text: str, matches: list[Match]) -> str:
        """``text`` with every match (non-overlapping, in order) replaced according to its type's action."""
        if not matches:
            return text
        out: list[str] = []
        pos = 0
        for m in matches:
            new = self.replacement(m.entity, text[m.start : m.end])
            if new is None:
                continue
            out.append(text[pos : m.start])
            out.append(new)
            pos = m.end
        out.append(text[pos:])
        return "".join(out)

    def restore(self, text: str) -> str:
        """Put the original values back in place of this request's placeholders (reversible mode)."""
        if not self.originals or "<" not in text:
            return text
        originals = self.originals
        return _PLACEHOLDER.sub(lambda m: originals.get(m.group(), m.group()), text)

    def restorer(self) -> PlaceholderRestorer:
        return PlaceholderRestorer(self.originals)


class PlaceholderRestorer:
    """Restores placeholders in streamed text, where one may be split across chunks.

    A chunk's tail that could still grow into a placeholder is held back until the next chunk (or
    ``flush``); nothing else is delayed. The most ever held is ``hold_back`` characters: the longest
    placeholder's length minus one, since a complete placeholder is replaced at once."""

    __slots__ = ("_mapping", "_pending", "hold_back")

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._mapping = dict(mapping)
        self._pending = ""
        self.hold_back = max((len(p) for p in self._mapping), default=1) - 1

    @property
    def held(self) -> int:
        """How many characters are held back right now."""
        return len(self._pending)

    def feed(self, chunk: str) -> str:
        """The restored text that is safe to emit now."""
        if not self._mapping:
            return chunk
        text = self._pending + chunk
        cut = len(text)
        lt = text.rfind("<", max(0, len(text) - self.hold_back))
        if lt >= 0:
            tail = text[lt:]
            if any(len(p) > len(tail) and p.startswith(tail) for p in self._mapping):
                cut = lt
        self._pending = text[cut:]
        return self._restore(text[:cut])

    def flush(self) -> str:
        """Whatever is still held back (the stream ended): a partial placeholder is emitted as it is."""
        text, self._pending = self._pending, ""
        return self._restore(text)

    def _restore(self, text: str) -> str:
        if "<" not in text:
            return text
        mapping = self._mapping
        return _PLACEHOLDER.sub(lambda m: mapping.get(m.group(), m.group()), text)
