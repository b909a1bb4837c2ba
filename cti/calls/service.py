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
from typing import Protocol

from cti.calls.agent_leg import AgentLeg, AgentLegEnd, AgentLegState
from cti.calls.leg import ALLOWED_METHODS, CallerLeg, LegEnd, LegState
from cti.media.endpoint import MediaPorts, RtpEndpoint, bridge, unbridge
from cti.media.ports import PortsExhausted
from cti.registrar.bindings import Binding
from cti.registrar.service import RegistrarService
from cti.sip.message import SipParseError, SipRequest, SipResponse, build_response, new_tag
from cti.sip.sdp import PCMA, PCMU, Codec, SdpError, answer_offer, make_offer, parse_sdp, serialize_sdp
from cti.sip.transaction import DeliverAck, DeliverRequest, DeliverResponse, ReportTimeout
from cti.sip.transport import SipUdpEndpoint
from cti.sip.uri import parse_uri
from ivr.flows import FlowTable

log = logging.getLogger(__name__)


class CallSink(Protocol):
    def call_arrived(self, *, call_id: str, caller: str, dialled: str, queue: str) -> object: ...
    def call_answered_by_hub(self, call_id: str) -> None: ...
    def agent_phone_answered(self, call_id: str) -> None: ...
    def agent_phone_failed(self, call_id: str, end: AgentLegEnd) -> None: ...
    async def call_ended(self, call_id: str, *, ended_by: str) -> None: ...


PhoneLookup = Callable[[str], Awaitable[Sequence[Binding]]]


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


@dataclass
class VoiceService:
    endpoint: SipUdpEndpoint | None
    flows: FlowTable
    media: MediaPorts
    sink: CallSink
    advertised_host: str
    answer_delay_s: float = 0.5
    registrar: RegistrarService | None = None
    phones: PhoneLookup | None = None
    _calls: dict[str, Call] = field(default_factory=dict)
    # Every agent leg still alive, by its own Call-ID, with the caller's Call-ID. A leg
    # that was given up stays here until its final response, even after its call ended.
    _agent_legs: dict[str, tuple[AgentLeg, str]] = field(default_factory=dict)
    _invites: dict[str, str] = field(default_factory=dict)  # INVITE client transaction -> agent leg Call-ID
    _byes: dict[str, tuple[str, str]] = field(default_factory=dict)  # BYE transaction -> (Call-ID, "caller"|"agent")
    _ended: dict[str, str] = field(default_factory=dict)  # caller Call-ID -> who ended it, until both legs are gone
    _tasks: set["asyncio.Task[None]"] = field(default_factory=set)

    @property
    def advertised_port(self) -> int:
        assert self.endpoint is not None
        return self.endpoint.local_address[1]

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    # --- TransactionUser -------------------------------------------------------------

    def on_request(self, delivered: DeliverRequest) -> None:
        handler = {
            "INVITE": self._invite,
            "BYE": self._bye,
            "CANCEL": self._cancel,
            "OPTIONS": self._options,
            "INFO": self._info,
            "REGISTER": self._register,
        }.get(delivered.request.method)
        if handler is None:
            self._respond(delivered, 405, headers=(("Allow", ", ".join(ALLOWED_METHODS)),))
            return
        handler(delivered)

    def on_ack(self, delivered: DeliverAck) -> None:
        call = self._calls.get(delivered.request.call_id)
        if call is not None:
            call.leg.acked = True

    def on_response(self, delivered: DeliverResponse) -> None:
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
        if report.transaction in self._invites:  # the agent's phone never answered the INVITE
            leg_id = self._invites.pop(report.transaction)
            if leg_id in self._agent_legs:
                leg, call_id = self._agent_legs[leg_id]
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
                    self._hang_up(call, ended_by="hub")

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
        call = Call(leg=leg, media=media, sdp=sdp, codec=codec, telephone_event_pt=dtmf_pt)
        self._calls[leg.call_id] = call
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
        # Answered even with no agent free: the caller waits in the queue.
        self.sink.call_answered_by_hub(call_id)

    def _reinvite(self, delivered: DeliverRequest) -> None:
        """Hold/resume and session refresh from either side: answer with our current
        description of that leg (RFC 3264 §8)."""
        request = delivered.request
        call = self._calls.get(request.call_id)
        if call is not None and call.leg.matches(request):
            self._send(delivered.transaction, self._sdp_response(request, call.leg.local_tag, call.leg.local_contact, call.sdp))
            return
        leg = self._agent_leg_of(request)
        if leg is not None:
            body = leg.invite_request.body if leg.invite_request is not None else b""
            contact = f"sip:hub@{self.advertised_host}:{self.advertised_port}"
            self._send(delivered.transaction, self._sdp_response(request, leg.local_tag, contact, body))
            return
        self._respond(delivered, 481)  # §12.2.2: an in-dialog request for no dialog we know

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
        if response.status < 200:
            if leg.state in (AgentLegState.CALLING, AgentLegState.RINGING):
                leg.provisional()
            elif leg.state == AgentLegState.CANCELLING:
                self._send_cancel(leg)
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
        bridge(call.media, call.agent_media)

    def _agent_leg_over(self, leg: AgentLeg, call_id: str, end: AgentLegEnd) -> None:
        """The agent's leg ended before it was answered."""
        self._agent_legs.pop(leg.call_id, None)
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
            _, caller_call_id = self._agent_legs.pop(leg.call_id)
            call = self._calls.get(caller_call_id)
            if call is not None and call.agent is leg:
                self._agent_gone(call)
                self._hang_up(call, ended_by="agent")
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
        call = self._calls.get(delivered.request.call_id)
        self._respond(delivered, 200 if call is not None and call.leg.matches(delivered.request) else 481)

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
        call = self._calls.get(call_id)
        if call is not None:
            self._hang_up(call, ended_by="agent")

    def hang_up_all(self) -> None:
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
        self._ended.setdefault(leg.call_id, ended_by)
        transaction = self.endpoint.send_request(
            leg.bye(via_host=self.advertised_host, via_port=self.advertised_port), leg.next_hop()
        )
        self._byes[transaction] = (leg.call_id, "caller")
        self._release_agent(call)

    def _bye_completed(self, call_id: str, side: str) -> None:
        if side == "agent":
            entry = self._agent_legs.pop(call_id, None)
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
        if call.media is not None:
            self.media.close(call.media)
            call.media = None
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

    def _bye_leg(self, leg: AgentLeg) -> None:
        assert self.endpoint is not None
        transaction = self.endpoint.send_request(leg.bye(), leg.next_hop())
        self._byes[transaction] = (leg.call_id, "agent")

    def _agent_gone(self, call: Call) -> None:
        """Detach the agent's leg from the call and release its media."""
        if call.media is not None and call.agent_media is not None:
            unbridge(call.media, call.agent_media)
        if call.agent_media is not None:
            self.media.close(call.agent_media)
            call.agent_media = None
        call.agent = None

    def _maybe_forget(self, call_id: str) -> None:
        """A call is forgotten once its caller's leg is over and no agent leg is attached
        (nothing leaks: legs, ports, maps)."""
        call = self._calls.get(call_id)
        if call is None or call.leg.state != LegState.ENDED or call.agent is not None:
            return
        del self._calls[call_id]
        self._ended.pop(call_id, None)

    @property
    def agent_legs_alive(self) -> int:
        return len(self._agent_legs)

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
