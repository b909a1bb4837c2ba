"""Demo CRM data: a few fixed, documented customers plus a seeded crowd of realistic ones.

Owns the demo customer generator (pure: plain row dicts from a seed and a `now`, no
I/O, no clock; fast enough for a million customers, see `ctihub demo-data`) and the
idempotent seeding of a database with it through `crm_sync.bulk`. Must never be used
for production data, never produce a number that phonenumbers calls invalid for its
country (numbers come from per-country patterns checked once per process), and never
touch rows it did not generate (existing ids are skipped, not updated).

Fixed customers (their dates move with `now`, so the README tour always holds):

| id | name | number | KYC as shown | what it shows |
|---|---|---|---|---|
| cus_demo_lena | Lena Hoffmann (DE, de, vip) | +4930901820 | verified, low risk | a VIP with an account manager, 2 accounts, 2 emails, 7 interactions, a qualified lead |
| cus_demo_oliver | Oliver Bennett (GB, en, retail) | +442079460018 | pending, high risk, EDD | EDD: unusual transactions, questionable financial history; an open document request |
| cus_demo_nikos | Nikos Georgiou (CY, el, professional) | +35722123456 (home, shared) | expired (review date passed) | a verified record whose review lapsed; an overdue KYC review task |
| cus_demo_eleni | Eleni Georgiou (CY, el, retail) | +35722123456 (home, shared) | verified, PEP, high risk, EDD | a politically exposed person; the shared line gives 2 matches |
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import itertools
import random
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import phonenumbers
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_sync.bulk import chunks, prefetch, write_batch
from crm_sync.schema import Customer

# Used when no `now` is given to the pure generator, so that its output never depends
# on when it runs.
DEMO_REFERENCE_TIME = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

T = TypeVar("T")

Bundle = dict[str, Any]
"""One customer and everything hanging off it: keys customer, phones, emails, kyc,
accounts, interactions, tasks, leads; each a row dict (or list of row dicts) keyed by
column name."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedDemoCustomer:
    customer_id: str
    name: str
    e164: str
    country: str
    language: str
    tier: str
    kyc_status: str  # effective status, as the screen pop shows it
    edd_reasons: tuple[str, ...]
    summary: str


DEMO_CUSTOMERS_FIXED: tuple[FixedDemoCustomer, ...] = (
    FixedDemoCustomer(
        customer_id="cus_demo_lena", name="Lena Hoffmann", e164="+4930901820", country="DE",
        language="de", tier="vip", kyc_status="verified", edd_reasons=(),
        summary="verified VIP, account manager agent08, two accounts, seven past interactions",
    ),
    FixedDemoCustomer(
        customer_id="cus_demo_oliver", name="Oliver Bennett", e164="+442079460018", country="GB",
        language="en", tier="retail", kyc_status="pending",
        edd_reasons=("unusual_transactions", "questionable_financial_history"),
        summary="pending KYC, high risk, enhanced due diligence",
    ),
    FixedDemoCustomer(
        customer_id="cus_demo_nikos", name="Nikos Georgiou", e164="+35722123456", country="CY",
        language="el", tier="professional", kyc_status="expired", edd_reasons=(),
        summary="verified but the review date passed 12 days ago: shown as expired; shares the home line",
    ),
    FixedDemoCustomer(
        customer_id="cus_demo_eleni", name="Eleni Georgiou", e164="+35722123456", country="CY",
        language="el", tier="retail", kyc_status="verified", edd_reasons=("politically_exposed",),
        summary="politically exposed person, high risk; shares the home line with Nikos",
    ),
)
HOUSEHOLD_NUMBER = "+35722123456"
_FIXED_NUMBERS = frozenset({"+4930901820", "+491701234567", "+442079460018", HOUSEHOLD_NUMBER,
                            "+35799123456", "+35796543210"})

