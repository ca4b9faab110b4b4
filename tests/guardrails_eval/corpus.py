"""Seeded generator of the PII evaluation corpus: real-looking values in varied contexts, and hard negatives."""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers

from tollgate.config.guardrails import EntityType


@dataclass(frozen=True, slots=True)
class Sample:
    """A sentence and the spans it truly contains (empty for a hard negative)."""

    text: str
    spans: tuple[tuple[int, int, EntityType], ...]
    kind: str  # the entity type the sentence was built for, or "NEGATIVE:<what>"


FIRST = ["john", "maria", "wei", "aisha", "lukas", "sofia", "omar", "emma", "raj", "chloe", "diego", "yuki"]
LAST = ["smith", "garcia", "chen", "khan", "muller", "rossi", "haddad", "brown", "patel", "martin", "lopez", "sato"]
DOMAINS = ["example.com", "acme-corp.io", "mail.example.org", "uni-heidelberg.de", "company.co.uk", "gmail.com"]
STREETS = ["Main", "Oak", "Baker", "Elm Grove", "Pennsylvania", "Church", "High", "Maple Leaf", "Victoria", "Park"]
SUFFIXES = ["Street", "St", "Avenue", "Ave", "Road", "Rd", "Lane", "Drive", "Boulevard", "Way", "Close", "Court"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October"]


def _alnum(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        digits = body + check
        total = 0
        for i, ch in enumerate(reversed(digits)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


def gen_email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}{rng.randint(1, 99)}", f"{first}+news"])
    return f"{local}@{rng.choice(DOMAINS)}"


_PHONE_SPECS = [("US", "+1", 10, "2345678"), ("GB", "+44", 10, "127"), ("DE", "+49", 11, "3"), ("FR", "+33", 9, "16")]


def gen_phone(rng: random.Random) -> str:
    fmt = phonenumbers.PhoneNumberFormat
    while True:
        region, _, length, leads = rng.choice(_PHONE_SPECS)
        national = rng.choice(leads) + "".join(rng.choice(string.digits) for _ in range(length - 1))
        try:
            num = (
                phonenumbers.parse(national, region)
                if region in ("US", "GB")
                else phonenumbers.parse("0" + national, region)
            )
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_valid_number(num):
            continue
        style = rng.random()
        if region in ("US", "GB") and style < 0.5:
            text = phonenumbers.format_number(num, fmt.NATIONAL)
            if region == "US" and style < 0.2:
                text = text.replace("(", "").replace(") ", "-")
            if region == "US" and 0.2 <= style < 0.3:
                text = text.replace("(", "").replace(") ", ".").replace("-", ".")
            return text
        if style > 0.85:
            return phonenumbers.format_number(num, fmt.E164)
        text = phonenumbers.format_number(num, fmt.INTERNATIONAL)
        return "00" + text[1:] if style > 0.75 else text


_CARD_SPECS = [
    ("4", 16),
    ("51", 16),
    ("55", 16),
    ("2221", 16),
    ("34", 15),
    ("37", 15),
    ("6011", 16),
    ("65", 16),
    ("3530", 16),
]


def gen_card(rng: random.Random) -> str:
    prefix, length = rng.choice(_CARD_SPECS)
    digits = _luhn_complete(rng, prefix, length)
    sep = rng.choice([" ", "-", ""])
    if length == 15:
        return sep.join([digits[:4], digits[4:10], digits[10:]])
    return sep.join(digits[i : i + 4] for i in range(0, 16, 4))


def gen_ssn(rng: random.Random) -> str:
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            break
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


_IBAN_SPECS = {"DE": "8n10n", "GB": "4a14n", "FR": "23n", "NL": "4a10n", "ES": "20n", "IT": "1a22n", "CH": "17n"}


def gen_iban(rng: random.Random) -> str:
    country = rng.choice(list(_IBAN_SPECS))
    bban = ""
    for part in _IBAN_SPECS[country].replace("n", "n ").replace("a", "a ").split():
        count, kind = int(part[:-1]), part[-1]
        bban += "".join(rng.choice(string.digits if kind == "n" else string.ascii_uppercase) for _ in range(count))
    number = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    compact = f"{country}{98 - number % 97:02d}{bban}"
    if rng.random() < 0.6:
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
    return compact


def gen_ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ".".join(str(rng.randint(1 if i == 0 else 0, 254)) for i in range(4))
    addr = ipaddress.IPv6Address(
        rng.getrandbits(128) & ~((1 << 48) - 1) if rng.random() < 0.5 else rng.getrandbits(128)
    )
    return str(addr) if rng.random() < 0.7 else addr.exploded


def gen_dob_date(rng: random.Random) -> str:
    y, m, d = rng.randint(1940, 2005), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice(
        [
            f"{m:02d}/{d:02d}/{y}",
            f"{y}-{m:02d}-{d:02d}",
            f"{MONTHS[m % 10]} {d}, {y}",
            f"{d} {MONTHS[m % 10]} {y}",
            f"{d}.{m}.{y}",
        ]
    )


def gen_nino(rng: random.Random) -> str:
    first = rng.choice("ABCEHJKLMPRSTWXYZ")
    second = rng.choice("ABCEHJKLMPRSTWXYZ")
    if first + second in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
        second = "A"
    digits = "".join(rng.choice(string.digits) for _ in range(6))
    suffix = rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{first}{second} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"
    return f"{first}{second}{digits}{suffix}"


def gen_passport(rng: random.Random) -> str:
    return rng.choice(["", "", "A", "C", "GB"]) + "".join(rng.choice(string.digits) for _ in range(rng.choice([8, 9])))


def gen_address(rng: random.Random) -> str:
    number = str(rng.randint(1, 9999)) + rng.choice(["", "", "", "B"])
    street = f"{number} {rng.choice(STREETS)} {rng.choice(SUFFIXES)}"
    return street + rng.choice(["", "", ", Apt 4B", " Suite 210"])


def gen_openai(rng: random.Random) -> str:
    return rng.choice(["sk-", "sk-proj-", "sk-svcacct-"]) + _alnum(
        rng, rng.choice([48, 64, 120]), string.ascii_letters + string.digits + "_-"
    )


def gen_anthropic(rng: random.Random) -> str:
    return "sk-ant-api03-" + _alnum(rng, 93, string.ascii_letters + string.digits + "_-") + "AA"


def gen_aws_access(rng: random.Random) -> str:
    return rng.choice(["AKIA", "ASIA"]) + _alnum(rng, 16, string.ascii_uppercase + "234567")


def gen_aws_secret(rng: random.Random) -> str:
    return _alnum(rng, 40, string.ascii_letters + string.digits + "/+")


def gen_github(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return "github_pat_" + _alnum(rng, 22) + "_" + _alnum(rng, 59)
    return rng.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + _alnum(rng, 36)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def gen_jwt(rng: random.Random) -> str:
    header = _b64url(json.dumps({"alg": rng.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}).encode())
    payload = _b64url(
        json.dumps({"sub": str(rng.randint(1, 10**9)), "iat": rng.randint(1_600_000_000, 1_800_000_000)}).encode()
    )
    return f"{header}.{payload}.{_b64url(rng.randbytes(32))}"


def gen_private_key(rng: random.Random) -> str:
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
    lines = [base64.b64encode(rng.randbytes(48)).decode() for _ in range(rng.randint(2, 5))]
    return f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(lines) + f"\n-----END {kind}PRIVATE KEY-----"


def gen_password(rng: random.Random) -> str:
    return _alnum(rng, rng.randint(8, 16), string.ascii_letters + string.digits + "!@#%^*") + str(rng.randint(0, 9))


Generator = Callable[[random.Random], str]

# Per type: the value generator and the contexts it appears in ({v} is the value).
POSITIVE: dict[EntityType, tuple[Generator, list[str]]] = {
    "EMAIL": (
        gen_email,
        [
            "Contact me at {v} if anything changes.",
            "From: {v}",
            "cc ({v}) on the thread",
            '{"email": "{v}"}',
            "Send the invoice to {v}.",
        ],
    ),
    "PHONE": (
        gen_phone,
        [
            "Call me on {v} tomorrow.",
            "Phone: {v}",
            "my cell is {v}, text first",
            "Reach the front desk at {v}.",
            "tel. ({v})",
        ],
    ),
    "CREDIT_CARD": (
        gen_card,
        [
            "My card number is {v}, exp 09/27.",
            "charge {v} please",
            "Card: {v}",
            '{"pan": "{v}"}',
            "use the card ending... actually the full number {v}.",
        ],
    ),
    "US_SSN": (
        gen_ssn,
        [
            "SSN: {v}",
            "my social security number is {v}.",
            "Applicant ({v}) was approved",
            "ssn={v}",
            "Her SSN {v} appears on the form.",
        ],
    ),
    "IBAN": (
        gen_iban,
        [
            "Please wire it to {v}.",
            "IBAN: {v}",
            "account {v} at the bank",
            "Beneficiary IBAN {v}, ref 2291",
            '{"iban": "{v}"}',
        ],
    ),
    "IP_ADDRESS": (
        gen_ip,
        [
            "The server at {v} is down.",
            "Blocked requests from {v} today",
            "ssh admin@host -p 22 # host is {v}",
            "client_ip={v}",
            "Connect to [{v}] now.",
        ],
    ),
    "DATE_OF_BIRTH": (
        gen_dob_date,
        [
            "I was born on {v} in Leeds.",
            "DOB: {v}",
            "Date of birth: {v}",
            "Patient (date of birth {v}) reports pain.",
            "Her birthday is {v}.",
            "Jane Okafor, born {v}, applied",
        ],
    ),
    "UK_NINO": (
        gen_nino,
        ["NI number {v}", "National Insurance: {v}.", "my NINO is {v}", "Employee {v} started in May.", "({v})"],
    ),
    "PASSPORT": (
        gen_passport,
        [
            "Passport number {v}",
            "passport no. {v}, expires 2031",
            "My passport: {v}",
            "Passport #{v} was scanned.",
            "the passport {v} is valid",
        ],
    ),
    "STREET_ADDRESS": (
        gen_address,
        [
            "Ship it to {v}, Springfield.",
            "I live at {v} now.",
            "Address: {v}",
            "Meet me at {v} at noon.",
            "Office moved to {v} last year.",
            "{v}, Austin, TX 78701",
        ],
    ),
    "OPENAI_KEY": (
        gen_openai,
        [
            "OPENAI_API_KEY={v}",
            "here is my key {v} can you debug",
            'client = OpenAI(api_key="{v}")',
            "Authorization: Bearer {v}",
            "key: {v}",
        ],
    ),
    "ANTHROPIC_KEY": (
        gen_anthropic,
        [
            "ANTHROPIC_API_KEY={v}",
            "x-api-key: {v}",
            "use {v} for the test",
            'Anthropic(api_key="{v}")',
            "my key is {v}.",
        ],
    ),
    "AWS_ACCESS_KEY": (
        gen_aws_access,
        [
            "aws_access_key_id = {v}",
            "AccessKeyId: {v}",
            "export AWS_ACCESS_KEY_ID={v}",
            "the key {v} leaked",
            '"AccessKeyId": "{v}"',
        ],
    ),
    "AWS_SECRET_KEY": (
        gen_aws_secret,
        [
            "aws_secret_access_key = {v}",
            "AWS_SECRET_ACCESS_KEY={v}",
            'export AWS_SECRET_ACCESS_KEY="{v}"',
            '"SecretAccessKey": "{v}"',
            "aws secret key: {v}",
        ],
    ),
    "GITHUB_TOKEN": (
        gen_github,
        [
            "GITHUB_TOKEN={v}",
            "git clone https://{v}@github.com/acme/app.git",
            "token: {v}",
            "Authorization: token {v}",
            "use {v} in CI",
        ],
    ),
    "JWT": (
        gen_jwt,
        [
            "Authorization: Bearer {v}",
            "the cookie is session={v}; Path=/",
            "decode this: {v}",
            '{"id_token": "{v}"}',
            "JWT {v} expired",
        ],
    ),
    "PRIVATE_KEY": (
        gen_private_key,
        [
            "Here is the key:\n{v}\nwhy does ssh reject it?",
            "{v}",
            "key.pem contains\n{v}",
            "```\n{v}\n```",
            "cert and key: {v}",
        ],
    ),
    "PASSWORD": (
        gen_password,
        [
            "password={v}",
            "db: user=admin password={v} host=db",
            '{"username": "sam", "password": "{v}"}',
            "pwd: {v}",
            "PASSWORD='{v}'",
        ],
    ),
}

# Hard negatives: structured-looking text that is not PII.
NEGATIVE: dict[str, tuple[Generator, list[str]]] = {
    "order": (
        lambda r: str(r.randint(10**7, 10**9)),
        ["Order #{v} has shipped.", "order {v} was refunded", "Your order number is {v}."],
    ),
    "order_code": (
        lambda r: f"ORD-{r.randint(2019, 2026)}-{r.randint(10000, 99999)}",
        ["Reference {v}", "ticket {v} closed"],
    ),
    "version": (
        lambda r: f"{r.randint(0, 20)}.{r.randint(0, 40)}.{r.randint(0, 99)}",
        ["Upgrade to version {v} today.", "v{v} fixes the bug", "requires python>={v}"],
    ),
    "uuid": (
        lambda r: str(__import__("uuid").UUID(int=r.getrandbits(128))),
        ["request id {v}", "trace_id={v}", "row {v} was deleted"],
    ),
    "price": (
        lambda r: f"${r.randint(1, 9999):,}.{r.randint(0, 99):02d}",
        ["It costs {v} per seat.", "Total: {v}", "price dropped to {v}"],
    ),
    "price_eu": (lambda r: f"{r.randint(1, 9999)},{r.randint(0, 99):02d} €", ["Summe {v}", "Preis: {v}"]),
    "date": (
        lambda r: f"{r.randint(2015, 2027)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
        ["The release is on {v}.", "meeting moved to {v}", "invoice dated {v}"],
    ),
    "date_us": (
        lambda r: f"{r.randint(1, 12)}/{r.randint(1, 28)}/{r.randint(2015, 2027)}",
        ["Due {v}", "shipped on {v}, arriving soon"],
    ),
    "birthday_party": (
        lambda r: f"{MONTHS[r.randint(0, 9)]} {r.randint(1, 28)}",
        ["The birthday party is on {v}.", "Born Free screens {v} at 8pm"],
    ),
    "git_sha": (
        lambda r: "".join(r.choice("0123456789abcdef") for _ in range(r.choice([7, 12, 40]))),
        ["Fixed in commit {v}.", "git checkout {v}", "revert {v}"],
    ),
    "tracking_ups": (
        lambda r: "1Z" + _alnum(r, 6, string.ascii_uppercase + string.digits) + str(r.randint(10**9, 10**10 - 1)),
        ["Tracking: {v}", "UPS {v} is out for delivery"],
    ),
    "tracking_usps": (
        lambda r: "9400 " + " ".join(str(r.randint(1000, 9999)) for _ in range(4)) + f" {r.randint(10, 99)}",
        ["USPS tracking {v}", "track {v}"],
    ),
    "tracking_fedex": (lambda r: str(r.randint(10**11, 10**12 - 1)), ["FedEx {v}", "tracking number {v} delayed"]),
    "isbn": (
        lambda r: f"978-{r.randint(0, 9)}-{r.randint(10, 99)}-{r.randint(100000, 999999)}-{r.randint(0, 9)}",
        ["ISBN {v}", "see ISBN {v} p. 12"],
    ),
    "time": (
        lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}",
        ["at {v} UTC the job failed", "timestamp {v}"],
    ),
    "port": (lambda r: f"localhost:{r.randint(1024, 65535)}", ["open http://{v}/health", "listening on {v}"]),
    "count": (
        lambda r: f"{r.randint(1, 999):,},{r.randint(100, 999)},{r.randint(100, 999)}",
        ["population {v}", "{v} requests served"],
    ),
    "coords": (lambda r: f"{r.uniform(-80, 80):.4f}, {r.uniform(-170, 170):.4f}", ["location {v}", "GPS: {v}"]),
    "words": (
        lambda r: r.choice(
            ["risk-assessment", "task-runner", "the password policy", "passport office", "ask-me", "@mention"]
        ),
        ["Read about {v} in the wiki.", "{v} is documented"],
    ),
    "hex": (
        lambda r: "0x" + "".join(r.choice("0123456789abcdef") for _ in range(r.choice([8, 16]))),
        ["address {v} segfaulted", "mask {v}"],
    ),
    "invoice": (lambda r: f"INV-{r.randint(100000, 999999)}", ["Invoice {v} is overdue.", "pay {v}"]),
    "build": (
        lambda r: f"{r.randint(2019, 2026)}{r.randint(1, 12):02d}{r.randint(1, 28):02d}.{r.randint(1, 9)}",
        ["build {v}", "nightly {v} is green"],
    ),
    "password_talk": (
        lambda r: r.choice(["at least 12 characters", "see the vault", "required", "********"]),
        ["Password: {v}", "The password policy says: {v}."],
    ),
    "passport_talk": (
        lambda r: f"{r.randint(30, 50)}x{r.randint(30, 50)} mm",
        ["Passport photo size is {v}.", "passport photos must be {v}"],
    ),
    "project_born": (
        lambda r: f"{r.randint(2010, 2024)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
        ["The project was born on {v} at a hackathon.", "Release date: {v}"],
    ),
    "street_talk": (
        lambda r: str(r.randint(2, 12)),
        ["We tested {v} Main Street cafes.", "Wall Street fell {v} points"],
    ),
    "amount": (
        lambda r: f"{r.randint(1, 99)} {r.choice(['items', 'users', 'GB', 'ms', 'km'])}",
        ["We have {v} left.", "latency {v}"],
    ),
}


def generate(seed: int = 20261123, per_type: int = 50, negatives_per_kind: int = 12) -> list[Sample]:
    """A deterministic corpus: ``per_type`` sentences per entity type, some with a second entity, plus negatives."""
    rng = random.Random(seed)
    samples: list[Sample] = []
    entity_types = list(POSITIVE)
    for entity, (gen, templates) in POSITIVE.items():
        for i in range(per_type):
            value = gen(rng)
            template = templates[i % len(templates)]
            before, after = template.split("{v}", 1)
            spans: list[tuple[int, int, EntityType]] = [(len(before), len(before) + len(value), entity)]
            text = before + value + after
            kind: str = entity
            if i % 4 == 3:  # a second value of another type in the same text
                other = rng.choice([e for e in entity_types if e != entity])
                ogen, otemplates = POSITIVE[other]
                ovalue = ogen(rng)
                obefore, oafter = rng.choice(otemplates).split("{v}", 1)
                start = len(text) + 1 + len(obefore)
                text = f"{text} {obefore}{ovalue}{oafter}"
                spans.append((start, start + len(ovalue), other))
            if i % 5 == 4:  # a hard negative alongside
                ngen, ntemplates = NEGATIVE[rng.choice(list(NEGATIVE))]
                text = f"{text} {rng.choice(ntemplates).format(v=ngen(rng))}"
            samples.append(Sample(text, tuple(spans), kind))
    for name, (ngen, ntemplates) in NEGATIVE.items():
        for i in range(negatives_per_kind):
            samples.append(Sample(ntemplates[i % len(ntemplates)].format(v=ngen(rng)), (), f"NEGATIVE:{name}"))
    return samples
