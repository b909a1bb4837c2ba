"""SIP transactions over UDP and TCP (RFC 3261 §17, RFC 6026), sans I/O.

Owns: matching messages to transactions, retransmission and timeout timers (A-M), absorbing retransmitted requests, the automatic
100 Trying, and the §8.2 request checks before a request reaches the transaction user.
Must never: touch a socket, a clock or asyncio. Time comes in as `now`; timers go out
as `StartTimer`/`CancelTimer` commands and come back through `timer_fired`.

Each transaction knows the transport it runs on, from the message that created it or
from the transaction user's `send_request`. Over a reliable transport (TCP) nothing is
retransmitted (no Timers A, E, G) and the wait states end at once (Timers D, I, J, K
are 0, §17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2), while the timeouts B, F, H still run.
A `SendDatagram` (one whole message) names its transport; over TCP a response goes on
the connection its request came in on, `destination`, or if that one is gone to a new
connection to `fallback`, the Via's sent-by (§18.2.2).

The retransmission of a 2xx to INVITE until its ACK (RFC 3261 §13.3.1.4) is done here,
in the RFC 6026 "Accepted" state, so that the dialog layer stays free of timers. Once
the ACK has come the transaction is over, but its key is remembered for 64*T1 (RFC
6026's Timer L) so that a copy of the INVITE that was still queued (a busy hub reads
its socket late) is absorbed instead of starting a second call with the same Call-ID.
"""

from __future__ import annotations

import enum
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field, replace

from cti.sip._grammar import split_list
from cti.sip.headers import Headers
from cti.sip.message import (
    SipParseError,
    SipRequest,
    SipResponse,
    build_response,
    parse_message,
    response_for_parse_error,
    serialize,
)
from cti.sip.uri import Via
from cti.sip.validation import check_request

Address = tuple[str, int]

UDP = "UDP"
TCP = "TCP"


def is_reliable(transport: str) -> bool:
    return transport.upper() != UDP

T1 = 0.5
T2 = 4.0
T4 = 5.0

MAGIC_COOKIE = "z9hG4bK"


# --- commands (what the adapter must do) ---------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SendDatagram:
    """Send one whole message. Over TCP `destination` names the connection (the peer's
    address); `fallback` is where a response goes if that connection is gone."""

    data: bytes
    destination: Address
    transport: str = UDP
    fallback: Address | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTimer:
    key: str
    delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTimer:
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverRequest:
    """A new request for the transaction user; answer it with `send_response(transaction, ...)`."""

    request: SipRequest
    transaction: str
    source: Address
    cancels: str | None = None  # for CANCEL: the INVITE transaction it matches, if any


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverAck:
    """An ACK for a 2xx (it belongs to the dialog, not to a transaction)."""

    request: SipRequest
    source: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverResponse:
    response: SipResponse
    transaction: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportTimeout:
    """A client transaction got no final response (Timer B/F), or a 2xx got no ACK (Timer H/L)."""

    transaction: str
    what: str  # "no_response" or "no_ack"


@dataclass(frozen=True, slots=True, kw_only=True)
class Log:
    level: str  # "debug", "info", "warning"
    message: str


Command = SendDatagram | StartTimer | CancelTimer | DeliverRequest | DeliverAck | DeliverResponse | ReportTimeout | Log


class ServerState(enum.Enum):
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"  # INVITE answered 2xx, retransmitting it until the ACK (RFC 6026)
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class ClientState(enum.Enum):
    TRYING = "trying"  # "Calling" for an INVITE
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"  # INVITE got a 2xx; absorbs its retransmissions (RFC 6026)
    COMPLETED = "completed"
    TERMINATED = "terminated"


