"""Phone number normalisation to E.164, the one key the CRM looks callers up by.

Owns turning whatever a trunk, a SIP URI or a human typed into E.164. Pure: no I/O, no
database, no clock. Must never guess a country code beyond the `default_region` it is
given: a wrong match pops the wrong customer's KYC on an agent's screen.
"""

from __future__ import annotations

import functools
import re

import phonenumbers

_URI_SCHEMES = ("tel:", "sip:", "sips:")
_WITHHELD = {"anonymous", "unknown", "restricted", "private", "unavailable"}
# What people and CRM exports put between digits; anything else makes it not a number.
_VISUAL_SEPARATORS = re.compile(r"[\s().\-/]")


def _user_part(raw: str) -> str:
    """The dialable part of a tel:/sip: URI, or the input itself."""
    text = raw.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    lowered = text.lower()
    for scheme in _URI_SCHEMES:
        if lowered.startswith(scheme):
            text = text[len(scheme):]
            break
    # sip:+4420...@host;user=phone and tel:+4420...;ext=12 carry the number first.
    text = text.split("@", 1)[0]
    text = text.split(";", 1)[0]
    return text.strip()


@functools.lru_cache(maxsize=4096)  # pure; every call reads its caller's number twice (pop, CRM lookup)
def normalize_phone(raw: str, default_region: str = "GB") -> str | None:
    """E.164 form of `raw` (e.g. '+442079460018'), or None when it cannot be a number.

    Accepts international ('+44 20 7946 0018', '0044 20 7946 0018'), national
    ('020 7946 0018' read in `default_region`), tel: and sip: URIs (user part only).
    'Possible' (right length for the country) is enough here: numbering plans change
    faster than the metadata, and a lookup miss is cheaper than rejecting a real caller.
    """
    if not raw:
        return None
    text = _user_part(raw)
    if not text or text.lower() in _WITHHELD:
        return None
    compact = _VISUAL_SEPARATORS.sub("", text)
    # '00' is the international prefix almost everywhere, but phonenumbers only knows
    # it for regions that use it (not the US), so a '0044...' from a US trunk would
    # otherwise be read as a national number.
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not re.fullmatch(r"\+?\d{2,17}", compact):
        return None
    try:
        parsed = phonenumbers.parse(compact, default_region.upper())
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


__all__ = ["normalize_phone"]
