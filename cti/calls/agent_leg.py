"""The agent's leg of a call: the hub, as user agent client, rings the agent's phone (pure).

Owns: the leg's state machine (one transition table), the INVITE it sends, reading the
phone's responses into outcomes, the ACK for a 2xx, and the leg's in-dialog requests.
Must never: do I/O, read a clock, or decide which agent to ring (routing does).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from cti.sip.headers import Headers
from cti.sip.message import SipRequest, SipResponse, new_branch, new_call_id, new_tag
from cti.sip.uri import SipUri, parse_name_addr, parse_uri


class AgentLegState(enum.Enum):
    CALLING = "calling"  # INVITE sent, nothing back yet
    RINGING = "ringing"  # a provisional response arrived
    CANCELLING = "cancelling"  # we gave up; waiting for the 487 (or a crossing 2xx)
    ANSWERED = "answered"  # 2xx received and ACKed
    ENDING = "ending"  # we sent BYE
    ENDED = "ended"


class AgentLegEnd(enum.Enum):
    BUSY = "busy"  # 486 / 600
    DECLINED = "declined"  # 603
    NO_ANSWER = "no_answer"  # we cancelled on the ring timeout
    CANCELLED = "cancelled"  # we cancelled because the caller left
    FAILED = "failed"  # any other final error, or no response at all
    AGENT_BYE = "agent_bye"
    HUB_BYE = "hub_bye"


_TRANSITIONS: dict[AgentLegState, frozenset[AgentLegState]] = {
    AgentLegState.CALLING: frozenset(
        {AgentLegState.RINGING, AgentLegState.CANCELLING, AgentLegState.ANSWERED, AgentLegState.ENDED}
    ),
    AgentLegState.RINGING: frozenset(
        {AgentLegState.RINGING, AgentLegState.CANCELLING, AgentLegState.ANSWERED, AgentLegState.ENDED}
    ),
    AgentLegState.CANCELLING: frozenset({AgentLegState.ENDING, AgentLegState.ENDED}),
    AgentLegState.ANSWERED: frozenset({AgentLegState.ENDING, AgentLegState.ENDED}),
    AgentLegState.ENDING: frozenset({AgentLegState.ENDED}),
    AgentLegState.ENDED: frozenset(),
}


class IllegalAgentLegTransition(RuntimeError):
    pass


@dataclass(slots=True, kw_only=True)
class AgentLeg:
    agent_id: str
    target: str  # the phone's registered Contact URI
    destination: tuple[str, int]  # where the phone's REGISTER came from (NAT-safe)
    local_host: str
    local_port: int
    caller_number: str
    caller_name: str
    call_id: str = ""
    local_tag: str = field(default_factory=new_tag)
    remote_tag: str | None = None
    remote_target: SipUri | None = None
    route_set: tuple[str, ...] = ()
    cseq: int = 1
    state: AgentLegState = AgentLegState.CALLING
    end: AgentLegEnd | None = None
    invite_request: SipRequest | None = None
    invite_transaction: str | None = None
    ack: SipRequest | None = None  # kept to answer retransmitted 2xx (§13.2.2.4)
    cancel_sent: bool = False

    def __post_init__(self) -> None:
        if not self.call_id:
            self.call_id = new_call_id(self.local_host)

    def move(self, new: AgentLegState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise IllegalAgentLegTransition(f"agent leg {self.call_id}: {self.state.value} -> {new.value}")
        self.state = new

    def invite(self, sdp_offer: bytes) -> SipRequest:
        headers = self._base_headers(self.cseq, "INVITE", to_tag=None)
        headers.add("Contact", f"<sip:hub@{self.local_host}:{self.local_port}>")
        headers.add("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO")
        request = SipRequest(method="INVITE", uri=self.target, headers=headers, body=sdp_offer)
        request.headers.add("Content-Type", "application/sdp")
        self.invite_request = request
        return request

    def provisional(self) -> None:
        if self.state == AgentLegState.CALLING:
            self.move(AgentLegState.RINGING)

    def answered(self, response: SipResponse) -> SipRequest:
        """Record the dialog of a 2xx and build its ACK (§13.2.2.4: a new branch)."""
        self.remote_tag = response.to.tag
        contacts = response.headers.get_all("Contact")
        self.remote_target = parse_name_addr(contacts[0]).uri if contacts else parse_uri(self.target)
        # As UAC the route set is the 2xx's Record-Route in reverse (§12.1.2).
        self.route_set = tuple(reversed(response.headers.get_all("Record-Route")))
        if self.state in (AgentLegState.CALLING, AgentLegState.RINGING):
            self.move(AgentLegState.ANSWERED)
        return self._in_dialog("ACK", cseq=self.cseq)

    def failed(self, status: int) -> AgentLegEnd:
        """A final error for the INVITE: what it means for routing."""
        if self.state == AgentLegState.CANCELLING:
            end = self.end or AgentLegEnd.CANCELLED
        elif status in (486, 600):
            end = AgentLegEnd.BUSY
        elif status == 603:
            end = AgentLegEnd.DECLINED
        else:
            end = AgentLegEnd.FAILED
        self.finish(end)
        return end

    def cancelling(self, why: AgentLegEnd) -> None:
        self.move(AgentLegState.CANCELLING)
        self.end = why

    def bye(self) -> SipRequest:
        self.move(AgentLegState.ENDING)
        if self.end is None:
            self.end = AgentLegEnd.HUB_BYE
        self.cseq += 1
        return self._in_dialog("BYE", cseq=self.cseq)

    def notify_refer(self, status_line: str, *, final: bool) -> SipRequest:
        """A NOTIFY of a REFER's progress (RFC 3515 §2.4.4): the transfer's outcome as a
        message/sipfrag status line; the implicit subscription ends with the final one."""
        self.cseq += 1
        request = self._in_dialog("NOTIFY", cseq=self.cseq)
        request.headers.add("Event", "refer")
        request.headers.add("Subscription-State", "terminated;reason=noresource" if final else "active;expires=60")
        request.headers.add("Contact", f"<sip:hub@{self.local_host}:{self.local_port}>")
        request.headers.add("Content-Type", "message/sipfrag;version=2.0")
        request.body = f"{status_line}\r\n".encode()
        return request

    def matches(self, request: SipRequest) -> bool:
        return request.call_id == self.call_id and request.to.tag == self.local_tag and request.from_.tag == self.remote_tag

    def next_hop(self) -> tuple[str, int]:
        """In-dialog requests go back where the phone registered from (it may sit behind NAT)."""
        return self.destination

    def finish(self, end: AgentLegEnd | None = None) -> None:
        if self.state != AgentLegState.ENDED:
            self.move(AgentLegState.ENDED)
        if end is not None and self.end is None:
            self.end = end

    # --- building requests -----------------------------------------------------------

    def _in_dialog(self, method: str, *, cseq: int) -> SipRequest:
        headers = self._base_headers(cseq, method, to_tag=self.remote_tag)
        for route in self.route_set:
            headers.add("Route", route)
        uri = str(self.remote_target) if self.remote_target is not None else self.target
        return SipRequest(method=method, uri=uri, headers=headers)

    def _base_headers(self, cseq: int, method: str, *, to_tag: str | None) -> Headers:
        headers = Headers()
        headers.add("Via", f"SIP/2.0/UDP {self.local_host}:{self.local_port};branch={new_branch()};rport")
        headers.add("Max-Forwards", "70")
        # The phone shows who is calling: the customer's number and name from the CRM;
        # the same local URI stays in every request of the dialog (§12.2.1.1).
        display = f'"{_quoted(self.caller_name)}" ' if self.caller_name else ""
        headers.add("From", f"{display}<sip:{_user(self.caller_number)}@{self.local_host}>;tag={self.local_tag}")
        to = f"<{self.target}>" + (f";tag={to_tag}" if to_tag else "")
        headers.add("To", to)
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        return headers


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _user(number: str) -> str:
    kept = "".join(ch for ch in number if ch.isalnum() or ch in "+-_.!~*'()&=$,;?/")
    return kept or "anonymous"
