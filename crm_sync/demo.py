"""Demo CRM data: a few fixed, documented customers plus a seeded crowd of realistic ones.

Owns the demo customer generator (pure: plain row dicts from a seed and a `now`, no
I/O, no clock) and the idempotent seeding of a database with it. Must never be used
for production data, never produce a number that phonenumbers calls invalid for its
country, and never touch rows it did not generate (existing ids are skipped, not
updated).

Fixed customers (their dates move with `now`, so the README tour always holds):

| id | name | number | KYC as shown | what it shows |
|---|---|---|---|---|
| cus_demo_lena | Lena Hoffmann (DE, de, vip) | +4930901820 | verified, low risk | a VIP with an account manager, 2 accounts, 7 interactions |
| cus_demo_oliver | Oliver Bennett (GB, en, retail) | +442079460018 | pending, high risk, EDD | EDD: unusual transactions, questionable financial history |
| cus_demo_nikos | Nikos Georgiou (CY, el, professional) | +35722123456 (home, shared) | expired (review date passed) | a verified record whose review lapsed |
| cus_demo_eleni | Eleni Georgiou (CY, el, retail) | +35722123456 (home, shared) | verified, PEP, high risk, EDD | a politically exposed person; the shared line gives 2 matches |
"""

from __future__ import annotations

import itertools
import random
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import phonenumbers
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_sync.profile import mask_tail
from crm_sync.schema import Customer, CustomerPhone, Interaction, KycRecord, TradingAccount
from cti.db import Base

# Used when no `now` is given to the pure generator, so that its output never depends
# on when it runs.
DEMO_REFERENCE_TIME = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)

Bundle = dict[str, Any]
"""One customer and everything hanging off it: keys customer, phones, kyc, accounts,
interactions; each a row dict (or list of row dicts) keyed by column name."""


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

# National significant number patterns ('X' = random digit); every draw is checked with
# phonenumbers.is_valid_number, the patterns only keep the retries few.
_MOBILE_PATTERNS: dict[str, tuple[str, ...]] = {
    "GB": ("74XXXXXXXX", "75XXXXXXXX", "77XXXXXXXX", "78XXXXXXXX", "79XXXXXXXX"),
    "DE": ("151XXXXXXXX", "160XXXXXXX", "170XXXXXXX", "176XXXXXXXX"),
    "FR": ("6XXXXXXXX", "7XXXXXXXX"),
    "ES": ("6XXXXXXXX",),
    "IT": ("32XXXXXXXX", "33XXXXXXXX", "34XXXXXXXX"),
    "PL": ("5XXXXXXXX", "6XXXXXXXX", "7XXXXXXXX"),
    "CH": ("76XXXXXXX", "78XXXXXXX", "79XXXXXXX"),
    "AE": ("50XXXXXXX", "55XXXXXXX", "56XXXXXXX"),
    "US": ("212XXXXXXX", "646XXXXXXX", "415XXXXXXX", "305XXXXXXX"),
    "CY": ("99XXXXXX", "96XXXXXX", "97XXXXXX"),
}
_FIXED_LINE_PATTERNS: dict[str, tuple[str, ...]] = {
    "GB": ("20XXXXXXXX", "161XXXXXXX", "131XXXXXXX", "121XXXXXXX"),
    "DE": ("30XXXXXXX", "40XXXXXXX", "89XXXXXXX", "69XXXXXXX"),
    "FR": ("1XXXXXXXX", "4XXXXXXXX"),
    "ES": ("91XXXXXXX", "93XXXXXXX"),
    "IT": ("06XXXXXXXX", "02XXXXXXXX"),
    "PL": ("22XXXXXXX", "12XXXXXXX"),
    "CH": ("44XXXXXXX", "22XXXXXXX", "61XXXXXXX"),
    "AE": ("4XXXXXXX", "2XXXXXXX"),
    "US": ("212XXXXXXX", "718XXXXXXX", "312XXXXXXX"),
    "CY": ("22XXXXXX", "25XXXXXX"),
}

