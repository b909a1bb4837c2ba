"""Wiring: the one place that builds every service of a hub process and starts and
stops them in order."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_sync.cache import RedisProfileCache
from crm_sync.cache_tiers import TieredProfileCache, feed_client
from crm_sync.connector import RestConnector, load_mapping
from crm_sync.delivery import DeliveryWorker
from crm_sync.demo import seed_demo_crm
from crm_sync.outbox import OutboxStore
from crm_sync.seen_keys import RedisSeenKeys
from crm_sync.store import CrmStore
from crm_sync.webhooks import EVENT_ID_WINDOW_S, WEBHOOK_TOLERANCE_S, make_webhook_app
from cti.agents.sessions import SessionRegistry
from cti.bus import EventBus, make_bus
from cti.calls.leg import ALLOWED_METHODS
from cti.calls.overload import OverloadGuard
from cti.calls.outbound import parse_trunk
from cti.calls.service import VoiceService
from cti.center import ContactCenter
from cti.config import ConfigError, Settings, setting_label
from cti.db import make_engine, make_sessionmaker, migrate
from cti.directory.demo import DEMO_PASSWORD, DEMO_USERS, seed_demo_directory
from cti.directory.store import Directory, DirectoryStore
from cti.media.endpoint import MediaPorts
from cti.media.ports import PortPairAllocator
from cti.registrar import (
    Binding,
    BindingStore,
    InMemoryBindingStore,
    LockoutPolicy,
    RedisBindingStore,
    Registrar,
    RegistrarConfig,
    RegistrarService,
)
from cti.routing_admin import RoutingAdmin
from cti.routing_config import (
    DEMO_ROUTING_FILE,
    Effective,
    RoutingFileError,
    change_facts,
    effective,
    read_routing_file,
)
from cti.routing_link import AgentRequest, HubLink, ToAgent
from cti.routing_shared import FactQueue
from cti.routing_store import RoutingConfigStore, SavedRouting
from cti.secrets import load_secret_key
from cti.sip.digest import Algorithm, NonceIssuer
from cti.sip.overload import OverloadLimits, OverloadPolicy
from cti.sip.transaction import T1, TransactionLayer
from cti.sip.transport import SipEndpoint
from cti.web.routing_api import ROUTING_ADMIN
from cti.web.server import AuthOptions, close_websockets, make_app
from ivr.flows import FlowTable
from recordings.policy import RecordingPolicy
from recordings.policy_store import PolicyStore, seed_demo_policies
from recordings.purge_job import PurgeJob
from recordings.s3_storage import s3_storage_from_settings
from recordings.service import RecordingService
from recordings.storage import FileStorage
from recordings.store import RecordingStore
from routing import AgentState, Router, build_router
from routing import ConfigError as RoutingConfigError
from routing.codec import rule_from
from routing.redis_store import RedisRoutingStore
from routing.snapshot import export_state
from routing.store import Applied, InProcessStore, RoutingStore

log = logging.getLogger("cti")

SHUTDOWN_BYE_WAIT_S = 2.0
NONCE_LIFETIME_S = 300.0


def make_binding_store(redis_url: str | None) -> BindingStore:
    return RedisBindingStore(redis_url) if redis_url else InMemoryBindingStore()


@dataclass
class _LateTaps:
    """The voice service's media taps, for the recorders built before it."""

    hub: Hub

    def add_tap(self, call_id: str, tap: Callable[[str, bytes], None]) -> bool:
        return self.hub.voice is not None and self.hub.voice.add_tap(call_id, tap)

    def remove_tap(self, call_id: str, tap: Callable[[str, bytes], None]) -> None:
        if self.hub.voice is not None:
            self.hub.voice.remove_tap(call_id, tap)


def phone_aor(agent_id: str, realm: str) -> str:
    return f"sip:{agent_id}@{realm}"


