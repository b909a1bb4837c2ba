"""normalize_phone: every way a number reaches the hub maps to one E.164 key."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, strategies as st

from crm_sync.phones import normalize_phone

LONDON = "+442079460018"


@pytest.mark.parametrize(
    "raw",
    [
        "+44 20 7946 0018",
        "0044 20 7946 0018",
        "020 7946 0018",
        "+44 (0)20 7946 0018",
        "+442079460018",
        "tel:+44-20-7946-0018",
        "sip:+442079460018@pbx.example.com",
        "sips:+442079460018@10.0.0.1:5061;user=phone",
        "<sip:02079460018@pbx>",
        "  +44.20.7946.0018  ",
    ],
)
def test_formats_of_one_number_agree(raw: str) -> None:
    assert normalize_phone(raw) == LONDON


def test_default_region_reads_national_numbers() -> None:
    assert normalize_phone("(212) 555-0100", "US") == "+12125550100"
    assert normalize_phone("030 901820", "DE") == "+4930901820"
    # An international number ignores the default region.
    assert normalize_phone("+4930901820", "US") == "+4930901820"


def test_double_zero_prefix_even_where_idd_differs() -> None:
    # The US dials 011 abroad, but trunks still hand over 00-prefixed numbers.
    assert normalize_phone("0044 20 7946 0018", "US") == LONDON


@pytest.mark.parametrize(
    "raw", ["", "   ", "anonymous", "Anonymous", "unknown", "sip:anonymous@anonymous.invalid", "abc", "12",
            "+44 12", "+44 20 7946 0018 ext", "+999 1234567", "sip:@host", "tel:"]
)
def test_not_a_number(raw: str) -> None:
    assert normalize_phone(raw) is None


@given(st.text(max_size=40))
def test_never_raises(raw: str) -> None:
    result = normalize_phone(raw)
    assert result is None or (result.startswith("+") and result[1:].isdigit())


@pytest.mark.parametrize("region", ["GB", "DE", "FR", "ES", "IT", "PL", "CH", "AE", "US", "CY"])
def test_example_numbers_round_trip(region: str) -> None:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    national = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    assert normalize_phone(national, region) == e164
    assert normalize_phone(international, "GB") == e164
    assert normalize_phone(e164) == e164
