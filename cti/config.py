"""Settings of a hub process, read from command-line flags, then `CTIHUB_*` environment
variables, then defaults. Validation is pure: a bad value raises `ConfigError` naming
the setting, which the CLI prints as one line before exiting.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


class ConfigError(ValueError):
    """A setting has a bad value; `str()` is the one line to show the operator."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"invalid setting {setting}: {problem}")
        self.setting = setting
        self.problem = problem


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    data_dir: Path = Path("./var")
    sip_host: str = "0.0.0.0"
    sip_port: int = 5060
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    database_url: str = ""  # empty: SQLite in the data dir
    redis_url: str | None = None  # None: shared state and bus in the process
    rtp_timeout_s: float = 60.0  # a leg whose RTP stops this long is hung up; 0: never
    rtp_port_min: int = 20000
    rtp_port_max: int = 20999
    # The address written into SDP and Contact; derived from sip_host when it is concrete.
    public_address: str = ""
    default_region: str = "GB"
    # The carrier's SIP gateway (host:port) for outbound legs: click-to-dial and transfers
    # to outside numbers; empty: none (those requests are refused, naming this setting).
    sip_trunk: str = ""
    sip_realm: str = "ctihub"
    # Digest algorithms offered to phones, in preference order (RFC 8760: SHA-256 first);
    # "MD5" alone for phone fleets that know nothing else.
    sip_digest_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    # SIP overload control (cti.sip.overload): new calls are refused with 503 while the
    # event loop lags this much or this many calls are in set-up; 0 turns a signal off.
    overload_lag_ms: float = 250.0
    overload_max_setup: int = 200
    overload_retry_after_s: int = 5  # the Retry-After of the 503
    secret_key: str = ""  # empty: generated once into the data dir (see cti.secrets)
    # The external CRM: interactions go out through the outbox when a URL is set; the
    # token is read from the environment variable named here, never from a file.
    crm_url: str | None = None
    crm_token_env: str = "CTIHUB_CRM_TOKEN"
    crm_mapping: str | None = None  # None: crm_sync/mappings/generic.yaml
    crm_webhook_secret: str | None = None  # set: POST /webhooks/crm accepts signed changes
    crm_unknown_customer: str = "create"
    # Recordings: where files go (empty: <data dir>/recordings), the policy of queues
    # that have none of their own, and the notice played before a recorded queue.
    recordings_dir: str = ""
    recording_default: str = "always"
    recording_notice: str | None = None  # None: the shipped cti/media/sounds/recording_notice.wav
    recording_purge_every_s: float = 86400.0  # the hub's own retention purge; 0: off (run the CLI instead)
    # The recordings' file format (wav, or flac: lossless, about half the size) and
    # store: files under recordings_dir, or an S3-compatible bucket (recordings_dir
    # is then the spool that files wait in until uploaded). The S3 keys are read from
    # the environment variables named here, never from a file or a flag.
    recording_format: str = "wav"
    recordings_store: str = "file"
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_prefix: str = "recordings/"
    s3_region: str = "us-east-1"
    s3_access_key_env: str = "AWS_ACCESS_KEY_ID"
    s3_secret_key_env: str = "AWS_SECRET_ACCESS_KEY"
    # The routing model (queues' limits, proficiencies, rules): a YAML file, "demo" (the
    # shipped routing/demo.yaml, the default of the demo contact center) or "directory"
    # (the directory's skills alone, the default otherwise); a copy saved through the
    # API in the database wins over all of them (see cti.routing_config).
    routing_config: str | None = None
    # Where the routing state lives: "process" (this hub's own router) or "redis" (one
    # state shared by every hub on the Redis of redis_url; see docs/routing.md).
    routing_store: str = "process"
    demo: bool = False
    log_level: str = "INFO"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'ctihub.db'}"

    @property
    def effective_recordings_dir(self) -> Path:
        return Path(self.recordings_dir) if self.recordings_dir else self.data_dir / "recordings"

    @property
    def advertised_address(self) -> str:
        if self.public_address:
            return self.public_address
        return "127.0.0.1" if self.sip_host in ("0.0.0.0", "::", "") else self.sip_host


