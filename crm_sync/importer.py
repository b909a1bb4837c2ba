"""The customer CSV format (docs/crm-import.md): one row in, a validated bundle or the reasons out.

Owns the column set, the reading of a header into an `ImportPlan`, the validation and
normalisation of one row (`validate_row`: a dict of strings in, a bundle of table rows
or a list of (column, reason) out), the checks across rows of one file (`FileChecks`:
duplicate ids and account numbers) and the inverse, `bundle_to_row`, which export uses
so that export -> import round-trips. Pure: no I/O, no database, no clock (`now` comes
in), no randomness (a blank id is filled by the `new_id` the caller passes). Must never
let a full document number through: only a masked one (at most its last four
characters showing) is accepted, and `report_row` masks what a rejected row carried.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any, Literal

import phonenumbers

from crm_sync.phones import normalize_phone
from crm_sync.profile import mask_tail
from crm_sync.schema import (
    ACCOUNT_STATUSES,
    EDD_REASONS,
    EMAIL_KINDS,
    KYC_STATUSES,
    PHONE_KINDS,
    PLATFORMS,
    RISK_RATINGS,
    TIERS,
)

CUSTOMER_COLUMNS = (
    "id", "first_name", "last_name", "language", "country", "tier", "account_manager", "marketing_consent",
    "created_at",
)
KYC_COLUMNS = (
    "kyc_status", "kyc_risk_rating", "kyc_pep", "kyc_sanctions_hit", "kyc_edd_reasons", "kyc_document_type",
    "kyc_document_number_masked", "kyc_verified_at", "kyc_next_review_at",
)
COLUMNS = CUSTOMER_COLUMNS[:8] + ("phones", "emails") + KYC_COLUMNS + ("accounts", "created_at")
REQUIRED_COLUMNS = ("first_name", "last_name", "language", "country")
# Per row; more is far more likely a broken export than a real customer.
MAX_ITEMS = 20

Bundle = dict[str, Any]
Problem = tuple[str, str]
"""(column, reason) of one thing wrong with a row."""


class HeaderError(ValueError):
    """The header cannot be imported at all; `str()` is the one line to show."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportPlan:
    """What a file's header says: which columns it has and what an update replaces.

    An update sets only the customer columns the file has (`update_columns`) and
    replaces only the groups it has (`replace`: phones, emails, kyc, accounts); absent
    columns leave the stored values alone.
    """

    columns: tuple[str, ...]
    update_columns: tuple[str, ...]
    replace: frozenset[str]


def plan_header(header: Sequence[str] | None) -> ImportPlan:
    """Check a header row; raises `HeaderError` naming the first problem."""
    if not header:
        raise HeaderError("the file is empty: the first line must be the header (see docs/crm-import.md)")
    names = tuple(name.strip() for name in header)
    # Columns starting with '_' are notes for people (the rejected-rows report adds
    # _line and _errors), so a fixed report can be imported as it is.
    known = [n for n in names if not n.startswith("_")]
    unknown = sorted(set(known) - set(COLUMNS))
    if unknown:
        raise HeaderError(f"unknown column {unknown[0]!r}; the columns are: {', '.join(COLUMNS)}")
    duplicated = sorted({n for n in known if known.count(n) > 1})
    if duplicated:
        raise HeaderError(f"column {duplicated[0]!r} appears twice in the header")
    missing = [n for n in REQUIRED_COLUMNS if n not in known]
    if missing:
        raise HeaderError(f"required column {missing[0]!r} is missing from the header")
    present = set(known)
    update_columns = [c for c in CUSTOMER_COLUMNS if c in present and c not in ("id", "created_at")]
    if "emails" in present:
        update_columns.append("email")
    replace: set[str] = {group for group in ("phones", "emails", "accounts") if group in present}
    if present.intersection(KYC_COLUMNS):
        replace.add("kyc")
    return ImportPlan(columns=names, update_columns=tuple(update_columns), replace=frozenset(replace))


# --- phone numbers -----------------------------------------------------------------