_KYC_WEIGHTS = (("verified", 55), ("pending", 14), ("not_started", 8), ("rejected", 8), ("expired", 15))
_TIER_WEIGHTS = (("retail", 70), ("professional", 20), ("vip", 10))
_PLAIN_EDD_REASONS = (
    "sanctioned_country", "shell_companies", "unusual_transactions", "questionable_financial_history",
    "linked_to_suspected_illegal_activity", "penalties_or_noncompliance", "unpaid_debts_or_liens",
)
# Matches the demo directory (cti/directory/demo.py): sales agents manage accounts.
_ACCOUNT_MANAGERS = ("agent01", "agent02", "agent03", "agent05", "agent08")
_AGENTS = tuple(f"agent{i:02d}" for i in range(1, 11))
_QUEUES = (("sales", "1000"), ("support", "2000"), ("kyc", "3000"))
_DISPOSITIONS = ("deposit_query", "withdrawal_query", "kyc_documents", "platform_support", "account_upgrade",
                 "margin_call", "complaint", "callback_requested")
_NOTES = ("Asked about withdrawal timing.", "Sent the KYC document checklist.", "Explained margin requirements.",
          "Wants a call back after market close.", "Reset platform password.", None, None, None)
_HUB_NUMBER = "+442071234567"


def _pick(rng: random.Random, weighted: Iterable[tuple[str, int]]) -> str:
    values, weights = zip(*weighted)
    return rng.choices(values, weights=weights)[0]


def _random_number(rng: random.Random, country: str, patterns: dict[str, tuple[str, ...]]) -> phonenumbers.PhoneNumber:
    code = phonenumbers.country_code_for_region(country)
    for _ in range(200):
        pattern = rng.choice(patterns[country])
        national = "".join(str(rng.randrange(10)) if c == "X" else c for c in pattern)
        number = phonenumbers.parse(f"+{code}{national}")
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        # Fixed customers' numbers must keep exactly the matches the docs promise; and
        # +44 7829... is Jersey, not GB, hence "valid for the region", not just valid.
        if e164 not in _FIXED_NUMBERS and phonenumbers.is_valid_number_for_region(number, country):
            return number
    raise RuntimeError(f"no valid demo number for {country} after 200 draws: fix the patterns")


def _phone_row(rng: random.Random, phone_id: str, customer_id: str, number: phonenumbers.PhoneNumber,
               kind: str) -> dict[str, Any]:
    # Stored the way people type numbers, so lookups exercise normalisation.
    style = rng.choice((phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                        phonenumbers.PhoneNumberFormat.NATIONAL))
    return {
        "id": phone_id,
        "customer_id": customer_id,
        "e164": phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        "raw": phonenumbers.format_number(number, style),
        "kind": kind,
    }


def _ago(now: datetime, rng: random.Random, low_days: float, high_days: float) -> datetime:
    return (now - timedelta(days=rng.uniform(low_days, high_days))).replace(microsecond=0)


def _kyc_row(rng: random.Random, customer_id: str, created_at: datetime, now: datetime) -> dict[str, Any]:
    status = _pick(rng, _KYC_WEIGHTS)
    risk = _pick(rng, (("low", 55), ("medium", 30), ("high", 15)))
    pep = rng.random() < 0.05
    sanctions_hit = rng.random() < 0.02
    reasons: list[str] = []
    if risk == "high" or rng.random() < 0.06:
        reasons = rng.sample(_PLAIN_EDD_REASONS, rng.randint(1, 2))
    if pep:
        risk = "high" if rng.random() < 0.6 else "medium"
        reasons.append("politically_exposed")
    if sanctions_hit:
        # A sanctions hit blocks onboarding: such a record never stays verified.
        risk, status = "high", rng.choice(("pending", "rejected"))
        reasons.append("sanctions_hit")
    verified_at = next_review_at = None
    if status == "verified":
        # Reviews come sooner the riskier the customer; about one in ten has lapsed
        # without anyone writing 'expired' yet, which the profile has to notice.
        period = timedelta(days={"low": 1095, "medium": 730, "high": 365}[risk])
        verified_at = max(now - period * rng.uniform(0.0, 1.1), created_at + timedelta(days=2))
        next_review_at = verified_at + period
    elif status == "expired":
        verified_at = now - timedelta(days=rng.uniform(800, 1500))
        next_review_at = now - timedelta(days=rng.uniform(1, 90))
    document_type = None if status == "not_started" else rng.choice(("passport", "national_id", "driving_licence"))
    document_number = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ0123456789") for _ in range(9))
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
        "document_number_masked": mask_tail(document_number) if document_type else None,
        "next_review_at": next_review_at.replace(microsecond=0) if next_review_at else None,
        "updated_at": _ago(now, rng, 0, 60),
    }