# (setting name, flag, environment variable)
_SETTINGS = {
    "data_dir": ("--data-dir", "CTIHUB_DATA_DIR"),
    "sip_host": ("--sip-host", "CTIHUB_SIP_HOST"),
    "sip_port": ("--sip-port", "CTIHUB_SIP_PORT"),
    "http_host": ("--http-host", "CTIHUB_HTTP_HOST"),
    "http_port": ("--http-port", "CTIHUB_HTTP_PORT"),
    "database_url": ("--database-url", "CTIHUB_DATABASE_URL"),
    "redis_url": ("--redis-url", "CTIHUB_REDIS_URL"),
    "rtp_ports": ("--rtp-ports", "CTIHUB_RTP_PORTS"),
    "rtp_timeout": ("--rtp-timeout", "CTIHUB_RTP_TIMEOUT"),
    "public_address": ("--public-address", "CTIHUB_PUBLIC_ADDRESS"),
    "default_region": ("--default-region", "CTIHUB_DEFAULT_REGION"),
    "sip_realm": ("--sip-realm", "CTIHUB_SIP_REALM"),
    "sip_trunk": ("--sip-trunk", "CTIHUB_SIP_TRUNK"),
    "sip_digest_algorithms": ("--sip-digest-algorithms", "CTIHUB_SIP_DIGEST_ALGORITHMS"),
    "overload_lag_ms": ("--overload-lag-ms", "CTIHUB_OVERLOAD_LAG_MS"),
    "overload_max_setup": ("--overload-max-setup", "CTIHUB_OVERLOAD_MAX_SETUP"),
    "overload_retry_after": ("--overload-retry-after", "CTIHUB_OVERLOAD_RETRY_AFTER"),
    "secret_key": ("--secret-key", "CTIHUB_SECRET_KEY"),
    "crm_url": ("--crm-url", "CTIHUB_CRM_URL"),
    "crm_token_env": ("--crm-token-env", "CTIHUB_CRM_TOKEN_ENV"),
    "crm_mapping": ("--crm-mapping", "CTIHUB_CRM_MAPPING"),
    "crm_webhook_secret": ("--crm-webhook-secret", "CTIHUB_CRM_WEBHOOK_SECRET"),
    "crm_unknown_customer": ("--crm-unknown-customer", "CTIHUB_CRM_UNKNOWN_CUSTOMER"),
    "recordings_dir": ("--recordings-dir", "CTIHUB_RECORDINGS_DIR"),
    "recording_default": ("--recording-default", "CTIHUB_RECORDING_DEFAULT"),
    "recording_notice": ("--recording-notice", "CTIHUB_RECORDING_NOTICE"),
    "recording_purge_every": ("--recording-purge-every", "CTIHUB_RECORDING_PURGE_EVERY"),
    "recording_format": ("--recording-format", "CTIHUB_RECORDING_FORMAT"),
    "recordings_store": ("--recordings-store", "CTIHUB_RECORDINGS_STORE"),
    "s3_endpoint": ("--s3-endpoint", "CTIHUB_S3_ENDPOINT"),
    "s3_bucket": ("--s3-bucket", "CTIHUB_S3_BUCKET"),
    "s3_prefix": ("--s3-prefix", "CTIHUB_S3_PREFIX"),
    "s3_region": ("--s3-region", "CTIHUB_S3_REGION"),
    "s3_access_key_env": ("--s3-access-key-env", "CTIHUB_S3_ACCESS_KEY_ENV"),
    "s3_secret_key_env": ("--s3-secret-key-env", "CTIHUB_S3_SECRET_KEY_ENV"),
    "routing_config": ("--routing-config", "CTIHUB_ROUTING_CONFIG"),
    "routing_store": ("--routing-store", "CTIHUB_ROUTING_STORE"),
    "demo": ("--demo", "CTIHUB_DEMO"),
    "log_level": ("--log-level", "CTIHUB_LOG_LEVEL"),
}


def setting_label(name: str) -> str:
    flag, env = _SETTINGS[name]
    return f"{env} ({flag})"