_PLAIN_PHONE = re.compile(r"[0-9+\s().\-/]+")
_SEPARATORS = re.compile(r"[\s().\-/]")  # the same set as crm_sync.phones
_DIGITS = re.compile(r"\+?\d{2,17}")


@dataclass(frozen=True, slots=True)
class _Plan:
    """What phonenumbers' parse consults about a region, compiled once."""

    cc: str
    idd: re.Pattern[str] | None
    national_prefix: re.Pattern[str] | None
    transform: bool
    general: re.Pattern[str] | None
    lengths: tuple[int, ...]
    local_lengths: frozenset[int]


def _plan_for(metadata: Any) -> _Plan:
    desc = metadata.general_desc
    pattern = desc.national_number_pattern if desc is not None else None
    return _Plan(
        cc=str(metadata.country_code),
        idd=re.compile(metadata.international_prefix) if metadata.international_prefix else None,
        national_prefix=(re.compile(metadata.national_prefix_for_parsing)
                         if metadata.national_prefix_for_parsing else None),
        transform=bool(metadata.national_prefix_transform_rule),
        general=re.compile(pattern) if pattern else None,
        lengths=tuple(desc.possible_length) if desc is not None else (),
        local_lengths=frozenset(desc.possible_length_local_only or ()) if desc is not None else frozenset(),
    )


@functools.cache
def _region_plan(region: str) -> _Plan | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region, None)
    return _plan_for(metadata) if metadata is not None else None


@functools.cache
def _calling_code_plan(cc: int) -> _Plan | None:
    region = phonenumbers.region_code_for_country_code(cc)
    if region in ("ZZ", "001"):
        return None
    return _region_plan(region)


def _length_class(number: str, plan: _Plan) -> str:
    # phonenumbers' _test_number_length for the general description (number type UNKNOWN).
    length = len(number)
    if length in plan.local_lengths:
        return "local_only"
    if not plan.lengths or plan.lengths[0] > length:
        return "too_short"
    if plan.lengths[-1] < length:
        return "too_long"
    return "possible" if length in plan.lengths else "invalid_length"


def _fullmatch(pattern: re.Pattern[str] | None, number: str) -> bool:
    return pattern is not None and pattern.fullmatch(number) is not None


def _fast_e164(compact: str, region: str) -> str | None | Literal[False]:
    """What phonenumbers.parse + is_possible + E.164 gives for `compact`, or False
    when the input takes a branch of `parse` this does not mirror (the caller then
    asks phonenumbers itself). Mirrors phonenumbers' own steps for the two common
    shapes, '+<cc><national>' and a national number without its country code.
    """
    if compact[0] == "+":
        digits = compact[1:]
        if len(digits) <= 2 or digits[0] == "0":
            return False
        for size in (1, 2, 3):
            cc = int(digits[:size])
            if cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                break
        else:
            return False
        plan = _calling_code_plan(cc)
        national = digits[size:]
        if plan is None or (plan.national_prefix is not None and plan.national_prefix.match(national)):
            return False
    else:
        region_plan = _region_plan(region)
        if region_plan is None or compact.startswith(region_plan.cc):
            return False
        if region_plan.idd is not None and region_plan.idd.match(compact):
            return False
        national = compact
        prefix = region_plan.national_prefix.match(national) if region_plan.national_prefix else None
        if prefix is not None:
            if region_plan.transform:
                return False
            stripped = national[prefix.end():]
            keep = _fullmatch(region_plan.general, national) and not _fullmatch(region_plan.general, stripped)
            if not keep and _length_class(stripped, region_plan) in ("possible", "too_long"):
                national = stripped
        cc = int(region_plan.cc)
        plan = _calling_code_plan(cc)
        if plan is None:
            return False
    if not 2 <= len(national) <= 17:
        return None
    if _length_class(national, plan) not in ("possible", "local_only"):
        return None
    return f"+{cc}{national}"