# Legal state changes of a server transaction: one table, checked on every change.
_SERVER_TRANSITIONS: dict[ServerState, frozenset[ServerState]] = {
    ServerState.TRYING: frozenset({ServerState.PROCEEDING, ServerState.COMPLETED, ServerState.ACCEPTED}),
    ServerState.PROCEEDING: frozenset({ServerState.PROCEEDING, ServerState.COMPLETED, ServerState.ACCEPTED}),
    ServerState.ACCEPTED: frozenset({ServerState.TERMINATED}),
    ServerState.COMPLETED: frozenset({ServerState.CONFIRMED, ServerState.TERMINATED}),
    ServerState.CONFIRMED: frozenset({ServerState.TERMINATED}),
    ServerState.TERMINATED: frozenset(),
}

_CLIENT_TRANSITIONS: dict[ClientState, frozenset[ClientState]] = {
    ClientState.TRYING: frozenset(
        {ClientState.PROCEEDING, ClientState.ACCEPTED, ClientState.COMPLETED, ClientState.TERMINATED}
    ),
    ClientState.PROCEEDING: frozenset(
        {ClientState.PROCEEDING, ClientState.ACCEPTED, ClientState.COMPLETED, ClientState.TERMINATED}
    ),
    ClientState.ACCEPTED: frozenset({ClientState.ACCEPTED, ClientState.TERMINATED}),
    ClientState.COMPLETED: frozenset({ClientState.COMPLETED, ClientState.TERMINATED}),
    ClientState.TERMINATED: frozenset(),
}


class TransactionError(RuntimeError):
    """The transaction user misused the layer (unknown transaction, response in a final state)."""


@dataclass(slots=True)
class _ServerTransaction:
    key: str
    method: str
    request: SipRequest
    destination: Address
    state: ServerState = ServerState.TRYING
    last_response: bytes | None = None
    dialog_key: tuple[str, int] | None = None  # (Call-ID, CSeq) while ACCEPTED
    retransmit_interval: float = T1
    transport: str = UDP
    fallback: Address | None = None  # reliable only: the Via's sent-by (§18.2.2)

    @property
    def reliable(self) -> bool:
        return is_reliable(self.transport)

    def send(self, data: bytes) -> SendDatagram:
        return SendDatagram(data=data, destination=self.destination, transport=self.transport, fallback=self.fallback)

    def move(self, new: ServerState) -> None:
        if new not in _SERVER_TRANSITIONS[self.state]:
            raise TransactionError(f"server transaction {self.key}: {self.state.value} -> {new.value} is not allowed")
        self.state = new


@dataclass(slots=True)
class _ClientTransaction:
    key: str
    method: str
    request: SipRequest
    data: bytes
    destination: Address
    state: ClientState = ClientState.TRYING
    retransmit_interval: float = T1
    ack: bytes | None = None  # the ACK we sent for a non-2xx final response
    transport: str = UDP
    cancelled: bool = False  # INVITE: a CANCEL went out, so Timer B runs again (§9.1)
    cancels: str | None = None  # CANCEL: the INVITE client transaction it cancels

    @property
    def reliable(self) -> bool:
        return is_reliable(self.transport)

    def send(self, data: bytes) -> SendDatagram:
        return SendDatagram(data=data, destination=self.destination, transport=self.transport)

    def move(self, new: ClientState) -> None:
        if new not in _CLIENT_TRANSITIONS[self.state]:
            raise TransactionError(f"client transaction {self.key}: {self.state.value} -> {new.value} is not allowed")
        self.state = new


