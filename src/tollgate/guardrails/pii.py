"""Detectors of PII and secrets in text: precompiled patterns, validated by checksums, context or a parser."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import phonenumbers

from tollgate.config.guardrails import ENTITY_TYPES, EntityType
from tollgate.guardrails.checks import IBAN_LENGTHS, card_prefix_ok, iban_ok, jwt_header_ok, luhn_ok, ssn_ok


@dataclass(frozen=True, slots=True)
class Match:
    """One detected value: ``text[start:end]`` is of type ``entity``."""

    start: int
    end: int
    entity: EntityType


# Overlaps are resolved longest first; among spans of one length the type listed earlier wins (most specific).
_ORDER: tuple[EntityType, ...] = (
    "PRIVATE_KEY",
    "JWT",
    "ANTHROPIC_KEY",
    "OPENAI_KEY",
    "GITHUB_TOKEN",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "PASSWORD",
    "EMAIL",
    "IBAN",
    "CREDIT_CARD",
    "US_SSN",
    "UK_NINO",
    "PASSPORT",
    "DATE_OF_BIRTH",
    "IP_ADDRESS",
    "PHONE",
    "STREET_ADDRESS",
    # Found only by the optional NER model (guardrails/ner.py), which yields to every pattern on overlap.
    "PERSON",
    "LOCATION",
)
PRIORITY: dict[EntityType, int] = {e: i for i, e in enumerate(_ORDER)}
assert set(PRIORITY) == set(ENTITY_TYPES)
_LAST_SECRET = PRIORITY["PASSWORD"]

_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?"
    r"|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_DATE = (
    r"(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})"
    rf"|{_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS}\.?,?\s+\d{{4}})"
)
_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Close"
    r"|Crescent|Parkway|Pkwy|Square|Sq|Highway|Hwy|Circle|Cir|Gardens|Grove|Row|Mews)"
)

# Every scan: the entity it finds, its pattern (a context pattern marks the value with the group ``v``, ``w`` or
# ``u``), and which character may not precede a match. That boundary is checked in Python rather than with a
# leading lookbehind, which would keep the regex engine from skipping ahead to the pattern's first character:
# on a 2 KB prompt that is the difference between ~5 and ~40 µs per pattern.
_PATTERNS: dict[str, re.Pattern[str]] = {
    "PRIVATE_KEY": re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----"
        r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=:,\-\s\\n]*)",
        re.DOTALL,
    ),
    "JWT": re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"),
    "ANTHROPIC_KEY": re.compile(r"sk-ant-[A-Za-z0-9_-]{20,}"),
    "OPENAI_KEY": re.compile(r"sk-(?!ant-)(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}"),
    "GITHUB_TOKEN": re.compile(r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?!\w)"),
    "AWS_ACCESS_KEY": re.compile(r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
    "AWS_SECRET_KEY": re.compile(
        r"(?i:aws[_ .-]?secret(?:[_ .-]?access)?(?:[_ .-]?key)?|secret[_ .-]?access[_ .-]?key)"
        r"[\"']?\s*(?:[:=]|=>|is)\s*"
        r"[\"']?(?P<v>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
    ),
    "PASSWORD": re.compile(
        # "DB_PASSWORD=" and "--password=" are labels too; "bypass=" is not (a letter before it).
        r"(?i:(?<![A-Za-z0-9])(?:password|passwd|passphrase|pwd|pass)"
        r"|\"(?:password|passwd|pwd)\"|'(?:password|passwd|pwd)')"
        r"\s*[:=]\s*(?:\"(?P<v>[^\"\n]{1,200})\"|'(?P<w>[^'\n]{1,200})'|(?P<u>[^\s\"',;&]{1,200}))"
    ),
    # The label in German, Spanish, French, Portuguese, Dutch: a scan of its own, run only when one occurs.
    "PASSWORD_LOCAL": re.compile(
        r"(?i:(?<![A-Za-z0-9])(?:passwort|kennwort|contrase[ñn]a|mot de passe|senha|wachtwoord))"
        r"\s*[:=]\s*(?:\"(?P<v>[^\"\n]{1,200})\"|'(?P<w>[^'\n]{1,200})'|(?P<u>[^\s\"',;&]{1,200}))"
    ),
    # "my password is X": only a value that looks like one (see _password_said), not "is incorrect".
    # Case spelled out rather than (?i): a pattern that opens with a literal is searched far faster.
    "PASSWORD_SAID": re.compile(
        r"(?:[Pp]ass(?:word|wort|phrase|code)|PASSWORD|PIN)\b(?:\s+(?:for|to|of)\s+[\w.@-]+)?\s+"
        r"(?:is|was|ist|est|es)\s+(?:now\s+|still\s+)?(?P<v>[^\s\"',;]{4,200})"
    ),
    # Credentials in a URL: scheme://user:password@host.
    "URL_PASSWORD": re.compile(r"://[^\s:/@]{1,100}:(?P<v>[^\s:/@]{1,200})@[\w.-]+"),
    "IBAN": re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"),
    "CREDIT_CARD": re.compile(r"\d{4}(?:[ -]?\d{2,4}){2,4}(?: ?\d{1,3})?(?![\d-]|[.,]\d)"),
    "US_SSN": re.compile(r"(?P<a>\d{3})(?P<s>[- ])(?P<g>\d{2})(?P=s)(?P<n>\d{4})(?![\d-])"),
    "US_SSN_CONTEXT": re.compile(r"(?i:ssn|social security(?: number| no\.?)?)\W{0,4}(?:is\s+)?(?P<v>\d{9})(?!\d)"),
    "UK_NINO": re.compile(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])"),
    "PASSPORT": re.compile(
        r"(?i:passport|reisepass|passeport|pasaporte|passaporto)(?i:nummer|\s+(?:no\.?|number|num\.?|#|id)|\s+n(?:[°º]|o\.?))?"
        r"\s*(?:is\s+)?[:#]?\s*"
        # German and French numbers mix letters and digits: at least two digits, nine characters at most.
        r"(?P<v>[A-Z]{0,2}\d{6,9}|(?=[A-Z0-9]{8,9}(?![A-Za-z0-9]))(?:[A-Z]*\d){2}[A-Z0-9]*)(?![A-Za-z0-9])"
    ),
    "DATE_OF_BIRTH": re.compile(
        # "born" only after a person: "the project was born on ..." is no birth date.
        r"(?:\b(?:I|[Hh]e|[Ss]he|[Tt]hey|[Yy]ou|[Ww]e|[Ww]ho|[A-Z][a-z]+)(?:\s+(?:was|were|is|am|got))?,?\s+born"
        r"|(?m:^[ \t]*)[Bb]orn\b"
        r"|,\s*born\b"
        r"|(?i:\bborn\s*:|\bd\.?o\.?b\.?|\bdate\s+of\s+birth|\bbirth\s*date|\bbirthday|\bgeburtsdatum|\bgeboren"
        r"|\bfecha\s+de\s+nacimiento|\bdate\s+de\s+naissance|\bn[ée]e?\s+le|\bdata\s+di\s+nascita"
        r"|\bdata\s+de\s+nascimento))[^\n\d]{0,24}?"
        rf"(?P<v>{_DATE})(?!\d)"
    ),
    "IPV4": re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w:]|\.\d)"),
    "IPV6": re.compile(
        r"(?<![\w:.])(?=[0-9A-Fa-f:]*::|(?:[0-9A-Fa-f]{1,4}:){7})[0-9A-Fa-f:]{2,39}(?:\.\d{1,3}){0,3}(?![\w:])"
    ),
    "PHONE": re.compile(r"(?:\+|00)?\(?\d[\d ().\-]{5,20}\d(?![\w/:%$€£]|[.\-]\d)"),
    "STREET_ADDRESS": re.compile(
        r"\d{1,5}[A-Za-z]?\s+(?:[A-Z][A-Za-z'-]*\.?\s+){1,4}" + _STREET_SUFFIX + r"\b"
        r"(?:,?\s+(?:Apt|Apartment|Suite|Unit|Flat|#)\.?\s*\w{1,5})?"
    ),
}
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}\Z")
_EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![\w-])")
_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})

Prefilter = Callable[[str, str], bool]  # (text, lowercased text) -> may the pattern match?
Before = Callable[[str], bool]  # the character before a match -> must it not be there?


def _word(c: str) -> bool:
    return c.isalnum() or c == "_"


def _word_dash(c: str) -> bool:
    return c.isalnum() or c in "_-"


def _alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def _run(t: str, low: str) -> bool:
    """Marks the scans that run only on the runs of digits of a text (see ``PIIDetector._scan_runs``)."""
    return True


_RUN = _run
# A run of digits and the separators numbers are written with; every number-shaped type starts in or next to one.
_NUM_RUN = re.compile(r"\d[\d .()\-/]*")
_RUN_SEPARATORS = " .()-/"
_ADDRESS_START = re.compile(r"\d{1,5}[A-Za-z]?\s+[A-Z]")
# Fewest digits a value of each number-shaped scan has.
_MIN_DIGITS = {"CREDIT_CARD": 13, "US_SSN": 9, "PHONE": 7, "IPV4": 4}

# (scan name, entity, prefilter, forbidden preceding character)
_SCANS: tuple[tuple[str, EntityType, Prefilter, Before | None], ...] = (
    ("PRIVATE_KEY", "PRIVATE_KEY", lambda t, low: "PRIVATE KEY" in t, None),
    ("JWT", "JWT", lambda t, low: "eyJ" in t, _word_dash),
    ("ANTHROPIC_KEY", "ANTHROPIC_KEY", lambda t, low: "sk-ant-" in t, _word_dash),
    ("OPENAI_KEY", "OPENAI_KEY", lambda t, low: "sk-" in t, _word_dash),
    ("GITHUB_TOKEN", "GITHUB_TOKEN", lambda t, low: "gh" in t or "github_pat_" in t, _word_dash),
    (
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY",
        lambda t, low: "AKIA" in t or "ASIA" in t or "ABIA" in t or "ACCA" in t,
        _alnum,
    ),
    ("AWS_SECRET_KEY", "AWS_SECRET_KEY", lambda t, low: "secret" in low, None),
    ("PASSWORD", "PASSWORD", lambda t, low: "pass" in low or "pwd" in low, None),
    ("PASSWORD_LOCAL", "PASSWORD", lambda t, low: _password_words(low), None),
    ("PASSWORD_SAID", "PASSWORD", lambda t, low: "pass" in low or "PIN" in t, _alnum),
    ("URL_PASSWORD", "PASSWORD", lambda t, low: "://" in t and "@" in t, None),
    ("EMAIL", "EMAIL", lambda t, low: "@" in t, None),
    ("IBAN", "IBAN", _RUN, _alnum),
    ("CREDIT_CARD", "CREDIT_CARD", _RUN, lambda c: c.isdigit() or c in ".,-"),
    ("US_SSN", "US_SSN", _RUN, lambda c: c.isdigit() or c == "-"),
    ("US_SSN_CONTEXT", "US_SSN", lambda t, low: "ssn" in low or "social security" in low, None),
    ("UK_NINO", "UK_NINO", _RUN, _alnum),
    (
        "PASSPORT",
        "PASSPORT",
        lambda t, low: "passport" in low or "reisepass" in low or "passeport" in low or "pasaport" in low,
        None,
    ),
    (
        "DATE_OF_BIRTH",
        "DATE_OF_BIRTH",
        lambda t, low: "birth" in low or "born" in low or "dob" in low or "d.o.b" in low or _birth_words(low),
        None,
    ),
    ("IPV4", "IP_ADDRESS", _RUN, lambda c: _word(c) or c in ".:"),
    ("IPV6", "IP_ADDRESS", lambda t, low: "::" in t or t.count(":") >= 7, None),
    ("PHONE", "PHONE", _RUN, lambda c: _word(c) or c in "+#/.$€£-"),
    ("STREET_ADDRESS", "STREET_ADDRESS", _RUN, lambda c: _word(c) or c in ".,-"),
)


def _birth_words(low: str) -> bool:
    """A birth-date label in German, Spanish, French, Italian or Portuguese."""
    return any(w in low for w in ("geburt", "geboren", "nacimiento", "naissance", "né", "nascit", "nascim"))


def _password_words(low: str) -> bool:
    """A password label in German, Spanish, French, Portuguese or Dutch."""
    return (
        "passwort" in low
        or "kennwort" in low
        or "contrase" in low
        or "mot de passe" in low
        or "senha" in low
        or "wachtwoord" in low
    )


_DATE_LIKE = re.compile(r"\d{4}[-./ ]\d{1,2}[-./ ]\d{1,2}|\d{1,2}[-./ ]\d{1,2}[-./ ]\d{2,4}")
_IPV4_LIKE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_CONTEXT_GROUPS = ("v", "w", "u")
_PLACEHOLDER_OPENERS = ("<", "{", "${", "%(")


def _is_placeholder(value: str) -> bool:
    """Already hidden ("********", "${DB_PASSWORD}") or a template's slot ("<your password>", "{password}")."""
    return _MASKED.fullmatch(value) is not None or value.startswith(_PLACEHOLDER_OPENERS)


