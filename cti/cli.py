"""The `ctihub` command."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys

from cti.config import ConfigError, Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctihub", description="CTI Hub: calls, routing and CRM screen pops")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the hub")
    serve.add_argument("--data-dir", help="where the SQLite database and files live (default ./var)")
    serve.add_argument("--sip-host", help="SIP UDP listen address (default 0.0.0.0)")
    serve.add_argument("--sip-port", help="SIP UDP port (default 5060)")
    serve.add_argument("--http-host", help="HTTP listen address (default 0.0.0.0)")
    serve.add_argument("--http-port", help="HTTP port (default 8080)")
    serve.add_argument("--database-url", help="SQLAlchemy URL (default SQLite in the data dir)")
    serve.add_argument("--redis-url", help="Redis URL for shared state and bus (default: in-process)")
    serve.add_argument("--rtp-ports", help="RTP port range, e.g. 20000-20999")
    serve.add_argument("--rtp-timeout", help="seconds without RTP before a leg is hung up (default 60; 0: never)")
    serve.add_argument("--sip-realm", help="digest realm for phones' registrations (default ctihub)")
    serve.add_argument("--sip-trunk", help="host:port of the carrier's SIP gateway for outbound calls (default: none)")
    serve.add_argument("--sip-digest-algorithms", help="digest algorithms offered, in order (default SHA-256,MD5)")
    serve.add_argument("--overload-lag-ms", help="event-loop lag at which new calls get 503 (default 250; 0: off)")
    serve.add_argument("--overload-max-setup", help="calls in set-up at which new calls get 503 (default 200; 0: off)")
    serve.add_argument("--overload-retry-after", help="the Retry-After seconds of that 503 (default 5)")
    serve.add_argument("--secret-key", help="key for signed nonces; several hubs must share it (default: generated)")
    serve.add_argument("--crm-url", help="the external CRM's REST base URL (unset: no outbound sync)")
    serve.add_argument("--crm-token-env", help="name of the variable holding the CRM's token (default CTIHUB_CRM_TOKEN)")
    serve.add_argument("--crm-mapping", help="field mapping file (default: crm_sync/mappings/generic.yaml)")
    serve.add_argument("--crm-webhook-secret", help="HMAC secret of the CRM's webhooks (prefer the variable)")
    serve.add_argument("--crm-unknown-customer", help="create or reject updates for unknown customers")
    serve.add_argument("--recordings-dir", help="where call recordings are written (default <data dir>/recordings)")
    serve.add_argument("--recording-default", help="policy of queues without one: always, never or on_demand")
    serve.add_argument("--recording-notice", help="WAV played before recorded queues (default: the shipped notice)")
    serve.add_argument("--recording-purge-every", help="seconds between the hub's retention purges (default 86400; 0: off)")
    serve.add_argument("--recording-format", help="recordings' file format: wav (default) or flac (lossless, smaller)")
    serve.add_argument("--recordings-store", help="file (default: under the recordings dir) or s3")
    serve.add_argument("--s3-endpoint", help="the S3-compatible store's URL (with --recordings-store s3)")
    serve.add_argument("--s3-bucket", help="the bucket recordings go to")
    serve.add_argument("--s3-prefix", help="key prefix in the bucket (default recordings/)")
    serve.add_argument("--s3-region", help="the store's region (default us-east-1)")
    serve.add_argument("--s3-access-key-env", help="name of the variable holding the access key (default AWS_ACCESS_KEY_ID)")
    serve.add_argument("--s3-secret-key-env", help="name of the variable holding the secret key (default AWS_SECRET_ACCESS_KEY)")
    serve.add_argument("--routing-config", help="routing model: a YAML file, demo (the --demo default) or directory")
    serve.add_argument("--routing-store", help="process (default: this hub's own routing) or redis (shared by several hubs)")
    serve.add_argument("--public-address", help="address written into SDP and Contact")
    serve.add_argument("--default-region", help="region for national phone numbers (default GB)")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    serve.add_argument("--demo", action="store_true", default=None, help="load the demo contact center and customers")
    serve.add_argument("--answer-delay", type=float, default=0.0, help="seconds of ringing before the hub answers (default 0)")
    serve.add_argument("--offer-timeout", type=float, default=20.0, help="seconds an agent has to accept an offer")
    from recordings.cli import add_parser as add_recordings_parser

    add_recordings_parser(commands)
    from cti.directory.cli import add_parser as add_users_parser

    add_users_parser(commands)
    from crm_sync.cli import add_parser as add_crm_parser

    add_crm_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        flags = {k: v for k, v in vars(args).items() if k not in ("command", "answer_delay", "offer_timeout")}
        try:
            settings = load_settings(flags)
        except ConfigError as err:
            print(f"ctihub: {err}", file=sys.stderr)
            return 2
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return asyncio.run(_serve(settings, answer_delay_s=args.answer_delay, offer_timeout_s=args.offer_timeout))
    if args.command == "recordings":
        from recordings.cli import run

        return run(args)
    if args.command == "users":
        from cti.directory.cli import run as run_users

        return run_users(args)
    if args.command in ("crm", "demo-data"):
        from crm_sync.cli import run as run_crm

        return run_crm(args)
    return 2


async def _serve(settings: Settings, *, answer_delay_s: float, offer_timeout_s: float) -> int:
    from cti.app import Hub

    hub = Hub(settings, answer_delay_s=answer_delay_s, offer_timeout_s=offer_timeout_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await hub.start()
    except ConfigError as err:
        print(f"ctihub: {err}", file=sys.stderr)
        await hub.stop()
        return 2
    except OSError as err:
        print(f"ctihub: cannot start: {err}", file=sys.stderr)
        await hub.stop()
        return 1
    # What start-up built (directory, routing, caches, the code itself) lives as long as
    # the hub: out of the collector's sight, a full collection under load takes a few
    # milliseconds instead of a hundred, which every call in flight would wait for.
    gc.collect()
    gc.freeze()
    print(hub.banner(), flush=True)
    await stop.wait()
    logging.getLogger("cti").info("shutting down")
    await hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
