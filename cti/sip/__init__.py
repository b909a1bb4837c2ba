"""Pure SIP message layer: bytes in, typed messages out, and back.

Owns the SIP and SDP grammars (RFC 3261, RFC 4566/3264) and the stateless request
checks a user agent server makes (RFC 3261 §8.2). Never does I/O, never reads a
clock, never keeps state between calls; transactions and dialogs live elsewhere.
"""

from __future__ import annotations

from cti.sip.errors import SipParseError
from cti.sip.headers import Headers
from cti.sip.message import (
    SipRequest,
    SipResponse,
    build_error_response,
    build_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
    response_for_parse_error,
    serialize,
)
from cti.sip.uri import NameAddr, SipUri, Via, parse_name_addr, parse_uri, parse_via
from cti.sip.validation import check_request

__all__ = [
    "Headers",
    "NameAddr",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "Via",
    "build_error_response",
    "build_response",
    "check_request",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
    "response_for_parse_error",
    "serialize",
]