_PASSWORD_SYMBOLS = frozenset("!@#$%^&*?+=~_")


# Values already hidden: a placeholder (ours or another gateway's), a hash, [REDACTED]. An NER model must not
# take "<PERSON_1>" for a name or mask inside it.
_HIDDEN = re.compile(r"<[A-Z][A-Z_]*(?:_\d+|:[0-9a-f]+)>|\[REDACTED\]")
_MASKED = re.compile(r"[*x•.#<>\[\]_-]+|<[A-Z_]+(?:_\d+|:[0-9a-f]+)>|\[REDACTED\]|\$\{?\w+\}?", re.IGNORECASE)
# An address needs context: a word that introduces one before it, or a unit, city or postcode after it.
_ADDRESS_BEFORE = re.compile(
    r"(?i:\b(?:at|to|address|addr|live|lives|living|located|ship|shipping|deliver|delivery|office|moved|visit|"
    r"from|resides?|residence|home|headquarters|hq|mail|send|billing|outside|near|opposite|corner of)\b"
    r"[^.!?\n]{0,25}$|:\s*$)"
)
_ADDRESS_AFTER = re.compile(r",\s*[A-Z][a-z]+|\s*,?\s*(?:Apt|Apartment|Suite|Unit|Flat|#)|\s*,?\s*[A-Z]{2}\s+\d{5}")


