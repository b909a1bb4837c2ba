"""SDP parsing, serialization and the offer/answer choice for G.711 + RFC 4733."""

from __future__ import annotations

from typing import TypedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.sip.sdp import (
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    Codec,
    SdpError,
    answer_offer,
    make_offer,
    parse_sdp,
    serialize_sdp,
)

OFFER = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 97 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:97 iLBC/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
    b"m=video 51372 RTP/AVP 31\r\n"
    b"a=rtpmap:31 H261/90000\r\n"
)

class Local(TypedDict):
    local_address: str
    local_port: int
    session_id: int
    session_version: int


LOCAL = Local(local_address="10.0.0.5", local_port=40000, session_id=7, session_version=1)


def test_parse_offer() -> None:
    sd = parse_sdp(OFFER)
    assert sd.origin.username == "alice" and sd.origin.session_id == 2890844526
    assert sd.origin.address == "host.atlanta.example.com"
    assert sd.connection_address == "192.0.2.10"
    audio, video = sd.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 49170, "RTP/AVP")
    assert audio.formats == (0, 8, 97, 101)
    assert audio.rtpmap[101] == "telephone-event/8000"
    assert audio.fmtp == {101: "0-15"}
    assert audio.ptime == 20 and audio.direction == "sendrecv"
    assert video.media == "video" and video.rtpmap == {31: "H261/90000"}
    assert sd.other_lines == (("t", "0 0"),)


def test_round_trip() -> None:
    sd = parse_sdp(OFFER)
    assert parse_sdp(serialize_sdp(sd)) == sd
    assert serialize_sdp(parse_sdp(serialize_sdp(sd))) == serialize_sdp(sd)


def test_answer_pcmu_pcma_telephone_event() -> None:
    answer = answer_offer(parse_sdp(OFFER), **LOCAL)
    assert answer is not None
    assert answer.codec == Codec(0, "PCMU", 8000)
    assert answer.telephone_event_pt == 101
    assert (answer.remote_address, answer.remote_port) == ("192.0.2.10", 49170)
    assert answer.direction == "sendrecv"
    audio, video = answer.description.media
    assert audio.port == 40000 and audio.formats == (0, 101)
    assert audio.rtpmap == {0: "PCMU/8000", 101: "telephone-event/8000"}
    assert (video.media, video.port, video.formats) == ("video", 0, (31,))  # RFC 3264 §6
    assert answer.description.origin.session_id == 7
    assert answer.description.connection_address == "10.0.0.5"
    wire = serialize_sdp(answer.description)
    assert b"m=audio 40000 RTP/AVP 0 101\r\n" in wire and b"m=video 0 RTP/AVP 31\r\n" in wire
    assert parse_sdp(wire) == answer.description


def test_answer_follows_offerer_preference() -> None:
    offer = OFFER.replace(b"RTP/AVP 0 8 97 101", b"RTP/AVP 97 8 0 101")
    answer = answer_offer(parse_sdp(offer), **LOCAL)
    assert answer is not None and answer.codec == Codec(8, "PCMA", 8000)


def test_pcma_only_offer_with_static_pt() -> None:
    offer = (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"
        b"m=audio 5004 RTP/AVP 8\r\nc=IN IP4 192.0.2.99\r\n"
    )
    answer = answer_offer(parse_sdp(offer), **LOCAL)
    assert answer is not None
    assert answer.codec == PCMA and answer.telephone_event_pt is None
    assert answer.remote_address == "192.0.2.99"  # media-level c= wins
    assert answer.description.media[0].formats == (8,)


def test_dynamic_pt_by_rtpmap_name_case_insensitive() -> None:
    offer = (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        b"m=audio 5004 RTP/AVP 96 100\r\na=rtpmap:96 pcmu/8000\r\n"
        b"a=rtpmap:100 Telephone-Event/8000\r\n"
    )
    answer = answer_offer(parse_sdp(offer), **LOCAL)
    assert answer is not None
    assert answer.codec == Codec(96, "PCMU", 8000)
    assert answer.telephone_event_pt == 100


def test_no_common_codec() -> None:
    offer = OFFER.replace(b"RTP/AVP 0 8 97 101", b"RTP/AVP 97 101")
    assert answer_offer(parse_sdp(offer), **LOCAL) is None
    assert answer_offer(parse_sdp(OFFER), supported=(Codec(9, "G722", 8000),), **LOCAL) is None


