"""The overload guard: the transaction user the SIP endpoint talks to, in front of the
voice service; the thin asyncio adapter around the pure `OverloadPolicy`.

Owns: the periodic reading (how late its own timer fires, which is the event loop's
lag; the new INVITEs passed on whose transaction still awaits its final response, which
are the calls in set-up; how full the SIP UDP socket's receive queue is), answering a
refused call with 503 and Retry-After through its server transaction (so that its
retransmissions get the same answer and its ACK is absorbed), the counts the metrics
show, and log lines at a bounded rate.
Must never: touch anything but a new call's INVITE. Requests within dialogs, ACKs,
responses and timeouts go to the voice service unchanged, overloaded or not.
"""

from __future__ import annotations

import asyncio
import logging

from cti.sip.message import build_response, new_tag
from cti.sip.overload import BecameOverloaded, OverloadPolicy, Recovered, Transition
from cti.sip.transaction import (
    DeliverAck,
    DeliverRequest,
    DeliverResponse,
    ReportTimeout,
)
from cti.sip.transport import SipEndpoint, TransactionUser

log = logging.getLogger("cti.sip.overload")

READING_INTERVAL_S = 0.1
REPORT_EVERY_S = 10.0  # while overloaded, one line this often with what was refused


class OverloadGuard:
    """A transaction user in front of another (the voice service): new calls pass the
    overload policy first; everything else goes straight through."""

    def __init__(self, user: TransactionUser, policy: OverloadPolicy, *, interval_s: float = READING_INTERVAL_S) -> None:
        self.user = user
        self.policy = policy
        self.endpoint: SipEndpoint | None = None  # set once the endpoint exists
        self._interval_s = interval_s
        self._setting_up: set[str] = set()  # INVITE server transactions passed on, maybe still pending
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._last_report = 0.0
        self._refused_at_report = 0
        self.udp_drops = 0  # datagrams the kernel dropped at the SIP UDP socket

    # --- figures for the metrics -----------------------------------------------------

    @property
    def refused_total(self) -> int:
        return self.policy.refused_total

    @property
    def overloaded(self) -> bool:
        return self.policy.overloaded

    @property
    def loop_lag_s(self) -> float:
        return self.policy.smoothed_lag_s

    @property
    def calls_in_setup(self) -> int:
        self._prune()
        return len(self._setting_up)

    # --- the periodic reading --------------------------------------------------------

    def start(self) -> None:
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._last_report = loop.time()
            self._schedule(loop)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = loop.time() + self._interval_s
        self._timer = loop.call_later(self._interval_s, self._read)

    def _read(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        try:
            fill = None
            queue = self.endpoint.udp_receive_queue() if self.endpoint is not None else None
            if queue is not None:
                queued, size, self.udp_drops = queue
                fill = queued / size if size else None
            self._log(self.policy.reading(now, lag_s=now - self._due, calls_in_setup=self.calls_in_setup, queue_fill=fill))
            self._report(now)
        except Exception:  # the reading must go on whatever happens to one of them
            log.exception("overload reading failed")
        self._schedule(loop)

    def _prune(self) -> None:
        if self.endpoint is not None and self._setting_up:
            layer = self.endpoint.layer
            self._setting_up = {key for key in self._setting_up if layer.is_pending(key)}

    # --- TransactionUser ---------------------------------------------------------------

    def on_request(self, delivered: DeliverRequest) -> None:
        request = delivered.request
        if request.method == "INVITE" and not request.to.tag and self.endpoint is not None:
            setting_up = len(self._setting_up)
            if setting_up >= self.policy.limits.setup_enter > 0:
                setting_up = self.calls_in_setup  # near the limit: count exactly
            decision = self.policy.new_call(asyncio.get_running_loop().time(), calls_in_setup=setting_up)
            self._log(decision.transition)
            if not decision.admit:
                refusal = build_response(
                    request, 503, to_tag=new_tag(), headers=(("Retry-After", str(decision.retry_after_s)),)
                )
                self.endpoint.send_response(delivered.transaction, refusal)
                return
            self._setting_up.add(delivered.transaction)
        self.user.on_request(delivered)

    def on_ack(self, delivered: DeliverAck) -> None:
        self.user.on_ack(delivered)

    def on_response(self, delivered: DeliverResponse) -> None:
        self.user.on_response(delivered)

    def on_timeout(self, report: ReportTimeout) -> None:
        self.user.on_timeout(report)

    # --- log lines, at a bounded rate ------------------------------------------------

    def _log(self, transition: Transition | None) -> None:
        if isinstance(transition, BecameOverloaded):
            self._refused_at_report = self.policy.refused_total
            log.warning(
                "SIP overload: %s; new calls are refused with 503 (Retry-After %d s) until it passes",
                transition.reason, self.policy.limits.retry_after_s,
            )
        elif isinstance(transition, Recovered):
            log.warning(
                "SIP overload over after %.1f s: %d new calls refused", transition.lasted_s, transition.refused
            )

    def _report(self, now: float) -> None:
        if now - self._last_report < REPORT_EVERY_S:
            return
        refused = self.policy.refused_total - self._refused_at_report
        if self.policy.overloaded and refused:
            log.warning("SIP overload goes on: %d new calls refused in the last %.0f s", refused, now - self._last_report)
        self._last_report, self._refused_at_report = now, self.policy.refused_total
