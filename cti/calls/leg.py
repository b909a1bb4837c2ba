"""The caller's leg of a call, with the hub acting as user agent server (pure).

Owns: the leg's state machine (one transition table), the dialog identifiers and route
set of RFC 3261 §12, and building the responses and in-dialog requests of the leg.
Must never: do I/O, read a clock, or know about queues and agents.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from cti.sip.message import SipRequest, SipResponse, build_response, new_branch
from cti.sip.headers import Headers
from cti.sip.uri import NameAddr, SipUri, parse_name_addr


class LegState(enum.Enum):
    RINGING = "ringing"  # INVITE received, provisional responses sent
    ANSWERED = "answered"  # 2xx sent (the ACK may still be on its way)
    ENDING = "ending"  # the hub sent BYE and waits for its response
    ENDED = "ended"


class LegEnd(enum.Enum):
    CANCELLED = "cancelled"  # caller's CANCEL before the answer
    CALLER_BYE = "caller_bye"
    HUB_BYE = "hub_bye"
    REJECTED = "rejected"  # the hub answered the INVITE with an error
    NO_ACK = "no_ack"


_TRANSITIONS: dict[LegState, frozenset[LegState]] = {
    LegState.RINGING: frozenset({LegState.ANSWERED, LegState.ENDED}),
    LegState.ANSWERED: frozenset({LegState.ENDING, LegState.ENDED}),
    LegState.ENDING: frozenset({LegState.ENDED}),
    LegState.ENDED: frozenset(),
}


class IllegalLegTransition(RuntimeError):
    pass


ALLOWED_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "REGISTER", "REFER")


@dataclass(slots=True, kw_only=True)
class CallerLeg:
    invite: SipRequest
    invite_transaction: str
    local_tag: str
    local_contact: str  # our Contact URI, e.g. sip:1000@192.0.2.1:5060
    state: LegState = LegState.RINGING
    end: LegEnd | None = None
    local_cseq: int = 1
    acked: bool = False
    remote_target: SipUri = field(init=False)
    route_set: tuple[str, ...] = field(init=False)
    remote: NameAddr = field(init=False)
    local: NameAddr = field(init=False)

    def __post_init__(self) -> None:
        # §12.1.1: the remote target is the INVITE's Contact; the route set its Record-Route in order.
        contacts = self.invite.headers.get_all("Contact")
        self.remote_target = parse_name_addr(contacts[0]).uri if contacts else self.invite.from_.uri
        self.route_set = tuple(self.invite.headers.get_all("Record-Route"))
        self.remote = self.invite.from_
        self.local = self.invite.to

    @property
    def call_id(self) -> str:
        return self.invite.call_id

    @property
    def remote_tag(self) -> str | None:
        return self.remote.tag

    def move(self, new: LegState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise IllegalLegTransition(f"leg {self.call_id}: {self.state.value} -> {new.value}")
        self.state = new

    def matches(self, request: SipRequest) -> bool:
        """Does an in-dialog request belong to this leg (§12.2.2)?"""
        return (
            request.call_id == self.call_id
            and request.from_.tag == self.remote_tag
            and request.to.tag == self.local_tag
        )

    # --- responses to the INVITE -----------------------------------------------------

    def ringing(self) -> SipResponse:
        return self._response(180)

    def answer(self, sdp: bytes) -> SipResponse:
        self.move(LegState.ANSWERED)
        return self._response(200, body=sdp, content_type="application/sdp")

    def reject(self, status: int, reason: str | None = None, headers: tuple[tuple[str, str], ...] = ()) -> SipResponse:
        self.move(LegState.ENDED)
        self.end = LegEnd.REJECTED
        return self._response(status, reason, headers=headers)

    def cancelled(self) -> SipResponse:
        """The 487 for the INVITE after a CANCEL (§9.2)."""
        self.move(LegState.ENDED)
        self.end = LegEnd.CANCELLED
        return self._response(487)

    def _response(
        self,
        status: int,
        reason: str | None = None,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> SipResponse:
        extra = list(headers)
        if status < 300 and status > 100:
            extra.append(("Contact", f"<{self.local_contact}>"))
            extra.append(("Allow", ", ".join(ALLOWED_METHODS)))
            for rr in self.route_set:
                extra.append(("Record-Route", rr))
        return build_response(
            self.invite, status, reason, to_tag=self.local_tag, headers=extra, body=body, content_type=content_type
        )

    # --- in-dialog requests ----------------------------------------------------------

    def bye(self, *, via_host: str, via_port: int) -> SipRequest:
        """The hub hangs up (§15.1.1)."""
        self.move(LegState.ENDING)
        self.end = LegEnd.HUB_BYE
        self.local_cseq += 1
        headers = Headers()
        headers.add("Via", f"SIP/2.0/UDP {via_host}:{via_port};branch={new_branch()};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", _with_tag(self.local, self.local_tag))
        headers.add("To", str(self.remote))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.local_cseq} BYE")
        for route in self.route_set:  # as UAS the route set is the Record-Route in order
            headers.add("Route", route)
        return SipRequest(method="BYE", uri=str(self.remote_target), headers=headers)

    def next_hop(self) -> tuple[str, int]:
        """Where in-dialog requests go: the first route, else the remote target (§8.1.2)."""
        uri = parse_name_addr(self.route_set[0]).uri if self.route_set else self.remote_target
        port = uri.port or (5061 if uri.scheme == "sips" else 5060)
        return uri.host.strip("[]"), port

    def ended_by_caller(self) -> None:
        self.move(LegState.ENDED)
        self.end = LegEnd.CALLER_BYE

    def finish(self, end: LegEnd | None = None) -> None:
        """The leg is over (BYE answered or timed out, no ACK)."""
        if self.state != LegState.ENDED:
            self.move(LegState.ENDED)
        if end is not None:
            self.end = end


def _with_tag(addr: NameAddr, tag: str) -> str:
    if addr.tag:
        return str(addr)
    return f"{addr};tag={tag}"


__all__ = ["CallerLeg", "LegState", "LegEnd", "ALLOWED_METHODS", "IllegalLegTransition"]