def _balance(rng: random.Random, tier: str) -> Decimal:
    low, high = {"retail": (50, 25_000), "professional": (10_000, 600_000), "vip": (250_000, 5_000_000)}[tier]
    # Log-uniform: most balances are small, a few are large, as in a real book.
    value = low * (high / low) ** rng.random()
    return Decimal(f"{value:.2f}")


def _interaction_rows(rng: random.Random, prefix: str, customer_id: str, phones: list[dict[str, Any]],
                      email: str | None, created_at: datetime, now: datetime, count: int) -> list[dict[str, Any]]:
    rows = []
    span = max((now - created_at).total_seconds() / 86400, 1.0)
    for k in range(count):
        channel = _pick(rng, (("voice", 70), ("chat", 20), ("email", 10)))
        direction = "outbound" if channel == "voice" and rng.random() < 0.25 else "inbound"
        queue_name, dialled = rng.choice(_QUEUES)
        queue: str | None = queue_name
        to: str | None
        customer_number = rng.choice(phones)["e164"]
        started_at = _ago(now, rng, 0.05, min(span, 365))
        if channel == "voice" and direction == "inbound":
            outcome = _pick(rng, (("completed", 80), ("abandoned", 12), ("missed", 8)))
            caller, to = customer_number, dialled
        elif channel == "voice":
            outcome = _pick(rng, (("completed", 75), ("failed", 25)))
            caller, to, queue = _HUB_NUMBER, customer_number, None
        elif channel == "chat":
            outcome = _pick(rng, (("completed", 90), ("abandoned", 10)))
            caller, to = f"webchat:{rng.getrandbits(48):012x}", None
        else:
            outcome = "completed"
            caller, to = email or f"unknown-{rng.getrandbits(32):08x}@example.net", "support@broker.example"
        agent = None if outcome == "abandoned" else rng.choice(_AGENTS)
        answered_at = ended_at = None
        if outcome == "completed":
            answered_at = started_at + timedelta(seconds=rng.randint(3, 45))
            ended_at = answered_at + timedelta(seconds=rng.randint(40, 1500))
        else:
            ended_at = started_at + timedelta(seconds=rng.randint(5, 90))
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
            "disposition": rng.choice(_DISPOSITIONS) if outcome == "completed" else None,
            "notes": rng.choice(_NOTES) if outcome == "completed" else None,
            "call_id": f"{rng.getrandbits(96):024x}@demo.ctihub" if channel == "voice" else None,
        })
    return rows