def load_settings(flags: Mapping[str, object], environ: Mapping[str, str] | None = None) -> Settings:
    """Merge flags (None = not given) over environment over defaults, and validate."""
    env = os.environ if environ is None else environ

    def raw(name: str) -> str | None:
        value = flags.get(name)
        if value is not None:
            return str(value)
        return env.get(_SETTINGS[name][1])

    def text(name: str, default: str) -> str:
        value = raw(name)
        return default if value is None else value.strip()

    rtp_min, rtp_max = _port_range("rtp_ports", text("rtp_ports", "20000-20999"))
    demo_flag = flags.get("demo")
    demo = bool(demo_flag) if demo_flag else _boolean("demo", env.get("CTIHUB_DEMO", "false"))
    redis_url = text("redis_url", "") or None
    database_url = text("database_url", "")
    settings = Settings(
        data_dir=Path(text("data_dir", "./var") or "./var"),
        sip_host=_host("sip_host", text("sip_host", "0.0.0.0")),
        sip_port=_port("sip_port", text("sip_port", "5060")),
        http_host=_host("http_host", text("http_host", "0.0.0.0")),
        http_port=_port("http_port", text("http_port", "8080")),
        database_url=_database_url(database_url) if database_url else "",
        redis_url=_redis_url(redis_url) if redis_url else None,
        rtp_timeout_s=_seconds("rtp_timeout", text("rtp_timeout", "60")),
        rtp_port_min=rtp_min,
        rtp_port_max=rtp_max,
        public_address=_host("public_address", text("public_address", "")) if text("public_address", "") else "",
        default_region=_region(text("default_region", "GB")),
        sip_realm=_realm(text("sip_realm", "ctihub")),
        sip_trunk=_sip_trunk(text("sip_trunk", "")),
        sip_digest_algorithms=_algorithms(text("sip_digest_algorithms", "SHA-256,MD5")),
        overload_lag_ms=_number("overload_lag_ms", text("overload_lag_ms", "250"), 0, 60_000, "milliseconds"),
        overload_max_setup=int(_number("overload_max_setup", text("overload_max_setup", "200"), 0, 100_000, "calls", whole=True)),
        overload_retry_after_s=int(
            _number("overload_retry_after", text("overload_retry_after", "5"), 1, 3600, "seconds", whole=True)
        ),
        secret_key=_secret(text("secret_key", "")),
        crm_url=_http_url("crm_url", text("crm_url", "")) or None,
        crm_token_env=_env_name("crm_token_env", text("crm_token_env", "CTIHUB_CRM_TOKEN")),
        crm_mapping=_existing_file("crm_mapping", text("crm_mapping", "")) or None,
        crm_webhook_secret=_webhook_secret(text("crm_webhook_secret", "")) or None,
        crm_unknown_customer=_choice("crm_unknown_customer", text("crm_unknown_customer", "create"), ("create", "reject")),
        recordings_dir=text("recordings_dir", ""),
        recording_default=_choice(
            "recording_default", text("recording_default", "always").replace("-", "_"), ("always", "never", "on_demand")
        ),
        recording_notice=_notice_wav(text("recording_notice", "")) or None,
        recording_purge_every_s=_seconds("recording_purge_every", text("recording_purge_every", "86400")),
        recording_format=_choice("recording_format", text("recording_format", "wav").lower(), ("wav", "flac")),
        recordings_store=_choice("recordings_store", text("recordings_store", "file").lower(), ("file", "s3")),
        s3_endpoint=_http_url("s3_endpoint", text("s3_endpoint", "")),
        s3_bucket=_s3_bucket(text("s3_bucket", "")),
        s3_prefix=_s3_prefix(text("s3_prefix", "recordings/")),
        s3_region=_s3_region(text("s3_region", "us-east-1")),
        s3_access_key_env=_env_name("s3_access_key_env", text("s3_access_key_env", "AWS_ACCESS_KEY_ID")),
        s3_secret_key_env=_env_name("s3_secret_key_env", text("s3_secret_key_env", "AWS_SECRET_ACCESS_KEY")),
        routing_config=_routing_config(text("routing_config", "")) or None,
        routing_store=_choice("routing_store", text("routing_store", "process").lower(), ("process", "redis")),
        demo=demo,
        log_level=_log_level(text("log_level", "INFO")),
    )
    _data_dir_usable(settings.data_dir)
    _s3_complete(settings)
    _routing_store_usable(settings)
    return settings