@dataclass
class TransactionLayer:
    """All transactions of one SIP transport endpoint."""

    allowed_methods: frozenset[str]
    supported_extensions: frozenset[str] = frozenset()
    accepted_content_types: frozenset[str] = frozenset({"application/sdp"})
    t1: float = T1
    t2: float = T2
    t4: float = T4
    timer_d: float = 32.0  # §17.1.1.2: at least 32 s over UDP, to absorb final-response retransmissions
    _servers: dict[str, _ServerTransaction] = field(default_factory=dict)
    _accepted: dict[tuple[str, int], str] = field(default_factory=dict)
    # Keys of INVITE transactions answered 2xx and ACKed, with when they stop absorbing
    # copies of their INVITE (RFC 6026's Timer L), oldest first. Not transactions:
    # not counted in `active_transactions`, no timer of their own.
    _acked_invites: OrderedDict[str, float] = field(default_factory=OrderedDict)
    _clients: dict[str, _ClientTransaction] = field(default_factory=dict)
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    # --- inputs ----------------------------------------------------------------------

    def datagram_received(self, data: bytes, source: Address, now: float, *, transport: str = UDP) -> list[Command]:
        """One UDP datagram arrived from `source`, or one framed message on the TCP
        connection from `source` (`transport="TCP"`)."""
        if not data.strip(b"\r\n"):
            return []  # keep-alive (RFC 5626 CRLF ping)
        try:
            message = parse_message(data)
        except SipParseError as err:
            return self._reject_unparsable(err, source, transport)
        if isinstance(message, SipResponse):
            return self._response_received(message)
        try:
            return self._request_received(message, source, transport, now)
        except SipParseError as err:
            # A header the matching needs (Via, CSeq) is unusable.
            err.partial = err.partial or message
            return self._reject_unparsable(err, source, transport)

    def timer_fired(self, key: str, now: float) -> list[Command]:
        kind, _, txn_key = key.partition(":")
        if txn_key in self._servers:
            return self._server_timer(kind, self._servers[txn_key])
        if txn_key in self._clients:
            return self._client_timer(kind, self._clients[txn_key])
        return []

    # --- transaction user's calls ----------------------------------------------------

    def send_response(self, transaction: str, response: SipResponse, now: float) -> list[Command]:
        txn = self._servers.get(transaction)
        if txn is None:
            raise TransactionError(f"no server transaction {transaction!r}")
        if txn.state not in (ServerState.TRYING, ServerState.PROCEEDING):
            raise TransactionError(f"server transaction {transaction!r} already sent a final response")
        data = serialize(response)
        txn.last_response = data
        commands: list[Command] = [txn.send(data)]
        if response.status < 200:
            txn.move(ServerState.PROCEEDING)
            return commands
        # Over a reliable transport the final response is not retransmitted (no Timer G).
        retransmit = [] if txn.reliable else [StartTimer(key=f"G:{txn.key}", delay=self.t1)]
        if txn.method == "INVITE" and response.status < 300:
            txn.move(ServerState.ACCEPTED)
            txn.dialog_key = (txn.request.call_id, txn.request.cseq[0])
            self._accepted[txn.dialog_key] = txn.key
            txn.retransmit_interval = self.t1
            commands += [*retransmit, StartTimer(key=f"H:{txn.key}", delay=64 * self.t1)]
            return commands
        txn.move(ServerState.COMPLETED)
        if txn.method == "INVITE":
            txn.retransmit_interval = self.t1
            commands += [*retransmit, StartTimer(key=f"H:{txn.key}", delay=64 * self.t1)]
        elif txn.reliable:
            self._drop_server(txn)  # Timer J is 0: no retransmitted request will come
        else:
            commands.append(StartTimer(key=f"J:{txn.key}", delay=64 * self.t1))
        return commands

    def send_request(
        self, request: SipRequest, destination: Address, now: float, *, transport: str = UDP
    ) -> tuple[str, list[Command]]:
        """Start a client transaction: INVITE (Timers A, B) or non-INVITE (Timers E, F);
        over a reliable transport without the retransmissions (A, E)."""
        if request.method == "ACK":
            raise TransactionError("ACK has no transaction; use send_stateless")
        key = self._client_key(request.top_via.branch or "", request.method)
        if key in self._clients:
            raise TransactionError(f"a client transaction with branch {key!r} exists")
        request = _sent_over(request, transport)
        data = serialize(request)
        txn = _ClientTransaction(
            key=key, method=request.method, request=request, data=data, destination=destination, transport=transport
        )
        self._clients[key] = txn
        retransmit, timeout = ("A", "B") if request.method == "INVITE" else ("E", "F")
        commands: list[Command] = [txn.send(data)]
        if not txn.reliable:
            commands.append(StartTimer(key=f"{retransmit}:{key}", delay=self.t1))
        commands.append(StartTimer(key=f"{timeout}:{key}", delay=64 * self.t1))
        return key, commands

    def cancel(self, transaction: str, now: float) -> tuple[str | None, list[Command]]:
        """CANCEL a pending INVITE client transaction (§9.1). A CANCEL may only follow a
        provisional response; before one, None is returned and the caller retries later."""
        txn = self._clients.get(transaction)
        if txn is None or txn.method != "INVITE" or txn.state != ClientState.PROCEEDING:
            return None, []
        invite = txn.request
        headers = Headers()
        headers.add("Via", invite.headers.get_all("Via")[0])
        for name in ("Route",):
            for value in invite.headers.get_all(name):
                headers.add(name, value)
        headers.add("Max-Forwards", "70")
        headers.add("From", invite.headers.get("From") or "")
        headers.add("To", invite.headers.get("To") or "")
        headers.add("Call-ID", invite.call_id)
        headers.add("CSeq", f"{invite.cseq[0]} CANCEL")
        cancel = SipRequest(method="CANCEL", uri=invite.uri, headers=headers)
        key, commands = self.send_request(cancel, txn.destination, now, transport=txn.transport)
        txn.cancelled = True
        self._clients[key].cancels = txn.key
        return key, commands

    def send_stateless(
        self, message: SipRequest | SipResponse, destination: Address, *, transport: str = UDP
    ) -> list[Command]:
        """For an ACK to a 2xx, which has no transaction."""
        if isinstance(message, SipRequest):
            message = _sent_over(message, transport)
        return [SendDatagram(data=serialize(message), destination=destination, transport=transport)]

    def is_pending(self, transaction: str) -> bool:
        """True while a server transaction still awaits its final response."""
        txn = self._servers.get(transaction)
        return txn is not None and txn.state in (ServerState.TRYING, ServerState.PROCEEDING)

    @property
    def active_transactions(self) -> int:
        return len(self._servers) + len(self._clients)

    # --- requests --------------------------------------------------------------------

    def _request_received(self, request: SipRequest, source: Address, transport: str, now: float) -> list[Command]:
        via = request.top_via
        request, destination = _stamp_received(request, via, source)
        fallback = None
        if is_reliable(transport):
            # §18.2.2: back on the connection the request came in on, else to the sent-by.
            destination, fallback = source, (source[0], via.port or 5060)
        key = self._server_key(request)
        if request.method == "ACK":
            return self._ack_received(request, key, source, now)
        existing = self._servers.get(key)
        if existing is not None:
            return self._retransmission(existing)
        if request.method == "INVITE" and self._still_acked(key, now):
            return [Log(level="debug", message=f"late copy of the answered INVITE {key} absorbed")]

        txn = _ServerTransaction(
            key=key, method=request.method, request=request, destination=destination, transport=transport, fallback=fallback
        )
        self._servers[key] = txn
        rejection = check_request(
            request,
            allowed_methods=self.allowed_methods,
            supported_extensions=self.supported_extensions,
            accepted_content_types=self.accepted_content_types,
        )
        if rejection is not None:
            return [
                Log(level="info", message=f"{request.method} from {source[0]}:{source[1]} rejected: {rejection.status} {rejection.reason}"),
                *self.send_response(key, rejection, 0.0),
            ]
        commands: list[Command] = []
        if request.method == "INVITE":
            commands += self.send_response(key, build_response(request, 100), 0.0)
        cancels = None
        if request.method == "CANCEL":
            invite_key = self._server_key(request, method="INVITE")
            cancels = invite_key if invite_key in self._servers else None
        commands.append(DeliverRequest(request=request, transaction=key, source=source, cancels=cancels))
        return commands

    def _retransmission(self, txn: _ServerTransaction) -> list[Command]:
        # RFC 3261 §17.2.1/§17.2.2: resend the last response; in TRYING there is none yet.
        if txn.state in (ServerState.PROCEEDING, ServerState.COMPLETED) and txn.last_response is not None:
            return [txn.send(txn.last_response)]
        return []  # ACCEPTED: the 2xx is retransmitted on its own timer; absorb.

    def _ack_received(self, ack: SipRequest, key: str, source: Address, now: float) -> list[Command]:
        invite_key = self._server_key(ack, method="INVITE")
        txn = self._servers.get(invite_key)
        if txn is not None and txn.state == ServerState.COMPLETED:
            txn.move(ServerState.CONFIRMED)
            stop: list[Command] = [CancelTimer(key=f"G:{txn.key}"), CancelTimer(key=f"H:{txn.key}")]
            if txn.reliable:
                self._drop_server(txn)  # Timer I is 0: no retransmitted ACK will come
                return stop
            return [*stop, StartTimer(key=f"I:{txn.key}", delay=self.t4)]
        if txn is not None and txn.state == ServerState.CONFIRMED:
            return []  # retransmitted ACK for a non-2xx
        dialog_key = (ack.call_id, ack.cseq[0])
        accepted_key = self._accepted.pop(dialog_key, None)
        commands: list[Command] = []
        if accepted_key is not None:
            accepted = self._servers.pop(accepted_key)
            accepted.move(ServerState.TERMINATED)
            commands += [CancelTimer(key=f"G:{accepted_key}"), CancelTimer(key=f"H:{accepted_key}")]
            if not accepted.reliable:  # over TCP a UAC never retransmits its INVITE
                self._acked_invites[accepted_key] = now + 64 * self.t1
                self._acked_invites.move_to_end(accepted_key)
        commands.append(DeliverAck(request=ack, source=source))
        return commands

    def _still_acked(self, key: str, now: float) -> bool:
        """Is `key` an INVITE answered and ACKed less than 64*T1 ago? Expired keys go."""
        while self._acked_invites:
            oldest, until = next(iter(self._acked_invites.items()))
            if until > now:
                break
            del self._acked_invites[oldest]
        return key in self._acked_invites

    def _reject_unparsable(self, err: SipParseError, source: Address, transport: str) -> list[Command]:
        response = response_for_parse_error(err)
        if response is None:
            return [Log(level="warning", message=f"dropped unparsable datagram from {source[0]}:{source[1]}: {err.reason}")]
        destination = source
        if not is_reliable(transport):  # over TCP the answer goes back on the connection
            try:
                _, destination = _stamp_received(err.partial, err.partial.top_via, source) if err.partial else (None, source)
            except SipParseError:
                destination = source
        return [
            Log(level="warning", message=f"bad request from {source[0]}:{source[1]}: {err.reason}; answered {response.status}"),
            SendDatagram(data=serialize(response), destination=destination, transport=transport),
        ]

    def _server_timer(self, kind: str, txn: _ServerTransaction) -> list[Command]:
        if kind == "G" and txn.state in (ServerState.COMPLETED, ServerState.ACCEPTED) and txn.last_response:
            txn.retransmit_interval = min(2 * txn.retransmit_interval, self.t2)
            return [txn.send(txn.last_response), StartTimer(key=f"G:{txn.key}", delay=txn.retransmit_interval)]
        if kind == "H" and txn.state in (ServerState.COMPLETED, ServerState.ACCEPTED):
            was_accepted = txn.state == ServerState.ACCEPTED
            self._drop_server(txn)
            commands: list[Command] = [CancelTimer(key=f"G:{txn.key}")]
            if was_accepted:
                commands.append(ReportTimeout(transaction=txn.key, what="no_ack"))
            else:
                commands.append(Log(level="info", message=f"no ACK for the final response of {txn.key}"))
            return commands
        if kind in ("I", "J") and txn.state in (ServerState.CONFIRMED, ServerState.COMPLETED):
            self._drop_server(txn)
        return []

    def _drop_server(self, txn: _ServerTransaction) -> None:
        txn.move(ServerState.TERMINATED)
        self._servers.pop(txn.key, None)
        if txn.dialog_key is not None:
            self._accepted.pop(txn.dialog_key, None)

    # --- responses -------------------------------------------------------------------

    def _response_received(self, response: SipResponse) -> list[Command]:
        try:
            branch = response.top_via.branch or ""
            method = response.cseq[1]
        except SipParseError as err:
            return [Log(level="debug", message=f"dropped response with unusable Via/CSeq: {err.reason}")]
        txn = self._clients.get(self._client_key(branch, method))
        if txn is None:
            return [Log(level="debug", message=f"dropped stray {response.status} response (no transaction)")]
        if txn.method == "INVITE":
            return self._invite_response(txn, response)
        if txn.state == ClientState.COMPLETED:
            return []  # retransmitted final response
        if response.status < 200:
            txn.move(ClientState.PROCEEDING)
            return [DeliverResponse(response=response, transaction=txn.key)]
        txn.move(ClientState.COMPLETED)
        stop: list[Command] = [CancelTimer(key=f"E:{txn.key}"), CancelTimer(key=f"F:{txn.key}")]
        stop += self._cancel_answered(txn)
        if txn.reliable:
            self._drop_client(txn)  # Timer K is 0: no retransmitted response will come
            return [*stop, DeliverResponse(response=response, transaction=txn.key)]
        return [*stop, StartTimer(key=f"K:{txn.key}", delay=self.t4), DeliverResponse(response=response, transaction=txn.key)]

    def _invite_response(self, txn: _ClientTransaction, response: SipResponse) -> list[Command]:
        stop = [CancelTimer(key=f"A:{txn.key}"), CancelTimer(key=f"B:{txn.key}")]
        if response.status < 200:
            if txn.cancelled:
                stop = stop[:1]  # a late provisional must not stop the post-CANCEL Timer B
            if txn.state not in (ClientState.TRYING, ClientState.PROCEEDING):
                return []
            txn.move(ClientState.PROCEEDING)
            return [*stop, DeliverResponse(response=response, transaction=txn.key)]
        if response.status < 300:
            # Every 2xx (retransmissions and forks included) goes to the TU, which ACKs it.
            first = txn.state != ClientState.ACCEPTED
            txn.move(ClientState.ACCEPTED)
            timers: list[Command] = [StartTimer(key=f"M:{txn.key}", delay=64 * self.t1)] if first else []
            return [*stop, *timers, DeliverResponse(response=response, transaction=txn.key)]
        if txn.state == ClientState.COMPLETED:
            assert txn.ack is not None
            return [txn.send(txn.ack)]  # §17.1.1.2: re-ACK
        if txn.state == ClientState.ACCEPTED:
            return []
        txn.move(ClientState.COMPLETED)
        txn.ack = serialize(_ack_for_failure(txn.request, response))
        if txn.reliable:
            self._drop_client(txn)  # Timer D is 0: no retransmitted response will come
            return [*stop, txn.send(txn.ack), DeliverResponse(response=response, transaction=txn.key)]
        return [
            *stop,
            txn.send(txn.ack),
            StartTimer(key=f"D:{txn.key}", delay=self.timer_d),
            DeliverResponse(response=response, transaction=txn.key),
        ]

    def _client_timer(self, kind: str, txn: _ClientTransaction) -> list[Command]:
        if kind == "A" and txn.state == ClientState.TRYING:
            txn.retransmit_interval *= 2  # §17.1.1.2: Timer A doubles without a cap
            return [txn.send(txn.data), StartTimer(key=f"A:{txn.key}", delay=txn.retransmit_interval)]
        if kind == "E" and txn.state in (ClientState.TRYING, ClientState.PROCEEDING):
            # §17.1.2.2: in PROCEEDING retransmit every T2.
            txn.retransmit_interval = (
                self.t2 if txn.state == ClientState.PROCEEDING else min(2 * txn.retransmit_interval, self.t2)
            )
            return [txn.send(txn.data), StartTimer(key=f"E:{txn.key}", delay=txn.retransmit_interval)]
        if kind in ("B", "F") and txn.state in (ClientState.TRYING, ClientState.PROCEEDING):
            self._drop_client(txn)
            commands: list[Command] = [
                CancelTimer(key=f"{'A' if kind == 'B' else 'E'}:{txn.key}"),
                ReportTimeout(transaction=txn.key, what="no_response"),
            ]
            invite = self._clients.get(txn.cancels) if txn.cancels else None
            if invite is not None and invite.state in (ClientState.TRYING, ClientState.PROCEEDING):
                # 64*T1 since the CANCEL and still no final response: the INVITE is over too.
                commands += self._client_timer("B", invite)
            return commands
        if (kind == "K" and txn.state == ClientState.COMPLETED) or (
            kind in ("D", "M") and txn.state in (ClientState.COMPLETED, ClientState.ACCEPTED)
        ):
            self._drop_client(txn)
        return []

    def _cancel_answered(self, cancel: _ClientTransaction) -> list[Command]:
        """§9.1: once its CANCEL is answered, an INVITE still without a final response gets
        64*T1 more, then is over. Else a phone that vanished after ringing (or whose 487
        was lost for good) would hold the transaction, and the leg, for ever."""
        invite = self._clients.get(cancel.cancels) if cancel.cancels else None
        if invite is None or invite.state not in (ClientState.TRYING, ClientState.PROCEEDING):
            return []
        return [StartTimer(key=f"B:{invite.key}", delay=64 * self.t1)]

    def _drop_client(self, txn: _ClientTransaction) -> None:
        txn.move(ClientState.TERMINATED)
        del self._clients[txn.key]

    # --- matching --------------------------------------------------------------------

    def _server_key(self, request: SipRequest, *, method: str | None = None) -> str:
        via = request.top_via
        method = method or request.method
        if method == "ACK":
            method = "INVITE"
        branch = via.branch or ""
        if branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
            return f"{branch}|{via.host}:{via.port or 5060}|{method}"
        # RFC 2543 peers: match on the request's identifying headers (§17.2.3).
        to_tag = request.to.tag if method != "INVITE" or request.method != "ACK" else None
        return "|".join(
            str(part)
            for part in (
                "2543",
                request.call_id,
                request.cseq[0],
                method,
                request.from_.tag,
                to_tag,
                f"{via.host}:{via.port or 5060}",
                branch,
            )
        )

    @staticmethod
    def _client_key(branch: str, method: str) -> str:
        return f"c|{branch}|{'INVITE' if method == 'ACK' else method}"


