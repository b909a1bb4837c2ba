"""The demo CRM generator: deterministic, varied, plausible, and valid numbers only."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import phonenumbers

from crm_sync.demo import (
    _COUNTRIES,
    _FIXED_LINE_PATTERNS,
    _MOBILE_PATTERNS,
    DEMO_CUSTOMERS_FIXED,
    DEMO_REFERENCE_TIME,
    HOUSEHOLD_NUMBER,
    _number_patterns,
    fixed_customers,
    generate_customers,
    seed_demo_crm,
)
from crm_sync.importer import bundle_to_row, validate_row
from crm_sync.profile import effective_kyc_status
from crm_sync.schema import (
    ACCOUNT_STATUSES,
    CHANNELS,
    EDD_REASONS,
    EMAIL_KINDS,
    KYC_STATUSES,
    LEAD_SOURCES,
    LEAD_STATUSES,
    OUTCOMES,
    PHONE_KINDS,
    PLATFORMS,
    TASK_KINDS,
    TASK_STATUSES,
    TIERS,
)
from crm_sync.store import CrmStore
from cti.db import make_engine, make_sessionmaker, migrate

NOW = DEMO_REFERENCE_TIME


def test_deterministic_and_independent_of_n() -> None:
    assert list(generate_customers(30, 7)) == list(generate_customers(30, 7))
    assert list(generate_customers(50, 7))[40:] == list(generate_customers(10, 7, start=40))
    assert list(generate_customers(5, 7)) != list(generate_customers(5, 8))


def test_rows_are_plausible_brokerage_customers() -> None:
    bundles = list(generate_customers(240, 7, now=NOW))
    countries = Counter(b["customer"]["country"] for b in bundles)
    assert set(countries) == set(_COUNTRIES) == {"GB", "DE", "FR", "ES", "IT", "PL", "CH", "AE", "US", "CY"}
    assert {b["kyc"]["status"] for b in bundles} == set(KYC_STATUSES)
    assert {b["customer"]["tier"] for b in bundles} == set(TIERS)
    assert sum(b["kyc"]["edd_required"] for b in bundles) >= 10
    assert any(b["kyc"]["pep"] for b in bundles)
    assert any(b["kyc"]["sanctions_hit"] for b in bundles)
    account_numbers = [a["number"] for b in bundles for a in b["accounts"]]
    assert len(account_numbers) == len(set(account_numbers))
    for b in bundles:
        customer, kyc = b["customer"], b["kyc"]
        _, languages, currencies, first_names, last_names, _ = _COUNTRIES[customer["country"]]
        assert customer["first_name"] in first_names and customer["last_name"] in last_names
        assert customer["language"] in {language for language, _ in languages}
        assert customer["created_at"] <= customer["updated_at"] <= NOW
        if customer["tier"] == "vip":
            assert customer["account_manager"]
        assert 1 <= len(b["accounts"]) <= 3 and 0 <= len(b["interactions"]) <= 6
        for account in b["accounts"]:
            assert account["platform"] in PLATFORMS and account["status"] in ACCOUNT_STATUSES
            assert account["currency"] in currencies and account["balance"] > 0
        assert set(kyc["edd_reasons"]) <= set(EDD_REASONS)
        assert kyc["edd_required"] == bool(kyc["edd_reasons"])
        assert kyc["pep"] == ("politically_exposed" in kyc["edd_reasons"])
        if kyc["sanctions_hit"]:
            assert kyc["status"] in ("pending", "rejected") and kyc["risk_rating"] == "high"
        if kyc["document_number_masked"]:
            masked = kyc["document_number_masked"]
            assert masked[:-4] == "*" * (len(masked) - 4) and "*" not in masked[-4:]
        for interaction in b["interactions"]:
            assert interaction["channel"] in CHANNELS and interaction["outcome"] in OUTCOMES
            assert interaction["started_at"] <= NOW
            assert interaction["ended_at"] is None or interaction["ended_at"] >= interaction["started_at"]


def test_every_generated_number_is_valid_for_its_country() -> None:
    for b in generate_customers(400, 11, now=NOW):
        assert b["phones"][0]["kind"] == "mobile"
        for phone in b["phones"]:
            number = phonenumbers.parse(phone["e164"])
            assert phonenumbers.is_valid_number(number), phone
            assert phonenumbers.region_code_for_number(number) == b["customer"]["country"], phone
            assert phone["kind"] in PHONE_KINDS
            assert phonenumbers.format_number(phonenumbers.parse(phone["raw"], b["customer"]["country"]),
                                              phonenumbers.PhoneNumberFormat.E164) == phone["e164"]
            assert phone["e164"] != HOUSEHOLD_NUMBER


def test_fixed_customers_are_what_the_docs_say() -> None:
    bundles = {b["customer"]["id"]: b for b in fixed_customers(NOW)}
    assert set(bundles) == {f.customer_id for f in DEMO_CUSTOMERS_FIXED}
    for fixed in DEMO_CUSTOMERS_FIXED:
        b = bundles[fixed.customer_id]
        assert f'{b["customer"]["first_name"]} {b["customer"]["last_name"]}' == fixed.name
        assert fixed.e164 in [p["e164"] for p in b["phones"]]
        assert phonenumbers.is_valid_number(phonenumbers.parse(fixed.e164))
        assert effective_kyc_status(b["kyc"]["status"], b["kyc"]["next_review_at"], NOW) == fixed.kyc_status
        assert tuple(b["kyc"]["edd_reasons"]) == fixed.edd_reasons
    sharing = [f for f in DEMO_CUSTOMERS_FIXED if f.e164 == HOUSEHOLD_NUMBER]
    assert len(sharing) == 2
    # Dates move with `now`, so Nikos is lapsed whenever the tour is run.
    later = fixed_customers(NOW + timedelta(days=400))
    assert {b["customer"]["id"]: b["kyc"]["status"] for b in later} == {
        b["customer"]["id"]: b["kyc"]["status"] for b in bundles.values()
    }


async def test_seeding_240_on_sqlite_is_fast_and_idempotent(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        await migrate(engine)
        sessionmaker = make_sessionmaker(engine)
        started = time.perf_counter()
        assert await seed_demo_crm(sessionmaker, customers=240) == 240
        assert time.perf_counter() - started < 2.0
        assert await seed_demo_crm(sessionmaker, customers=240) == 240
        assert await seed_demo_crm(sessionmaker, customers=250) == 250  # grows, never duplicates
        assert await CrmStore(sessionmaker).count_customers() == 250
    finally:
        await engine.dispose()


def test_emails_tasks_and_leads_are_plausible() -> None:
    bundles = list(generate_customers(600, 7, now=NOW))
    emails = [e for b in bundles for e in b["emails"]]
    tasks = [t for b in bundles for t in b["tasks"]]
    leads = [lead for b in bundles for lead in b["leads"]]
    assert {e["kind"] for e in emails} == set(EMAIL_KINDS)
    for b in bundles:
        primaries = [e for e in b["emails"] if e["is_primary"]]
        assert len(primaries) == (1 if b["emails"] else 0)
        assert b["customer"]["email"] == (primaries[0]["address"] if primaries else None)
        assert all(e["address"] == e["address"].lower() and e["address"].isascii() for e in b["emails"])
    assert {t["kind"] for t in tasks} == set(TASK_KINDS) and {t["status"] for t in tasks} <= set(TASK_STATUSES)
    for t in tasks:
        assert t["created_at"] <= NOW
        assert (t["completed_at"] is None) == (t["status"] == "open")
    interaction_ids = {i["id"] for b in bundles for i in b["interactions"]}
    assert all(t["interaction_id"] in interaction_ids for t in tasks if t["kind"] == "callback")
    assert {lead["source"] for lead in leads} <= set(LEAD_SOURCES)
    assert {lead["status"] for lead in leads} <= set(LEAD_STATUSES)
    prospects = [lead for lead in leads if lead["customer_id"] is None]
    assert prospects and len(prospects) < len(leads)
    for lead in prospects:
        assert phonenumbers.is_valid_number(phonenumbers.parse(lead["phone_e164"]))


def test_every_number_pattern_gives_valid_numbers_in_every_style() -> None:
    # More samples than the check each process runs at first use.
    patterns = _number_patterns.__wrapped__(40)
    assert set(patterns) == {(c, kind) for kind, table in (("mobile", _MOBILE_PATTERNS), ("fixed", _FIXED_LINE_PATTERNS))
                             for c in table}


def test_generated_customers_pass_the_import_validation() -> None:
    # Demo data and imported data are the same kind of thing; export of one must import.
    for bundle in generate_customers(200, 3, now=NOW):
        row = bundle_to_row(bundle)
        assert isinstance(validate_row(row, now=NOW, new_id=lambda: "unused"), dict), row


def test_fixed_customers_tasks_emails_and_leads_match_the_table() -> None:
    bundles = {b["customer"]["id"]: b for b in fixed_customers(NOW)}
    lena, oliver, nikos = bundles["cus_demo_lena"], bundles["cus_demo_oliver"], bundles["cus_demo_nikos"]
    assert [e["kind"] for e in lena["emails"]] == ["personal", "work"] and lena["emails"][0]["is_primary"]
    assert [(lead["status"], lead["customer_id"]) for lead in lena["leads"]] == [("qualified", "cus_demo_lena")]
    assert [(t["kind"], t["status"]) for t in oliver["tasks"]] == [("document_request", "open")]
    assert oliver["tasks"][0]["due_at"] > NOW
    (review,) = nikos["tasks"]
    assert (review["kind"], review["status"]) == ("kyc_review", "open") and review["due_at"] < NOW
    assert all(len(b["emails"]) >= 1 for b in bundles.values())