@dataclass
class Hub:
    settings: Settings
    answer_delay_s: float = 0.0  # the caller is answered at once and hears the queue (notice, music)
    offer_timeout_s: float = 20.0
    logout_grace_s: float = 15.0
    rtp_timeout_s: float | None = None  # None: the setting (CTIHUB_RTP_TIMEOUT)
    auth: AuthOptions = field(default_factory=AuthOptions)  # login throttle limits, session re-checks
    engine: AsyncEngine | None = None
    bus: EventBus | None = None
    center: ContactCenter | None = None
    voice: VoiceService | None = None
    overload: OverloadGuard | None = None  # in front of the voice service: 503 for new calls when overloaded
    sip_t1_s: float = T1  # RFC 3261's T1; tests shorten it so that transactions' wait states end sooner
    sip: SipEndpoint | None = None  # UDP and TCP on sip_host:sip_port
    media: MediaPorts | None = None
    directory: Directory | None = None
    bindings: BindingStore | None = None
    redis: aioredis.Redis | None = None  # shared state other than bus and bindings, when configured
    profile_cache: TieredProfileCache | None = None  # screen-pop profiles, with Redis only
    crm_worker: DeliveryWorker | None = None
    recordings: RecordingService | None = None
    purge_job: PurgeJob | None = None
    routing_admin: RoutingAdmin | None = None
    # Shared routing (CTIHUB_ROUTING_STORE=redis): the keys' namespace in Redis (every
    # hub of one contact center uses the same), this hub's facts and its link to the others.
    routing_namespace: str = "routing"
    routing_store: RoutingStore | None = None
    routing_facts: FactQueue | None = None
    routing_link: HubLink | None = None
    crm_connector: RestConnector | None = None
    http_runner: web.AppRunner | None = None
    http_address: tuple[str, int] | None = None
    sip_address: tuple[str, int] | None = None
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))
    _database_ok: bool = False
    _reloads: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(settings.effective_database_url)
        await migrate(self.engine)
        self._database_ok = True
        if settings.redis_url:
            self.redis = aioredis.from_url(settings.redis_url)
        sessionmaker = make_sessionmaker(self.engine)
        directory_store = DirectoryStore(sessionmaker)
        if self.redis is not None and settings.redis_url:
            # In memory here, in Redis for every hub, and every hub's writes reach both
            # (crm_sync.cache_tiers). Without Redis, no cache: a `ctihub crm import`
            # running beside the hub could not reach an in-memory one.
            self.profile_cache = TieredProfileCache(RedisProfileCache(self.redis), feed_client(settings.redis_url))
            self.profile_cache.start()
        crm = CrmStore(sessionmaker, cache=self.profile_cache)
        if settings.demo:
            await seed_demo_directory(directory_store, sip_realm=settings.sip_realm)
            await seed_demo_crm(sessionmaker)
            await seed_demo_policies(PolicyStore(sessionmaker))
        self.directory = directory = await directory_store.load()

        self.bus = make_bus(settings.redis_url)
        routing_store = RoutingConfigStore(sessionmaker)
        routing_model, routing_source, saved = await self._routing_model(routing_store, directory)
        router = build_router(routing_model.config, publish_stats=True)
        loop = asyncio.get_running_loop()
        sessions = SessionRegistry(clock=loop.time)
        shared_routing = settings.routing_store == "redis"
        if shared_routing:
            self.routing_store = await self._shared_routing_store(router)
        else:
            self.routing_store = InProcessStore(router)
        self.center = center = ContactCenter(
            store=self.routing_store,
            bus=self.bus,
            crm=crm,
            sessions=sessions,
            default_region=settings.default_region,
            offer_timeout_s=self.offer_timeout_s,
            logout_grace_s=self.logout_grace_s,
            # Hubs sharing routing share a clock too: the facts' times order the log.
            clock=time.time if shared_routing else loop.time,
            sync_to_crm=settings.crm_url is not None,
            routing=routing_model.config,
        )
        if shared_routing:
            await self._share_routing(center, routing_model)
        self.routing_admin = RoutingAdmin(
            center=center,
            store=routing_store,
            directory=directory,
            current=routing_model,
            reservation_timeout_s=self.offer_timeout_s,
            source=routing_source,
            revision=saved.revision if saved is not None else 0,
            updated_at=saved.updated_at if saved is not None else None,
            updated_by=saved.updated_by if saved is not None else None,
        )
        if settings.crm_url is not None:
            try:
                self.crm_connector = RestConnector(
                    base_url=settings.crm_url, mapping=load_mapping(settings.crm_mapping), token_env=settings.crm_token_env
                )
            except ValueError as err:  # a token variable that is not set, a broken mapping file
                raise ConfigError(setting_label("crm_token_env"), str(err)) from None
            self.crm_worker = DeliveryWorker(OutboxStore(sessionmaker), self.crm_connector)
            self.crm_worker.start()
        webhooks = None
        if settings.crm_webhook_secret is not None:
            shared = self.redis
            webhooks = make_webhook_app(
                crm,
                secret=settings.crm_webhook_secret.encode(),
                # Several hubs may sit behind the CRM's webhook address: the replay
                # memory must be theirs together, or a replay to the other one passes.
                seen_signatures=(
                    RedisSeenKeys(shared, namespace="signature", window_s=2 * WEBHOOK_TOLERANCE_S,
                                  hold_s=2 * WEBHOOK_TOLERANCE_S)
                    if shared is not None else None
                ),
                seen_event_ids=(
                    RedisSeenKeys(shared, namespace="event", window_s=EVENT_ID_WINDOW_S) if shared is not None else None
                ),
                unknown_customer=settings.crm_unknown_customer,
                default_region=settings.default_region,
            )
        self.media = MediaPorts(
            settings.sip_host if settings.sip_host not in ("0.0.0.0", "::") else "0.0.0.0",
            PortPairAllocator(settings.rtp_port_min, settings.rtp_port_max),
        )
        self.bindings = make_binding_store(settings.redis_url)
        registrar = RegistrarService(
            Registrar(
                RegistrarConfig(
                    realm=settings.sip_realm,
                    aor_domain=settings.sip_realm,
                    algorithms=cast(tuple[Algorithm, ...], settings.sip_digest_algorithms),
                ),
                nonces=NonceIssuer(load_secret_key(settings), NONCE_LIFETIME_S, realm=settings.sip_realm),
                lockout=LockoutPolicy(),
            ),
            self.bindings,
            lambda username: directory_store.sip_credentials(username, realm=settings.sip_realm),
        )
        self.recordings = recordings = RecordingService(
            # With the S3 store, the recordings dir is the spool files wait in until uploaded.
            store=RecordingStore(
                sessionmaker, FileStorage(settings.effective_recordings_dir), s3_storage_from_settings(settings)
            ),
            taps=_LateTaps(self),
            policies=await PolicyStore(sessionmaker).all(),
            default_policy=RecordingPolicy.parse(settings.recording_default),
            publish=center.publish,
            file_format=settings.recording_format,
        )
        recordings.resume_uploads()
        if settings.recording_purge_every_s > 0:
            self.purge_job = PurgeJob(recordings.store, every_s=settings.recording_purge_every_s)
            self.purge_job.start()
        center.recordings = recordings
        self.voice = VoiceService(
            endpoint=None,
            flows=FlowTable(directory.numbers, announcing_queues=recordings.announcing_queues(list(directory.queues))),
            media=self.media,
            sink=center,
            advertised_host=settings.advertised_address,
            answer_delay_s=self.answer_delay_s,
            registrar=registrar,
            phones=self._phones_of,
            rtp_timeout_s=self.rtp_timeout_s if self.rtp_timeout_s is not None else settings.rtp_timeout_s,
            trunk=parse_trunk(settings.sip_trunk) if settings.sip_trunk else None,
        )
        if settings.recording_notice:
            self.voice.notice_sound = Path(settings.recording_notice)
        self.overload = OverloadGuard(
            self.voice,
            OverloadPolicy(
                OverloadLimits.from_settings(
                    lag_ms=settings.overload_lag_ms,
                    max_setup=settings.overload_max_setup,
                    retry_after_s=settings.overload_retry_after_s,
                )
            ),
        )
        self.sip = SipEndpoint(
            TransactionLayer(allowed_methods=frozenset(ALLOWED_METHODS), t1=self.sip_t1_s), self.overload
        )
        self.voice.endpoint = self.overload.endpoint = self.sip
        center.attach_voice(self.voice)
        # UDP, then TCP on the same port number (RFC 3261 §18: a UA listens on both).
        self.sip_address = await self.sip.start(settings.sip_host, settings.sip_port)
        self.voice.start_watchdog()
        self.overload.start()

        app = make_app(
            sessions=sessions,
            center=center,
            directory=directory_store,
            registry=self.registry,
            health=self.health,
            webhooks=webhooks,
            outbox=OutboxStore(sessionmaker),
            wake_outbox=self.crm_worker.wake if self.crm_worker is not None else (lambda: None),
            auth=self.auth,
            redis=self.redis,  # login failures counted for every hub process together
        )
        app[ROUTING_ADMIN] = self.routing_admin
        app.on_shutdown.append(close_websockets)
        self.http_runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self.http_runner.setup()
        site = web.TCPSite(self.http_runner, settings.http_host, settings.http_port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None) or []
        self.http_address = (settings.http_host, sockets[0].getsockname()[1] if sockets else settings.http_port)
        self.registry.register(_HubCollector(self))

    async def _shared_routing_store(self, router: Router) -> RedisRoutingStore:
        """Join the routing state the hubs share in Redis (created from this hub's
        configuration when no hub has run yet). Facts applied before the center exists
        are history: nothing of this hub's is in them."""
        assert self.redis is not None  # the setting needs CTIHUB_REDIS_URL

        def applied(entry: Applied) -> None:
            if self.center is not None and self.center.shared:
                self.center.routing_applied(entry)

        return await RedisRoutingStore.open(self.redis, lambda: router, namespace=self.routing_namespace, on_applied=applied)

    async def _share_routing(self, center: ContactCenter, model: Effective) -> None:
        """Start the fact queue and the link to the other hubs, then bring the shared state
        to this hub's configuration (nothing is submitted when it is already there)."""
        assert self.redis is not None and self.routing_store is not None
        hub_id = uuid.uuid4().hex[:12]

        def envelope(item: object) -> None:
            if isinstance(item, ToAgent):
                center.from_other_hub(item)
            elif isinstance(item, AgentRequest):
                center.request_from_other_hub(item)
            elif self.routing_facts is not None:
                self.routing_facts.wake()  # a nudge: another hub logged facts

        self.routing_link = link = HubLink(
            self.redis, channel=f"{{{self.routing_namespace}}}:hubs", hub_id=hub_id, on_envelope=envelope
        )
        await link.start()
        self.routing_facts = facts = FactQueue(self.routing_store, after_submit=link.nudge)
        center.attach_shared(facts, link)
        center.on_config_changed = self._reload_routing_soon
        facts.start()
        router = self.routing_store.router
        if router.max_missed_offers != model.config.max_missed_offers:
            log.warning(
                "routing: the shared state keeps max_missed_offers=%s; this hub's configuration says %s "
                "(it cannot change while hubs share routing)", router.max_missed_offers, model.config.max_missed_offers,
            )
        rules_before = tuple(rule_from(r) for r in export_state(router)["rules"])
        await center.apply_routing_facts(
            change_facts(router, model.config, time.time(), rules_before=rules_before), model.config
        )
        log.info("routing shared through Redis (namespace %r) as hub %s", self.routing_namespace, hub_id)

    def _reload_routing_soon(self) -> None:
        """Another hub changed the routing configuration: its document is in the
        database already (saved before applied); this hub's copy follows."""
        if self.routing_admin is not None:
            task = asyncio.create_task(self.routing_admin.reload())
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

    async def _routing_model(
        self, store: RoutingConfigStore, directory: Directory
    ) -> tuple[Effective, str, SavedRouting | None]:
        """The routing configuration to start with: the copy an admin saved through the
        API, else the file of CTIHUB_ROUTING_CONFIG ("demo": the shipped one, which the
        demo contact center uses unless told otherwise; "directory": none), else the
        directory alone. A bad one stops start-up with one line naming the setting and
        the field path."""
        choice = self.settings.routing_config or ("demo" if self.settings.demo else None)
        if choice == "directory":
            choice = None
        saved = await store.load()
        path = DEMO_ROUTING_FILE if choice == "demo" else Path(choice) if choice else None
        if saved is not None:
            source = f"the copy saved in the database (revision {saved.revision})"
        else:
            source = str(path) if path is not None else "the directory"
        try:
            if saved is not None:
                document = saved.document
            else:
                document = read_routing_file(path) if path is not None else {}
            model = effective(document, directory, reservation_timeout_s=self.offer_timeout_s, strict=False)
        except (RoutingFileError, RoutingConfigError) as err:
            raise ConfigError(setting_label("routing_config"), f"{source}: {err}") from None
        for agent_id in model.dropped:
            log.warning("routing configuration from %s names agent %r, who is not in the directory: ignored", source, agent_id)
        log.info("routing configuration from %s", source)
        return model, source, saved

    async def _phones_of(self, agent_id: str) -> list[Binding]:
        """The agent's registered phones (any domain they registered under)."""
        assert self.bindings is not None
        return await self.bindings.lookup(phone_aor(agent_id, self.settings.sip_realm), time.time())

    async def health(self) -> dict[str, object]:
        database = False
        if self.engine is not None:
            try:
                async with self.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
                database = True
            except Exception as exc:  # noqa: BLE001 - reported, not raised: /healthz must answer
                log.warning("database health check failed: %s", exc)
        return {
            "sip": self.sip is not None and self.sip.running,
            "http": self.http_runner is not None,
            "database": database,
            "bus": "redis" if self.settings.redis_url else "in-process",
            "active_calls": self.voice.active_calls if self.voice else 0,
        }

    async def stop(self) -> None:
        """Calls in progress get a BYE, websockets a close frame, then everything closes."""
        if self.voice is not None:
            self.voice.stop_watchdog()
        if self.overload is not None:
            self.overload.stop()
        if self.voice is not None:
            self.voice.hang_up_all()
            deadline = asyncio.get_running_loop().time() + SHUTDOWN_BYE_WAIT_S
            while self.voice.active_calls and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            await self.voice.wait_idle()
        if self.http_runner is not None:
            await self.http_runner.cleanup()
        if self.center is not None:
            await self.center.drain()
        if self.routing_facts is not None:
            await self.routing_facts.close()
            if self.center is not None:
                await self.center.drain()  # what the last facts made the center do
        if self.routing_link is not None:
            await self.routing_link.close()
        if self.routing_store is not None:
            await self.routing_store.close()
        if self.purge_job is not None:
            await self.purge_job.stop()
        if self.recordings is not None:
            await self.recordings.drain()
        if self.crm_worker is not None:
            await self.crm_worker.stop()
        if self.crm_connector is not None:
            await self.crm_connector.close()
        if self.sip is not None:
            self.sip.close()
            await self.sip.wait_closed()
        if self.media is not None:
            self.media.close_all()
        if self.bus is not None:
            await self.bus.close()
        if self.bindings is not None:
            await self.bindings.close()
        if self.profile_cache is not None:
            await self.profile_cache.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self.engine is not None:
            await self.engine.dispose()

    def banner(self) -> str:
        assert self.sip_address and self.http_address
        sip_host, sip_port = self.sip_address
        http_host, http_port = self.http_address
        lines = [
            f"CTI Hub listening: SIP udp:{sip_host}:{sip_port} and tcp:{sip_host}:{sip_port}, HTTP http://{http_host}:{http_port}",
            f"  database: {self.settings.effective_database_url.split('@')[-1]}",
            f"  state and bus: {'Redis ' + self.settings.redis_url if self.settings.redis_url else 'in-process'}",
            f"  routing: {'shared through Redis' if self.settings.routing_store == 'redis' else 'in this process'}",
        ]
        if self.directory is not None:
            for number, queue in sorted(self.directory.numbers.items()):
                lines.append(f"  dial {number} -> queue {queue}")
        if self.settings.demo:
            agents = ", ".join(u.username for u in DEMO_USERS if u.role == "agent")
            lines.append(f"  demo logins (password '{DEMO_PASSWORD}', demo only): {agents}; super1, qa1, admin")
        return "\n".join(lines)