def _ack_for_failure(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK a client transaction sends for a 300-699 (§17.1.1.3): same branch, the
    To of the response, the INVITE's Route set."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    for value in invite.headers.get_all("Route"):
        headers.add("Route", value)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq[0]} ACK")
    return SipRequest(method="ACK", uri=invite.uri, headers=headers)


def _sent_over(request: SipRequest, transport: str) -> SipRequest:
    """The request with its top Via naming the transport it is sent on (§18.1.1: the
    client transport fills in the Via). The transaction user's request is not changed."""
    top = request.top_via
    if top.transport.upper() == transport.upper():
        return request
    stamped = replace(top, transport=transport.upper())
    headers, done = Headers(), False
    for name, value in request.headers:
        if not done and name.lower() == "via":
            value, done = ", ".join([str(stamped), *split_list(value)[1:]]), True
        headers.add(name, value)
    return replace(request, headers=headers)


def _stamp_received(request: SipRequest, via: Via, source: Address) -> tuple[SipRequest, Address]:
    """Apply RFC 3261 §18.2.1 `received` and RFC 3581 `rport`; return where responses go."""
    source_host, source_port = source
    via_host = via.host.strip("[]")  # IPv6 references keep their brackets in a Via
    updates: dict[str, str] = {}
    if via_host != source_host:
        updates["received"] = source_host
    wants_rport = via.rport is not None
    if wants_rport:
        updates["rport"] = str(source_port)
        updates["received"] = source_host
    if not updates:
        return request, (via_host, via.port or 5060)
    stamped = via.with_params(**updates)
    vias = request.headers.get_all("Via")
    request.headers.remove("Via")
    request.headers.add("Via", str(stamped))
    for value in vias[1:]:
        request.headers.add("Via", value)
    if wants_rport:
        return request, source
    return request, (source_host, via.port or 5060)