def to_e164(raw: str, region: str) -> str | None:
    """`crm_sync.phones.normalize_phone(raw, region)`, the same answers, several times faster.

    Plain numbers (digits, '+', spaces and the usual separators) take a path that
    mirrors phonenumbers' parsing for international and national input; anything
    else, and any input that would take a rarer branch, goes to `normalize_phone`.
    tests/unit/test_crm_import_rows.py holds the two to the same answers.
    """
    if not _PLAIN_PHONE.fullmatch(raw):
        return normalize_phone(raw, region)
    compact = _SEPARATORS.sub("", raw)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not _DIGITS.fullmatch(compact):
        return None
    fast = _fast_e164(compact, region)
    return normalize_phone(raw, region) if fast is False else fast


# --- one row -----------------------------------------------------------------------
# Written straight-line rather than as a table of field parsers: this runs once per
# row of files of a million rows, and each call and closure saved is a few percent.

_BOOLEANS = {"true": True, "yes": True, "y": True, "1": True, "false": False, "no": False, "n": False, "0": False}
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,39}")
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,4})?")
_SLUG = re.compile(r"[a-z][a-z0-9_]{0,31}")
_ACCOUNT_NUMBER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,31}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_AMOUNT = re.compile(r"-?\d{1,16}(?:\.\d{1,2})?")
_EMAIL = re.compile(r"[^@\s,;:<>()\[\]\"]{1,64}@[^@\s,;:<>()\[\]\"]+\.[^@\s,;:<>()\[\]\".]{2,}")
_MASKED = re.compile(r"\*{3,}[A-Za-z0-9]{0,4}")
_PLATFORMS = {p.lower(): p for p in PLATFORMS}
_TIERS = frozenset(TIERS)
_KYC_STATUSES = frozenset(KYC_STATUSES)
_RISK_RATINGS = frozenset(RISK_RATINGS)
_ACCOUNT_STATUSES = frozenset(ACCOUNT_STATUSES)
_EDD_ORDER = {reason: i for i, reason in enumerate(EDD_REASONS)}
_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)
_CENT = Decimal("0.01")
_MIDNIGHT = time()
NOT_MASKED = ("is not masked: only the last 4 characters may show, the rest must be '*' (e.g. *****1234); "
              "full document numbers must never enter the hub")


def _kinds(kinds: tuple[str, ...]) -> str:
    return ", ".join(kinds)


