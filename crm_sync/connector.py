"""The generic REST connector: sends one outbox message to the external CRM over HTTP.

Owns the HTTP exchange (base URL, auth header, timeouts, the Idempotency-Key header)
and the reading of the CRM's answer into delivered / transient / permanent. Must
never retry by itself or sleep (the delivery worker and the retry policy decide
that), never hold a secret in a file (the token comes from an environment variable
named in the settings), and never log a request body (it carries personal data).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp

from crm_sync.mapping import FieldMapping, UnmappableMessage, parse_mapping
from crm_sync.outbox import OutboxEntry
from crm_sync.retry import Failure

DEFAULT_MAPPING = Path(__file__).parent / "mappings" / "generic.yaml"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# 4xx answers that say "not now" rather than "never".
_TRANSIENT_4XX = frozenset({408, 425, 429})
_ERROR_SNIPPET = 300


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """What one delivery attempt came to; `failure` is None when delivered."""

    failure: Failure | None
    status: int | None = None
    error: str = ""
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        return self.failure is None


DELIVERED = SendResult(failure=None)


class Connector(Protocol):
    async def send(self, message: OutboxEntry) -> SendResult: ...


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # the HTTP-date form is rare for APIs; the backoff covers it
    return seconds if seconds >= 0 else None


def classify(status: int, *, idempotency_key: str, echoed_key: str | None, retry_after: str | None,
             body: str = "") -> SendResult:
    """The meaning of the CRM's HTTP answer to a message sent with `idempotency_key`.

    2xx: delivered. 409 Conflict: the CRM already has a message with this key, so an
    earlier try got through and only its answer was lost: delivered, unless the CRM
    echoes a different key (then the conflict is about something else: permanent).
    408, 425, 429 and 5xx: transient (Retry-After honoured). Any other answer,
    redirects included: permanent, since sending the same request again cannot help.
    """
    snippet = f"HTTP {status}: {body[:_ERROR_SNIPPET]}".rstrip(": ")
    if 200 <= status < 300:
        return DELIVERED
    if status == 409:
        if echoed_key is None or echoed_key == idempotency_key:
            return SendResult(failure=None, status=status)
        return SendResult(failure=Failure.PERMANENT, status=status, error=snippet)
    if status in _TRANSIENT_4XX or status >= 500:
        return SendResult(failure=Failure.TRANSIENT, status=status, error=snippet,
                          retry_after_s=_retry_after(retry_after))
    return SendResult(failure=Failure.PERMANENT, status=status, error=snippet)


def load_mapping(path: str | Path | None = None) -> FieldMapping:
    """The mapping in `path` (default: the shipped `mappings/generic.yaml`)."""
    return parse_mapping(Path(path or DEFAULT_MAPPING).read_text(encoding="utf-8"))


class RestConnector:
    """One aiohttp client session to one CRM; `close()` it (or use `async with`)."""

    def __init__(
        self,
        *,
        base_url: str,
        mapping: FieldMapping | None = None,
        token_env: str | None = None,
        auth_header: str = "Authorization",
        auth_scheme: str = "Bearer",
        timeout_s: float = 10.0,
        connect_timeout_s: float = 3.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """`token_env` names the environment variable holding the API token (None: no
        auth header); a named but unset variable is an error now rather than a run of
        401s later. `timeout_s` bounds a whole exchange; keep it well under the
        worker's lease so a slow CRM cannot make two workers send the same message.
        """
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        self._base_url = base_url.rstrip("/")
        self._mapping = mapping or load_mapping()
        self._headers: dict[str, str] = {"Content-Type": "application/json", "User-Agent": "ctihub-crm-sync/1"}
        if token_env is not None:
            token = (environ if environ is not None else os.environ).get(token_env, "")
            if not token:
                raise ValueError(f"environment variable {token_env} (the CRM API token) is not set")
            self._headers[auth_header] = f"{auth_scheme} {token}".strip() if auth_scheme else token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the headers: they hold the token
        return f"RestConnector(base_url={self._base_url!r})"

    async def __aenter__(self) -> RestConnector:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    async def send(self, message: OutboxEntry) -> SendResult:
        try:
            request = self._mapping.render(message.kind, message.payload)
        except UnmappableMessage as exc:
            return SendResult(failure=Failure.PERMANENT, error=f"unmappable: {exc}")
        try:
            async with self._client().request(
                request.method, self._base_url + request.path, json=request.body,
                headers={IDEMPOTENCY_HEADER: message.idempotency_key}, allow_redirects=False,
            ) as response:
                text = "" if 200 <= response.status < 300 else await response.text(errors="replace")
                return classify(
                    response.status, idempotency_key=message.idempotency_key,
                    echoed_key=response.headers.get(IDEMPOTENCY_HEADER),
                    retry_after=response.headers.get("Retry-After"), body=text,
                )
        except asyncio.TimeoutError:
            return SendResult(failure=Failure.TRANSIENT, error="timed out waiting for the CRM")
        except aiohttp.ClientError as exc:
            return SendResult(failure=Failure.TRANSIENT, error=f"{type(exc).__name__}: {exc}"[:_ERROR_SNIPPET])


__all__ = ["Connector", "DEFAULT_MAPPING", "DELIVERED", "IDEMPOTENCY_HEADER", "RestConnector", "SendResult",
           "classify", "load_mapping"]