# country: (weight, [(language, weight)], currencies, first names, last names, email domain)
_COUNTRIES: dict[str, tuple[int, list[tuple[str, int]], tuple[str, ...], tuple[str, ...], tuple[str, ...], str]] = {
    "GB": (18, [("en", 1)], ("GBP", "USD"),
           ("Oliver", "Amelia", "Harry", "Isla", "George", "Emily", "Jack", "Sophie", "Thomas", "Charlotte"),
           ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans", "Roberts", "Walker", "Hughes"),
           "example.co.uk"),
    "DE": (16, [("de", 1)], ("EUR", "USD"),
           ("Lukas", "Anna", "Maximilian", "Lea", "Jonas", "Sophie", "Felix", "Marie", "Paul", "Katharina"),
           ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Hoffmann", "Koch"),
           "example.de"),
    "FR": (10, [("fr", 1)], ("EUR", "USD"),
           ("Louis", "Camille", "Hugo", "Léa", "Lucas", "Manon", "Arthur", "Chloé", "Jules", "Inès"),
           ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Moreau", "Laurent"),
           "example.fr"),
    "ES": (10, [("es", 1)], ("EUR", "USD"),
           ("Alejandro", "Lucía", "Pablo", "María", "Daniel", "Paula", "Javier", "Carmen", "Diego", "Sofía"),
           ("García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez", "Gómez", "Ruiz"),
           "example.es"),
    "IT": (10, [("it", 1)], ("EUR", "USD"),
           ("Leonardo", "Giulia", "Francesco", "Chiara", "Alessandro", "Sofia", "Lorenzo", "Francesca", "Matteo", "Martina"),
           ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino", "Greco"),
           "example.it"),
    "PL": (8, [("pl", 1)], ("PLN", "EUR", "USD"),
           ("Jakub", "Zuzanna", "Kacper", "Julia", "Szymon", "Maja", "Filip", "Zofia", "Mateusz", "Katarzyna"),
           ("Nowak", "Wójcik", "Kowalczyk", "Woźniak", "Mazur", "Krawczyk", "Kaczmarek", "Zając", "Król", "Wróbel"),
           "example.pl"),
    "CH": (8, [("de", 13), ("fr", 6), ("it", 1)], ("CHF", "EUR", "USD"),
           ("Luca", "Mia", "Noah", "Emma", "Elias", "Lina", "Nico", "Laura", "Samuel", "Chiara"),
           ("Müller", "Meier", "Schmid", "Keller", "Weber", "Huber", "Steiner", "Gerber", "Brunner", "Favre"),
           "example.ch"),
    "AE": (8, [("ar", 7), ("en", 3)], ("USD", "AED"),
           ("Mohammed", "Fatima", "Ahmed", "Aisha", "Omar", "Mariam", "Khalid", "Noura", "Yousef", "Layla"),
           ("Al Mansoori", "Al Nuaimi", "Al Mazrouei", "Al Shamsi", "Al Hashimi", "Al Falasi", "Al Suwaidi",
            "Al Ketbi", "Haddad", "Khoury"),
           "example.ae"),
    "US": (6, [("en", 1)], ("USD",),
           ("James", "Olivia", "Michael", "Emma", "William", "Ava", "Benjamin", "Mia", "Daniel", "Harper"),
           ("Johnson", "Williams", "Miller", "Davis", "Garcia", "Anderson", "Clark", "Lewis", "Young", "Allen"),
           "example.com"),
    "CY": (6, [("el", 4), ("en", 1)], ("EUR", "USD"),
           ("Andreas", "Maria", "Georgios", "Eleni", "Christos", "Anna", "Nikos", "Sophia", "Costas", "Katerina"),
           ("Georgiou", "Christodoulou", "Ioannou", "Constantinou", "Charalambous", "Nicolaou", "Demetriou",
            "Panayiotou", "Kyriakou", "Savva"),
           "example.com.cy"),
}
_COUNTRY_CODES = tuple(_COUNTRIES)
_COUNTRY_WEIGHTS = tuple(v[0] for v in _COUNTRIES.values())

# Phone numbers come from per-country patterns: a national-significant-number prefix
# and a length, every completion of which phonenumbers calls valid for the country
# (the prefixes were read off its metadata). `_number_patterns` checks each pattern
# once per process and derives how each style of writing lays the digits out, so that
# a million customers cost no phonenumbers call per number.
_MOBILE_PATTERNS: dict[str, tuple[tuple[str, int], ...]] = {
    "GB": (("71", 10), ("73", 10), ("740", 10), ("751", 10), ("772", 10), ("790", 10)),
    "DE": (("151", 11), ("160", 10), ("170", 10), ("170", 11), ("176", 11)),
    "FR": (("61", 9), ("62", 9), ("64", 9), ("66", 9), ("67", 9), ("68", 9), ("75", 9), ("76", 9), ("77", 9),
           ("78", 9)),
    "ES": (("6", 9), ("71", 9)),
    "IT": (("32", 10), ("33", 10), ("34", 10), ("35", 10), ("36", 10), ("38", 10), ("39", 10)),
    "PL": (("50", 9), ("51", 9), ("53", 9), ("57", 9), ("60", 9), ("66", 9), ("69", 9), ("72", 9), ("73", 9),
           ("78", 9), ("79", 9), ("88", 9)),
    "CH": (("76", 9), ("77", 9), ("78", 9), ("79", 9)),
    "AE": (("50", 9), ("52", 9), ("54", 9), ("55", 9), ("56", 9), ("58", 9)),
    "US": (("212", 10), ("646", 10), ("415", 10), ("305", 10)),
    "CY": (("99", 8), ("96", 8), ("97", 8), ("95", 8), ("94", 8)),
}
_FIXED_LINE_PATTERNS: dict[str, tuple[tuple[str, int], ...]] = {
    "GB": (("207", 10), ("208", 10), ("161", 10)),
    "DE": (("30", 9), ("30", 10), ("40", 9), ("40", 10), ("89", 9), ("89", 10), ("69", 9), ("69", 10)),
    "FR": (("1", 9), ("3", 9), ("45", 9), ("47", 9)),
    "ES": (("91", 9), ("93", 9)),
    "IT": (("02", 10), ("064", 10)),
    "PL": (("22", 9), ("12", 9)),
    "CH": (("44", 9), ("22", 9), ("61", 9)),
    "AE": (("43", 8), ("44", 8), ("23", 8), ("26", 8)),
    "US": (("212", 10), ("718", 10), ("312", 10)),
    "CY": (("22", 8), ("25", 8)),
}
# North American exchange codes (the digit after the area code) start with 2-9.
_NANP = frozenset({"US"})
_STYLES = (phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.INTERNATIONAL,
           phonenumbers.PhoneNumberFormat.NATIONAL)