def test_sendonly_is_answered_recvonly() -> None:
    answer = answer_offer(parse_sdp(OFFER.replace(b"a=sendrecv", b"a=sendonly")), **LOCAL)
    assert answer is not None
    assert answer.direction == "recvonly"
    assert answer.description.media[0].direction == "recvonly"
    session_level = OFFER.replace(b"a=sendrecv\r\n", b"").replace(b"t=0 0\r\n", b"t=0 0\r\na=inactive\r\n")
    inactive = answer_offer(parse_sdp(session_level), **LOCAL)
    assert inactive is not None and inactive.direction == "inactive"
    recvonly = answer_offer(parse_sdp(OFFER.replace(b"a=sendrecv", b"a=recvonly")), **LOCAL)
    assert recvonly is not None and recvonly.direction == "sendonly"


def test_rejected_and_second_audio_streams() -> None:
    offer = OFFER.replace(b"m=video 51372 RTP/AVP 31\r\na=rtpmap:31 H261/90000\r\n",
                          b"m=audio 49172 RTP/AVP 0\r\nm=application 9 TCP/MSRP *\r\n")
    answer = answer_offer(parse_sdp(offer), **LOCAL)
    assert answer is not None
    ports = [m.port for m in answer.description.media]
    assert ports == [40000, 0, 0]
    assert answer.description.media[2].format_tokens == ("*",)
    assert b"m=application 0 TCP/MSRP *\r\n" in serialize_sdp(answer.description)


def test_offer_without_connection_is_an_error() -> None:
    offer = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n"
    with pytest.raises(SdpError):
        answer_offer(parse_sdp(offer), **LOCAL)


def test_make_offer_for_invite_without_sdp() -> None:
    offer = make_offer(**LOCAL)
    wire = serialize_sdp(offer)
    assert wire.startswith(b"v=0\r\no=- 7 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n")
    assert b"m=audio 40000 RTP/AVP 0 8 101\r\n" in wire
    assert b"a=rtpmap:101 telephone-event/8000\r\n" in wire and b"a=sendrecv\r\n" in wire
    assert parse_sdp(wire) == offer
    # the peer's answer to our offer is itself answerable by us: a closed loop
    answer = answer_offer(offer, local_address="10.0.0.6", local_port=50000, session_id=8,
                          session_version=1)
    assert answer is not None and answer.codec == PCMU
    assert answer.telephone_event_pt == TELEPHONE_EVENT.payload_type


def test_make_offer_ipv6_and_options() -> None:
    offer = make_offer(local_address="2001:db8::5", local_port=4000, session_id=1,
                       session_version=2, codecs=(PCMA,), telephone_event_pt=None,
                       direction="sendonly")
    assert offer.connection is not None and offer.connection.addr_type == "IP6"
    assert offer.media[0].formats == (8,) and offer.media[0].direction == "sendonly"
    with pytest.raises(ValueError):
        make_offer(**LOCAL, direction="sideways")


@pytest.mark.parametrize(
    "body",
    [b"", b"x=0\r\n", b"v=0\r\ns=-\r\n", b"v=0\r\no=a b\r\n", b"v=0\r\no=- x 1 IN IP4 h\r\n",
     b"v=0\r\no=- 1 1 IN IP4 h\r\nm =video 1 RTP/AVP 31\r\n", b"v=0\r\no=- 1 1 IN IP4 h\r\nm=audio\r\n",
     b"v=0\r\no=- 1 1 IN IP4 h\r\nm=audio 99999 RTP/AVP 0\r\n", b"\xff\xfe",
     b"v=0\r\no=- 1 1 IN IP4 h\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:300 X/8000\r\n",
     b"v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4\r\n"],
)
def test_malformed_sdp(body: bytes) -> None:
    with pytest.raises(SdpError):
        parse_sdp(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_parse_sdp_only_raises_sdp_errors(body: bytes) -> None:
    try:
        sd = parse_sdp(b"v=0\r\no=- 1 1 IN IP4 h\r\n" + body)
    except SdpError:
        return
    wire = serialize_sdp(sd)  # adds the mandatory t= when missing, so compare wire forms
    assert serialize_sdp(parse_sdp(wire)) == wire
    try:
        answer_offer(sd, **LOCAL)
    except SdpError:
        pass