def _port(name: str, value: str) -> int:
    if not re.fullmatch(r"\d{1,5}", value) or int(value) > 65535:
        raise ConfigError(setting_label(name), f"{value!r} is not a port number (0-65535)")
    return int(value)


def _port_range(name: str, value: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{1,5})-(\d{1,5})", value)
    if not match:
        raise ConfigError(setting_label(name), f"{value!r} is not a port range like 20000-20999")
    low, high = int(match.group(1)), int(match.group(2))
    if not (1024 <= low <= high <= 65535):
        raise ConfigError(setting_label(name), f"{value!r} must lie within 1024-65535 with the low port first")
    if high - low < 1:
        raise ConfigError(setting_label(name), f"{value!r} holds fewer than 2 ports (RTP and RTCP need a pair)")
    return low, high


_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def _host(name: str, value: str) -> str:
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if _HOSTNAME.match(value):
        return value
    raise ConfigError(setting_label(name), f"{value!r} is neither an IP address nor a host name")


def _database_url(value: str) -> str:
    label = setting_label("database_url")
    try:
        url = make_url(value)
    except ArgumentError:
        raise ConfigError(label, f"{value!r} is not a database URL") from None
    if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise ConfigError(
            label, f"driver {url.drivername!r} is not supported; use sqlite+aiosqlite:// or postgresql+asyncpg://"
        )
    if url.drivername.startswith("postgresql") and not url.database:
        raise ConfigError(label, "the PostgreSQL URL names no database")
    return value