def _below(rng: random.Random, n: int) -> int:
    # random.randrange is written in Python and costs ten times this; a million
    # customers draw tens of millions of numbers.
    return int(rng.random() * n)


def _between(rng: random.Random, low: int, high: int) -> int:
    return low + int(rng.random() * (high - low + 1))


def _one(rng: random.Random, values: Sequence[T]) -> T:
    return values[int(rng.random() * len(values))]


@dataclass(frozen=True, slots=True)
class _NumberPattern:
    country: str
    calling_code: str
    prefix: str
    free: int  # random digits after the prefix
    nanp: bool
    layouts: tuple[str, ...]  # str.format templates, one "{}" per national digit, in _STYLES order

    def tail(self, rng: random.Random) -> str:
        if self.nanp:
            return str(2 + _below(rng, 8)) + str(_below(rng, 10 ** (self.free - 1))).zfill(self.free - 1)
        return str(_below(rng, 10 ** self.free)).zfill(self.free)


def _layout(formatted: str, national: str) -> str | None:
    """`formatted` as a template of `national`'s digits, or None if they are not its
    last digits in order (the format would then depend on more than the prefix)."""
    out: list[str] = []
    left = len(national)
    for ch in reversed(formatted):
        if left and ch.isdigit():
            if ch != national[left - 1]:
                return None
            out.append("{}")
            left -= 1
        else:
            out.append(ch.replace("{", "{{").replace("}", "}}"))
    return "".join(reversed(out)) if left == 0 else None


def _check_pattern(country: str, prefix: str, length: int, samples: int, rng: random.Random) -> _NumberPattern:
    code = str(phonenumbers.country_code_for_region(country))
    free = length - len(prefix)
    probe = _NumberPattern(country, code, prefix, free, country in _NANP, ())
    lowest = ("2" if probe.nanp else "0") + "0" * (free - 1)
    tails = [lowest, "9" * free] + [probe.tail(rng) for _ in range(samples)]
    layouts: tuple[str, ...] = ()
    for tail in tails:
        national = prefix + tail
        number = phonenumbers.parse(f"+{code}{national}")
        if not phonenumbers.is_valid_number_for_region(number, country):
            raise RuntimeError(f"demo phone pattern {country} {prefix}+{free} digits gave invalid +{code}{national}")
        written = tuple(phonenumbers.format_number(number, style) for style in _STYLES)
        if not layouts:
            found = tuple(_layout(text, national) for text in written)
            if any(layout is None for layout in found):
                raise RuntimeError(f"demo phone pattern {country} {prefix}: no fixed layout for {written}")
            layouts = tuple(layout for layout in found if layout is not None)
        if tuple(layout.format(*national) for layout in layouts) != written:
            raise RuntimeError(f"demo phone pattern {country} {prefix}: layout differs for +{code}{national}")
    return _NumberPattern(country, code, prefix, free, probe.nanp, layouts)


@functools.cache
def _number_patterns(samples: int = 6) -> dict[tuple[str, str], tuple[_NumberPattern, ...]]:
    """(country, 'mobile' | 'fixed') -> checked patterns; raises RuntimeError on a bad one."""
    rng = random.Random("crm-demo:patterns")
    return {
        (country, kind): tuple(_check_pattern(country, prefix, length, samples, rng) for prefix, length in patterns)
        for kind, table in (("mobile", _MOBILE_PATTERNS), ("fixed", _FIXED_LINE_PATTERNS))
        for country, patterns in table.items()
    }


class _Weighted:
    """A weighted choice that costs one random() and one bisect, not a rebuilt table."""

    __slots__ = ("_cumulative", "_total", "_values")

    def __init__(self, weighted: Iterable[tuple[Any, float]]) -> None:
        values, weights = zip(*weighted, strict=True)
        self._values = values
        self._cumulative = list(itertools.accumulate(weights))
        self._total = self._cumulative[-1]

    def pick(self, rng: random.Random) -> Any:
        return self._values[bisect.bisect(self._cumulative, rng.random() * self._total)]


_COUNTRY = _Weighted((code, spec[0]) for code, spec in _COUNTRIES.items())
_LANGUAGE = {code: _Weighted(spec[1]) for code, spec in _COUNTRIES.items()}
# Brokerage books are mostly retail; professionals and VIPs are few but hold most money.
_TIER = _Weighted((("retail", 70), ("professional", 20), ("vip", 10)))
_KYC_STATUS = _Weighted((("verified", 55), ("pending", 14), ("not_started", 8), ("rejected", 8), ("expired", 15)))
_RISK = _Weighted((("low", 55), ("medium", 30), ("high", 15)))
_ACCOUNT_COUNT = _Weighted(((1, 60), (2, 30), (3, 10)))
_PLATFORM = _Weighted((("MT5", 60), ("cTrader", 25), ("WebTrader", 15)))
_ACCOUNT_STATUS = _Weighted((("active", 80), ("dormant", 15), ("closed", 5)))
_INTERACTION_COUNT = _Weighted(zip(range(7), (10, 20, 20, 18, 14, 10, 8), strict=True))
_CHANNEL = _Weighted((("voice", 70), ("chat", 20), ("email", 10)))
_INBOUND_OUTCOME = _Weighted((("completed", 80), ("abandoned", 12), ("missed", 8)))
_OUTBOUND_OUTCOME = _Weighted((("completed", 75), ("failed", 25)))
_CHAT_OUTCOME = _Weighted((("completed", 90), ("abandoned", 10)))
_STYLE = _Weighted(((0, 40), (1, 35), (2, 25)))  # E.164, international, national: as people type them
_LEAD_SOURCE = _Weighted((("web_form", 30), ("campaign", 20), ("referral", 15), ("inbound_call", 15), ("chat", 10),
                          ("partner", 10)))
