"""The one error the SIP message layer raises for bad input from the network.

Owns `SipParseError`, which carries what a caller needs to answer the peer (a status
hint and the part of the request that could be read). Must never be raised for a
local programming mistake: those are plain `ValueError`/`TypeError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cti.sip.message import SipRequest


class SipParseError(ValueError):
    """The peer sent something that is not valid SIP (or not usable SIP).

    `status` is the response a UAS should send when one can be built (400, or 505
    for a bad version); None when the bad message is a response, or when nothing
    should be sent back. `partial` is, for a request, what could be read of it, so
    the caller can echo Via/From/To/Call-ID/CSeq in an error response.
    """

    def __init__(
        self, reason: str, *, status: int | None = 400, partial: SipRequest | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.partial = partial