def _generate_one(seed: int, index: int, now: datetime) -> Bundle:
    # One Random per customer: customer i is the same whatever n is, so a large run can
    # be streamed, split across workers or resumed from any index.
    rng = random.Random(f"crm-demo:{seed}:{index}")
    customer_id = f"cus_{seed}_{index:07d}"
    country = rng.choices(_COUNTRY_CODES, weights=_COUNTRY_WEIGHTS)[0]
    _, languages, currencies, first_names, last_names, domain = _COUNTRIES[country]
    first, last = rng.choice(first_names), rng.choice(last_names)
    tier = _pick(rng, _TIER_WEIGHTS)
    created_at = _ago(now, rng, 30, 1800)
    manager_odds = {"retail": 0.1, "professional": 0.6, "vip": 1.0}[tier]
    local = unicodedata.normalize("NFKD", f"{first}.{last}".lower().replace(" ", ""))
    local = local.encode("ascii", "ignore").decode()
    email: str | None = f"{local}{rng.randint(1, 99)}@{domain}" if rng.random() < 0.9 else None
    customer = {
        "id": customer_id,
        "first_name": first,
        "last_name": last,
        "language": _pick(rng, languages),
        "country": country,
        "tier": tier,
        "account_manager": rng.choice(_ACCOUNT_MANAGERS) if rng.random() < manager_odds else None,
        "email": email,
        "marketing_consent": rng.random() < 0.45,
        "created_at": created_at,
        "updated_at": (created_at + (now - created_at) * rng.random()).replace(microsecond=0),
    }
    phones = [_phone_row(rng, f"ph_{seed}_{index:07d}_0", customer_id, _random_number(rng, country, _MOBILE_PATTERNS),
                         "mobile")]
    if rng.random() < 0.3:
        phones.append(_phone_row(rng, f"ph_{seed}_{index:07d}_1", customer_id,
                                 _random_number(rng, country, _FIXED_LINE_PATTERNS), rng.choice(("home", "work"))))
    accounts = []
    for k in range(rng.choices((1, 2, 3), weights=(60, 30, 10))[0]):
        balance = _balance(rng, tier)
        accounts.append({
            "id": f"acc_{seed}_{index:07d}_{k}",
            "customer_id": customer_id,
            # Unique across indexes; two seeds equal modulo 90 would collide, which no
            # demo needs.
            "number": f"{10 + seed % 90}{index:07d}{k}",
            "platform": _pick(rng, (("MT5", 60), ("cTrader", 25), ("WebTrader", 15))),
            "currency": rng.choice(currencies),
            "balance": balance,
            "equity": (balance * Decimal(str(round(rng.uniform(0.85, 1.12), 4)))).quantize(Decimal("0.01")),
            "status": _pick(rng, (("active", 80), ("dormant", 15), ("closed", 5))),
        })
    interactions = _interaction_rows(rng, f"int_{seed}_{index:07d}", customer_id, phones, email,
                                     created_at, now, rng.choices(range(7), weights=(10, 20, 20, 18, 14, 10, 8))[0])
    return {
        "customer": customer,
        "phones": phones,
        "kyc": _kyc_row(rng, customer_id, created_at, now),
        "accounts": accounts,
        "interactions": interactions,
    }


def generate_customers(n: int, seed: int = 7, *, now: datetime = DEMO_REFERENCE_TIME,
                       start: int = 0) -> Iterator[Bundle]:
    """Yield `n` customer bundles (indexes start..start+n-1), deterministically from `seed`.

    Pure and lazy: nothing is kept between customers, so a million rows stream in
    constant memory. Each bundle has keys customer, phones, kyc, accounts,
    interactions holding row dicts keyed by column name, ready for bulk inserts.
    """
    for index in range(start, start + n):
        yield _generate_one(seed, index, now)


