"""Outbound calls through the SIP trunk: click-to-dial and transfer to an outside number (pure).

Owns: the trunk's address and the Request-URI of a number on it; the leg towards the
trunk (a UAC leg like the agent's, built by `trunk_leg`); what a final response means
(`failure_of`) and its sipfrag for a REFER's NOTIFY; and the click-to-dial machine:
the agent's phone is called first, then the customer, and the two are bridged. The
machine's states have one transition table; events are facts (`AgentAnswered`...),
commands are what the voice service must do (`InviteCustomer`, `CancelAgent`...).
Must never: do I/O, read a clock, start timers (a ring timeout comes in as `GaveUp`),
or know about routing and the CRM.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cti.calls.agent_leg import AgentLeg

DEFAULT_SIP_PORT = 5060


class TrunkError(ValueError):
    """The trunk setting is not host:port."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Trunk:
    """The carrier's gateway: every outbound INVITE (and its CANCEL, ACK, BYE) goes there."""

    host: str
    port: int = DEFAULT_SIP_PORT

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def uri_for(self, e164: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"sip:{e164}@{host}:{self.port};user=phone"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_trunk(value: str) -> Trunk:
    """`host`, `host:port`, `[v6]:port`, or the same as a sip: URI (`sip:gw.example:5080`)."""
    text = value.strip()
    if text.lower().startswith("sip:"):
        text = text[4:]
    text = text.split(";", 1)[0].split("@")[-1]
    if not text:
        raise TrunkError("empty: give host:port of the carrier's SIP gateway")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise TrunkError(f"{value!r} is not [IPv6]:port")
        port_text = rest[1:]
    elif text.count(":") > 1:
        raise TrunkError(f"{value!r}: write an IPv6 address in brackets, [addr]:port")
    else:
        host, _, port_text = text.partition(":")
    if not host or any(ch.isspace() or ch in "/?#<>" for ch in host):
        raise TrunkError(f"{value!r} names no usable host")
    if port_text and (not port_text.isdigit() or not 1 <= int(port_text) <= 65535):
        raise TrunkError(f"{value!r} has a bad port (1-65535)")
    return Trunk(host=host, port=int(port_text) if port_text else DEFAULT_SIP_PORT)


def trunk_leg(
    trunk: Trunk, e164: str, *, local_host: str, local_port: int, presented_number: str, presented_name: str = ""
) -> AgentLeg:
    """The UAC leg to `e164` through the trunk. It is an `AgentLeg` in all but purpose:
    the same INVITE, CANCEL, ACK and BYE, sent to the trunk's address. `presented_number`
    is the From user (the caller's number on a transfer, the hub's on click-to-dial)."""
    return AgentLeg(
        agent_id="",
        target=trunk.uri_for(e164),
        destination=trunk.address,
        local_host=local_host,
        local_port=local_port,
        caller_number=presented_number,
        caller_name=presented_name,
    )


# --- what a final response means ----------------------------------------------------


class DialFailure(enum.Enum):
    BUSY = "busy"  # 486, 600
    DECLINED = "declined"  # 603
    NOT_FOUND = "not_found"  # 404, 484, 604: no such number
    NO_ANSWER = "no_answer"  # 408, 480, or our ring timeout
    FAILED = "failed"  # anything else (5xx, no response at all)


def failure_of(status: int) -> DialFailure:
    if status in (486, 600):
        return DialFailure.BUSY
    if status == 603:
        return DialFailure.DECLINED
    if status in (404, 484, 604):
        return DialFailure.NOT_FOUND
    if status in (408, 480, 487):
        return DialFailure.NO_ANSWER
    return DialFailure.FAILED


_REASONS = {
    100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 403: "Forbidden", 404: "Not Found",
    408: "Request Timeout", 480: "Temporarily Unavailable", 484: "Address Incomplete", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 500: "Server Internal Error", 503: "Service Unavailable",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
}


def sipfrag(status: int) -> str:
    """The status line a REFER's NOTIFY carries (RFC 3515 §2.4.5)."""
    return f"SIP/2.0 {status} {_REASONS.get(status, 'Unknown')}"


# --- click-to-dial ---------------------------------------------------------------------


class DialState(enum.Enum):
    CALLING_AGENT = "calling_agent"  # the agent's phone is rung first
    CALLING_CUSTOMER = "calling_customer"  # the agent answered; INVITE to the trunk sent
    CUSTOMER_RINGING = "customer_ringing"  # a provisional response from the trunk
    CONNECTED = "connected"  # the customer answered: the legs are bridged
    ENDED = "ended"  # what is left of the legs winds down in the voice service


class DialSide(enum.Enum):
    AGENT = "agent"
    CUSTOMER = "customer"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentAnswered:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentFailed:
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentHungUp:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerRang:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerAnswered:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerFailed:
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerHungUp:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class GaveUp:
    """The ring timeout of the leg being rung passed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HubHungUp:
    """The hub ends the call: the agent's hang-up from the desktop ("agent"), or the
    hub's own (shutdown, no RTP any more: "hub")."""

    by: str = "agent"


DialEvent = (
    AgentAnswered | AgentFailed | AgentHungUp | CustomerRang | CustomerAnswered | CustomerFailed | CustomerHungUp
    | GaveUp | HubHungUp
)


@dataclass(frozen=True, slots=True, kw_only=True)
class InviteCustomer:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelLeg:
    side: DialSide


@dataclass(frozen=True, slots=True, kw_only=True)
class ByeLeg:
    side: DialSide


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeLegs:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportRinging:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportAnswered:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportFailed:
    side: DialSide
    failure: DialFailure
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportEnded:
    ended_by: str  # "agent", "customer" or "hub"


DialCommand = InviteCustomer | CancelLeg | ByeLeg | BridgeLegs | ReportRinging | ReportAnswered | ReportFailed | ReportEnded

_A, _C = DialSide.AGENT, DialSide.CUSTOMER
_NO_ANSWER = 408  # what our own give-up is reported as


def _dial_table(state: DialState, event: DialEvent) -> tuple[DialState, tuple[DialCommand, ...]] | None:
    """The one transition table of click-to-dial; None: the event changes nothing."""
    match state, event:
        case DialState.CALLING_AGENT, AgentAnswered():
            return DialState.CALLING_CUSTOMER, (InviteCustomer(),)
        case DialState.CALLING_AGENT, AgentFailed(status=status):
            return DialState.ENDED, (ReportFailed(side=_A, failure=failure_of(status), status=status), ReportEnded(ended_by="hub"))
        case DialState.CALLING_AGENT, GaveUp():
            return DialState.ENDED, (
                CancelLeg(side=_A), ReportFailed(side=_A, failure=DialFailure.NO_ANSWER, status=_NO_ANSWER),
                ReportEnded(ended_by="hub"),
            )
        case DialState.CALLING_AGENT, HubHungUp(by=by):
            return DialState.ENDED, (CancelLeg(side=_A), ReportEnded(ended_by=by))
        case DialState.CALLING_CUSTOMER, CustomerRang():
            return DialState.CUSTOMER_RINGING, (ReportRinging(),)
        case DialState.CALLING_CUSTOMER | DialState.CUSTOMER_RINGING, CustomerAnswered():
            return DialState.CONNECTED, (BridgeLegs(), ReportAnswered())
        case DialState.CALLING_CUSTOMER | DialState.CUSTOMER_RINGING, CustomerFailed(status=status):
            return DialState.ENDED, (
                ByeLeg(side=_A), ReportFailed(side=_C, failure=failure_of(status), status=status),
                ReportEnded(ended_by="customer"),
            )
        case DialState.CALLING_CUSTOMER | DialState.CUSTOMER_RINGING, AgentHungUp():
            return DialState.ENDED, (CancelLeg(side=_C), ReportEnded(ended_by="agent"))
        case DialState.CALLING_CUSTOMER | DialState.CUSTOMER_RINGING, GaveUp():
            return DialState.ENDED, (
                CancelLeg(side=_C), ByeLeg(side=_A),
                ReportFailed(side=_C, failure=DialFailure.NO_ANSWER, status=_NO_ANSWER), ReportEnded(ended_by="hub"),
            )
        case DialState.CALLING_CUSTOMER | DialState.CUSTOMER_RINGING, HubHungUp(by=by):
            return DialState.ENDED, (CancelLeg(side=_C), ByeLeg(side=_A), ReportEnded(ended_by=by))
        case DialState.CONNECTED, AgentHungUp():
            return DialState.ENDED, (ByeLeg(side=_C), ReportEnded(ended_by="agent"))
        case DialState.CONNECTED, CustomerHungUp():
            return DialState.ENDED, (ByeLeg(side=_A), ReportEnded(ended_by="customer"))
        case DialState.CONNECTED, HubHungUp(by=by):
            return DialState.ENDED, (ByeLeg(side=_A), ByeLeg(side=_C), ReportEnded(ended_by=by))
    return None


@dataclass(slots=True)
class ClickToDial:
    """One click-to-dial call's progress; `handle` says what to do about each event."""

    state: DialState = DialState.CALLING_AGENT

    def handle(self, event: DialEvent) -> tuple[DialCommand, ...]:
        step = _dial_table(self.state, event)
        if step is None:
            return ()
        self.state, commands = step
        return commands

    @property
    def ringing_side(self) -> DialSide | None:
        """The leg a ring timeout applies to now."""
        if self.state == DialState.CALLING_AGENT:
            return _A
        if self.state in (DialState.CALLING_CUSTOMER, DialState.CUSTOMER_RINGING):
            return _C
        return None


__all__ = [
    "AgentAnswered", "AgentFailed", "AgentHungUp", "BridgeLegs", "ByeLeg", "CancelLeg", "ClickToDial",
    "CustomerAnswered", "CustomerFailed", "CustomerHungUp", "CustomerRang", "DialCommand", "DialEvent",
    "DialFailure", "DialSide", "DialState", "GaveUp", "HubHungUp", "InviteCustomer", "ReportAnswered",
    "ReportEnded", "ReportFailed", "ReportRinging", "Trunk", "TrunkError", "failure_of", "parse_trunk",
    "sipfrag", "trunk_leg",
]