_LEAD_STATUS_CUSTOMER = _Weighted((("contacted", 40), ("qualified", 30), ("converted", 20), ("lost", 10)))
_LEAD_STATUS_PROSPECT = _Weighted((("new", 40), ("contacted", 30), ("qualified", 15), ("lost", 15)))
_PLAIN_EDD_REASONS = (
    "sanctioned_country", "shell_companies", "unusual_transactions", "questionable_financial_history",
    "linked_to_suspected_illegal_activity", "penalties_or_noncompliance", "unpaid_debts_or_liens",
)
# Matches the demo directory (cti/directory/demo.py): sales agents manage accounts.
_ACCOUNT_MANAGERS = ("agent01", "agent02", "agent03", "agent05", "agent08")
_AGENTS = tuple(f"agent{i:02d}" for i in range(1, 11))
_QUEUES = (("sales", "1000", "menu:1"), ("support", "2000", "menu:2"), ("kyc", "3000", "menu:3"))
_DISPOSITIONS = ("deposit_query", "withdrawal_query", "kyc_documents", "platform_support", "account_upgrade",
                 "margin_call", "complaint", "callback_requested")
_NOTES = ("Asked about withdrawal timing.", "Sent the KYC document checklist.", "Explained margin requirements.",
          "Wants a call back after market close.", "Reset platform password.", None, None, None)
_INTERESTS = ("professional client status", "a second account in USD", "copy trading", "options on indices",
              "lower spreads on FX majors", "an Islamic (swap-free) account", "the mobile app", "managed portfolios")
_COMPANIES = ("northwind.example", "contoso.example", "fabrikam.example", "globex.example", "initech.example")
_HUB_NUMBER = "+442071234567"


def _draw_phone(rng: random.Random, country: str, kind: str) -> tuple[_NumberPattern, str]:
    patterns = _number_patterns()[(country, kind)]
    while True:
        pattern = patterns[_below(rng, len(patterns))]
        national = pattern.prefix + pattern.tail(rng)
        # Fixed customers' numbers must keep exactly the matches the docs promise.
        if f"+{pattern.calling_code}{national}" not in _FIXED_NUMBERS:
            return pattern, national


def _phone_row(rng: random.Random, phone_id: str, customer_id: str, country: str, kind: str,
               phone_kind: str) -> dict[str, Any]:
    pattern, national = _draw_phone(rng, country, kind)
    # Stored the way people type numbers, so lookups exercise normalisation.
    return {
        "id": phone_id,
        "customer_id": customer_id,
        "e164": f"+{pattern.calling_code}{national}",
        "raw": pattern.layouts[_STYLE.pick(rng)].format(*national),
        "kind": phone_kind,
    }


def _ago(now: datetime, rng: random.Random, low_days: float, high_days: float) -> datetime:
    # Whole seconds: `now` is too (see generate_customers), and so is every time shown.
    return now - timedelta(seconds=int((low_days + (high_days - low_days) * rng.random()) * 86400))


def _kyc_row(rng: random.Random, customer_id: str, created_at: datetime, now: datetime) -> dict[str, Any]:
    status = _KYC_STATUS.pick(rng)
    risk = _RISK.pick(rng)
    pep = rng.random() < 0.05
    sanctions_hit = rng.random() < 0.02
    reasons: list[str] = []
    if risk == "high" or rng.random() < 0.06:
        reasons = rng.sample(_PLAIN_EDD_REASONS, _between(rng, 1, 2))
    if pep:
        risk = "high" if rng.random() < 0.6 else "medium"
        reasons.append("politically_exposed")
    if sanctions_hit:
        # A sanctions hit blocks onboarding: such a record never stays verified.
        risk, status = "high", _one(rng, ("pending", "rejected"))
        reasons.append("sanctions_hit")
    verified_at = next_review_at = None
    if status == "verified":
        # Reviews come sooner the riskier the customer; about one in ten has lapsed
        # without anyone writing 'expired' yet, which the profile has to notice.
        period = timedelta(days={"low": 1095, "medium": 730, "high": 365}[risk])
        verified_at = max(now - period * rng.uniform(0.0, 1.1), created_at + timedelta(days=2))
        verified_at = min(verified_at, now)
        next_review_at = verified_at + period
    elif status == "expired":
        verified_at = now - timedelta(days=rng.uniform(800, 1500))
        next_review_at = now - timedelta(days=rng.uniform(1, 90))
    document_type = None if status == "not_started" else _one(rng, ("passport", "national_id", "driving_licence"))
    # Only the last four characters are ever made up: the rest would be masked anyway.
    tail = "".join(_one(rng, "ABCDEFGHJKLMNPRSTUVWXYZ0123456789") for _ in range(4))
    return {
        "customer_id": customer_id,
        "status": status,
        "verified_at": verified_at.replace(microsecond=0) if verified_at else None,
        "risk_rating": risk,
        "pep": pep,
        "sanctions_hit": sanctions_hit,
        "edd_required": bool(reasons),
        "edd_reasons": reasons,
        "document_type": document_type,
        "document_number_masked": "*****" + tail if document_type else None,
        "next_review_at": next_review_at.replace(microsecond=0) if next_review_at else None,
        "updated_at": _ago(now, rng, 0, 60),
    }