def _redis_url(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(setting_label("redis_url"), f"{value!r} is not a redis://, rediss:// or unix:// URL")
    if parsed.scheme != "unix" and not parsed.hostname:
        raise ConfigError(setting_label("redis_url"), f"{value!r} names no host")
    try:
        _ = parsed.port  # parsing it is the check
    except ValueError:
        raise ConfigError(setting_label("redis_url"), f"{value!r} has a bad port") from None
    return value


def _region(value: str) -> str:
    import phonenumbers

    region = value.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(setting_label("default_region"), f"{value!r} is not an ISO 3166 region code that phone numbers use")
    return region


def _sip_trunk(value: str) -> str:
    if not value:
        return ""
    from cti.calls.outbound import TrunkError, parse_trunk

    try:
        return str(parse_trunk(value))
    except TrunkError as err:
        raise ConfigError(setting_label("sip_trunk"), f"{err} (expected host:port of the carrier's SIP gateway)") from None


def _realm(value: str) -> str:
    if not value or any(ch in value for ch in '"\\\r\n') or len(value) > 128:
        raise ConfigError(setting_label("sip_realm"), f"{value!r} is not a usable digest realm (1-128 characters, no quotes)")
    return value


def _http_url(name: str, value: str) -> str:
    if not value:
        return ""
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(setting_label(name), f"{value!r} is not an http:// or https:// URL")
    return value


def _env_name(name: str, value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ConfigError(setting_label(name), f"{value!r} is not an environment variable name")
    return value


def _existing_file(name: str, value: str) -> str:
    if value and not Path(value).is_file():
        raise ConfigError(setting_label(name), f"{value!r} is not a readable file")
    return value


def _notice_wav(value: str) -> str:
    """The notice is played into calls as G.711: it must be 8 kHz mono 16-bit PCM WAV."""
    if not value:
        return value
    _existing_file("recording_notice", value)
    import wave

    try:
        with wave.open(value, "rb") as wav:
            shape = (wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), wav.getnframes())
    except (wave.Error, EOFError, OSError) as err:
        raise ConfigError(setting_label("recording_notice"), f"{value!r} is not a WAV file ({err})") from None
    if shape[:3] != (8000, 1, 2) or shape[3] == 0:
        raise ConfigError(
            setting_label("recording_notice"),
            f"{value!r} must be 8 kHz mono 16-bit PCM with some audio (sox in.wav -r 8000 -c 1 -b 16 out.wav)",
        )
    return value


def _routing_config(value: str) -> str:
    """A routing file is checked in full here (YAML, then every field), so that a typo
    stops start-up with the field's path instead of surfacing at the first call."""
    if value in ("", "demo", "directory"):
        return value
    from cti.routing_config import RoutingFileError, read_routing_file

    _existing_file("routing_config", value)
    try:
        read_routing_file(Path(value))
    except RoutingFileError as err:
        raise ConfigError(setting_label("routing_config"), f"{value}: {err}") from None
    return value


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _s3_bucket(value: str) -> str:
    if value and not _BUCKET.fullmatch(value):
        raise ConfigError(setting_label("s3_bucket"), f"{value!r} is not an S3 bucket name (3-63 of a-z 0-9 . -)")
    return value


def _s3_prefix(value: str) -> str:
    """Keys go under the prefix; "" is the bucket's top, otherwise it ends with "/"."""
    value = value.strip("/")
    if value and any(part in ("", ".", "..") for part in value.split("/")):
        raise ConfigError(setting_label("s3_prefix"), f"{value!r} is not a usable key prefix like recordings/")
    return f"{value}/" if value else ""


def _s3_region(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9-]{1,32}", value):
        raise ConfigError(setting_label("s3_region"), f"{value!r} is not a region name like eu-west-1")
    return value


def _s3_complete(settings: Settings) -> None:
    """The S3 store needs its endpoint and bucket."""
    if settings.recordings_store != "s3":
        return
    for name in ("s3_endpoint", "s3_bucket"):
        if not getattr(settings, name):
            raise ConfigError(setting_label(name), "must be set when CTIHUB_RECORDINGS_STORE is s3")


def _routing_store_usable(settings: Settings) -> None:
    """Shared routing state needs the Redis it is shared through."""
    if settings.routing_store == "redis" and not settings.redis_url:
        raise ConfigError(setting_label("routing_store"), "redis needs CTIHUB_REDIS_URL (--redis-url) to be set")


def _webhook_secret(value: str) -> str:
    if value and len(value) < 16:
        raise ConfigError(setting_label("crm_webhook_secret"), "must be at least 16 characters")
    return value


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(setting_label(name), f"{value!r} is not one of {', '.join(choices)}")
    return value


def _seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(setting_label(name), f"{value!r} is not a number of seconds") from None
    if not 0 <= seconds <= 86400:
        raise ConfigError(setting_label(name), f"{value!r} must lie between 0 (off) and 86400 seconds")
    return seconds


def _number(name: str, value: str, low: float, high: float, unit: str, *, whole: bool = False) -> float:
    try:
        number = int(value) if whole else float(value)
    except ValueError:
        raise ConfigError(setting_label(name), f"{value!r} is not a {'whole ' if whole else ''}number of {unit}") from None
    if not low <= number <= high:
        raise ConfigError(setting_label(name), f"{value!r} must lie between {low:g} and {high:g} {unit}")
    return number


def _algorithms(value: str) -> tuple[str, ...]:
    names = tuple(part.strip().upper() for part in value.split(",") if part.strip())
    unknown = [n for n in names if n not in ("SHA-256", "MD5")]
    if not names or unknown or len(set(names)) != len(names):
        raise ConfigError(
            setting_label("sip_digest_algorithms"), f"{value!r} must list SHA-256 and/or MD5, comma-separated, each once"
        )
    return names


def _secret(value: str) -> str:
    if value and len(value) < 32:
        raise ConfigError(setting_label("secret_key"), "must be at least 32 characters (or unset to generate one)")
    return value


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(setting_label("log_level"), f"{value!r} is not one of DEBUG, INFO, WARNING, ERROR")
    return level


def _boolean(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(setting_label(name), f"{value!r} is not a boolean (true/false)")


def _data_dir_usable(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise ConfigError(setting_label("data_dir"), f"{str(path)!r} exists and is not a directory")
