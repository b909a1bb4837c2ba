"""The customer CSV format, pure: header plans, one row in, a bundle or its reasons out."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_sync import importer
from crm_sync.demo import generate_customers
from crm_sync.importer import (
    COLUMNS,
    NOT_MASKED,
    FileChecks,
    HeaderError,
    bundle_to_row,
    format_when,
    parse_when,
    plan_header,
    report_row,
    to_e164,
    validate_row,
)
from crm_sync.phones import normalize_phone

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

GOOD: dict[str, str] = {
    "id": "cus_ada",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "language": "en",
    "country": "GB",
    "tier": "VIP",
    "account_manager": "agent08",
    "marketing_consent": "yes",
    "phones": "07700 900123; home:+44 20 7946 0018;work: 0044 20 7946 0018",
    "emails": "Ada@Example.COM;work:ada@analytical.example",
    "kyc_status": "verified",
    "kyc_risk_rating": "high",
    "kyc_pep": "true",
    "kyc_sanctions_hit": "false",
    "kyc_edd_reasons": "politically_exposed; unusual_transactions",
    "kyc_document_type": "passport",
    "kyc_document_number_masked": "*****4821",
    "kyc_verified_at": "2024-06-01",
    "kyc_next_review_at": "2025-06-01T09:30:00+02:00",
    "accounts": "0090000011:mt5:eur:250000:257310.5:active; 0090000012:cTrader:USD:84000.00",
    "created_at": "2023-01-15T08:00:00Z",
}


def _new_id() -> str:
    return "cus_generated"


def validate(**changes: str) -> dict[str, Any] | list[tuple[str, str]]:
    return validate_row({**GOOD, **changes}, now=NOW, new_id=_new_id)


def test_a_good_row_becomes_a_bundle_of_table_rows() -> None:
    bundle = validate()
    assert isinstance(bundle, dict)
    customer = bundle["customer"]
    assert customer == {
        "id": "cus_ada", "first_name": "Ada", "last_name": "Lovelace", "language": "en", "country": "GB",
        "tier": "vip", "account_manager": "agent08", "email": "ada@example.com", "marketing_consent": True,
        "created_at": datetime(2023, 1, 15, 8, 0, tzinfo=UTC), "updated_at": NOW,
    }
    assert [(p["e164"], p["kind"], p["raw"]) for p in bundle["phones"]] == [
        ("+447700900123", "mobile", "07700 900123"),
        ("+442079460018", "home", "+44 20 7946 0018"),
        ("+442079460018", "work", "0044 20 7946 0018"),
    ]
    assert [(e["address"], e["kind"], e["is_primary"]) for e in bundle["emails"]] == [
        ("ada@example.com", "personal", True), ("ada@analytical.example", "work", False),
    ]
    kyc = bundle["kyc"]
    assert kyc["status"] == "verified" and kyc["risk_rating"] == "high" and kyc["pep"] is True
    # Vocabulary order, whatever the file's order.
    assert kyc["edd_reasons"] == ["unusual_transactions", "politically_exposed"] and kyc["edd_required"] is True
    assert kyc["verified_at"] == datetime(2024, 6, 1, tzinfo=UTC)
    assert kyc["next_review_at"] == datetime(2025, 6, 1, 7, 30, tzinfo=UTC)
    assert kyc["document_number_masked"] == "*****4821"
    assert [(a["number"], a["platform"], a["currency"], a["balance"], a["equity"], a["status"])
            for a in bundle["accounts"]] == [
        ("0090000011", "MT5", "EUR", Decimal("250000.00"), Decimal("257310.50"), "active"),
        ("0090000012", "cTrader", "USD", Decimal("84000.00"), Decimal("84000.00"), "active"),
    ]
    # Child ids are stable (an update rewrites the same ids), short and ordered.
    ids = [p["id"] for p in bundle["phones"]]
    assert ids == sorted(ids) and all(len(i) <= 40 for i in ids)
    again = validate()
    assert isinstance(again, dict) and [p["id"] for p in again["phones"]] == ids


def test_child_ids_follow_the_customer_id_and_never_collide() -> None:
    # Named after the customer id when it fits (so a file in id order fills the ids'
    # index at its end), after a marked digest when it does not.
    short = validate()
    assert isinstance(short, dict)
    assert [p["id"] for p in short["phones"]] == ["ph_cus_ada_00", "ph_cus_ada_01", "ph_cus_ada_02"]
    assert [e["id"] for e in short["emails"]] == ["eml_cus_ada_00", "eml_cus_ada_01"]
    assert [a["id"] for a in short["accounts"]] == ["acc_cus_ada_00", "acc_cus_ada_01"]
    longest = "c" * 40
    long = validate(id=longest, accounts="")
    assert isinstance(long, dict)
    long_ids = [p["id"] for p in long["phones"]]
    assert all(i.startswith("ph_#") and len(i) <= 40 for i in long_ids) and long_ids == sorted(long_ids)
    # A customer whose id looks like another's key still gets ids of its own.
    lookalike = validate(id=long_ids[0][3:-3].lstrip("#"), accounts="")
    near = validate(id="cus_ada_00", accounts="")
    assert isinstance(lookalike, dict) and isinstance(near, dict)
    every = [p["id"] for b in (short, long, lookalike, near) for p in b["phones"]]
    assert len(every) == len(set(every))


def test_defaults_for_empty_cells_and_a_generated_id() -> None:
    bundle = validate_row({"first_name": "Bo", "last_name": "Li", "language": "zh", "country": "cn"},
                          now=NOW, new_id=_new_id)
    assert isinstance(bundle, dict)
    assert bundle["customer"]["id"] == "cus_generated"
    assert bundle["customer"]["tier"] == "retail" and bundle["customer"]["country"] == "CN"
    assert bundle["customer"]["marketing_consent"] is False and bundle["customer"]["created_at"] == NOW
    assert bundle["phones"] == bundle["emails"] == bundle["accounts"] == [] and bundle["kyc"] is None


def test_national_numbers_are_read_in_the_rows_country() -> None:
    bundle = validate(country="DE", phones="030 901820;+44 20 7946 0018")
    assert isinstance(bundle, dict)
    assert [p["e164"] for p in bundle["phones"]] == ["+4930901820", "+442079460018"]


def test_the_same_number_and_kind_twice_is_kept_once() -> None:
    bundle = validate(phones="+447700900123;07700 900123;home:07700900123", emails="a@x.example;A@X.example")
    assert isinstance(bundle, dict)
    assert [(p["e164"], p["kind"]) for p in bundle["phones"]] == [("+447700900123", "mobile"),
                                                                 ("+447700900123", "home")]
    assert len(bundle["emails"]) == 1


@pytest.mark.parametrize(
    ("changes", "column", "reason"),
    [
        ({"id": "has space"}, "id", "is not an id"),
        ({"id": "x" * 41}, "id", "is not an id"),
        ({"first_name": ""}, "first_name", "required"),
        ({"last_name": "L" * 101}, "last_name", "longer than 100"),
        ({"language": ""}, "language", "required"),
        ({"language": "English"}, "language", "not a language code"),
        ({"country": ""}, "country", "required"),
        ({"country": "XX"}, "country", "not an ISO 3166"),
        ({"tier": "gold"}, "tier", "not one of retail, professional, vip"),
        ({"account_manager": "a" * 65}, "account_manager", "longer than 64"),
        ({"marketing_consent": "maybe"}, "marketing_consent", "not a boolean"),
        ({"created_at": "01/02/2024"}, "created_at", "not a date"),
        ({"phones": "+44 20"}, "phones", "'+44 20' is not a phone number"),
        ({"phones": "call me"}, "phones", "is not a phone number"),
        ({"phones": "fax:+442079460018"}, "phones", "unknown kind 'fax'"),
        ({"phones": "+44 " + "1" * 70}, "phones", "longer than 64"),
        ({"phones": ";".join(["+447700900123"] * 21)}, "phones", "more than 20 entries"),
        ({"emails": "not-an-address"}, "emails", "is not an email address"),
        ({"emails": "home:ada@example.com"}, "emails", "unknown kind 'home'"),
        ({"kyc_status": "approved"}, "kyc_status", "not one of not_started"),
        ({"kyc_status": ""}, "kyc_status", "required when other KYC columns are filled"),
        ({"kyc_risk_rating": ""}, "kyc_risk_rating", "required when kyc_status"),
        ({"kyc_risk_rating": "extreme"}, "kyc_risk_rating", "not one of low, medium, high"),
        ({"kyc_pep": "si"}, "kyc_pep", "not a boolean"),
        ({"kyc_sanctions_hit": "2"}, "kyc_sanctions_hit", "not a boolean"),
        ({"kyc_edd_reasons": "politically_exposed;rich_uncle"}, "kyc_edd_reasons", "unknown EDD reason 'rich_uncle'"),
        ({"kyc_document_type": "Passport Card!"}, "kyc_document_type", "not a document type"),
        ({"kyc_document_number_masked": "X1234567"}, "kyc_document_number_masked", NOT_MASKED),
        ({"kyc_document_number_masked": "*****34567"}, "kyc_document_number_masked", NOT_MASKED),
        ({"kyc_verified_at": "yesterday"}, "kyc_verified_at", "not a date"),
        ({"kyc_verified_at": "2030-01-01"}, "kyc_verified_at", "is in the future"),
        ({"kyc_next_review_at": "2020-01-01"}, "kyc_next_review_at", "before the verification date"),
        ({"accounts": "0090000011:MT5:EUR"}, "accounts", "is not number:platform:currency:balance"),
        ({"accounts": "00 11:MT5:EUR:1"}, "accounts", "account number '00 11'"),
        ({"accounts": "0090000011:MT4:EUR:1"}, "accounts", "platform 'MT4'"),
        ({"accounts": "0090000011:MT5:EURO:1"}, "accounts", "currency 'EURO'"),
        ({"accounts": "0090000011:MT5:EUR:lots"}, "accounts", "balance of account 0090000011 'lots'"),
        ({"accounts": "0090000011:MT5:EUR:1.005"}, "accounts", "balance of account 0090000011 '1.005'"),
        ({"accounts": "0090000011:MT5:EUR:1:x"}, "accounts", "equity of account 0090000011 'x'"),
        ({"accounts": "0090000011:MT5:EUR:1:1:frozen"}, "accounts", "status 'frozen'"),
        ({"accounts": "0090000011:MT5:EUR:1;0090000011:cTrader:USD:2"}, "accounts", "listed twice"),
    ],
)
def test_each_problem_is_named_with_its_column(changes: dict[str, str], column: str, reason: str) -> None:
    problems = validate(**changes)
    assert isinstance(problems, list), problems
    assert any(c == column and reason in r for c, r in problems), problems


def test_every_problem_of_a_row_is_reported_at_once() -> None:
    problems = validate(first_name="", country="XX", tier="gold", accounts="1:MT4:EUR:1")
    assert isinstance(problems, list)
    assert {c for c, _ in problems} == {"first_name", "country", "tier", "accounts"}


def test_a_full_document_number_is_refused_and_masked_in_the_report() -> None:
    row = {**GOOD, "kyc_document_number_masked": "X12345678"}
    problems = validate_row(row, now=NOW, new_id=_new_id)
    assert isinstance(problems, list)
    reported = report_row(row, 7, problems)
    assert reported["_line"] == "7" and "kyc_document_number_masked: is not masked" in reported["_errors"]
    assert reported["kyc_document_number_masked"] == "*****5678"
    assert "X12345678" not in str(reported)


@pytest.mark.parametrize("masked", ["*****1234", "****", "** *** 12AB", "*******-9Z"])
def test_masked_forms_that_are_accepted(masked: str) -> None:
    assert importer.is_masked(masked)


def test_file_checks_find_ids_and_account_numbers_seen_earlier() -> None:
    checks = FileChecks()
    first = validate()
    assert isinstance(first, dict) and checks.check(first, 2) == []
    same_id = validate(accounts="")
    assert isinstance(same_id, dict)
    assert checks.check(same_id, 5) == [("id", "duplicate id cus_ada: already on line 2")]
    other = validate(id="cus_bob", accounts="0090000012:MT5:EUR:1")
    assert isinstance(other, dict)
    assert checks.check(other, 6) == [("accounts", "account number 0090000012 is already on line 2")]
    # A rejected row does not claim its id or numbers.
    fresh = validate(id="cus_bob", accounts="")
    assert isinstance(fresh, dict) and checks.check(fresh, 7) == []


def test_header_plans() -> None:
    plan = plan_header(list(COLUMNS))
    assert set(plan.update_columns) == {"first_name", "last_name", "language", "country", "tier",
                                        "account_manager", "marketing_consent", "email"}
    assert plan.replace == {"phones", "emails", "kyc", "accounts"}
    narrow = plan_header(["first_name", "last_name", "language", "country", "id", "kyc_status", "_line", "_errors"])
    assert narrow.update_columns == ("first_name", "last_name", "language", "country")
    assert narrow.replace == {"kyc"}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ([], "the file is empty"),
        (["first_name", "last_name", "language", "country", "phone"], "unknown column 'phone'"),
        (["first_name", "last_name", "language", "country", "tier", "tier"], "column 'tier' appears twice"),
        (["first_name", "last_name", "country"], "required column 'language' is missing"),
    ],
)
def test_headers_that_cannot_be_imported(header: list[str], message: str) -> None:
    with pytest.raises(HeaderError, match=message):
        plan_header(header)


def test_times_round_trip() -> None:
    for text in ("2024-06-01", "2024-06-01T09:30:05Z", "2024-06-01T09:30:05.250000Z"):
        assert format_when(parse_when(text)) == text
    assert parse_when("2024-06-01T09:30:00+02:00") == datetime(2024, 6, 1, 7, 30, tzinfo=UTC)
    assert parse_when("2024-06-01 09:30") == datetime(2024, 6, 1, 9, 30, tzinfo=UTC)  # no offset: UTC
    assert format_when(None) == ""


def test_export_rows_import_back_to_themselves() -> None:
    """bundle -> row -> bundle -> row is the identity on rows: what export writes,
    import reads back to the same stored customer."""
    for bundle in generate_customers(300, 5, now=NOW):
        row = bundle_to_row(bundle)
        assert set(row) == set(COLUMNS)
        again = validate_row(row, now=NOW, new_id=_new_id)
        assert isinstance(again, dict), (row, again)
        assert bundle_to_row(again) == row
        assert [p["e164"] for p in again["phones"]] == [p["e164"] for p in bundle["phones"]]
        assert again["kyc"]["status"] == bundle["kyc"]["status"]


# --- to_e164 must give normalize_phone's answers, only faster ----------------------------


def _corpus() -> list[tuple[str, str]]:
    rng = random.Random(5)
    regions = sorted(phonenumbers.SUPPORTED_REGIONS)
    cases: list[tuple[str, str]] = []
    kinds = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
             phonenumbers.PhoneNumberType.TOLL_FREE)
    styles = (phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.INTERNATIONAL,
              phonenumbers.PhoneNumberFormat.NATIONAL)
    for region in regions:
        for kind in kinds:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            national = phonenumbers.national_significant_number(example)
            code = example.country_code
            for style in styles:
                text = phonenumbers.format_number(example, style)
                cases += [(text, region), (text, rng.choice(regions))]
            cases += [(f"00{code}{national}", region), (f"{code}{national}", region), (f"+{code}0{national}", region),
                      (f"0{national}", region), (national[:-1], region), (national + "7", region)]
    return cases


def test_to_e164_agrees_with_normalize_phone_on_every_region() -> None:
    disagreements = [(raw, region, to_e164(raw, region), normalize_phone(raw, region))
                     for raw, region in _corpus() if to_e164(raw, region) != normalize_phone(raw, region)]
    assert disagreements == []


@settings(max_examples=400, deadline=None)
@given(prefix=st.sampled_from(["", "+", "00", "0", "+1", "1", "+44", "44", "011"]),
       digits=st.text(alphabet="0123456789 -", min_size=1, max_size=18),
       region=st.sampled_from(["GB", "DE", "US", "FR", "IT", "CY", "AE", "CH", "AR", "BR", "MX", "RU", "JE"]))
def test_to_e164_agrees_with_normalize_phone_on_anything(prefix: str, digits: str, region: str) -> None:
    raw = prefix + digits
    assert to_e164(raw, region) == normalize_phone(raw, region)