def parse_when(value: str) -> datetime:
    """'2024-03-01' (midnight UTC) or ISO 8601 with an offset or 'Z'; no offset means UTC.
    Raises ValueError with the reason."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)


def format_when(value: datetime | None) -> str:
    """The inverse of `parse_when`: a date alone at midnight UTC, else 'YYYY-MM-DDTHH:MM:SSZ'."""
    if value is None:
        return ""
    value = value.astimezone(UTC)
    if value.time() == _MIDNIGHT:
        return value.date().isoformat()
    return value.replace(tzinfo=None).isoformat() + "Z"


def _when(value: str, column: str, problems: list[Problem]) -> datetime | None:
    if not value:
        return None
    try:
        return parse_when(value)
    except ValueError as err:
        problems.append((column, str(err)))
        return None


def _boolean(value: str, column: str, problems: list[Problem]) -> bool:
    if not value:
        return False
    flag = _BOOLEANS.get(value.lower())
    if flag is None:
        problems.append((column, f"{value!r} is not a boolean (true/false, yes/no, 1/0)"))
        return False
    return flag


def _amount(value: str, what: str) -> Decimal:
    if not _AMOUNT.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not an amount like 1234.56 (at most 16 digits and 2 decimals)")
    # Two decimals already (what exports write) is the column's scale as it stands.
    return Decimal(value) if value[-3:-2] == "." else Decimal(value).quantize(_CENT)


def _split_kind(entry: str, kinds: tuple[str, ...], default: str, schemes: tuple[str, ...]) -> tuple[str, str]:
    """('home', '020 7946 0018') from 'home:020 7946 0018'; a URI scheme is not a kind."""
    head, sep, rest = entry.partition(":")
    if not sep:
        return default, entry
    label = head.strip().lower()
    if label in kinds:
        return label, rest.strip()
    if label in schemes or not label.isalpha():
        return default, entry
    raise ValueError(f"unknown kind {head.strip()!r} in {entry!r} (kinds: {_kinds(kinds)})")


def _items(value: str, column: str, problems: list[Problem]) -> list[str]:
    if not value:
        return []
    if ";" not in value:
        return [value]  # the usual single entry, stripped by the caller
    items = [item.strip() for item in value.split(";")]
    items = [item for item in items if item]
    if len(items) > MAX_ITEMS:
        problems.append((column, f"more than {MAX_ITEMS} entries"))
        return []
    return items


# 'acc_' + key + '_NN' must fit the 40 characters of a child row's id.
_KEY_MAX = 40 - len("acc_") - len("_NN")


def _child_key(customer_id: str) -> str:
    # Child rows are named `<prefix>_<key>_<k>`: stable for a customer, so an update
    # deletes and re-inserts the same ids; ordered by `k`, so they read back in the
    # file's order. The key is the customer id itself when it fits: files list
    # customers in id order, so the ids' index grows at its end like the customers'
    # own, where a hash would scatter every insert over the whole index (a third of
    # the server's work for these tables). A longer id gets a digest, marked with a
    # '#' no customer id has, so the two kinds of key never meet.
    if len(customer_id) <= _KEY_MAX:
        return customer_id
    return "#" + hashlib.blake2b(customer_id.encode(), digest_size=10).hexdigest()


def _phones(value: str, customer_id: str, key: str, country: str | None,
            problems: list[Problem]) -> list[dict[str, Any]]:
    phones: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for entry in _items(value, "phones", problems):
        try:
            kind, raw = _split_kind(entry, PHONE_KINDS, "mobile", ("tel", "sip", "sips"))
        except ValueError as err:
            problems.append(("phones", str(err)))
            continue
        if len(raw) > 64:
            problems.append(("phones", f"{raw[:20]!r}... is longer than 64 characters"))
            continue
        if country is None:
            continue  # the country column's problem is reported; national numbers cannot be read
        e164 = to_e164(raw, country)
        if e164 is None:
            problems.append(("phones", f"{raw!r} is not a phone number (national numbers are read in {country})"))
            continue
        if (e164, kind) in seen:
            continue
        seen.add((e164, kind))
        phones.append({"id": f"ph_{key}_{len(phones):02d}", "customer_id": customer_id, "e164": e164,
                       "raw": raw, "kind": kind})
    return phones


def _emails(value: str, customer_id: str, key: str, problems: list[Problem]) -> list[dict[str, Any]]:
    emails: list[dict[str, Any]] = []
    seen: set[str] = set()
    for entry in _items(value, "emails", problems):
        try:
            kind, address = _split_kind(entry, EMAIL_KINDS, "personal", ("mailto",))
        except ValueError as err:
            problems.append(("emails", str(err)))
            continue
        address = address.lower().removeprefix("mailto:")
        if len(address) > 254 or not _EMAIL.fullmatch(address):
            problems.append(("emails", f"{address[:60]!r} is not an email address"))
            continue
        if address in seen:
            continue
        seen.add(address)
        emails.append({"id": f"eml_{key}_{len(emails):02d}", "customer_id": customer_id, "address": address,
                       "kind": kind, "is_primary": not emails})
    return emails


def _account(entry: str, customer_id: str, account_id: str) -> dict[str, Any]:
    parts = [part.strip() for part in entry.split(":")]
    if not 4 <= len(parts) <= 6:
        raise ValueError(f"{entry!r} is not number:platform:currency:balance[:equity[:status]]")
    number, platform, currency, balance = parts[:4]
    if not _ACCOUNT_NUMBER.fullmatch(number):
        raise ValueError(f"account number {number!r} is not 1-32 letters, digits, '-' or '_'")
    canonical = _PLATFORMS.get(platform.lower())
    if canonical is None:
        raise ValueError(f"platform {platform!r} of account {number} is not one of {_kinds(PLATFORMS)}")
    currency = currency.upper()
    if not _CURRENCY.fullmatch(currency):
        raise ValueError(f"currency {currency!r} of account {number} is not a 3-letter ISO 4217 code")
    amount = _amount(balance, f"balance of account {number}")
    equity = _amount(parts[4], f"equity of account {number}") if len(parts) > 4 and parts[4] else amount
    status = parts[5].lower() if len(parts) > 5 and parts[5] else "active"
    if status not in _ACCOUNT_STATUSES:
        raise ValueError(f"status {parts[5]!r} of account {number} is not one of {_kinds(ACCOUNT_STATUSES)}")
    return {"id": account_id, "customer_id": customer_id, "number": number, "platform": canonical,
            "currency": currency, "balance": amount, "equity": equity, "status": status}


def _accounts(value: str, customer_id: str, key: str, problems: list[Problem]) -> list[dict[str, Any]]:
    accounts: list[dict[str, Any]] = []
    numbers: set[str] = set()
    for entry in _items(value, "accounts", problems):
        try:
            account = _account(entry, customer_id, f"acc_{key}_{len(accounts):02d}")
        except ValueError as err:
            problems.append(("accounts", str(err)))
            continue
        if account["number"] in numbers:
            problems.append(("accounts", f"account number {account['number']} is listed twice"))
            continue
        numbers.add(account["number"])
        accounts.append(account)
    return accounts


def _edd_reasons(value: str, problems: list[Problem]) -> list[str]:
    reasons = {item.lower() for item in _items(value, "kyc_edd_reasons", problems)}
    unknown = sorted(reasons.difference(_EDD_ORDER))
    if unknown:
        problems.append(("kyc_edd_reasons", f"unknown EDD reason {unknown[0]!r} (known: {_kinds(EDD_REASONS)})"))
        return []
    return sorted(reasons, key=_EDD_ORDER.__getitem__)


def is_masked(document_number: str) -> bool:
    """Whether a document number shows at most its last 4 characters, the rest '*'
    (spaces and dashes between them allowed)."""
    return len(document_number) <= 64 and _MASKED.fullmatch(
        document_number.replace(" ", "").replace("-", "")) is not None


def _kyc(values: Mapping[str, str], customer_id: str, now: datetime,
         problems: list[Problem]) -> dict[str, Any] | None:
    get = values.get
    status_text = (get("kyc_status") or "").strip()
    if not status_text:
        filled = [c for c in KYC_COLUMNS[1:] if (get(c) or "").strip()]
        if filled:
            problems.append(("kyc_status", f"required when other KYC columns are filled ({filled[0]})"))
        return None
    text = {c: (get(c) or "").strip() for c in KYC_COLUMNS}
    status = status_text.lower()
    if status not in _KYC_STATUSES:
        problems.append(("kyc_status", f"{status_text!r} is not one of {_kinds(KYC_STATUSES)}"))
    risk = text["kyc_risk_rating"].lower()
    if not risk:
        problems.append(("kyc_risk_rating", "required when kyc_status is given"))
    elif risk not in _RISK_RATINGS:
        problems.append(("kyc_risk_rating", f"{text['kyc_risk_rating']!r} is not one of {_kinds(RISK_RATINGS)}"))
    pep = _boolean(text["kyc_pep"], "kyc_pep", problems)
    sanctions_hit = _boolean(text["kyc_sanctions_hit"], "kyc_sanctions_hit", problems)
    reasons = _edd_reasons(text["kyc_edd_reasons"], problems)
    document_type = text["kyc_document_type"].lower() or None
    if document_type is not None and not _SLUG.fullmatch(document_type):
        problems.append(("kyc_document_type",
                         f"{text['kyc_document_type']!r} is not a document type like passport or national_id"))
    document = text["kyc_document_number_masked"] or None
    if document is not None and not is_masked(document):
        problems.append(("kyc_document_number_masked", NOT_MASKED))
    verified_at = _when(text["kyc_verified_at"], "kyc_verified_at", problems)
    next_review_at = _when(text["kyc_next_review_at"], "kyc_next_review_at", problems)
    if verified_at is not None and verified_at > now:
        problems.append(("kyc_verified_at", "is in the future"))
    if verified_at is not None and next_review_at is not None and next_review_at < verified_at:
        problems.append(("kyc_next_review_at", "is before the verification date"))
    return {
        "customer_id": customer_id, "status": status, "verified_at": verified_at, "risk_rating": risk,
        "pep": pep, "sanctions_hit": sanctions_hit, "edd_required": bool(reasons) or pep or sanctions_hit,
        "edd_reasons": reasons, "document_type": document_type, "document_number_masked": document,
        "next_review_at": next_review_at, "updated_at": now,
    }


def _required(value: str, column: str, limit: int, problems: list[Problem]) -> str:
    if not value:
        problems.append((column, "required"))
    elif len(value) > limit:
        problems.append((column, f"longer than {limit} characters"))
    return value


def validate_row(values: Mapping[str, str], *, now: datetime, new_id: Callable[[], str]) -> Bundle | list[Problem]:
    """One CSV row (column -> text) as a bundle of table rows, or every problem it has.

    The bundle has keys customer, phones, emails, kyc (a row or None) and accounts,
    the shape `crm_sync.bulk` writes. Columns the row lacks count as empty; an empty
    cell means the default (no phones, tier retail, no KYC record, ...).
    """
    problems: list[Problem] = []
    get = values.get
    customer_id = (get("id") or "").strip()
    if not customer_id:
        customer_id = new_id()
    elif not _ID.fullmatch(customer_id):
        problems.append(("id", f"{customer_id[:50]!r} is not an id (1-40 letters, digits, '_', '-', '.', ':')"))
    first_name = _required((get("first_name") or "").strip(), "first_name", 100, problems)
    last_name = _required((get("last_name") or "").strip(), "last_name", 100, problems)
    language = (get("language") or "").strip()
    if not language:
        problems.append(("language", "required"))
    elif not _LANGUAGE.fullmatch(language):
        problems.append(("language", f"{language!r} is not a language code like en, de or pt-BR"))
    country: str | None = (get("country") or "").strip().upper()
    if not country:
        problems.append(("country", "required"))
        country = None
    elif country not in _REGIONS:
        problems.append(("country", f"{get('country')!r} is not an ISO 3166 country code"))
        country = None
    tier = (get("tier") or "").strip().lower() or "retail"
    if tier not in _TIERS:
        problems.append(("tier", f"{get('tier')!r} is not one of {_kinds(TIERS)}"))
    manager = (get("account_manager") or "").strip() or None
    if manager is not None and len(manager) > 64:
        problems.append(("account_manager", "longer than 64 characters"))
    consent = _boolean((get("marketing_consent") or "").strip(), "marketing_consent", problems)
    created_at = _when((get("created_at") or "").strip(), "created_at", problems) or now
    key = _child_key(customer_id)
    phones = _phones((get("phones") or "").strip(), customer_id, key, country, problems)
    emails = _emails((get("emails") or "").strip(), customer_id, key, problems)
    kyc = _kyc(values, customer_id, now, problems)
    accounts = _accounts((get("accounts") or "").strip(), customer_id, key, problems)
    if problems:
        return problems
    return {
        "customer": {
            "id": customer_id, "first_name": first_name, "last_name": last_name, "language": language,
            "country": country, "tier": tier, "account_manager": manager,
            "email": emails[0]["address"] if emails else None, "marketing_consent": consent,
            "created_at": created_at, "updated_at": now,
        },
        "phones": phones,
        "emails": emails,
        "kyc": kyc,
        "accounts": accounts,
    }


class FileChecks:
    """What no single row can know: an id or account number already seen earlier in the file.

    The first valid row wins; a later row with the same id or account number is
    rejected with the line of the first.
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._accounts: dict[str, int] = {}

    def check(self, bundle: Bundle, line: int) -> list[Problem]:
        customer_id = bundle["customer"]["id"]
        accounts = self._accounts
        if customer_id not in self._ids and not any(a["number"] in accounts for a in bundle["accounts"]):
            self._ids[customer_id] = line  # the usual case: nothing seen before
            for account in bundle["accounts"]:
                accounts[account["number"]] = line
            return []
        problems: list[Problem] = []
        first = self._ids.get(customer_id)
        if first is not None:
            problems.append(("id", f"duplicate id {customer_id}: already on line {first}"))
        for account in bundle["accounts"]:
            seen = self._accounts.get(account["number"])
            if seen is not None:
                problems.append(("accounts", f"account number {account['number']} is already on line {seen}"))
        if not problems:
            self._ids[customer_id] = line
            for account in bundle["accounts"]:
                self._accounts[account["number"]] = line
        return problems


