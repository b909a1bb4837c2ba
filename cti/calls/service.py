"""The voice service: runs callers' legs and agents' legs on the SIP endpoint (a B2BUA).

Owns: dispatching requests by method, each call's two legs (`CallerLeg` towards the
customer, `AgentLeg` towards the agent's phone) and their RTP endpoints, the answer
timer, bridging the media, and hanging up both sides. Protocol decisions live in the
pure `TransactionLayer`, `CallerLeg` and `AgentLeg`; this module is their asyncio
adapter and tells the contact center what happened through `CallSink`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cti.calls.agent_leg import AgentLeg, AgentLegEnd, AgentLegState
from cti.calls.leg import ALLOWED_METHODS, CallerLeg, LegEnd, LegState
from cti.calls.outbound import Trunk, failure_of, sipfrag, trunk_leg
from cti.calls.outbound_calls import DialCalls
from cti.media.dtmf import DtmfError, DtmfReceiver, parse_sip_info_dtmf
from cti.media.endpoint import MediaPorts, RtpEndpoint
from cti.media.player import MUSIC_GRACE_S, Player
from cti.media.rtp import RtpError, parse_rtp
from cti.media.sounds import HOLD_WAV, RECORDING_NOTICE_WAV
from cti.media.ports import PortsExhausted
from cti.registrar.bindings import Binding
from cti.registrar.service import RegistrarService
from cti.sip.message import SipParseError, SipRequest, SipResponse, build_response, new_tag
from cti.sip.sdp import PCMA, PCMU, Codec, SdpAnswer, SdpError, answer_offer, make_offer, parse_sdp, serialize_sdp
from cti.sip.transaction import DeliverAck, DeliverRequest, DeliverResponse, ReportTimeout
from cti.sip.transport import SipEndpoint
from cti.sip.uri import parse_name_addr, parse_uri
from ivr.flows import FlowTable

log = logging.getLogger(__name__)


class CallSink(Protocol):
    def call_arrived(self, *, call_id: str, caller: str, dialled: str, queue: str) -> object: ...
    def call_answered_by_hub(self, call_id: str) -> None: ...
    def agent_phone_answered(self, call_id: str) -> None: ...
    def agent_phone_failed(self, call_id: str, end: AgentLegEnd) -> None: ...
    def dtmf_received(self, call_id: str, digit: str, duration_ms: int) -> None: ...
    def hold_changed(self, call_id: str, *, held: bool) -> None: ...
    def transferred(self, call_id: str, *, to_queue: str, to_number: str) -> bool: ...
    async def call_ended(self, call_id: str, *, ended_by: str) -> None: ...
    # Outbound: a REFER's number (E.164, or None when refused), a transfer to a number
    # that failed, and click-to-dial's progress.
    def outside_number(self, call_id: str, number: str) -> str | None: ...
    def transfer_failed(self, call_id: str, *, number: str, failure: str, status: int) -> None: ...
    def dial_ringing(self, call_id: str) -> None: ...
    def dial_answered(self, call_id: str) -> None: ...
    def dial_failed(self, call_id: str, *, side: str, failure: str, status: int) -> None: ...


PhoneLookup = Callable[[str], Awaitable[Sequence[Binding]]]

RTCP_INTERVAL_S = 5.0  # RFC 3550 §6.2's minimum interval for a two-party session

CALLER_SIDE = "caller"
AGENT_SIDE = "agent"
# Receives every relayed RTP packet with the side it came from. It runs inside the
# datagram callback: a tap must be quick and hand heavy work (encoding) elsewhere.
MediaTap = Callable[[str, bytes], None]


def phone_address(binding: Binding) -> tuple[str, int]:
    """Where to reach a registered phone: its Contact address, unless the phone sits
    behind NAT (a private Contact host that is not where the REGISTER came from); then
    the address the REGISTER came from, as NAT-aware registrars do."""
    uri = parse_uri(binding.contact)
    host = uri.host.strip("[]")
    port = uri.port or 5060
    try:
        contact_ip = ipaddress.ip_address(host)
    except ValueError:
        return binding.received  # a host name: the source is the one address we know works
    behind_nat = contact_ip.is_private and not contact_ip.is_loopback and host != binding.received[0]
    return binding.received if behind_nat else (host, port)


@dataclass(slots=True, kw_only=True)
class Call:
    leg: CallerLeg
    media: RtpEndpoint | None
    sdp: bytes = b""
    codec: Codec | None = None  # negotiated with the caller; the agent's leg offers the same
    telephone_event_pt: int | None = None
    answer_timer: asyncio.TimerHandle | None = None
    agent: AgentLeg | None = None  # the agent's leg being rung or bridged
    agent_media: RtpEndpoint | None = None
    bridged: bool = False  # media relayed between the legs (not while ringing or held)
    held: bool = False  # the agent put the caller on hold
    music: Player | None = None
    announce: bool = False  # the queue records: the caller hears the notice before routing
    notice: Player | None = None  # the recording notice, while it plays
    notice_due: bool = False  # answered without an offer: the notice waits for the caller's SDP
    ring_after_notice: tuple[str, list[Binding], str] | None = None  # (agent, phones, caller name)
    dtmf: DtmfReceiver = field(default_factory=DtmfReceiver)
    answered_at: float | None = None  # loop time; the RTP watchdog counts from here
    caller_sdp_session: int = 1
    caller_sdp_version: int = 1
    agent_sdp_version: int = 1
    taps: list[MediaTap] = field(default_factory=list)
    # A transfer to an outside number in progress: the leg to the trunk rings while the
    # caller hears music and the agent's leg stays, until it answers (then it takes the
    # agent's place) or fails (the caller is back with the agent).
    outbound: AgentLeg | None = None
    outbound_media: RtpEndpoint | None = None
    outbound_number: str = ""
    outbound_timer: asyncio.TimerHandle | None = None
    refer_leg: AgentLeg | None = None  # the phone that asked by REFER: it hears the outcome by NOTIFY


@dataclass
class VoiceService:
    endpoint: SipEndpoint | None
    flows: FlowTable
    media: MediaPorts
    sink: CallSink
    advertised_host: str
    answer_delay_s: float = 0.5
    registrar: RegistrarService | None = None
    phones: PhoneLookup | None = None
    hold_sound: Path = HOLD_WAV
    notice_sound: Path = RECORDING_NOTICE_WAV
    rtp_timeout_s: float = 0.0  # 0: off; otherwise a leg silent this long is hung up
    trunk: Trunk | None = None  # the carrier's gateway for outbound legs; None: no outside numbers
    outbound_ring_s: float = 45.0  # an outside number that rings this long is given up (CANCEL)
    dials: DialCalls = field(init=False)  # click-to-dial calls
    _calls: dict[str, Call] = field(default_factory=dict)
    # Every agent leg still alive, by its own Call-ID, with the caller's Call-ID. A leg
    # that was given up stays here until its final response, even after its call ended.
    _agent_legs: dict[str, tuple[AgentLeg, str]] = field(default_factory=dict)
    _invites: dict[str, str] = field(default_factory=dict)  # INVITE client transaction -> agent leg Call-ID
    _byes: dict[str, tuple[str, str]] = field(default_factory=dict)  # BYE transaction -> (Call-ID, "caller"|"agent")
    _ended: dict[str, str] = field(default_factory=dict)  # caller Call-ID -> who ended it, until both legs are gone
    _tasks: set["asyncio.Task[None]"] = field(default_factory=set)
    _watchdog: "asyncio.Task[None] | None" = None

    def __post_init__(self) -> None:
        self.dials = DialCalls(voice=self, sink=self.sink, customer_ring_s=self.outbound_ring_s)

    @property
    def advertised_port(self) -> int:
        assert self.endpoint is not None
        return self.endpoint.local_address[1]

    @property
    def active_calls(self) -> int:
        return len(self._calls) + self.dials.active

    # --- TransactionUser -------------------------------------------------------------

    def on_request(self, delivered: DeliverRequest) -> None:
        handler = {
            "INVITE": self._invite,
            "BYE": self._bye,
            "CANCEL": self._cancel,
            "OPTIONS": self._options,
            "INFO": self._info,
            "REGISTER": self._register,
            "REFER": self._refer,
        }.get(delivered.request.method)
        if handler is None:
            self._respond(delivered, 405, headers=(("Allow", ", ".join(ALLOWED_METHODS)),))
            return
        handler(delivered)

    def on_ack(self, delivered: DeliverAck) -> None:
        call = self._calls.get(delivered.request.call_id)
        if call is None:
            return
        call.leg.acked = True
        if call.codec is None and delivered.request.body and call.media is not None:
            self._late_answer(call, delivered.request.body)

    def _late_answer(self, call: Call, body: bytes) -> None:
        """The INVITE had no offer: our offer went in the 200, the caller's answer comes
        in the ACK (RFC 3261 §13.2.1). It fixes the codec and where to send media."""
        try:
            answer = parse_sdp(body)
            audio = next(m for m in answer.media if m.media == "audio" and m.port)
        except (SdpError, StopIteration) as err:
            log.warning("call %s: unusable SDP answer in the ACK: %s", call.leg.call_id, err)
            return
        address = audio.connection_address or answer.connection_address
        if address and call.media is not None:
            call.media.remote = (address, audio.port)
        chosen = next((c for c in (PCMU, PCMA) if c.payload_type in audio.formats), None)
        if chosen is None:
            log.warning("call %s: the caller answered with no codec we offered; hanging up", call.leg.call_id)
            self._hang_up(call, ended_by="hub")
            return
        call.codec = chosen
        call.telephone_event_pt = next(
            (pt for pt, name in audio.rtpmap.items() if name.lower().startswith("telephone-event/")), None
        )
        if call.notice_due:
            self._play_notice(call)
        else:
            self._music(call, on=not call.bridged)

    def on_response(self, delivered: DeliverResponse) -> None:
        if self.dials.on_response(delivered):
            return
        transaction = delivered.transaction
        if transaction in self._invites:
            leg_id = self._invites[transaction]
            if delivered.response.status >= 300:
                del self._invites[transaction]
            if leg_id in self._agent_legs:
                self._agent_invite_response(*self._agent_legs[leg_id], delivered.response)
            return
        bye = self._byes.pop(transaction, None)
        if bye is not None and delivered.response.status >= 200:
            self._bye_completed(*bye)

    def on_timeout(self, report: ReportTimeout) -> None:
        if self.dials.on_timeout(report):
            return
        if report.transaction in self._invites:  # the agent's phone never answered the INVITE
            leg_id = self._invites.pop(report.transaction)
            if leg_id in self._agent_legs:
                leg, call_id = self._agent_legs[leg_id]
                call = self._calls.get(call_id)
                if call is not None and call.outbound is leg:
                    self._outbound_failed(call, leg, 408)
                    return
                self._agent_leg_over(leg, call_id, leg.failed(408))
            return
        bye = self._byes.pop(report.transaction, None)
        if bye is not None:  # the other side never answered our BYE; the leg is over anyway
            self._bye_completed(*bye)
            return
        if report.what == "no_ack":
            for call in list(self._calls.values()):
                if call.leg.invite_transaction == report.transaction and not call.leg.acked:
                    log.info("call %s: no ACK for our 200 OK; hanging up", call.leg.call_id)
                    self._hang_up_gone_peer(call)

    # --- the caller's INVITE ---------------------------------------------------------

    def _invite(self, delivered: DeliverRequest) -> None:
        request = delivered.request
        if request.to.tag:
            self._reinvite(delivered)
            return
        try:
            uri = parse_uri(request.uri)
        except SipParseError:
            self._respond(delivered, 400, "Bad Request-URI")
            return
        dialled = uri.user or ""
        flow = self.flows.for_number(dialled)
        if flow is None:
            self._respond(delivered, 404)
            return
        offer = None
        if request.body:
            try:
                offer = parse_sdp(request.body)
            except SdpError as err:
                self._respond(delivered, 400, f"Bad SDP: {err}"[:80])
                return
        try:
            media = self.media.open()
        except (PortsExhausted, OSError):
            self._respond(delivered, 503, headers=(("Retry-After", "5"),))
            return
        session_id = secrets.randbelow(2**31)
        codec, dtmf_pt = None, None
        if offer is not None:
            answer = answer_offer(
                offer, local_address=self.advertised_host, local_port=media.port, session_id=session_id, session_version=1
            )
            if answer is None:
                self.media.close(media)
                self._respond(delivered, 488)
                return
            sdp = serialize_sdp(answer.description)
            codec, dtmf_pt = answer.codec, answer.telephone_event_pt
            media.remote = (answer.remote_address, answer.remote_port)
        else:
            # An INVITE without an offer: our offer goes in the 200, the answer in the ACK.
            sdp = serialize_sdp(
                make_offer(local_address=self.advertised_host, local_port=media.port, session_id=session_id, session_version=1)
            )
        leg = CallerLeg(
            invite=request,
            invite_transaction=delivered.transaction,
            local_tag=new_tag(),
            local_contact=f"sip:{dialled}@{self.advertised_host}:{self.advertised_port}",
        )
        call = Call(
            leg=leg, media=media, sdp=sdp, codec=codec, telephone_event_pt=dtmf_pt, caller_sdp_session=session_id,
            announce=flow.announce,
        )
        self._calls[leg.call_id] = call
        media.on_packet(lambda data: self._caller_packet(call, data))
        caller = request.from_.uri.user or str(request.from_.uri)
        self.sink.call_arrived(call_id=leg.call_id, caller=caller, dialled=dialled, queue=flow.queue)
        self._send(delivered.transaction, leg.ringing())
        call.answer_timer = asyncio.get_running_loop().call_later(self.answer_delay_s, self._answer, leg.call_id)

    def _answer(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is None or call.leg.state != LegState.RINGING:
            return
        call.answer_timer = None
        self._send(call.leg.invite_transaction, call.leg.answer(call.sdp))
        call.answered_at = asyncio.get_running_loop().time()
        if call.announce:
            # The caller must hear that the call may be recorded before an agent's leg
            # exists. Routing (and the screen pop) start now all the same; only the
            # ringing of the agent's phone waits for the notice's end.
            self._play_notice(call)
        else:
            # Answered even with no agent free: the caller waits in the queue, with music.
            self._music(call, on=True)
        self.sink.call_answered_by_hub(call_id)

    def _play_notice(self, call: Call) -> None:
        if call.media is None or call.codec is None:
            call.notice_due = True  # late offer: the codec comes with the caller's ACK
            return
        call.notice_due = False
        call_id = call.leg.call_id
        try:
            call.notice = Player(
                call.media, self.notice_sound, call.codec.payload_type, loop=False,
                on_finished=lambda: self._notice_done(call_id),
            )
        except (OSError, ValueError) as err:
            # A missing or unreadable notice must not keep the caller from an agent.
            log.error("recording notice %s cannot be played: %s", self.notice_sound, err)
            self._notice_done(call_id)
            return
        call.notice.start()

    def _notice_done(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is None or call.leg.state != LegState.ANSWERED:
            return
        call.notice = None
        self._music(call, on=not call.bridged)
        if call.ring_after_notice is not None:
            agent_id, bindings, caller_name = call.ring_after_notice
            call.ring_after_notice = None
            if not self.ring_agent(call_id, agent_id, bindings, caller_name=caller_name):
                self.sink.agent_phone_failed(call_id, AgentLegEnd.FAILED)

    def _reinvite(self, delivered: DeliverRequest) -> None:
        """Hold/resume and session refresh from either side: answer with our current
        description of that leg (RFC 3264 §8)."""
        request = delivered.request
        call = self._calls.get(request.call_id)
        if call is not None and call.leg.matches(request):
            self._caller_reinvite(delivered, call)
            return
        leg = self._agent_leg_of(request)
        if leg is not None:
            self._agent_reinvite(delivered, leg)
            return
        if self.dials.on_reinvite(delivered):
            return
        self._respond(delivered, 481)  # §12.2.2: an in-dialog request for no dialog we know

    def _answer_reoffer(
        self, delivered: DeliverRequest, call: Call, port: int, session_id: int, version: int
    ) -> SdpAnswer | None:
        """Answer a re-INVITE's offer on one leg, in the call's codec; on a bad offer or no
        common codec the error response is sent and None returned."""
        try:
            offer = parse_sdp(delivered.request.body)
        except SdpError as err:
            self._respond(delivered, 400, f"Bad SDP: {err}"[:80])
            return None
        answer = answer_offer(
            offer,
            local_address=self.advertised_host,
            local_port=port,
            session_id=session_id,
            session_version=version,
            supported=(call.codec,) if call.codec is not None else (PCMU, PCMA),
        )
        if answer is None:
            self._respond(delivered, 488)
        return answer

    def _caller_reinvite(self, delivered: DeliverRequest, call: Call) -> None:
        """The caller's re-INVITE (their hold, a refresh, a new address): answered for the
        caller's leg, mirroring the direction they ask for (RFC 3264 §6.1). A re-INVITE
        without an offer gets our current description as the offer (§14.2)."""
        request = delivered.request
        if not request.body or call.media is None:
            self._send(delivered.transaction, self._sdp_response(request, call.leg.local_tag, call.leg.local_contact, call.sdp))
            return
        call.caller_sdp_version += 1
        answer = self._answer_reoffer(delivered, call, call.media.port, call.caller_sdp_session, call.caller_sdp_version)
        if answer is None:
            return
        call.sdp = serialize_sdp(answer.description)
        call.media.remote = (answer.remote_address, answer.remote_port)
        self._send(delivered.transaction, self._sdp_response(request, call.leg.local_tag, call.leg.local_contact, call.sdp))

    def _agent_reinvite(self, delivered: DeliverRequest, leg: AgentLeg) -> None:
        """Hold and resume from the agent's phone (RFC 3264 §8.4): a sendonly or inactive
        offer puts the caller on hold, with music; sendrecv takes them off it."""
        request = delivered.request
        contact = f"sip:hub@{self.advertised_host}:{self.advertised_port}"
        call = self._calls.get(self._agent_legs[leg.call_id][1])
        if call is None or call.agent is not leg or call.agent_media is None or not request.body:
            body = leg.invite_request.body if leg.invite_request is not None else b""
            self._send(delivered.transaction, self._sdp_response(request, leg.local_tag, contact, body))
            return
        call.agent_sdp_version += 1
        answer = self._answer_reoffer(delivered, call, call.agent_media.port, call.agent_sdp_version, call.agent_sdp_version)
        if answer is None:
            return
        self._send(delivered.transaction, self._sdp_response(request, leg.local_tag, contact, serialize_sdp(answer.description)))
        held = answer.direction in ("recvonly", "inactive")
        if held != call.held:
            call.held = held
            self._set_bridged(call, not held)
            self.sink.hold_changed(call.leg.call_id, held=held)

    @staticmethod
    def _sdp_response(request: SipRequest, tag: str, contact: str, body: bytes) -> SipResponse:
        return build_response(
            request, 200, to_tag=tag, headers=(("Contact", f"<{contact}>"),), body=body, content_type="application/sdp"
        )

    # --- ringing the agent's phone ---------------------------------------------------

    async def phones_of(self, agent_id: str) -> Sequence[Binding]:
        """The agent's registered phones (none: the agent takes calls from the desktop)."""
        return await self.phones(agent_id) if self.phones is not None else ()

    def ring_agent(self, call_id: str, agent_id: str, bindings: Sequence[Binding], *, caller_name: str) -> bool:
        """INVITE the agent's phone; False when there is nothing to ring."""
        call = self._calls.get(call_id)
        if not bindings or call is None or call.agent is not None or call.leg.state == LegState.ENDED:
            return False
        if call.notice is not None or call.notice_due:
            call.ring_after_notice = (agent_id, list(bindings), caller_name)
            return True
        # The newest registration is the device the agent used last. Forking to every
        # device in parallel comes with several devices per agent in the desktop.
        binding = max(bindings, key=lambda b: b.registered_at)
        try:
            agent_media = self.media.open()
        except (PortsExhausted, OSError):
            log.error("no RTP port for the agent leg of %s", call_id)
            return False
        codecs = (call.codec,) if call.codec is not None else (PCMU, PCMA)
        offer = make_offer(
            local_address=self.advertised_host,
            local_port=agent_media.port,
            session_id=secrets.randbelow(2**31),
            session_version=1,
            codecs=codecs,
            telephone_event_pt=call.telephone_event_pt or 101,
        )
        leg = AgentLeg(
            agent_id=agent_id,
            target=binding.contact,
            destination=phone_address(binding),
            local_host=self.advertised_host,
            local_port=self.advertised_port,
            caller_number=call.leg.remote.uri.user or "anonymous",
            caller_name=caller_name,
        )
        call.agent, call.agent_media = leg, agent_media
        assert self.endpoint is not None
        transaction = self.endpoint.send_request(leg.invite(serialize_sdp(offer)), leg.destination)
        leg.invite_transaction = transaction
        self._invites[transaction] = leg.call_id
        self._agent_legs[leg.call_id] = (leg, call_id)
        return True

    def stop_ringing(self, call_id: str, why: AgentLegEnd = AgentLegEnd.NO_ANSWER) -> None:
        """Give up on the agent's phone before it answered (ring timeout, reject, logout).
        The call is free at once for the next agent; the old leg winds down on its own."""
        call = self._calls.get(call_id)
        if call is not None:
            call.ring_after_notice = None
        if call is None or call.agent is None:
            return
        if call.agent.state in (AgentLegState.CALLING, AgentLegState.RINGING):
            self._give_up(call, why)

    def _give_up(self, call: Call, why: AgentLegEnd) -> None:
        leg = call.agent
        assert leg is not None
        leg.cancelling(why)
        self._send_cancel(leg)
        call.agent = None
        if call.agent_media is not None:
            self.media.close(call.agent_media)
            call.agent_media = None

    def _send_cancel(self, leg: AgentLeg) -> None:
        # A CANCEL may only follow a provisional response; without one it is sent when
        # the first provisional arrives (§9.1).
        assert self.endpoint is not None
        if leg.cancel_sent or leg.invite_transaction is None:
            return
        key, commands = self.endpoint.layer.cancel(leg.invite_transaction, 0.0)
        if key is not None:
            leg.cancel_sent = True
            self.endpoint.run(commands)

    def _agent_invite_response(self, leg: AgentLeg, call_id: str, response: SipResponse) -> None:
        assert self.endpoint is not None
        call = self._calls.get(call_id)
        if call is not None and call.outbound is leg:
            self._outbound_response(call, leg, response)
            return
        if response.status < 200:
            self._provisional(leg)
            return
        if response.status < 300:
            if leg.ack is not None:  # a retransmitted 2xx: the ACK again (§13.2.2.4)
                self.endpoint.send_stateless(leg.ack, leg.next_hop())
                return
            given_up = leg.state == AgentLegState.CANCELLING
            leg.ack = leg.answered(response)
            self.endpoint.send_stateless(leg.ack, leg.next_hop())
            call = self._calls.get(call_id)
            if given_up or call is None or call.agent is not leg:
                self._bye_leg(leg)  # our CANCEL crossed the phone's 200: hang it up
                return
            self._bridge(call, response)
            self.sink.agent_phone_answered(call_id)
            return
        self._agent_leg_over(leg, call_id, leg.failed(response.status))

    def _bridge(self, call: Call, response: SipResponse) -> None:
        if call.agent_media is None or call.media is None:
            return
        try:
            answer = parse_sdp(response.body)
            audio = next(m for m in answer.media if m.media == "audio" and m.port)
            address = audio.connection_address or answer.connection_address
            if address:
                call.agent_media.remote = (address, audio.port)
        except (SdpError, StopIteration, AttributeError) as err:
            log.warning("agent leg of %s: unusable SDP answer (%s); relying on symmetric RTP", call.leg.call_id, err)
        self._set_bridged(call, True)

    def _agent_leg_over(self, leg: AgentLeg, call_id: str, end: AgentLegEnd) -> None:
        """The agent's leg ended before it was answered."""
        self._drop_agent_leg(leg.call_id)
        call = self._calls.get(call_id)
        if call is None:
            return
        if call.agent is leg:
            call.agent = None
            if call.agent_media is not None:
                self.media.close(call.agent_media)
                call.agent_media = None
            if end in (AgentLegEnd.BUSY, AgentLegEnd.DECLINED, AgentLegEnd.FAILED):
                self.sink.agent_phone_failed(call_id, end)
        self._maybe_forget(call_id)

    def _agent_leg_of(self, request: SipRequest) -> AgentLeg | None:
        entry = self._agent_legs.get(request.call_id)
        if entry is None or not entry[0].matches(request):
            return None
        return entry[0]

    # --- BYE, CANCEL and the rest ----------------------------------------------------

    def _bye(self, delivered: DeliverRequest) -> None:
        request = delivered.request
        call = self._calls.get(request.call_id)
        if call is not None and call.leg.matches(request):
            self._respond(delivered, 200)
            if call.leg.state == LegState.ENDING:
                return  # BYEs crossed; ours completes the leg
            call.leg.ended_by_caller()
            self._caller_leg_gone(call, ended_by="caller")
            return
        leg = self._agent_leg_of(request)
        if leg is not None:
            self._respond(delivered, 200)
            if leg.state == AgentLegState.ENDING:
                return  # BYEs crossed; ours completes the leg
            leg.finish(AgentLegEnd.AGENT_BYE)
            dropped = self._drop_agent_leg(leg.call_id)
            assert dropped is not None  # `_agent_leg_of` found it there
            _, caller_call_id = dropped
            call = self._calls.get(caller_call_id)
            if call is not None and call.agent is leg:
                self._agent_gone(call)
                self._hang_up(call, ended_by="agent")
            return
        if self.dials.on_bye(delivered):
            return
        self._respond(delivered, 481)

    def _cancel(self, delivered: DeliverRequest) -> None:
        if delivered.cancels is None:
            self._respond(delivered, 481)
            return
        self._respond(delivered, 200)
        call = self._calls.get(delivered.request.call_id)
        if call is None or call.leg.state != LegState.RINGING:
            return  # already answered: CANCEL has no effect (§9.2)
        self._send(call.leg.invite_transaction, call.leg.cancelled())
        self._caller_leg_gone(call, ended_by="caller")

    def _options(self, delivered: DeliverRequest) -> None:
        self._respond(
            delivered,
            200,
            headers=(
                ("Allow", ", ".join(ALLOWED_METHODS)),
                ("Accept", "application/sdp"),
                ("Accept-Encoding", "identity"),
                ("Accept-Language", "en"),
            ),
        )

    def _info(self, delivered: DeliverRequest) -> None:
        request = delivered.request
        call = self._calls.get(request.call_id)
        if call is None or not call.leg.matches(request):
            self._respond(delivered, 481)
            return
        self._respond(delivered, 200)
        # SIP INFO DTMF: the fallback for phones that do not send RFC 4733 events.
        digit = parse_sip_info_dtmf(request.headers.get("Content-Type") or "", request.body)
        if digit is not None:
            self.sink.dtmf_received(call.leg.call_id, digit, 0)

    def _refer(self, delivered: DeliverRequest) -> None:
        """Blind transfer from the agent's phone (RFC 3515): to the number of a queue the
        hub serves. The caller goes back to that queue, with music, and the agent's leg is
        released once the phone has heard how the transfer went."""
        request = delivered.request
        leg = self._agent_leg_of(request)
        if leg is None:
            caller = self._calls.get(request.call_id)
            # Customers cannot transfer themselves around the contact center.
            self._respond(delivered, 403 if caller is not None and caller.leg.matches(request) else 481)
            return
        call = self._calls.get(self._agent_legs[leg.call_id][1])
        refer_to = request.headers.get("Refer-To")
        if call is None or call.agent is not leg or leg.state != AgentLegState.ANSWERED:
            self._respond(delivered, 481)
            return
        if refer_to is None or request.headers.count("Refer-To") != 1:
            self._respond(delivered, 400, "Exactly one Refer-To")
            return
        try:
            target = parse_name_addr(refer_to).uri
        except SipParseError:
            self._respond(delivered, 400, "Bad Refer-To")
            return
        number = target.user or ""
        flow = self.flows.for_number(number)
        if flow is None and self.trunk is not None and call.outbound is None:
            outside = self.sink.outside_number(call.leg.call_id, number)
            if outside is not None:
                # An outside number: the outcome comes by NOTIFY once the number answers
                # or fails; the phone stays with the caller until then.
                self._respond(delivered, 202)
                self._notify(leg, sipfrag(100), final=False)
                if not self.transfer_to_number(call.leg.call_id, outside, refer_leg=leg):
                    self._notify(leg, sipfrag(503), final=True)
                return
        self._respond(delivered, 202)
        self._notify(leg, "SIP/2.0 100 Trying", final=False)
        if flow is None or not self.sink.transferred(call.leg.call_id, to_queue=flow.queue, to_number=number):
            # No trunk for outside numbers yet: only the hub's own queues are reachable.
            self._notify(leg, "SIP/2.0 404 Not Found", final=True)
            return
        self._notify(leg, "SIP/2.0 200 OK", final=True)
        self._release_agent(call)
        self._music(call, on=True)

    def _notify(self, leg: AgentLeg, status_line: str, *, final: bool) -> None:
        assert self.endpoint is not None
        self.endpoint.send_request(leg.notify_refer(status_line, final=final), leg.next_hop())

    def _register(self, delivered: DeliverRequest) -> None:
        if self.registrar is None:
            self._respond(delivered, 501)
            return
        registrar, endpoint = self.registrar, self.endpoint
        assert endpoint is not None

        async def register() -> None:
            # Wall-clock time: bindings and nonces are shared with other hub processes.
            now = time.time()
            response = await registrar.handle(delivered.request, delivered.source, now)
            endpoint.send_response(delivered.transaction, response)

        self._spawn(register())

    # --- hanging up ------------------------------------------------------------------

    def hang_up(self, call_id: str) -> None:
        """The agent (from the desktop) ends the call: BYE to both sides."""
        if self.dials.hang_up(call_id):
            return
        call = self._calls.get(call_id)
        if call is not None:
            self._hang_up(call, ended_by="agent")

    def hold(self, call_id: str, *, held: bool) -> bool:
        """The agent puts the caller on hold from the desktop, or takes them off it.

        The media is anchored here, so no re-INVITE is needed on either leg: while held
        the relay stops both ways and the caller hears the hold music; the agent's phone
        hears nothing. False when the call is not bridged to an answered agent leg (or
        is already in that state)."""
        if self.dials.has(call_id):
            return self.dials.hold(call_id, held=held)
        call = self._calls.get(call_id)
        if call is None or call.agent is None or call.agent.state != AgentLegState.ANSWERED or call.agent_media is None:
            return False
        if call.held == held:
            return False
        call.held = held
        self._set_bridged(call, not held)
        self.sink.hold_changed(call_id, held=held)
        return True

    def transfer_to_queue(self, call_id: str, *, queue: str, number: str) -> bool:
        """Blind transfer from the desktop: the agent's leg ends (BYE) and the caller, with
        music, goes back to `queue`, as after a REFER from the agent's phone. False when
        the call has no answered agent leg or the center refuses the transfer."""
        call = self._calls.get(call_id)
        if call is None or call.agent is None or call.agent.state != AgentLegState.ANSWERED:
            return False
        if not self.sink.transferred(call_id, to_queue=queue, to_number=number):
            return False
        call.held = False
        self._release_agent(call)
        self._music(call, on=True)
        return True

    def dial(self, *, agent_id: str, bindings: Sequence[Binding], number: str, customer_name: str) -> str | None:
        """Click-to-dial: ring the agent's phone, then `number` (E.164) through the
        trunk, and bridge them. The call's id, or None (no phone, no RTP port)."""
        if not bindings:
            return None
        binding = max(bindings, key=lambda b: b.registered_at)  # the device the agent used last
        return self.dials.start(
            agent_id=agent_id, target=binding.contact, destination=phone_address(binding), number=number,
            customer_name=customer_name,
        )

    def transfer_to_number(self, call_id: str, number: str, *, refer_leg: AgentLeg | None = None) -> bool:
        """Transfer the caller to an outside number (E.164) through the trunk: the caller
        hears music while it rings; when it answers, the agent's leg ends (BYE) and the
        caller is bridged to it (`sink.transferred`); when it fails, the caller is back
        with the agent (`sink.transfer_failed`). False when the call has no answered
        agent leg, a transfer is already ringing, or there is no trunk or RTP port."""
        call = self._calls.get(call_id)
        if (
            self.trunk is None or call is None or call.leg.state != LegState.ANSWERED or call.outbound is not None
            or call.agent is None or call.agent.state != AgentLegState.ANSWERED
        ):
            return False
        try:
            media = self.media.open()
        except (PortsExhausted, OSError):
            log.error("no RTP port for the transfer of %s to %s", call_id, number)
            return False
        offer = make_offer(
            local_address=self.advertised_host, local_port=media.port, session_id=secrets.randbelow(2**31),
            session_version=1, codecs=(call.codec,) if call.codec is not None else (PCMU, PCMA),
            telephone_event_pt=call.telephone_event_pt or 101,
        )
        leg = trunk_leg(
            self.trunk, number, local_host=self.advertised_host, local_port=self.advertised_port,
            presented_number=call.leg.remote.uri.user or "anonymous",
        )
        call.outbound, call.outbound_media, call.outbound_number, call.refer_leg = leg, media, number, refer_leg
        assert self.endpoint is not None
        transaction = self.endpoint.send_request(leg.invite(serialize_sdp(offer)), leg.destination)
        leg.invite_transaction = transaction
        self._invites[transaction] = leg.call_id
        self._agent_legs[leg.call_id] = (leg, call_id)
        call.outbound_timer = asyncio.get_running_loop().call_later(self.outbound_ring_s, self._outbound_gave_up, call_id)
        self._set_bridged(call, False)  # the caller waits with music; the agent hears nothing
        return True

    def _provisional(self, leg: AgentLeg) -> None:
        """A 1xx to a leg's INVITE: it rings; one we gave up on meanwhile can now be
        cancelled (a CANCEL must wait for a provisional response, RFC 3261 §9.1)."""
        if leg.state in (AgentLegState.CALLING, AgentLegState.RINGING):
            leg.provisional()
        elif leg.state == AgentLegState.CANCELLING:
            self._send_cancel(leg)

    def _outbound_response(self, call: Call, leg: AgentLeg, response: SipResponse) -> None:
        assert self.endpoint is not None
        if response.status < 200:
            self._provisional(leg)
            return
        if response.status >= 300:
            self._outbound_failed(call, leg, response.status)
            return
        leg.ack = leg.answered(response)
        self.endpoint.send_stateless(leg.ack, leg.next_hop())
        # The outside number answered: it takes the agent's place on the call.
        media, refer, number = call.outbound_media, call.refer_leg, call.outbound_number
        if call.outbound_timer is not None:
            call.outbound_timer.cancel()
        call.outbound = call.outbound_media = call.outbound_timer = call.refer_leg = None  # the media stays: it moves
        if refer is not None and refer.state == AgentLegState.ANSWERED:
            self._notify(refer, sipfrag(200), final=True)
        self.sink.transferred(call.leg.call_id, to_queue="", to_number=number)
        self._release_agent(call)
        call.agent, call.agent_media, call.held = leg, media, False
        self._bridge(call, response)

    def _outbound_failed(self, call: Call, leg: AgentLeg, status: int) -> None:
        if leg.state != AgentLegState.ENDED:
            leg.failed(status)
        self._drop_agent_leg(leg.call_id)
        self._outbound_over(call, status)

    def _outbound_gave_up(self, call_id: str) -> None:
        """The outside number rang too long: CANCEL it (its 487 ends the leg later)."""
        call = self._calls.get(call_id)
        if call is None or call.outbound is None:
            return
        call.outbound_timer = None
        call.outbound.cancelling(AgentLegEnd.NO_ANSWER)
        self._send_cancel(call.outbound)
        self._outbound_over(call, 408)

    def _outbound_over(self, call: Call, status: int) -> None:
        """The transfer failed: the caller is back with the agent, who hears why."""
        number = call.outbound_number
        refer = call.refer_leg
        self._drop_outbound(call)
        if refer is not None and refer.state == AgentLegState.ANSWERED:
            self._notify(refer, sipfrag(status), final=True)
        if call.agent is not None and call.agent.state == AgentLegState.ANSWERED:
            self._set_bridged(call, not call.held)
        self.sink.transfer_failed(call.leg.call_id, number=number, failure=failure_of(status).value, status=status)
        self._maybe_forget(call.leg.call_id)

    def _release_outbound(self, call: Call) -> None:
        """The call ends while an outside number rings: CANCEL it."""
        leg = call.outbound
        if leg is None:
            return
        if leg.state in (AgentLegState.CALLING, AgentLegState.RINGING):
            leg.cancelling(AgentLegEnd.CANCELLED)
            self._send_cancel(leg)
        self._drop_outbound(call)

    def _drop_outbound(self, call: Call) -> None:
        if call.outbound_timer is not None:
            call.outbound_timer.cancel()
        if call.outbound_media is not None:
            call.outbound_media.on_packet(None)
            self.media.close(call.outbound_media)
        call.outbound = call.outbound_media = call.outbound_timer = call.refer_leg = None

    def hang_up_all(self) -> None:
        self.dials.hang_up_all()
        for call in list(self._calls.values()):
            self._hang_up(call, ended_by="hub")

    def _hang_up(self, call: Call, *, ended_by: str) -> None:
        leg = call.leg
        if leg.state == LegState.RINGING:
            self._send(leg.invite_transaction, leg.reject(480, "Temporarily Unavailable"))
            self._caller_leg_gone(call, ended_by=ended_by)
            return
        if leg.state != LegState.ANSWERED:
            return
        assert self.endpoint is not None
        self._release_outbound(call)
        self._ended.setdefault(leg.call_id, ended_by)
        transaction = self.endpoint.send_request(
            leg.bye(via_host=self.advertised_host, via_port=self.advertised_port), leg.next_hop()
        )
        self._byes[transaction] = (leg.call_id, "caller")
        self._release_agent(call)

    def _hang_up_gone_peer(self, call: Call) -> None:
        """Hang up a call whose peer seems gone (no ACK, no RTP): the session ends as the
        BYE goes out (RFC 3261 §15.1.1), not when its transaction gives up 32 s later,
        so that a vanished caller does not hold the call, its ports and the counts."""
        self._hang_up(call, ended_by="hub")
        if self._calls.get(call.leg.call_id) is call:
            self._caller_leg_gone(call, ended_by="hub")

    def _bye_completed(self, call_id: str, side: str) -> None:
        if side == "agent":
            entry = self._drop_agent_leg(call_id)
            if entry is None:
                return
            leg, caller_call_id = entry
            leg.finish()
            call = self._calls.get(caller_call_id)
            if call is not None and call.agent is leg:
                self._agent_gone(call)
            self._maybe_forget(caller_call_id)
            return
        call = self._calls.get(call_id)
        if call is None:
            return
        call.leg.finish(LegEnd.HUB_BYE)
        self._caller_leg_gone(call, ended_by=self._ended.get(call_id, "agent"))

    def _caller_leg_gone(self, call: Call, *, ended_by: str) -> None:
        """The customer's leg is over: the agent's leg follows, and the center hears of it."""
        call_id = call.leg.call_id
        if call.leg.state != LegState.ENDED:
            call.leg.finish()
        if call.answer_timer is not None:
            call.answer_timer.cancel()
            call.answer_timer = None
        if call.music is not None:
            call.music.stop()
        if call.notice is not None:
            call.notice.stop()
            call.notice = None
        if call.media is not None:
            self.media.close(call.media)
            call.media = None
        self._release_outbound(call)
        self._release_agent(call)
        self._ended.setdefault(call_id, ended_by)
        self._spawn(self.sink.call_ended(call_id, ended_by=self._ended[call_id]))
        self._maybe_forget(call_id)

    def _release_agent(self, call: Call) -> None:
        """End the agent's leg whatever its state: CANCEL while ringing, BYE once answered."""
        leg = call.agent
        if leg is None:
            return
        if leg.state in (AgentLegState.CALLING, AgentLegState.RINGING):
            self._give_up(call, AgentLegEnd.CANCELLED)
        elif leg.state == AgentLegState.ANSWERED:
            self._agent_gone(call)
            self._bye_leg(leg)

    # --- media ---------------------------------------------------------------------

    def _caller_packet(self, call: Call, data: bytes) -> None:
        """Every RTP packet from the caller: relayed to the agent while bridged, and read
        for DTMF events (which are relayed too, so the agent's phone hears them)."""
        if call.bridged and call.agent_media is not None:
            call.agent_media.send(data)
        for tap in call.taps:
            tap(CALLER_SIDE, data)
        pt = call.telephone_event_pt
        if pt is None or len(data) < 12 or (data[1] & 0x7F) != pt:
            return
        try:
            digits = call.dtmf.receive_packet(parse_rtp(data))
        except (RtpError, DtmfError) as err:
            log.debug("call %s: bad telephone-event packet: %s", call.leg.call_id, err)
            return
        for received in digits:
            self.sink.dtmf_received(call.leg.call_id, received.digit, received.duration_ms)

    def _set_bridged(self, call: Call, bridged: bool) -> None:
        call.bridged = bridged and call.agent_media is not None and call.media is not None
        if call.agent_media is not None:
            call.agent_media.on_packet(lambda data: self._agent_packet(call, data) if call.bridged else None)
        self._music(call, on=not call.bridged)

    def _agent_packet(self, call: Call, data: bytes) -> None:
        if call.media is not None:
            call.media.send(data)
        for tap in call.taps:
            tap(AGENT_SIDE, data)

    def add_tap(self, call_id: str, tap: MediaTap) -> bool:
        """Receive both directions' RTP of a call as it is relayed (recordings, monitoring):
        `tap(side, packet)` with side "caller" or "agent". False for no such call."""
        call = self._calls.get(call_id)
        if call is None:
            return False
        call.taps.append(tap)
        return True

    def remove_tap(self, call_id: str, tap: MediaTap) -> None:
        call = self._calls.get(call_id)
        if call is not None and tap in call.taps:
            call.taps.remove(tap)

    def _music(self, call: Call, *, on: bool) -> None:
        if not on:
            if call.music is not None:
                call.music.stop()
            return
        if call.media is None or call.codec is None or call.leg.state != LegState.ANSWERED:
            return
        if call.notice is not None or call.notice_due:
            return  # the notice has the line; music follows it
        if call.music is None:
            try:
                call.music = Player(call.media, self.hold_sound, call.codec.payload_type)
            except (OSError, ValueError) as err:
                log.warning("no music on hold (%s): %s", self.hold_sound, err)
                return
        call.music.start(after_s=MUSIC_GRACE_S)

    def start_watchdog(self) -> None:
        """Hang up legs whose RTP stopped for `rtp_timeout_s` (a crashed phone, a lost
        network): they would otherwise hold an agent and ports for ever."""
        if self.rtp_timeout_s > 0 and self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch_rtp())

    async def _watch_rtp(self) -> None:
        loop = asyncio.get_running_loop()
        next_report = loop.time() + RTCP_INTERVAL_S
        while True:
            await asyncio.sleep(min(1.0, self.rtp_timeout_s / 4))
            now = loop.time()
            if now >= next_report:
                self.media.send_receiver_reports()
                next_report = now + RTCP_INTERVAL_S
            for call in list(self._calls.values()):
                if call.leg.state != LegState.ANSWERED or call.answered_at is None:
                    continue
                silent = [
                    side
                    for side, endpoint in (("caller", call.media), ("agent", call.agent_media if call.bridged else None))
                    if endpoint is not None and now - (endpoint.last_arrival or call.answered_at) > self.rtp_timeout_s
                ]
                if silent:
                    log.warning("call %s: no RTP from the %s for %.0f s; hanging up", call.leg.call_id, " and ".join(silent), self.rtp_timeout_s)
                    self._hang_up_gone_peer(call)
            self.dials.hang_up_silent(now, self.rtp_timeout_s)

    def stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _bye_leg(self, leg: AgentLeg) -> None:
        assert self.endpoint is not None
        transaction = self.endpoint.send_request(leg.bye(), leg.next_hop())
        self._byes[transaction] = (leg.call_id, "agent")

    def _agent_gone(self, call: Call) -> None:
        """Detach the agent's leg from the call and release its media."""
        call.bridged = False
        if call.agent_media is not None:
            call.agent_media.on_packet(None)
            self.media.close(call.agent_media)
            call.agent_media = None
        call.agent = None

    def _maybe_forget(self, call_id: str) -> None:
        """A call is forgotten once its caller's leg is over and no agent leg is attached
        (nothing leaks: legs, ports, maps)."""
        call = self._calls.get(call_id)
        if call is None or call.leg.state != LegState.ENDED or call.agent is not None or call.outbound is not None:
            return
        del self._calls[call_id]
        self._ended.pop(call_id, None)

    def _drop_agent_leg(self, leg_id: str) -> tuple[AgentLeg, str] | None:
        """Forget a UAC leg, and its INVITE's entry: an answered INVITE keeps its entry
        (a retransmitted 200 must still reach the leg to be ACKed) until the leg ends."""
        entry = self._agent_legs.pop(leg_id, None)
        if entry is not None and entry[0].invite_transaction is not None:
            self._invites.pop(entry[0].invite_transaction, None)
        return entry

    @property
    def invites_tracked(self) -> int:
        """INVITE client transactions still mapped to legs (none once every leg is over)."""
        return len(self._invites) + self.dials.invites_tracked

    @property
    def agent_legs_alive(self) -> int:
        """UAC legs still alive: agents' phones, outside numbers, click-to-dial's legs."""
        return len(self._agent_legs) + self.dials.legs_alive

    # --- helpers ---------------------------------------------------------------------

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _respond(
        self, delivered: DeliverRequest, status: int, reason: str | None = None, *, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self._send(
            delivered.transaction,
            build_response(delivered.request, status, reason, to_tag=new_tag() if status > 100 else None, headers=headers),
        )

    def _send(self, transaction: str, response: SipResponse) -> None:
        assert self.endpoint is not None
        self.endpoint.send_response(transaction, response)
