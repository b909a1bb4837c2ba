"""The voice service: runs callers' legs on the SIP endpoint and tells the contact center.

Owns: dispatching requests by method, the leg of each call (`CallerLeg`), its RTP
endpoint, the answer timer, and hanging up. The protocol decisions live in the pure
`TransactionLayer` and `CallerLeg`; this module is their asyncio adapter.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import Protocol

from cti.calls.leg import ALLOWED_METHODS, CallerLeg, LegEnd, LegState
from cti.media.endpoint import MediaPorts, RtpEndpoint
from cti.media.ports import PortsExhausted
from cti.sip.message import SipParseError, SipRequest, build_response, new_tag
from cti.sip.sdp import SdpError, answer_offer, make_offer, parse_sdp, serialize_sdp
from cti.sip.transaction import DeliverAck, DeliverRequest, DeliverResponse, ReportTimeout
from cti.sip.transport import SipUdpEndpoint
from cti.sip.uri import parse_uri
from ivr.flows import FlowTable

log = logging.getLogger(__name__)


class CallSink(Protocol):
    def call_arrived(self, *, call_id: str, caller: str, dialled: str, queue: str) -> object: ...
    def call_answered_by_hub(self, call_id: str) -> None: ...
    async def call_ended(self, call_id: str, *, ended_by: str) -> None: ...


@dataclass(slots=True, kw_only=True)
class Call:
    leg: CallerLeg
    media: RtpEndpoint | None
    sdp: bytes = b""
    answer_timer: asyncio.TimerHandle | None = None
    bye_transaction: str | None = None


@dataclass
class VoiceService:
    endpoint: SipUdpEndpoint | None
    flows: FlowTable
    media: MediaPorts
    sink: CallSink
    advertised_host: str
    answer_delay_s: float = 0.5
    _calls: dict[str, Call] = field(default_factory=dict)
    _by_bye: dict[str, str] = field(default_factory=dict)
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
        request = delivered.request
        handler = {
            "INVITE": self._invite,
            "BYE": self._bye,
            "CANCEL": self._cancel,
            "OPTIONS": self._options,
            "INFO": self._info,
        }.get(request.method)
        if handler is None:
            self._respond(delivered, 405, headers=(("Allow", ", ".join(ALLOWED_METHODS)),))
            return
        handler(delivered)

    def on_ack(self, delivered: DeliverAck) -> None:
        call = self._calls.get(delivered.request.call_id)
        if call is None:
            return  # ACK of a call that ended meanwhile: nothing to do
        call.leg.acked = True

    def on_response(self, delivered: DeliverResponse) -> None:
        call_id = self._by_bye.pop(delivered.transaction, None)
        if call_id is not None and delivered.response.status >= 200:
            self._finish(call_id, LegEnd.HUB_BYE, ended_by="agent")

    def on_timeout(self, report: ReportTimeout) -> None:
        call_id = self._by_bye.pop(report.transaction, None)
        if call_id is not None:  # the caller never answered our BYE; the call is over anyway
            self._finish(call_id, LegEnd.HUB_BYE, ended_by="agent")
            return
        if report.what == "no_ack":
            for call in list(self._calls.values()):
                if call.leg.invite_transaction == report.transaction and not call.leg.acked:
                    log.info("call %s: no ACK for our 200 OK; hanging up", call.leg.call_id)
                    self._hang_up(call, ended_by="hub")

    # --- methods ---------------------------------------------------------------------

    def _invite(self, delivered: DeliverRequest) -> None:
        request = delivered.request
        existing = self._calls.get(request.call_id)
        if existing is not None and request.to.tag:
            self._reinvite(existing, delivered)
            return
        if request.to.tag:
            self._respond(delivered, 481)  # §12.2.2: an in-dialog request for no dialog we know
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
        if offer is not None:
            answer = answer_offer(
                offer, local_address=self.advertised_host, local_port=media.port, session_id=session_id, session_version=1
            )
            if answer is None:
                self.media.close(media)
                self._respond(delivered, 488)
                return
            sdp = serialize_sdp(answer.description)
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
        call = Call(leg=leg, media=media, sdp=sdp)
        self._calls[leg.call_id] = call
        caller = request.from_.uri.user or str(request.from_.uri)
        self.sink.call_arrived(call_id=leg.call_id, caller=caller, dialled=dialled, queue=flow.queue)
        self._send(delivered.transaction, leg.ringing())
        loop = asyncio.get_running_loop()
        call.answer_timer = loop.call_later(self.answer_delay_s, self._answer, leg.call_id)

    def _answer(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is None or call.leg.state != LegState.RINGING:
            return
        call.answer_timer = None
        self._send(call.leg.invite_transaction, call.leg.answer(call.sdp))
        # Answered even with no agent free: the caller waits in the queue.
        self.sink.call_answered_by_hub(call_id)

    def _reinvite(self, call: Call, delivered: DeliverRequest) -> None:
        if not call.leg.matches(delivered.request):
            self._respond(delivered, 481)
            return
        # Hold/resume and session refresh: answer with our current description (RFC 3264 §8).
        response = build_response(
            delivered.request,
            200,
            to_tag=call.leg.local_tag,
            headers=(("Contact", f"<{call.leg.local_contact}>"),),
            body=call.sdp,
            content_type="application/sdp",
        )
        self._send(delivered.transaction, response)

    def _bye(self, delivered: DeliverRequest) -> None:
        call = self._calls.get(delivered.request.call_id)
        if call is None or not call.leg.matches(delivered.request):
            self._respond(delivered, 481)
            return
        self._respond(delivered, 200)
        if call.leg.state == LegState.ENDING:
            self._finish(call.leg.call_id, LegEnd.CALLER_BYE, ended_by="agent")  # BYEs crossed
            return
        call.leg.ended_by_caller()
        self._finish(call.leg.call_id, LegEnd.CALLER_BYE, ended_by="caller")

    def _cancel(self, delivered: DeliverRequest) -> None:
        if delivered.cancels is None:
            self._respond(delivered, 481)
            return
        self._respond(delivered, 200)
        call = self._calls.get(delivered.request.call_id)
        if call is None or call.leg.state != LegState.RINGING:
            return  # already answered: CANCEL has no effect (§9.2)
        self._send(call.leg.invite_transaction, call.leg.cancelled())
        self._finish(call.leg.call_id, LegEnd.CANCELLED, ended_by="caller")

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

    # --- hanging up ------------------------------------------------------------------

    def hang_up(self, call_id: str) -> None:
        """The agent (or the hub at shutdown) ends the call: BYE to the caller."""
        call = self._calls.get(call_id)
        if call is None:
            return
        self._hang_up(call, ended_by="agent")

    def _hang_up(self, call: Call, *, ended_by: str) -> None:
        leg = call.leg
        if leg.state == LegState.RINGING:
            self._send(leg.invite_transaction, leg.reject(480, "Temporarily Unavailable"))
            self._finish(leg.call_id, LegEnd.REJECTED, ended_by=ended_by)
            return
        if leg.state != LegState.ANSWERED:
            return
        assert self.endpoint is not None
        bye = leg.bye(via_host=self.advertised_host, via_port=self.advertised_port)
        transaction = self.endpoint.send_request(bye, leg.next_hop())
        call.bye_transaction = transaction
        self._by_bye[transaction] = leg.call_id

    def hang_up_all(self) -> None:
        for call in list(self._calls.values()):
            self._hang_up(call, ended_by="hub")

    def _finish(self, call_id: str, end: LegEnd, *, ended_by: str) -> None:
        call = self._calls.pop(call_id, None)
        if call is None:
            return
        call.leg.finish(end)
        if call.answer_timer is not None:
            call.answer_timer.cancel()
        if call.media is not None:
            self.media.close(call.media)
        task = asyncio.create_task(self.sink.call_ended(call_id, ended_by=ended_by))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- helpers ---------------------------------------------------------------------

    def _respond(
        self, delivered: DeliverRequest, status: int, reason: str | None = None, *, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self._send(delivered.transaction, build_response(delivered.request, status, reason, to_tag=new_tag() if status > 100 else None, headers=headers))

    def _send(self, transaction: str, response: object) -> None:
        assert self.endpoint is not None
        self.endpoint.send_response(transaction, response)  # type: ignore[arg-type]