# --- the other way: export ----------------------------------------------------------


def _number_text(amount: Decimal) -> str:
    return f"{amount.quantize(_CENT):f}"


def bundle_to_row(bundle: Mapping[str, Any]) -> dict[str, str]:
    """The CSV row of a stored customer (bundle shape as `validate_row` makes it).

    Phones are written in E.164 (read back the same whatever the country), the
    primary email first, EDD reasons in vocabulary order: importing the row gives the
    same stored customer, and exporting that gives the same row.
    """
    customer = bundle["customer"]
    phones = ";".join(p["e164"] if p["kind"] == "mobile" else f"{p['kind']}:{p['e164']}" for p in bundle["phones"])
    ordered_emails = sorted(bundle["emails"], key=lambda e: not e["is_primary"])
    emails = ";".join(e["address"] if e["kind"] == "personal" else f"{e['kind']}:{e['address']}"
                      for e in ordered_emails)
    accounts = ";".join(
        f"{a['number']}:{a['platform']}:{a['currency']}:{_number_text(a['balance'])}:{_number_text(a['equity'])}"
        f":{a['status']}"
        for a in bundle["accounts"]
    )
    row = {
        "id": customer["id"], "first_name": customer["first_name"], "last_name": customer["last_name"],
        "language": customer["language"], "country": customer["country"], "tier": customer["tier"],
        "account_manager": customer["account_manager"] or "",
        "marketing_consent": "true" if customer["marketing_consent"] else "false",
        "phones": phones, "emails": emails, "accounts": accounts, "created_at": format_when(customer["created_at"]),
    }
    kyc = bundle.get("kyc")
    row.update(dict.fromkeys(KYC_COLUMNS, ""))
    if kyc is not None:
        reasons = set(kyc["edd_reasons"] or ())
        row.update({
            "kyc_status": kyc["status"], "kyc_risk_rating": kyc["risk_rating"],
            "kyc_pep": "true" if kyc["pep"] else "false",
            "kyc_sanctions_hit": "true" if kyc["sanctions_hit"] else "false",
            "kyc_edd_reasons": ";".join(r for r in EDD_REASONS if r in reasons),
            "kyc_document_type": kyc["document_type"] or "",
            "kyc_document_number_masked": kyc["document_number_masked"] or "",
            "kyc_verified_at": format_when(kyc["verified_at"]),
            "kyc_next_review_at": format_when(kyc["next_review_at"]),
        })
    return row


def report_row(values: Mapping[str, str], line: int, problems: Iterable[Problem]) -> dict[str, str]:
    """A rejected row for the report: `_line`, `_errors`, then its cells, any document
    number masked (a rejected row may be rejected precisely for carrying a full one)."""
    cells = dict(values)
    document = (cells.get("kyc_document_number_masked") or "").strip()
    if document and not is_masked(document):
        cells["kyc_document_number_masked"] = mask_tail(document) if len(document) > 4 else "*" * len(document)
    errors = " | ".join(f"{column}: {reason}" for column, reason in problems)
    return {"_line": str(line), "_errors": errors, **cells}


__all__ = [
    "COLUMNS",
    "KYC_COLUMNS",
    "NOT_MASKED",
    "REQUIRED_COLUMNS",
    "Bundle",
    "FileChecks",
    "HeaderError",
    "ImportPlan",
    "Problem",
    "bundle_to_row",
    "format_when",
    "is_masked",
    "parse_when",
    "plan_header",
    "report_row",
    "to_e164",
    "validate_row",
]