class _HubCollector:
    """Prometheus metrics read from the live services at scrape time."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        hub = self._hub
        calls = GaugeMetricFamily("ctihub_active_calls", "Calls with a live caller leg")
        calls.add_metric([], hub.voice.active_calls if hub.voice else 0)
        contacts = GaugeMetricFamily("ctihub_active_contacts", "Contacts between arrival and their written interaction")
        contacts.add_metric([], hub.center.active_contacts if hub.center else 0)
        rtp = GaugeMetricFamily("ctihub_rtp_endpoints_open", "RTP endpoints (port pairs) open")
        rtp.add_metric([], hub.media.open_endpoints if hub.media else 0)
        relayed = CounterMetricFamily("ctihub_rtp_packets_relayed", "RTP packets sent on by the media relay (closed legs)")
        relayed.add_metric([], hub.media.packets_sent_total if hub.media else 0)
        sip_in = CounterMetricFamily("ctihub_sip_datagrams_received", "SIP messages received (UDP datagrams and TCP)")
        sip_in.add_metric([], hub.sip.datagrams_received if hub.sip else 0)
        sip_failed = CounterMetricFamily("ctihub_sip_datagrams_failed", "SIP datagrams whose processing raised")
        sip_failed.add_metric([], hub.sip.datagrams_failed if hub.sip else 0)
        tcp = GaugeMetricFamily("ctihub_sip_tcp_connections", "SIP TCP connections open")
        tcp.add_metric([], hub.sip.tcp.connection_count if hub.sip and hub.sip.tcp else 0)
        agents = GaugeMetricFamily("ctihub_agents", "Agents by state", labels=["state"])
        if hub.center is not None and hub.directory is not None:
            counts = {state.value: 0 for state in AgentState}
            for username in hub.directory.agents:
                counts[hub.center.router.agent_state(username).value] += 1
            for state, count in counts.items():
                agents.add_metric([state], count)
        return [calls, contacts, rtp, relayed, sip_in, sip_failed, tcp, agents, *_sip_load_metrics(hub)]


def _sip_load_metrics(hub: Hub) -> list[Metric]:
    """Overload control and what it reads, and what is left in the SIP stack."""
    guard, sip = hub.overload, hub.sip
    refused = CounterMetricFamily("ctihub_sip_invites_refused", "New calls refused with 503 because the hub was overloaded")
    refused.add_metric([], guard.refused_total if guard else 0)
    overloaded = GaugeMetricFamily("ctihub_sip_overloaded", "1 while new calls are refused for overload")
    overloaded.add_metric([], 1 if guard and guard.overloaded else 0)
    lag = GaugeMetricFamily("ctihub_event_loop_lag_seconds", "Smoothed lag of the event loop, as overload control reads it")
    lag.add_metric([], guard.loop_lag_s if guard else 0.0)
    setup = GaugeMetricFamily("ctihub_sip_calls_in_setup", "New calls whose INVITE awaits its final response")
    setup.add_metric([], guard.calls_in_setup if guard else 0)
    drops = CounterMetricFamily("ctihub_sip_udp_receive_drops", "Datagrams the kernel dropped at the SIP UDP socket (Linux)")
    drops.add_metric([], guard.udp_drops if guard else 0)
    transactions = GaugeMetricFamily("ctihub_sip_transactions", "SIP transactions in progress (server and client)")
    transactions.add_metric([], sip.layer.active_transactions if sip else 0)
    legs = GaugeMetricFamily("ctihub_agent_legs", "Agents' call legs alive (ringing, answered or winding down)")
    legs.add_metric([], hub.voice.agent_legs_alive if hub.voice else 0)
    return [refused, overloaded, lag, setup, drops, transactions, legs]
