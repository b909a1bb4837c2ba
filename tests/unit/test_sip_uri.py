"""SIP URIs, name-addr values and Via values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.sip.errors import SipParseError
from cti.sip.uri import SipUri, parse_name_addr, parse_uri, parse_via

# --- URIs ------------------------------------------------------------------------


def test_full_sip_uri() -> None:
    uri = parse_uri("SIPS:alice:secret@Example.com:5061;transport=tcp;lr?Subject=hi%20there&X=1")
    assert uri.scheme == "sips"
    assert (uri.user, uri.password, uri.host, uri.port) == ("alice", "secret", "Example.com", 5061)
    assert uri.params == (("transport", "tcp"), ("lr", None))
    assert uri.param("TRANSPORT") == "tcp"
    assert uri.param("lr") == ""
    assert uri.param("maddr") is None
    assert uri.headers == (("Subject", "hi there"), ("X", "1"))
    assert str(uri) == "sips:alice:secret@Example.com:5061;transport=tcp;lr?Subject=hi%20there&X=1"


def test_host_only() -> None:
    uri = parse_uri("sip:192.0.2.1")
    assert (uri.user, uri.host, uri.port) == (None, "192.0.2.1", None)
    assert str(uri) == "sip:192.0.2.1"


@pytest.mark.parametrize(
    "text,host,port",
    [("sip:[::1]:5060", "[::1]", 5060), ("sip:alice@[2001:db8::10]", "[2001:db8::10]", None),
     ("sip:[2001:db8::10];transport=udp", "[2001:db8::10]", None)],
)
def test_ipv6_hosts(text: str, host: str, port: int | None) -> None:
    uri = parse_uri(text)
    assert (uri.host, uri.port) == (host, port)
    assert str(uri) == text


def test_escapes_are_decoded_and_reencoded() -> None:
    uri = parse_uri("sip:sips%3Auser%40example.com@example.net")  # RFC 4475 esc01
    assert uri.user == "sips:user@example.com" and uri.host == "example.net"
    assert str(uri) == "sip:sips%3Auser%40example.com@example.net"
    assert parse_uri("sip:%75se%72@example.com").user == "user"
    assert parse_uri("sip:null-%00-null@example.com").user == "null-\x00-null"  # escnull
    uri = parse_uri("sip:caller@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
    assert uri.params == (("lr", None), ("name", "value%41"))
    assert parse_uri(str(uri)) == uri


def test_user_part_with_semicolon() -> None:
    uri = parse_uri("sip:user;par=u%40example.net@example.com")  # RFC 4475 semiuri
    assert uri.user == "user;par=u@example.net"
    assert uri.host == "example.com" and uri.params == ()


def test_unusual_user_and_password() -> None:
    uri = parse_uri(
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
        "(doesn't-it)@example.com"
    )
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"


def test_tel_and_opaque_schemes() -> None:
    tel = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert tel.scheme == "tel" and tel.user == "+1-201-555-0123" and tel.host == ""
    assert tel.param("phone-context") == "example.com"
    assert str(tel) == "tel:+1-201-555-0123;phone-context=example.com"
    other = parse_uri("soap.beep://192.0.2.103:3002")
    assert (other.scheme, other.opaque, other.host) == ("soap.beep", "//192.0.2.103:3002", "")
    assert str(other) == "soap.beep://192.0.2.103:3002"
    assert parse_uri("nobodyKnowsThisScheme:totallyopaquecontent").opaque == "totallyopaquecontent"


@pytest.mark.parametrize(
    "text",
    ["", "sip:", "sip:user@", "sip:user@host:", "sip:user@host:99999", "sip:user@host:5o60",
     "sip:user@ho st", "sip:user@host; lr", " sip:user@host", "sip:@host", "nocolon",
     "1sip:host", "sip:[::1", "sip:[zz::1]", "sip:user@host;;", "sip:user@host?",
     "sip:us%zzer@host", "sip:user@host;a=", "sip:<user>@host", "sip:user@h\u00e9st",
     "sip:user@host\x00"],
)
def test_malformed_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


_PART = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,;?/:@% #\x00\u00e9",
                min_size=1, max_size=10)
_HOSTS = st.sampled_from(["example.com", "192.0.2.1", "[2001:db8::1]", "h_1.example"])


@settings(max_examples=200, deadline=None)
@given(
    user=st.none() | _PART,
    password=st.none() | _PART,
    host=_HOSTS,
    port=st.none() | st.integers(0, 65535),
    params=st.lists(st.tuples(_PART, st.none() | _PART), max_size=3),
    headers=st.lists(st.tuples(_PART, st.text(max_size=5)), max_size=2),
)
def test_uri_round_trip(
    user: str | None,
    password: str | None,
    host: str,
    port: int | None,
    params: list[tuple[str, str | None]],
    headers: list[tuple[str, str]],
) -> None:
    uri = SipUri(
        scheme="sip", user=user, password=password if user is not None else None, host=host,
        port=port, params=tuple(params), headers=tuple(headers),
    )
    assert parse_uri(str(uri)) == uri


# --- name-addr -------------------------------------------------------------------


def test_name_addr_forms() -> None:
    quoted = parse_name_addr('"Watson, Thomas" <sip:t.watson@example.org>;tag=1;q=0.5')
    assert quoted.display_name == "Watson, Thomas"
    assert quoted.uri.user == "t.watson"
    assert quoted.tag == "1" and quoted.param("Q") == "0.5"
    tokens = parse_name_addr("A.  Bell <sip:a.g.bell@example.com>")
    assert tokens.display_name == "A. Bell"
    tight = parse_name_addr("caller<sip:caller@example.com>;tag=323")  # lwsdisp
    assert tight.display_name == "caller" and tight.tag == "323"
    bare = parse_name_addr("<sip:a@b>")
    assert bare.display_name is None


def test_addr_spec_params_belong_to_the_header() -> None:
    na = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam;tag=x")  # cparam01
    assert na.uri.params == ()
    assert na.params == (("unknownparam", None), ("tag", "x"))
    inside = parse_name_addr("<sip:+19725552222@gw1.example.net;unknownparam>")  # cparam02
    assert inside.uri.params == (("unknownparam", None),) and inside.params == ()


def test_quoted_display_name_escapes() -> None:
    na = parse_name_addr('"J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\r\n'.strip())
    assert na.display_name == 'J Rosenberg \\"'
    assert parse_name_addr(str(na)) == na
    control = parse_name_addr('"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:a@example.com>')
    assert control.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"


def test_name_addr_str_always_has_brackets() -> None:
    na = parse_name_addr("sip:a@example.com ; tag = 9")
    assert str(na) == "<sip:a@example.com>;tag=9"
    assert str(na.with_tag("new")) == "<sip:a@example.com>;tag=new"
    assert str(parse_name_addr('Bob <sip:b@h>;p="quoted v"')) == '"Bob" <sip:b@h>;p="quoted v"'


def test_unknown_schemes_in_name_addr() -> None:
    assert parse_name_addr("isbn:2983792873").uri.scheme == "isbn"
    assert parse_name_addr("<http://www.example.com>;tag=3").uri.opaque == "//www.example.com"


@pytest.mark.parametrize(
    "text",
    ['"Mr. J. User <sip:j.user@example.com>',  # quotbal
     "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",  # baddn
     '"Watson, Thomas" < sip:t.watson@example.org >',  # badaspec
     "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # regbadct
     '"Joe" <sip:joe@example.org>;;;;',  # badinv01
     "<sip:a@b", "<sip:a@b> junk", "", "  ", '"x" sip:a@b']
    + ["<sip:a@b>;=x", '<sip:a@b>;p="open'],
)
def test_malformed_name_addr(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_name_addr(text)


def test_tag_without_value_is_empty_string() -> None:
    assert parse_name_addr("<sip:a@b>;tag").tag == ""


# --- Via -------------------------------------------------------------------------


def test_via_basic() -> None:
    via = parse_via("SIP/2.0/udp pc33.example.com:5060;branch=z9hG4bK776asdhds;rport;received=1.2.3.4")
    assert (via.protocol, via.transport, via.host, via.port) == ("SIP/2.0", "UDP", "pc33.example.com", 5060)
    assert via.branch == "z9hG4bK776asdhds"
    assert via.rport == "" and via.received == "1.2.3.4"
    assert str(via) == "SIP/2.0/UDP pc33.example.com:5060;branch=z9hG4bK776asdhds;rport;received=1.2.3.4"


def test_via_with_lws_everywhere() -> None:
    via = parse_via("SIP  / 2.0  / TCP     spindle.example.com   ;   branch  =   z9hG4bK9ikj8")
    assert (via.transport, via.host, via.branch) == ("TCP", "spindle.example.com", "z9hG4bK9ikj8")
    assert parse_via("SIP/2.0/UDP host : 5070").port == 5070


def test_via_ipv6_and_unknown_transport() -> None:
    via = parse_via("SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bK1;received=2001:db8::9")
    assert (via.host, via.port, via.received) == ("[2001:db8::9]", 5060, "2001:db8::9")
    assert parse_via(str(via)) == via
    assert parse_via("SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en").transport == "UNKNOWN"


def test_via_with_params() -> None:
    via = parse_via("SIP/2.0/UDP h.example.com;rport;branch=z9hG4bK1")
    updated = via.with_params(received="192.0.2.7", rport=40000)
    assert updated.rport == "40000" and updated.received == "192.0.2.7"
    assert str(updated) == "SIP/2.0/UDP h.example.com;rport=40000;branch=z9hG4bK1;received=192.0.2.7"
    assert via.rport == ""  # frozen: the original is unchanged
    assert parse_via("SIP/2.0/UDP h").rport is None and parse_via("SIP/2.0/UDP h").branch is None


@pytest.mark.parametrize(
    "text",
    ["SIP/2.0/UDP 192.0.2.15;;", ";", "SIP/2.0 host", "SIP/2.0/UDP", "SIP/2.0/UDPhost",
     "SIP/2.0/UDP host:port", "SIP/2.0/UDP host junk", "SIP/2.0/UDP [::1", "SIP/2.0/UDP host:70000",
     "SIP/2.0/UDP host;branch="],
)
def test_malformed_via(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_value_parsers_only_raise_parse_errors(text: str) -> None:
    for parser in (parse_uri, parse_name_addr, parse_via):
        try:
            parser(text)
        except SipParseError:
            pass
