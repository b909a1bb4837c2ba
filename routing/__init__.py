"""The ACD: queues, skills, agents' routing states, and who gets which contact.

Owns: the public surface of the routing core. Everything here is pure (no asyncio, no
I/O, no clock); the hub's asyncio shell feeds it facts with the time and carries out the
commands it returns, directly or through a `RoutingStore` (`store`): `InProcessStore`
here, or `routing.redis_store.RedisRoutingStore` (imported on its own, being the one
module that does I/O) when several hub processes share one Redis. The facts a store
takes are in `routing.facts`.
"""

from routing.config import ConfigError, RoutingConfig, build_router, load_config
from routing.expressions import ParseError
from routing.model import (
    AGENT_TRANSITIONS,
    ActionKind,
    AgentProfile,
    AgentState,
    AnnounceAgentState,
    AnnounceQueued,
    Command,
    DisconnectContact,
    OfferCallback,
    OfferContact,
    OverflowContact,
    QueueAction,
    QueueConfig,
    RejectContact,
    RoutingError,
    RoutingStep,
    Rule,
    StatsChanged,
    Strategy,
    WithdrawOffer,
)
from routing.router import Router
from routing.rules_default import DEFAULT_RULES
from routing.stats import RoutingStats
from routing.store import Applied, InProcessStore, RoutingStore

__all__ = [
    "AGENT_TRANSITIONS",
    "DEFAULT_RULES",
    "ActionKind",
    "AgentProfile",
    "AgentState",
    "AnnounceAgentState",
    "AnnounceQueued",
    "Applied",
    "Command",
    "ConfigError",
    "DisconnectContact",
    "InProcessStore",
    "OfferCallback",
    "OfferContact",
    "OverflowContact",
    "ParseError",
    "QueueAction",
    "QueueConfig",
    "RejectContact",
    "Router",
    "RoutingConfig",
    "RoutingError",
    "RoutingStats",
    "RoutingStep",
    "RoutingStore",
    "Rule",
    "StatsChanged",
    "Strategy",
    "WithdrawOffer",
    "build_router",
    "load_config",
]
