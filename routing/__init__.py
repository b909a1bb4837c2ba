"""The ACD: queues, skills, agents' routing states, and who gets which contact.

Owns: the public surface of the routing core. Everything here is pure (no asyncio, no
I/O, no clock); the hub's asyncio shell feeds it facts with the time and carries out the
commands it returns.
"""

from routing.model import (
    AGENT_TRANSITIONS,
    AgentProfile,
    AgentState,
    AnnounceAgentState,
    AnnounceQueued,
    Command,
    OfferContact,
    QueueConfig,
    RoutingError,
    WithdrawOffer,
)
from routing.router import Router

__all__ = [
    "AGENT_TRANSITIONS",
    "AgentProfile",
    "AgentState",
    "AnnounceAgentState",
    "AnnounceQueued",
    "Command",
    "OfferContact",
    "QueueConfig",
    "Router",
    "RoutingError",
    "WithdrawOffer",
]
