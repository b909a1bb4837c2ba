"""The stateless checks a UAS makes before processing a request (RFC 3261 §8.2).

Owns the order of those checks and the error response each one produces. Must
never look at transactions, dialogs, registrations or credentials: merged-request
detection (482), authentication (401/407) and routing belong to the layers above.
"""

from __future__ import annotations

from cti.sip.errors import SipParseError
from cti.sip.message import SipRequest, SipResponse, build_error_response
from cti.sip.uri import parse_name_addr, parse_uri

SUPPORTED_URI_SCHEMES = frozenset({"sip", "sips", "tel"})
# Headers that may appear once only; a second copy makes the request ambiguous.
_SINGLE_HEADERS = ("Call-ID", "From", "To", "CSeq", "Max-Forwards", "Content-Length",
                   "Content-Type", "Expires")
_SDP_ACCEPTING = frozenset({"application/sdp", "application/*", "*/*"})


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip(" \t").lower()


def _malformed(request: SipRequest) -> str | None:
    """Why the request is not well-formed enough to process, or None."""
    h = request.headers
    for name in ("Via", "Call-ID", "From", "To", "CSeq"):
        if name not in h:
            return f"missing {name}"
    for name in _SINGLE_HEADERS:
        if h.count(name) > 1:
            return f"several {name} headers"
    try:
        request.call_id
        request.cseq
        request.from_
        request.to
        request.vias
        for name in ("Contact", "Route", "Record-Route"):
            for value in h.get_all(name):
                if not (name == "Contact" and value == "*"):
                    parse_name_addr(value)
    except SipParseError as exc:
        return exc.reason
    return None


def check_request(
    request: SipRequest,
    *,
    allowed_methods: frozenset[str],
    supported_extensions: frozenset[str] = frozenset(),
    accepted_content_types: frozenset[str] = frozenset({"application/sdp"}),
) -> SipResponse | None:
    """The error response to send for `request`, or None when it may be processed.

    An ACK never gets a response, so the answer for one is always None: the caller
    drops a bad ACK. The Date header is not checked (RFC 4475 baddate: ignoring it
    is allowed), nor is Max-Forwards 0, which only matters when forwarding.
    """
    if request.method == "ACK":
        return None
    problem = _malformed(request)
    if problem is not None:
        return build_error_response(request, 400, problem)
    # §8.2.1: method inspection comes first, so an unknown method with a CSeq
    # mismatch gets 501 (RFC 4475 mismatch02).
    if request.method not in allowed_methods:
        allow = ", ".join(sorted(allowed_methods))
        return build_error_response(request, 501, headers=[("Allow", allow)])
    if request.cseq[1] != request.method:
        return build_error_response(request, 400, "CSeq method does not match")
    # §8.2.2.1: the Request-URI scheme.
    scheme = request.uri.partition(":")[0].lower()
    if scheme not in SUPPORTED_URI_SCHEMES:
        return build_error_response(request, 416)
    try:
        uri = parse_uri(request.uri)
    except SipParseError as exc:
        return build_error_response(request, 400, f"Request-URI: {exc.reason}")
    if uri.headers:
        return build_error_response(request, 400, "headers in Request-URI")
    # §8.2.2.3: Require. Never for CANCEL, whose Require is the INVITE's business.
    if request.method != "CANCEL":
        unknown = [o for o in request.headers.get_all("Require") if o not in supported_extensions]
        if unknown:
            return build_error_response(
                request, 420, headers=[("Unsupported", ", ".join(unknown))]
            )
    # §8.2.3: content. A body of white space only (UDP, no Content-Length) is no body.
    if request.body.strip(b" \t\r\n"):
        content_type = request.headers.get("Content-Type")
        if content_type is None:
            return build_error_response(request, 400, "body without Content-Type")
        accepted = {t.lower() for t in accepted_content_types}
        if _media_type(content_type) not in accepted:
            return build_error_response(
                request, 415, headers=[("Accept", ", ".join(sorted(accepted)))]
            )
        encodings = [e.lower() for e in request.headers.get_all("Content-Encoding")]
        if any(e != "identity" for e in encodings):
            return build_error_response(
                request, 415, headers=[("Accept-Encoding", "identity")]
            )
    # An INVITE is answered with SDP; an Accept that rules SDP out cannot be met.
    if request.method == "INVITE" and "Accept" in request.headers:
        accepts = {_media_type(a) for a in request.headers.get_all("Accept")}
        if not accepts & _SDP_ACCEPTING:
            return build_error_response(
                request,
                406,
                headers=[("Warning", '399 ctihub "only application/sdp bodies are sent"')],
            )
    return None