def _balance(rng: random.Random, tier: str) -> Decimal:
    low, high = {"retail": (50, 25_000), "professional": (10_000, 600_000), "vip": (250_000, 5_000_000)}[tier]
    # Log-uniform: most balances are small, a few are large, as in a real book.
    value = low * (high / low) ** rng.random()
    return Decimal(f"{value:.2f}")


def _interaction_rows(rng: random.Random, prefix: str, customer_id: str, phones: list[dict[str, Any]],
                      email: str | None, created_at: datetime, now: datetime, count: int,
                      language: str = "en") -> list[dict[str, Any]]:
    rows = []
    span = max((now - created_at).total_seconds() / 86400, 1.0)
    for k in range(count):
        channel = _CHANNEL.pick(rng)
        direction = "outbound" if channel == "voice" and rng.random() < 0.25 else "inbound"
        queue_name, dialled, menu = _QUEUES[_below(rng, 3)]
        queue: str | None = queue_name
        to: str | None
        ivr_path: list[str] | None = None
        customer_number = phones[_below(rng, len(phones))]["e164"]
        started_at = _ago(now, rng, 0.05, min(span, 365))
        if channel == "voice" and direction == "inbound":
            outcome = _INBOUND_OUTCOME.pick(rng)
            caller, to = customer_number, dialled
            ivr_path = [f"lang:{language}", menu]
        elif channel == "voice":
            outcome = _OUTBOUND_OUTCOME.pick(rng)
            caller, to, queue = _HUB_NUMBER, customer_number, None
        elif channel == "chat":
            outcome = _CHAT_OUTCOME.pick(rng)
            caller, to = f"webchat:{rng.getrandbits(48):012x}", None
        else:
            outcome = "completed"
            caller, to = email or f"unknown-{rng.getrandbits(32):08x}@example.net", "support@broker.example"
        agent = None if outcome == "abandoned" else _AGENTS[_below(rng, 10)]
        answered_at = ended_at = None
        if outcome == "completed":
            answered_at = started_at + timedelta(seconds=_between(rng, 3, 45))
            ended_at = answered_at + timedelta(seconds=_between(rng, 40, 1500))
        else:
            ended_at = started_at + timedelta(seconds=_between(rng, 5, 90))
        rows.append({
            "id": f"{prefix}_{k}",
            "customer_id": customer_id,
            "channel": channel,
            "direction": direction,
            "caller_number": caller,
            "dialled": to,
            "queue": queue,
            "agent_id": agent,
            "started_at": started_at,
            "answered_at": answered_at,
            "ended_at": ended_at,
            "outcome": outcome,
            "disposition": _one(rng, _DISPOSITIONS) if outcome == "completed" else None,
            "notes": _one(rng, _NOTES) if outcome == "completed" else None,
            "call_id": f"{rng.getrandbits(96):024x}@demo.ctihub" if channel == "voice" else None,
            "ivr_path": ivr_path,
            "recording_id": None,
            "transcript_ref": None,
        })
    return rows


def _email_local(first: str, last: str) -> str:
    local = unicodedata.normalize("NFKD", f"{first}.{last}".lower().replace(" ", ""))
    return local.encode("ascii", "ignore").decode()


def _email_rows(rng: random.Random, prefix: str, customer_id: str, local: str, domain: str) -> list[dict[str, Any]]:
    addresses: list[tuple[str, str]] = []
    if rng.random() < 0.9:
        addresses.append((f"{local}{_between(rng, 1, 99)}@{domain}", "personal"))
    if rng.random() < 0.2:
        addresses.append((f"{local}@{_one(rng, _COMPANIES)}", "work"))
    return [{"id": f"{prefix}_{k}", "customer_id": customer_id, "address": address, "kind": kind,
             "is_primary": k == 0} for k, (address, kind) in enumerate(addresses)]


def _task(task_id: str, customer_id: str, kind: str, title: str, status: str, owner: str | None,
          due_at: datetime | None, created_at: datetime, now: datetime,
          interaction_id: str | None = None) -> dict[str, Any]:
    completed_at = None
    if status != "open":
        completed_at = min(max(due_at or created_at, created_at), now)
    return {"id": task_id, "customer_id": customer_id, "interaction_id": interaction_id, "kind": kind,
            "title": title, "status": status, "owner": owner, "due_at": due_at, "created_at": created_at,
            "completed_at": completed_at}