def _value_span(m: re.Match[str]) -> tuple[int, int]:
    for name in _CONTEXT_GROUPS:
        if name in m.re.groupindex and m.group(name) is not None:
            return m.span(name)
    return m.span()


class PIIDetector:
    """Finds PII and secrets of the enabled types; built once per config, safe to share between requests."""

    def __init__(self, entities: Iterable[EntityType] = ENTITY_TYPES, phone_regions: Iterable[str] = ("US", "GB")):
        wanted = set(entities)
        self.entities: tuple[EntityType, ...] = tuple(e for e in PRIORITY if e in wanted)
        self.phone_regions = tuple(phone_regions)
        validators: dict[str, Callable[[str, re.Match[str]], Match | None]] = {
            "JWT": self._jwt,
            "IBAN": self._iban,
            "CREDIT_CARD": self._card,
            "US_SSN": self._ssn,
            "US_SSN_CONTEXT": self._ssn_context,
            "UK_NINO": self._nino,
            "IPV4": self._ipv4,
            "IPV6": self._ipv6,
            "PHONE": self._phone,
            "PASSWORD": self._password,
            "PASSWORD_LOCAL": self._password,
            "PASSWORD_SAID": self._password_said,
            "URL_PASSWORD": self._url_password,
            "STREET_ADDRESS": self._address,
        }
        self._scans = tuple(
            (_PATTERNS[name], entity, pre, before, validators.get(name))
            for name, entity, pre, before in _SCANS
            if entity in wanted and pre is not _RUN and name != "EMAIL"
        )
        self._run_scans = tuple(
            (name, _PATTERNS[name], entity, before, validators.get(name))
            for name, entity, pre, before in _SCANS
            if entity in wanted and pre is _RUN
        )
        self._email = "EMAIL" in wanted

    def find(self, text: str) -> list[Match]:
        """Every detected value in ``text``, non-overlapping, in text order."""
        if len(text) < 6:
            return []
        low = text.lower()
        found: list[Match] = _find_emails(text) if self._email and "@" in text else []
        for pattern, entity, pre, before, validate in self._scans:
            if pre(text, low):
                _search(pattern, entity, before, validate, text, 0, len(text), found)
        if self._run_scans:
            self._scan_runs(text, found)
        return resolve_overlaps(found) if len(found) > 1 else found

    def _scan_runs(self, text: str, found: list[Match]) -> None:
        """One pass over the runs of digits; each number-shaped pattern runs only where its value could be.

        A prose text has a few dozen short runs ("3.11.4", "2024", "$1,299.00"), so this costs about one
        pattern scan instead of one per type."""
        size = len(text)
        scans = self._run_scans
        for run in _NUM_RUN.finditer(text):
            s, e = run.span()
            chunk = run.group()
            digits = len(chunk) - sum(chunk.count(c) for c in _RUN_SEPARATORS)
            lettered = s >= 2 and text[s - 2].isupper() and (text[s - 1].isupper() or text[s - 1] == " ")
            if digits < 4 and not lettered and not _ADDRESS_START.match(text, s):
                continue  # "42", "3.11", "v2": nothing starts here
            ws = s  # a phone number may open with "+" or "("
            while ws > 0 and s - ws < 2 and text[ws - 1] in "+(":
                ws -= 1
            endpos = min(size, e + 2)  # lookaheads see the two characters after the run
            for name, pattern, entity, before, validate in scans:
                if name == "IBAN" or name == "UK_NINO":
                    if lettered:
                        _match_letter_prefixed(pattern, before, validate, entity, text, s, found)
                elif name == "STREET_ADDRESS":
                    if _ADDRESS_START.match(text, s) and (s == 0 or before is None or not before(text[s - 1])):
                        m = pattern.match(text, s)
                        hit = None if m is None else validate(text, m) if validate else Match(*m.span(), entity)
                        if hit is not None:
                            found.append(hit)
                elif digits >= _MIN_DIGITS[name] and (name != "IPV4" or chunk.count(".") >= 3):
                    _search(pattern, entity, before, validate, text, ws, endpos, found)

    # Validators: the pattern found a candidate; the checksum, parser or context decides.

    @staticmethod
    def _jwt(text: str, m: re.Match[str]) -> Match | None:
        header = m.group().split(".", 1)[0]
        return Match(m.start(), m.end(), "JWT") if jwt_header_ok(header) else None

    @staticmethod
    def _iban(text: str, m: re.Match[str]) -> Match | None:
        raw = m.group()
        need = IBAN_LENGTHS.get(raw[:2])
        if need is None:
            return None
        # The pattern may take a following capitalised word; keep exactly the country's length.
        count = 0
        for i, ch in enumerate(raw):
            if ch != " ":
                count += 1
                if count == need:
                    compact = raw[: i + 1].replace(" ", "")
                    return Match(m.start(), m.start() + i + 1, "IBAN") if iban_ok(compact) else None
        return None

    @staticmethod
    def _card(text: str, m: re.Match[str]) -> Match | None:
        raw = m.group()
        digits = raw.replace(" ", "").replace("-", "")
        if not 13 <= len(digits) <= 19:
            return None
        if luhn_ok(digits) and card_prefix_ok(digits):
            return Match(m.start(), m.end(), "CREDIT_CARD")
        return None

    @staticmethod
    def _ssn(text: str, m: re.Match[str]) -> Match | None:
        if ssn_ok(m.group("a"), m.group("g"), m.group("n")):
            return Match(m.start(), m.end(), "US_SSN")
        return None

    @staticmethod
    def _ssn_context(text: str, m: re.Match[str]) -> Match | None:
        v = m.group("v")
        return Match(*m.span("v"), "US_SSN") if ssn_ok(v[:3], v[3:5], v[5:]) else None

    @staticmethod
    def _nino(text: str, m: re.Match[str]) -> Match | None:
        return None if m.group()[:2] in _NINO_BAD_PREFIXES else Match(m.start(), m.end(), "UK_NINO")

    @staticmethod
    def _ipv4(text: str, m: re.Match[str]) -> Match | None:
        for octet in m.group().split("."):
            if int(octet) > 255 or (len(octet) > 1 and octet[0] == "0"):
                return None
        return Match(m.start(), m.end(), "IP_ADDRESS")

    @staticmethod
    def _ipv6(text: str, m: re.Match[str]) -> Match | None:
        try:
            ipaddress.IPv6Address(m.group())
        except ValueError:
            return None
        return Match(m.start(), m.end(), "IP_ADDRESS")

    @staticmethod
    def _password(text: str, m: re.Match[str]) -> Match | None:
        start, end = _value_span(m)
        if m.group("u") is not None and end - start > 1 and text[end - 1] in ".)" and text[end : end + 1] in " \n":
            end -= 1  # the sentence's full stop, not the password's last character
        value = text[start:end]
        if _is_placeholder(value):
            return None
        # Prose ("Password: required", "password: see the vault") is a lowercase word after a colon.
        if m.group("u") is not None and value.isalpha() and value.islower() and ":" in text[m.start() : start]:
            return None
        return Match(start, end, "PASSWORD")

    @staticmethod
    def _password_said(text: str, m: re.Match[str]) -> Match | None:
        start, end = m.span("v")
        if end - start > 1 and text[end - 1] in ".)" and (end == len(text) or text[end] in " \n"):
            end -= 1  # the sentence's full stop
        value = text[start:end]
        # After "is", a word is prose ("is incorrect", "is case-sensitive"); a password has a digit or a symbol.
        if not any(c.isdigit() or c in _PASSWORD_SYMBOLS for c in value) or _is_placeholder(value):
            return None
        return Match(start, end, "PASSWORD")

    @staticmethod
    def _url_password(text: str, m: re.Match[str]) -> Match | None:
        start, end = m.span("v")
        return None if _is_placeholder(text[start:end]) else Match(start, end, "PASSWORD")

    @staticmethod
    def _address(text: str, m: re.Match[str]) -> Match | None:
        before = text[max(0, m.start() - 40) : m.start()]
        after = text[m.end() : m.end() + 30]
        if _ADDRESS_BEFORE.search(before) or _ADDRESS_AFTER.match(after):
            return Match(m.start(), m.end(), "STREET_ADDRESS")
        return None

    def _phone(self, text: str, m: re.Match[str]) -> Match | None:
        raw = m.group()
        start = m.start()
        # A "(" the pattern took without its ")" belongs to the sentence.
        if raw.startswith("(") and ")" not in raw:
            raw = raw[1:]
            start += 1
        digits = sum(ch.isdigit() for ch in raw)
        if not 7 <= digits <= 15 or _DATE_LIKE.fullmatch(raw) or _IPV4_LIKE.fullmatch(raw):
            return None
        international = raw[0] == "+" or raw.startswith("00")
        # A bare run of digits is an order or account number far more often than a phone number; ten digits
        # that start with 1 are no national number anywhere (a timestamp, usually).
        if not international and raw.isdigit() and (len(raw) < 10 or (len(raw) == 10 and raw[0] == "1")):
            return None
        for candidate in _trimmed(raw):
            if self._phone_valid(candidate, international):
                return Match(start, start + len(candidate), "PHONE")
        return None

    def _phone_valid(self, candidate: str, international: bool) -> bool:
        regions = (None,) if international else self.phone_regions
        for region in regions:
            if region is not None and not _national_shape(candidate, region):
                continue
            number = candidate if region is not None or candidate[0] == "+" else "+" + candidate[2:]
            try:
                parsed = phonenumbers.parse(number, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(parsed):
                return True
        return False


# Regions whose national numbers open with the trunk prefix 0, and the North American plan's groupings: a
# number written without its country code is written this way, "32 4305 7179" or "31542-29559" is a code.
_TRUNK_ZERO = frozenset({"GB", "DE", "FR", "NL", "BE", "AT", "CH", "SE", "IE", "AU", "NZ", "IN", "JP", "BR"})
_NANP = frozenset({"US", "CA"})
_NANP_GROUPS = ((3, 3, 4), (1, 3, 3, 4), (10,), (11,))
_DIGIT_GROUPS = re.compile(r"\d+")


def _national_shape(candidate: str, region: str) -> bool:
    """Whether a number without a country code is written the way ``region`` writes its national numbers."""
    if region in _TRUNK_ZERO:
        return candidate.lstrip("(")[:1] == "0"
    if region in _NANP:
        return tuple(len(g) for g in _DIGIT_GROUPS.findall(candidate)) in _NANP_GROUPS
    return True


def _search(
    pattern: re.Pattern[str],
    entity: EntityType,
    before: Before | None,
    validate: Callable[[str, re.Match[str]], Match | None] | None,
    text: str,
    pos: int,
    endpos: int,
    found: list[Match],
) -> None:
    """Every match of ``pattern`` in ``text[pos:endpos]`` that passes the boundary check and the validator."""
    search = pattern.search
    while (m := search(text, pos, endpos)) is not None:
        start = m.start()
        if before is not None and start > 0 and before(text[start - 1]):
            pos = start + 1  # mid-word: a match may still begin further in
            continue
        pos = m.end() if m.end() > start else start + 1
        if validate is not None:
            hit = validate(text, m)
            if hit is not None:
                found.append(hit)
        else:
            vstart, vend = _value_span(m)
            found.append(Match(vstart, vend, entity))


def _match_letter_prefixed(
    pattern: re.Pattern[str],
    before: Before | None,
    validate: Callable[[str, re.Match[str]], Match | None] | None,
    entity: EntityType,
    text: str,
    s: int,
    found: list[Match],
) -> None:
    """An IBAN or NINO: two capitals (and for a NINO maybe a space) right before the run of digits at ``s``."""
    for at in (s - 2, s - 3):
        if at < 0 or not (text[at].isupper() and text[at + 1].isupper()):
            continue
        m = pattern.match(text, at)
        if m is None or (at > 0 and before is not None and before(text[at - 1])):
            continue
        hit = validate(text, m) if validate is not None else Match(*m.span(), entity)
        if hit is not None:
            found.append(hit)
            return


def _find_emails(text: str) -> list[Match]:
    """Emails, found from their "@" outwards (far cheaper than a pattern that could start at every letter)."""
    out: list[Match] = []
    at = text.find("@")
    while at > 0:
        local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
        domain = _EMAIL_DOMAIN.match(text, at + 1) if local is not None else None
        if local is not None and domain is not None:
            start = local.start()
            if start == 0 or not (_word(text[start - 1]) or text[start - 1] in ".%+-"):
                out.append(Match(start, domain.end(), "EMAIL"))
        at = text.find("@", at + 1)
    return out


def _trimmed(raw: str) -> list[str]:
    """The candidate, then without its last one or two groups (the pattern may run into a following number)."""
    out = [raw]
    cur = raw
    for _ in range(2):
        cut = max(cur.rfind(" "), cur.rfind("-"), cur.rfind("."))
        if cut <= 0:
            break
        cur = cur[:cut].rstrip(" .-(")
        if sum(ch.isdigit() for ch in cur) < 7:
            break
        out.append(cur)
    return out


def resolve_overlaps(found: list[Match]) -> list[Match]:
    """Keep the longest span where two overlap (on a tie, the more specific type), in text order.

    Secrets come first whatever their length: a token in ``https://ghp_…@github.com`` is a token, not an email."""
    ordered = sorted(
        found, key=lambda m: (PRIORITY[m.entity] > _LAST_SECRET, m.start - m.end, PRIORITY[m.entity], m.start)
    )
    kept: list[Match] = []
    for cand in ordered:
        if all(cand.end <= k.start or cand.start >= k.end for k in kept):
            kept.append(cand)
    kept.sort(key=lambda m: m.start)
    return kept


def merge_names(found: list[Match], names: Sequence[Match], text: str) -> list[Match]:
    """The patterns' matches plus the NER model's spans that overlap none of them and no hidden value, in order.

    The patterns win on overlap: they are validated (checksums, parsers, context), the model only guesses."""
    if not names:
        return found
    taken = [(m.start, m.end) for m in found]
    if "<" in text or "[" in text:
        taken += [h.span() for h in _HIDDEN.finditer(text)]
    extra = [n for n in names if all(n.end <= s or n.start >= e for s, e in taken)]
    if not extra:
        return found
    return sorted([*found, *extra], key=lambda m: m.start)
