"""RFC 4475 torture messages: what the message layer says about each one.

Each file is fed as one UDP datagram: parse_message, then response_for_parse_error
on a parse error, or check_request on a parsed request. The table is the one in
sip-torture/README.md, narrowed to what this layer decides; where a later layer
(transactions, registrar) answers, the case asserts the request reaches it (None).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cti.sip.errors import SipParseError
from cti.sip.message import SipRequest, SipResponse, parse_message, response_for_parse_error
from cti.sip.validation import check_request
from tests.conftest import missing

TORTURE_DIR = Path(
    os.environ.get(
        "CTIHUB_SIP_TORTURE_DIR",
        Path(__file__).resolve().parents[2].parent / "shared" / "sip-torture",
    )
)

ALLOWED = frozenset(
    "INVITE ACK BYE CANCEL OPTIONS REGISTER INFO REFER NOTIFY UPDATE PRACK SUBSCRIBE MESSAGE"
    .split()
)
# The hub takes MESSAGE (chat), so text/plain and multipart/mixed bodies are accepted.
ACCEPTED = frozenset({"application/sdp", "text/plain", "multipart/mixed"})

VALID = "valid"  # parses, and check_request lets it through (None)
RESPONSE = "response"  # a response message: parses; never answered
DROPPED = "dropped"  # no response at all

EXPECTED: dict[str, int | str] = {
    "wsinv.dat": VALID,
    "intmeth.dat": 501,
    "esc01.dat": VALID,
    "escnull.dat": VALID,
    # RFC 4475 §3.1.1.5: RE%47IST%45R is an unknown method, not REGISTER, hence 501.
    "esc02.dat": 501,
    "lwsdisp.dat": VALID,
    "longreq.dat": VALID,
    "dblreq.dat": VALID,  # the REGISTER; the registrar answers it
    "semiuri.dat": VALID,
    "transports.dat": VALID,
    "mpart01.dat": VALID,
    "unreason.dat": RESPONSE,
    "noreason.dat": RESPONSE,
    "badinv01.dat": 400,
    "clerr.dat": 400,
    "ncl.dat": 400,
    "scalar02.dat": 400,
    "scalarlg.dat": DROPPED,
    "quotbal.dat": 400,
    "ltgtruri.dat": 400,
    "lwsruri.dat": 400,
    "lwsstart.dat": 400,
    "trws.dat": 400,
    "escruri.dat": 400,  # we reject rather than ignore the escaped headers
    "baddate.dat": VALID,  # the Date header is ignored, as RFC 4475 allows
    "regbadct.dat": 400,
    "badaspec.dat": 400,  # strict: no LWS inside <addr-spec>
    "baddn.dat": 400,
    "badvers.dat": 505,
    "mismatch01.dat": 400,
    "mismatch02.dat": 501,
    "bigcode.dat": DROPPED,
    "badbranch.dat": VALID,  # a branch of the bare cookie is matched RFC 2543 style
    "insuf.dat": 400,
    "unkscm.dat": 416,
    "novelsc.dat": 416,
    "unksm2.dat": VALID,  # the registrar answers; To/From schemes do not matter here
    "bext01.dat": 420,
    "invut.dat": 415,
    "regaut01.dat": VALID,  # the registrar answers 401 with its own challenge
    "multi01.dat": 400,
    "mcl01.dat": 400,
    "bcast.dat": RESPONSE,  # no matching client transaction: the transaction layer drops it
    "zeromf.dat": VALID,
    "cparam01.dat": VALID,  # registrar: registered
    "cparam02.dat": VALID,  # registrar: registered
    "regescrt.dat": VALID,  # registrar: well-formed, handled
    "sdp01.dat": 406,
    "inv2543.dat": VALID,
}


def _files() -> list[str]:
    if not TORTURE_DIR.is_dir():
        return []
    return sorted(p.name for p in TORTURE_DIR.glob("*.dat"))


def outcome(data: bytes) -> int | str:
    try:
        message = parse_message(data)
    except SipParseError as err:
        response = response_for_parse_error(err)
        return DROPPED if response is None else response.status
    if isinstance(message, SipResponse):
        return RESPONSE
    assert isinstance(message, SipRequest)
    response = check_request(message, allowed_methods=ALLOWED, accepted_content_types=ACCEPTED)
    return VALID if response is None else response.status


def test_every_file_has_an_expectation() -> None:
    if not TORTURE_DIR.is_dir():
        missing(f"the RFC 4475 torture folder {TORTURE_DIR} (set CTIHUB_SIP_TORTURE_DIR)")
    assert set(_files()) == set(EXPECTED)
    assert len(EXPECTED) == 49


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_torture_message(name: str) -> None:
    path = TORTURE_DIR / name
    if not path.exists():
        missing(f"torture file {path}")
    assert outcome(path.read_bytes()) == EXPECTED[name]


def _load(name: str) -> bytes:
    path = TORTURE_DIR / name
    if not path.exists():
        missing(f"torture file {path}")
    return path.read_bytes()


def _request(name: str) -> SipRequest:
    message = parse_message(_load(name))
    assert isinstance(message, SipRequest)
    return message


def test_error_responses_echo_the_request() -> None:
    response = check_request(_request("bext01.dat"), allowed_methods=ALLOWED)
    assert response is not None
    assert response.headers.get("Unsupported") == "nothingSupportsThis, nothingSupportsThisEither"
    assert response.call_id == "bext01.0ha0isndaksdj"
    assert response.cseq == (8, "OPTIONS")
    assert response.top_via.branch == "z9hG4bKkdjuw"
    assert response.to.tag  # RFC 3261 §8.2.6.2: a UAS adds a To tag


def test_501_lists_allowed_methods() -> None:
    response = check_request(_request("intmeth.dat"), allowed_methods=ALLOWED)
    assert response is not None and response.status == 501
    assert set(response.headers.get_all("Allow")) == ALLOWED


def test_415_lists_accepted_types() -> None:
    response = check_request(_request("invut.dat"), allowed_methods=ALLOWED)
    assert response is not None and response.status == 415
    assert response.headers.get_all("Accept") == ["application/sdp"]


def test_mpart01_rejected_when_multipart_not_accepted() -> None:
    response = check_request(_request("mpart01.dat"), allowed_methods=ALLOWED)
    assert response is not None and response.status == 415


def test_505_echoes_headers() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(_load("badvers.dat"))
    response = response_for_parse_error(info.value)
    assert response is not None and response.status == 505
    assert response.call_id == "badvers.31417@c.example.com"


def test_scalar02_400_echoes_the_overlarge_cseq() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(_load("scalar02.dat"))
    response = response_for_parse_error(info.value)
    assert response is not None
    assert response.headers.get("CSeq") == "36893488147419103232 REGISTER"


def test_dblreq_ignores_the_second_request() -> None:
    request = _request("dblreq.dat")
    assert request.method == "REGISTER"
    assert request.body == b""
    assert request.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"


def test_unreason_and_noreason_phrases() -> None:
    unreason = parse_message(_load("unreason.dat"))
    assert isinstance(unreason, SipResponse)
    assert unreason.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    noreason = parse_message(_load("noreason.dat"))
    assert isinstance(noreason, SipResponse)
    assert (noreason.status, noreason.reason) == (100, "")


def test_ack_is_never_answered() -> None:
    request = _request("insuf.dat")
    request.method = "ACK"
    assert check_request(request, allowed_methods=ALLOWED) is None