def fixed_customers(now: datetime) -> list[Bundle]:
    """The documented customers of DEMO_CUSTOMERS_FIXED, with dates relative to `now`."""
    rng = random.Random("crm-demo:fixed")

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
        "kyc": kyc(lena["id"], "verified", "low", verified=200, review_in=530, last4="4821"),
        "accounts": [account("acc_demo_lena_0", lena["id"], "0090000011", "MT5", "EUR", "250000.00", "257310.50"),
                     account("acc_demo_lena_1", lena["id"], "0090000012", "cTrader", "USD", "84000.00", "81250.75")],
        "interactions": _interaction_rows(rng, "int_demo_lena", lena["id"], lena_phones, lena["email"],
                                          days(900), now, 7),
    })
    oliver = customer("cus_demo_oliver", "Oliver", "Bennett", "en", "GB", "retail", None,
                      "oliver.bennett@example.co.uk", 40)
    oliver_phones = [phone("ph_demo_oliver_0", oliver["id"], "+442079460018", "home")]
    bundles.append({
        "customer": oliver, "phones": oliver_phones,
        "kyc": kyc(oliver["id"], "pending", "high", verified=None, review_in=None, doc="driving_licence",
                   last4="7QW1", reasons=("unusual_transactions", "questionable_financial_history")),
        "accounts": [account("acc_demo_oliver_0", oliver["id"], "0090000021", "MT5", "GBP", "3200.00", "2875.40")],
        "interactions": _interaction_rows(rng, "int_demo_oliver", oliver["id"], oliver_phones, oliver["email"],
                                          days(40), now, 2),
    })
    nikos = customer("cus_demo_nikos", "Nikos", "Georgiou", "el", "CY", "professional", "agent03",
                     "nikos.georgiou@example.com.cy", 1400)
    nikos_phones = [phone("ph_demo_nikos_0", nikos["id"], HOUSEHOLD_NUMBER, "home"),
                    phone("ph_demo_nikos_1", nikos["id"], "+35799123456", "mobile")]
    bundles.append({
        "customer": nikos, "phones": nikos_phones,
        # Stored as verified on purpose: the profile must work out that it has lapsed.
        "kyc": kyc(nikos["id"], "verified", "medium", verified=742, review_in=-12, doc="national_id", last4="3307"),
        "accounts": [account("acc_demo_nikos_0", nikos["id"], "0090000031", "WebTrader", "EUR", "148000.00",
                             "150912.00")],
        "interactions": _interaction_rows(rng, "int_demo_nikos", nikos["id"], nikos_phones, nikos["email"],
                                          days(1400), now, 3),
    })
    eleni = customer("cus_demo_eleni", "Eleni", "Georgiou", "el", "CY", "retail", None,
                     "eleni.georgiou@example.com.cy", 600)
    eleni_phones = [phone("ph_demo_eleni_0", eleni["id"], HOUSEHOLD_NUMBER, "home"),
                    phone("ph_demo_eleni_1", eleni["id"], "+35796543210", "mobile")]
    bundles.append({
        "customer": eleni, "phones": eleni_phones,
        "kyc": kyc(eleni["id"], "verified", "high", verified=300, review_in=65, pep=True, last4="9150",
                   reasons=("politically_exposed",)),
        "accounts": [account("acc_demo_eleni_0", eleni["id"], "0090000041", "MT5", "EUR", "12500.00", "12020.10")],
        "interactions": _interaction_rows(rng, "int_demo_eleni", eleni["id"], eleni_phones, eleni["email"],
                                          days(600), now, 1),
    })
    return bundles


def _chunks(bundles: Iterable[Bundle], size: int) -> Iterator[list[Bundle]]:
    chunk: list[Bundle] = []
    for bundle in bundles:
        chunk.append(bundle)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _insert_new(session: AsyncSession, chunk: list[Bundle]) -> None:
    ids = [b["customer"]["id"] for b in chunk]
    existing = set(await session.scalars(sa.select(Customer.id).where(Customer.id.in_(ids))))
    fresh = [b for b in chunk if b["customer"]["id"] not in existing]
    # Parents before children for the foreign keys; one ORM bulk INSERT (an
    # executemany, no per-row objects) per table.
    tables: tuple[tuple[type[Base], list[dict[str, Any]]], ...] = (
        (Customer, [b["customer"] for b in fresh]),
        (CustomerPhone, [p for b in fresh for p in b["phones"]]),
        (KycRecord, [b["kyc"] for b in fresh]),
        (TradingAccount, [a for b in fresh for a in b["accounts"]]),
        (Interaction, [i for b in fresh for i in b["interactions"]]),
    )
    for table, rows in tables:
        if rows:
            await session.execute(sa.insert(table), rows)


async def seed_demo_crm(sessionmaker: async_sessionmaker[AsyncSession], *, customers: int = 240, seed: int = 7,
                        now: datetime | None = None, batch_size: int = 1000) -> int:
    """Fill the CRM with the fixed demo customers plus generated ones, up to `customers` in all.

    Idempotent: customers whose id is already present are skipped (never updated), so
    running it twice adds nothing. Returns the number of customers now in the database.
    """
    now = now or datetime.now(timezone.utc)
    fixed = fixed_customers(now)
    bundles = itertools.chain(fixed, generate_customers(max(customers - len(fixed), 0), seed, now=now))
    for chunk in _chunks(bundles, batch_size):
        async with sessionmaker() as session, session.begin():
            await _insert_new(session, chunk)
    async with sessionmaker() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(Customer)) or 0)


__all__ = [
    "DEMO_CUSTOMERS_FIXED",
    "DEMO_REFERENCE_TIME",
    "FixedDemoCustomer",
    "HOUSEHOLD_NUMBER",
    "fixed_customers",
    "generate_customers",
    "seed_demo_crm",
]
