"""Click-to-dial on the SIP endpoint: the asyncio adapter of `outbound.ClickToDial`.

Owns: each dial's two UAC legs (the agent's phone, then the customer through the trunk)
with their RTP endpoints, the ring timer, the relay between the legs once both
answered, hold from the desktop, and carrying out the machine's commands. The voice
service hands it every SIP message that belongs to a dial's legs and every desktop
request about a dial; it tells the contact center what happened through the sink.
Must never: decide what an event means for the call (the pure machine does) or know
about routing and the CRM (the center does).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from cti.calls.agent_leg import AgentLeg, AgentLegEnd, AgentLegState
from cti.calls.outbound import (
    AgentAnswered,
    AgentFailed,
    AgentHungUp,
    BridgeLegs,
    ByeLeg,
    CancelLeg,
    ClickToDial,
    CustomerAnswered,
    CustomerFailed,
    CustomerHungUp,
    CustomerRang,
    DialCommand,
    DialEvent,
    DialFailure,
    DialSide,
    DialState,
    GaveUp,
    HubHungUp,
    InviteCustomer,
    ReportAnswered,
    ReportEnded,
    ReportFailed,
    ReportRinging,
    trunk_leg,
)
from cti.media.endpoint import RtpEndpoint
from cti.media.player import Player
from cti.media.ports import PortsExhausted
from cti.sip.message import SipResponse, build_response
from cti.sip.sdp import (
    PCMA,
    PCMU,
    Codec,
    SdpError,
    make_offer,
    parse_sdp,
    serialize_sdp,
)
from cti.sip.transaction import DeliverRequest, DeliverResponse, ReportTimeout

if TYPE_CHECKING:
    from cti.calls.service import VoiceService

log = logging.getLogger(__name__)


class DialSink(Protocol):
    def dial_ringing(self, call_id: str) -> None: ...
    def dial_answered(self, call_id: str) -> None: ...
    def dial_failed(self, call_id: str, *, side: str, failure: str, status: int) -> None: ...
    def hold_changed(self, call_id: str, *, held: bool) -> None: ...
    async def call_ended(self, call_id: str, *, ended_by: str) -> None: ...


@dataclass(slots=True, kw_only=True)
class Dial:
    call_id: str  # the id the center knows the call by (the agent leg's Call-ID)
    number: str  # the customer's, E.164
    machine: ClickToDial
    agent: AgentLeg
    agent_media: RtpEndpoint | None
    customer: AgentLeg | None = None
    customer_media: RtpEndpoint | None = None
    codec: Codec | None = None  # what the agent's phone chose; the customer is offered the same
    ring_timer: asyncio.TimerHandle | None = None
    connected_at: float | None = None  # loop time of the bridge; the RTP watchdog counts from here
    held: bool = False
    music: Player | None = None


@dataclass
class DialCalls:
    voice: VoiceService
    sink: DialSink
    agent_ring_s: float = 30.0
    customer_ring_s: float = 45.0
    presented_number: str = "ctihub"  # the From user towards the trunk (the carrier may replace it)
    _dials: dict[str, Dial] = field(default_factory=dict)
    # Every dial leg alive, by its Call-ID: (leg, dial id, side). A leg given up stays
    # until its final response or BYE answer, even after its dial ended.
    _legs: dict[str, tuple[AgentLeg, str, DialSide]] = field(default_factory=dict)
    _invites: dict[str, str] = field(default_factory=dict)  # INVITE transaction -> leg Call-ID
    _byes: dict[str, str] = field(default_factory=dict)  # BYE transaction -> leg Call-ID

    @property
    def active(self) -> int:
        return len(self._dials)

    @property
    def legs_alive(self) -> int:
        return len(self._legs)

    def has(self, call_id: str) -> bool:
        return call_id in self._dials

    def packets_received(self, call_id: str) -> tuple[int, int] | None:
        """RTP packets the hub received so far from (the agent's phone, the customer)."""
        dial = self._dials.get(call_id)
        if dial is None:
            return None
        agent, customer = dial.agent_media, dial.customer_media
        return (agent.packets_received if agent else 0, customer.packets_received if customer else 0)

    # --- starting ----------------------------------------------------------------------

    def start(
        self, *, agent_id: str, target: str, destination: tuple[str, int], number: str, customer_name: str
    ) -> str | None:
        """Ring the agent's phone (its Contact `target`, reached at `destination`) for a
        call to `number`; the dial's call id, or None when no RTP port is free."""
        voice = self.voice
        try:
            media = voice.media.open()
        except (PortsExhausted, OSError):
            log.error("no RTP port for a click-to-dial of %s", agent_id)
            return None
        offer = make_offer(
            local_address=voice.advertised_host, local_port=media.port, session_id=secrets.randbelow(2**31),
            session_version=1, codecs=(PCMU, PCMA), telephone_event_pt=101,
        )
        # The agent's phone shows whom it is about to call.
        leg = AgentLeg(
            agent_id=agent_id, target=target, destination=destination,
            local_host=voice.advertised_host, local_port=voice.advertised_port,
            caller_number=number, caller_name=customer_name,
        )
        dial = Dial(call_id=leg.call_id, number=number, machine=ClickToDial(), agent=leg, agent_media=media)
        self._dials[dial.call_id] = dial
        self._invite(dial, leg, DialSide.AGENT, serialize_sdp(offer))
        self._ring_timer(dial, self.agent_ring_s)
        return dial.call_id

    def _invite(self, dial: Dial, leg: AgentLeg, side: DialSide, sdp: bytes) -> None:
        endpoint = self.voice.endpoint
        assert endpoint is not None
        transaction = endpoint.send_request(leg.invite(sdp), leg.destination)
        leg.invite_transaction = transaction
        self._invites[transaction] = leg.call_id
        self._legs[leg.call_id] = (leg, dial.call_id, side)

    def _ring_timer(self, dial: Dial, seconds: float) -> None:
        if dial.ring_timer is not None:
            dial.ring_timer.cancel()
        dial.ring_timer = asyncio.get_running_loop().call_later(seconds, self._event, dial.call_id, GaveUp())

    # --- what the desktop asks -----------------------------------------------------------

    def hang_up(self, call_id: str) -> bool:
        if call_id not in self._dials:
            return False
        self._event(call_id, HubHungUp())
        return True

    def hang_up_all(self) -> None:
        for call_id in list(self._dials):
            self._event(call_id, HubHungUp(by="hub"))

    def hang_up_silent(self, now: float, timeout_s: float) -> None:
        """The RTP watchdog: a connected dial whose phone or customer sent nothing for
        `timeout_s` (a crashed phone, a lost network) is hung up, as inbound calls are."""
        for dial in list(self._dials.values()):
            if dial.connected_at is None:
                continue
            silent = [
                side for side, media in (("agent", dial.agent_media), ("customer", dial.customer_media))
                if media is not None and now - (media.last_arrival or dial.connected_at) > timeout_s
            ]
            if silent:
                log.warning("dial %s: no RTP from the %s for %.0f s; hanging up", dial.call_id, " and ".join(silent), timeout_s)
                self._event(dial.call_id, HubHungUp(by="hub"))

    def hold(self, call_id: str, *, held: bool) -> bool:
        """As for inbound calls: the relay stops both ways and the customer hears music."""
        dial = self._dials.get(call_id)
        if dial is None or dial.machine.state != DialState.CONNECTED or dial.held == held:
            return False
        dial.held = held
        self._music(dial, on=held)
        self.sink.hold_changed(call_id, held=held)
        return True

    # --- SIP in --------------------------------------------------------------------------

    def on_response(self, delivered: DeliverResponse) -> bool:
        transaction = delivered.transaction
        if transaction in self._invites:
            leg_id = self._invites[transaction]
            if delivered.response.status >= 300:
                del self._invites[transaction]
            if leg_id in self._legs:
                self._invite_response(*self._legs[leg_id], delivered.response)
            return True
        bye_of = self._byes.get(transaction)
        if bye_of is None:
            return False
        if delivered.response.status >= 200:
            del self._byes[transaction]
            self._forget(bye_of)
        return True

    def on_timeout(self, report: ReportTimeout) -> bool:
        if report.transaction in self._invites:
            leg_id = self._invites.pop(report.transaction)
            if leg_id in self._legs:
                leg, call_id, side = self._legs[leg_id]
                self._failed(leg, call_id, side, 408)
            return True
        bye_of = self._byes.pop(report.transaction, None)
        if bye_of is None:
            return False
        self._forget(bye_of)  # the other side never answered our BYE; over anyway
        return True

    def on_bye(self, delivered: DeliverRequest) -> bool:
        found = self._leg_of(delivered)
        if found is None:
            return False
        leg, call_id, side = found
        self._respond(delivered, 200)
        if leg.state == AgentLegState.ENDING:
            return True  # BYEs crossed; ours completes the leg
        leg.finish(AgentLegEnd.AGENT_BYE)
        self._forget(leg.call_id)
        if call_id in self._dials:
            self._event(call_id, AgentHungUp() if side == DialSide.AGENT else CustomerHungUp())
        return True

    def on_reinvite(self, delivered: DeliverRequest) -> bool:
        """A re-INVITE on a dial leg (a session refresh, the phone's own hold): answered
        with our description of that leg; the relay is unchanged (hold is the desktop's)."""
        found = self._leg_of(delivered)
        if found is None:
            return False
        leg = found[0]
        body = leg.invite_request.body if leg.invite_request is not None else b""
        contact = f"sip:hub@{self.voice.advertised_host}:{self.voice.advertised_port}"
        self._send(delivered, build_response(
            delivered.request, 200, to_tag=leg.local_tag, headers=(("Contact", f"<{contact}>"),), body=body,
            content_type="application/sdp",
        ))
        return True

    def _leg_of(self, delivered: DeliverRequest) -> tuple[AgentLeg, str, DialSide] | None:
        entry = self._legs.get(delivered.request.call_id)
        if entry is None or not entry[0].matches(delivered.request):
            return None
        return entry

    def _invite_response(self, leg: AgentLeg, call_id: str, side: DialSide, response: SipResponse) -> None:
        endpoint = self.voice.endpoint
        assert endpoint is not None
        if response.status < 200:
            if leg.state in (AgentLegState.CALLING, AgentLegState.RINGING):
                leg.provisional()
                if side == DialSide.CUSTOMER and response.status in (180, 183):
                    self._event(call_id, CustomerRang())
            elif leg.state == AgentLegState.CANCELLING:
                self.voice._send_cancel(leg)  # our CANCEL waited for this provisional (§9.1)
            return
        if response.status < 300:
            if leg.ack is not None:  # a retransmitted 2xx: the ACK again (§13.2.2.4)
                endpoint.send_stateless(leg.ack, leg.next_hop())
                return
            given_up = leg.state == AgentLegState.CANCELLING
            leg.ack = leg.answered(response)
            endpoint.send_stateless(leg.ack, leg.next_hop())
            dial = self._dials.get(call_id)
            if given_up or dial is None or self._leg(dial, side) is not leg:
                self._bye(leg)  # our CANCEL crossed the 200: hang that leg up
                return
            self._remote_from(dial, side, response)
            self._event(call_id, AgentAnswered() if side == DialSide.AGENT else CustomerAnswered())
            return
        self._failed(leg, call_id, side, response.status)

    def _failed(self, leg: AgentLeg, call_id: str, side: DialSide, status: int) -> None:
        leg.failed(status)
        self._forget(leg.call_id)
        dial = self._dials.get(call_id)
        if dial is not None and self._leg(dial, side) is leg:
            self._event(call_id, AgentFailed(status=status) if side == DialSide.AGENT else CustomerFailed(status=status))

    # --- the machine's commands ----------------------------------------------------------

    def _event(self, call_id: str, event: DialEvent) -> None:
        dial = self._dials.get(call_id)
        if dial is None:
            return
        before = dial.machine.state
        commands = dial.machine.handle(event)
        if dial.machine.state != before and dial.ring_timer is not None:
            dial.ring_timer.cancel()
            dial.ring_timer = None
        for command in commands:
            self._carry_out(dial, command)

    def _carry_out(self, dial: Dial, command: DialCommand) -> None:
        match command:
            case InviteCustomer():
                self._invite_customer(dial)
            case CancelLeg(side=side):
                leg = self._leg(dial, side)
                if leg is not None and leg.state in (AgentLegState.CALLING, AgentLegState.RINGING):
                    leg.cancelling(AgentLegEnd.CANCELLED)
                    self.voice._send_cancel(leg)
            case ByeLeg(side=side):
                leg = self._leg(dial, side)
                if leg is not None and leg.state == AgentLegState.ANSWERED:
                    self._bye(leg)
            case BridgeLegs():
                self._bridge(dial)
            case ReportRinging():
                self.sink.dial_ringing(dial.call_id)
            case ReportAnswered():
                self.sink.dial_answered(dial.call_id)
            case ReportFailed(side=side, failure=failure, status=status):
                self.sink.dial_failed(dial.call_id, side=side.value, failure=failure.value, status=status)
            case ReportEnded(ended_by=ended_by):
                self._close(dial)
                self.voice._spawn(self.sink.call_ended(dial.call_id, ended_by=ended_by))

    def _invite_customer(self, dial: Dial) -> None:
        voice = self.voice
        try:
            dial.customer_media = voice.media.open()
        except (PortsExhausted, OSError):
            log.error("no RTP port for the customer leg of dial %s", dial.call_id)
            self._event(dial.call_id, CustomerFailed(status=503))
            return
        codecs = (dial.codec,) if dial.codec is not None else (PCMU, PCMA)
        offer = make_offer(
            local_address=voice.advertised_host, local_port=dial.customer_media.port,
            session_id=secrets.randbelow(2**31), session_version=1, codecs=codecs, telephone_event_pt=101,
        )
        trunk = voice.trunk
        if trunk is None:  # refused before the agent's phone rang; a changed setting ends it here
            self.voice.media.close(dial.customer_media)
            dial.customer_media = None
            self._event(dial.call_id, CustomerFailed(status=503))
            return
        dial.customer = trunk_leg(
            trunk, dial.number, local_host=voice.advertised_host, local_port=voice.advertised_port,
            presented_number=self.presented_number,
        )
        self._invite(dial, dial.customer, DialSide.CUSTOMER, serialize_sdp(offer))
        self._ring_timer(dial, self.customer_ring_s)

    def _remote_from(self, dial: Dial, side: DialSide, response: SipResponse) -> None:
        """Where the answering side wants its media, and (the agent's phone) the codec."""
        media = dial.agent_media if side == DialSide.AGENT else dial.customer_media
        try:
            answer = parse_sdp(response.body)
            audio = next(m for m in answer.media if m.media == "audio" and m.port)
        except (SdpError, StopIteration, AttributeError) as err:
            log.warning("dial %s: unusable SDP answer from the %s (%s); relying on symmetric RTP", dial.call_id, side.value, err)
            return
        address = audio.connection_address or answer.connection_address
        if address and media is not None:
            media.remote = (address, audio.port)
        if side == DialSide.AGENT:
            dial.codec = next((c for c in (PCMU, PCMA) if c.payload_type in audio.formats), None)

    def _bridge(self, dial: Dial) -> None:
        agent, customer = dial.agent_media, dial.customer_media
        if agent is None or customer is None:
            return
        dial.connected_at = asyncio.get_running_loop().time()
        agent.on_packet(lambda data: None if dial.held else customer.send(data))
        customer.on_packet(lambda data: None if dial.held else agent.send(data))

    def _music(self, dial: Dial, *, on: bool) -> None:
        if not on:
            if dial.music is not None:
                dial.music.stop()
            return
        if dial.customer_media is None or dial.codec is None:
            return
        if dial.music is None:
            try:
                dial.music = Player(dial.customer_media, self.voice.hold_sound, dial.codec.payload_type)
            except (OSError, ValueError) as err:
                log.warning("no music on hold (%s): %s", self.voice.hold_sound, err)
                return
        dial.music.start()

    def _close(self, dial: Dial) -> None:
        """The dial is over: its media goes; its legs wind down in `_legs`."""
        if dial.ring_timer is not None:
            dial.ring_timer.cancel()
            dial.ring_timer = None
        if dial.music is not None:
            dial.music.stop()
            dial.music = None
        for media in (dial.agent_media, dial.customer_media):
            if media is not None:
                media.on_packet(None)
                self.voice.media.close(media)
        dial.agent_media = dial.customer_media = None
        self._dials.pop(dial.call_id, None)

    def _bye(self, leg: AgentLeg) -> None:
        endpoint = self.voice.endpoint
        assert endpoint is not None
        transaction = endpoint.send_request(leg.bye(), leg.next_hop())
        self._byes[transaction] = leg.call_id

    @property
    def invites_tracked(self) -> int:
        return len(self._invites)

    def _forget(self, leg_id: str) -> None:
        """A leg is over: nothing of it stays (its answered INVITE's entry neither)."""
        entry = self._legs.pop(leg_id, None)
        if entry is not None and entry[0].invite_transaction is not None:
            self._invites.pop(entry[0].invite_transaction, None)

    @staticmethod
    def _leg(dial: Dial, side: DialSide) -> AgentLeg | None:
        return dial.agent if side == DialSide.AGENT else dial.customer

    def _respond(self, delivered: DeliverRequest, status: int) -> None:
        self.voice._respond(delivered, status)

    def _send(self, delivered: DeliverRequest, response: SipResponse) -> None:
        self.voice._send(delivered.transaction, response)


__all__ = ["Dial", "DialCalls", "DialFailure", "DialSink"]