def _task_rows(rng: random.Random, prefix: str, customer_id: str, kyc: dict[str, Any],
               interactions: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []

    def add(kind: str, title: str, status: str, due_at: datetime | None, created_at: datetime,
            interaction_id: str | None = None) -> None:
        tasks.append(_task(f"{prefix}_{len(tasks)}", customer_id, kind, title, status, _AGENTS[_below(rng, 10)],
                           due_at, min(created_at, now), now, interaction_id))

    review = kyc["next_review_at"]
    if review is not None and review <= now and rng.random() < 0.7:
        add("kyc_review", "Periodic KYC review overdue", "open", review + timedelta(days=14), review)
    elif kyc["status"] == "pending" and rng.random() < 0.6:
        add("document_request", _one(rng, ("Proof of address", "Source of funds", "Second ID document")),
            "open", now + timedelta(days=_between(rng, -5, 10)), _ago(now, rng, 1, 30))
    for interaction in interactions:
        if interaction["disposition"] == "callback_requested":
            due = interaction["started_at"] + timedelta(hours=_between(rng, 2, 48))
            add("callback", "Call back as promised", "open" if due > now else "done", due,
                interaction["started_at"], interaction["id"])
    if rng.random() < 0.05:
        add("follow_up", "Check in after first deposit", _one(rng, ("open", "done", "cancelled")),
            now + timedelta(days=_between(rng, -20, 20)), _ago(now, rng, 20, 60))
    return tasks


def _lead_rows(rng: random.Random, seed: int, index: int, customer: dict[str, Any],
               now: datetime) -> list[dict[str, Any]]:
    leads: list[dict[str, Any]] = []
    country = customer["country"]
    if rng.random() < 0.06:
        created = _ago(now, rng, 1, 200)
        leads.append({
            "id": f"lead_{seed}_{index:07d}_{len(leads)}", "customer_id": customer["id"],
            "name": f"{customer['first_name']} {customer['last_name']}", "phone_e164": None,
            "email": customer["email"], "source": _LEAD_SOURCE.pick(rng), "status": _LEAD_STATUS_CUSTOMER.pick(rng),
            "owner": customer["account_manager"] or _one(rng, _ACCOUNT_MANAGERS), "interest": _one(rng, _INTERESTS),
            "created_at": created, "updated_at": min(created + timedelta(days=rng.uniform(0, 30)), now).replace(microsecond=0),
        })
    if rng.random() < 0.04:
        # A prospect who is nobody's customer yet, from the same market.
        _, _, _, first_names, last_names, domain = _COUNTRIES[country]
        first, last = _one(rng, first_names), _one(rng, last_names)
        pattern, national = _draw_phone(rng, country, "mobile")
        created = _ago(now, rng, 1, 120)
        leads.append({
            "id": f"lead_{seed}_{index:07d}_{len(leads)}", "customer_id": None, "name": f"{first} {last}",
            "phone_e164": f"+{pattern.calling_code}{national}",
            "email": f"{_email_local(first, last)}{_between(rng, 100, 999)}@{domain}" if rng.random() < 0.7 else None,
            "source": _LEAD_SOURCE.pick(rng), "status": _LEAD_STATUS_PROSPECT.pick(rng),
            "owner": _one(rng, _ACCOUNT_MANAGERS) if rng.random() < 0.6 else None,
            "interest": _one(rng, _INTERESTS), "created_at": created,
            "updated_at": min(created + timedelta(days=rng.uniform(0, 10)), now).replace(microsecond=0),
        })
    return leads


def _generate_one(seed: int, index: int, now: datetime) -> Bundle:
    # One Random per customer: customer i is the same whatever n is, so a large run can
    # be streamed, split across workers or resumed from any index. An integer seed,
    # not a string: seeding from a string hashes it, which costs more than the rest.
    rng = random.Random(seed * 4_294_967_296 + index)
    key = f"{seed}_{index:07d}"
    customer_id = f"cus_{key}"
    country = _COUNTRY.pick(rng)
    _, _, currencies, first_names, last_names, domain = _COUNTRIES[country]
    first, last = first_names[_below(rng, 10)], last_names[_below(rng, 10)]
    tier = _TIER.pick(rng)
    created_at = _ago(now, rng, 30, 1800)
    manager_odds = {"retail": 0.1, "professional": 0.6, "vip": 1.0}[tier]
    emails = _email_rows(rng, f"eml_{key}", customer_id, _email_local(first, last), domain)
    language = _LANGUAGE[country].pick(rng)
    customer = {
        "id": customer_id,
        "first_name": first,
        "last_name": last,
        "language": language,
        "country": country,
        "tier": tier,
        "account_manager": _one(rng, _ACCOUNT_MANAGERS) if rng.random() < manager_odds else None,
        "email": emails[0]["address"] if emails else None,
        "marketing_consent": rng.random() < 0.45,
        "created_at": created_at,
        "updated_at": (created_at + (now - created_at) * rng.random()).replace(microsecond=0),
    }
    phones = [_phone_row(rng, f"ph_{key}_0", customer_id, country, "mobile", "mobile")]
    if rng.random() < 0.3:
        phones.append(_phone_row(rng, f"ph_{key}_1", customer_id, country, "fixed", _one(rng, ("home", "work"))))
    if rng.random() < 0.05:
        phones.append(_phone_row(rng, f"ph_{key}_{len(phones)}", customer_id, country, "mobile", "work"))
    accounts = []
    for k in range(_ACCOUNT_COUNT.pick(rng)):
        balance = _balance(rng, tier)
        accounts.append({
            "id": f"acc_{key}_{k}",
            "customer_id": customer_id,
            # Unique across indexes; two seeds equal modulo 90 would collide, which no
            # demo needs (and the bulk writer refuses rather than overwrites).
            "number": f"{10 + seed % 90}{index:07d}{k}",
            "platform": _PLATFORM.pick(rng),
            "currency": currencies[_below(rng, len(currencies))],
            "balance": balance,
            "equity": (balance * Decimal(str(round(rng.uniform(0.85, 1.12), 4)))).quantize(Decimal("0.01")),
            "status": _ACCOUNT_STATUS.pick(rng),
        })
    kyc = _kyc_row(rng, customer_id, created_at, now)
    interactions = _interaction_rows(rng, f"int_{key}", customer_id, phones, customer["email"], created_at, now,
                                     _INTERACTION_COUNT.pick(rng), language)
    return {
        "customer": customer,
        "phones": phones,
        "emails": emails,
        "kyc": kyc,
        "accounts": accounts,
        "interactions": interactions,
        "tasks": _task_rows(rng, f"task_{key}", customer_id, kyc, interactions, now),
        "leads": _lead_rows(rng, seed, index, customer, now),
    }


def generate_customers(n: int, seed: int = 7, *, now: datetime = DEMO_REFERENCE_TIME,
                       start: int = 0) -> Iterator[Bundle]:
    """Yield `n` customer bundles (indexes start..start+n-1), deterministically from `seed`.

    Pure and lazy: nothing is kept between customers, so a million rows stream in
    constant memory. Each bundle has keys customer, phones, emails, kyc, accounts,
    interactions, tasks, leads holding row dicts keyed by column name, ready for
    `crm_sync.bulk`.
    """
    now = now.replace(microsecond=0)
    for index in range(start, start + n):
        yield _generate_one(seed, index, now)


def fixed_customers(now: datetime) -> list[Bundle]:
    """The documented customers of DEMO_CUSTOMERS_FIXED, with dates relative to `now`."""
    rng = random.Random("crm-demo:fixed")
    now = now.replace(microsecond=0)

    def days(ago: int) -> datetime:
        return (now - timedelta(days=ago)).replace(microsecond=0)

    def customer(cid: str, first: str, last: str, language: str, country: str, tier: str,
                 manager: str | None, email: str | None, since: int) -> dict[str, Any]:
        return {"id": cid, "first_name": first, "last_name": last, "language": language, "country": country,
                "tier": tier, "account_manager": manager, "email": email, "marketing_consent": False,
                "created_at": days(since), "updated_at": days(3)}

    def phone(pid: str, cid: str, e164: str, kind: str) -> dict[str, Any]:
        number = phonenumbers.parse(e164)
        return {"id": pid, "customer_id": cid, "e164": e164, "kind": kind,
                "raw": phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)}

    def emails(cid: str, *addresses: tuple[str, str]) -> list[dict[str, Any]]:
        return [{"id": f"eml_{cid[4:]}_{k}", "customer_id": cid, "address": address, "kind": kind,
                 "is_primary": k == 0} for k, (address, kind) in enumerate(addresses)]

    def kyc(cid: str, status: str, risk: str, *, verified: int | None, review_in: int | None, pep: bool = False,
            reasons: tuple[str, ...] = (), doc: str = "passport", last4: str = "0000") -> dict[str, Any]:
        return {"customer_id": cid, "status": status, "verified_at": days(verified) if verified is not None else None,
                "risk_rating": risk, "pep": pep, "sanctions_hit": False, "edd_required": bool(reasons),
                "edd_reasons": list(reasons), "document_type": doc, "document_number_masked": "*****" + last4,
                "next_review_at": days(-review_in) if review_in is not None else None, "updated_at": days(3)}

    def account(aid: str, cid: str, number: str, platform: str, currency: str, balance: str,
                equity: str) -> dict[str, Any]:
        return {"id": aid, "customer_id": cid, "number": number, "platform": platform, "currency": currency,
                "balance": Decimal(balance), "equity": Decimal(equity), "status": "active"}

    bundles: list[Bundle] = []
    lena = customer("cus_demo_lena", "Lena", "Hoffmann", "de", "DE", "vip", "agent08",
                    "lena.hoffmann@example.de", 900)
    lena_phones = [phone("ph_demo_lena_0", lena["id"], "+4930901820", "work"),
                   phone("ph_demo_lena_1", lena["id"], "+491701234567", "mobile")]
    bundles.append({
        "customer": lena, "phones": lena_phones,
        "emails": emails(lena["id"], (lena["email"], "personal"), ("l.hoffmann@hoffmann-consulting.example", "work")),
        "kyc": kyc(lena["id"], "verified", "low", verified=200, review_in=530, last4="4821"),
        "accounts": [account("acc_demo_lena_0", lena["id"], "0090000011", "MT5", "EUR", "250000.00", "257310.50"),
                     account("acc_demo_lena_1", lena["id"], "0090000012", "cTrader", "USD", "84000.00", "81250.75")],
        "interactions": _interaction_rows(rng, "int_demo_lena", lena["id"], lena_phones, lena["email"],
                                          days(900), now, 7, "de"),
        "tasks": [],
        "leads": [{"id": "lead_demo_lena_0", "customer_id": lena["id"], "name": "Lena Hoffmann", "phone_e164": None,
                   "email": lena["email"], "source": "campaign", "status": "qualified", "owner": "agent08",
                   "interest": "managed portfolios", "created_at": days(20), "updated_at": days(6)}],
    })
    oliver = customer("cus_demo_oliver", "Oliver", "Bennett", "en", "GB", "retail", None,
                      "oliver.bennett@example.co.uk", 40)
    oliver_phones = [phone("ph_demo_oliver_0", oliver["id"], "+442079460018", "home")]
    bundles.append({
        "customer": oliver, "phones": oliver_phones, "emails": emails(oliver["id"], (oliver["email"], "personal")),
        "kyc": kyc(oliver["id"], "pending", "high", verified=None, review_in=None, doc="driving_licence",
                   last4="7QW1", reasons=("unusual_transactions", "questionable_financial_history")),
        "accounts": [account("acc_demo_oliver_0", oliver["id"], "0090000021", "MT5", "GBP", "3200.00", "2875.40")],
        "interactions": _interaction_rows(rng, "int_demo_oliver", oliver["id"], oliver_phones, oliver["email"],
                                          days(40), now, 2),
        "tasks": [_task("task_demo_oliver_0", oliver["id"], "document_request", "Source of funds for the EDD review",
                        "open", "agent05", days(-5), days(10), now)],
        "leads": [],
    })
    nikos = customer("cus_demo_nikos", "Nikos", "Georgiou", "el", "CY", "professional", "agent03",
                     "nikos.georgiou@example.com.cy", 1400)
    nikos_phones = [phone("ph_demo_nikos_0", nikos["id"], HOUSEHOLD_NUMBER, "home"),
                    phone("ph_demo_nikos_1", nikos["id"], "+35799123456", "mobile")]
    bundles.append({
        "customer": nikos, "phones": nikos_phones, "emails": emails(nikos["id"], (nikos["email"], "personal")),
        # Stored as verified on purpose: the profile must work out that it has lapsed.
        "kyc": kyc(nikos["id"], "verified", "medium", verified=742, review_in=-12, doc="national_id", last4="3307"),
        "accounts": [account("acc_demo_nikos_0", nikos["id"], "0090000031", "WebTrader", "EUR", "148000.00",
                             "150912.00")],
        "interactions": _interaction_rows(rng, "int_demo_nikos", nikos["id"], nikos_phones, nikos["email"],
                                          days(1400), now, 3, "el"),
        "tasks": [_task("task_demo_nikos_0", nikos["id"], "kyc_review", "Periodic KYC review overdue", "open",
                        "agent03", days(2), days(12), now)],
        "leads": [],
    })
    eleni = customer("cus_demo_eleni", "Eleni", "Georgiou", "el", "CY", "retail", None,
                     "eleni.georgiou@example.com.cy", 600)
    eleni_phones = [phone("ph_demo_eleni_0", eleni["id"], HOUSEHOLD_NUMBER, "home"),
                    phone("ph_demo_eleni_1", eleni["id"], "+35796543210", "mobile")]
    bundles.append({
        "customer": eleni, "phones": eleni_phones, "emails": emails(eleni["id"], (eleni["email"], "personal")),
        "kyc": kyc(eleni["id"], "verified", "high", verified=300, review_in=65, pep=True, last4="9150",
                   reasons=("politically_exposed",)),
        "accounts": [account("acc_demo_eleni_0", eleni["id"], "0090000041", "MT5", "EUR", "12500.00", "12020.10")],
        "interactions": _interaction_rows(rng, "int_demo_eleni", eleni["id"], eleni_phones, eleni["email"],
                                          days(600), now, 1, "el"),
        "tasks": [],
        "leads": [],
    })
    return bundles


async def seed_demo_crm(sessionmaker: async_sessionmaker[AsyncSession], *, customers: int = 240, seed: int = 7,
                        now: datetime | None = None, batch_size: int = 2000,
                        progress: Callable[[int], None] | None = None) -> int:
    """Fill the CRM with the fixed demo customers plus generated ones, up to `customers` in all.

    Idempotent: customers whose id is already present are skipped (never updated), so
    running it twice adds nothing. Batches go through `crm_sync.bulk` (COPY on
    PostgreSQL), the next one generated in a thread while this one is written;
    `progress` gets the number of customers handled so far after each batch. Returns
    the number of customers now in the database.
    """
    now = now or datetime.now(UTC)
    bundles = itertools.chain(fixed_customers(now), generate_customers(max(customers - len(DEMO_CUSTOMERS_FIXED), 0),
                                                                        seed, now=now))
    done = 0
    async with contextlib.aclosing(prefetch(chunks(bundles, batch_size))) as batches:
        async for batch in batches:
            result = await write_batch(sessionmaker, batch, now=now)
            if result.rejected:
                position, column, reason = result.rejected[0]
                raise RuntimeError(f"demo customer {batch[position]['customer']['id']} refused ({column}): {reason}")
            done += len(batch)
            if progress is not None:
                progress(done)
    async with sessionmaker() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(Customer)) or 0)


__all__ = [
    "DEMO_CUSTOMERS_FIXED",
    "DEMO_REFERENCE_TIME",
    "HOUSEHOLD_NUMBER",
    "Bundle",
    "FixedDemoCustomer",
    "fixed_customers",
    "generate_customers",
    "seed_demo_crm",
]
