"""API errors: a status, a stable slug and the field at fault, as JSON.

A route either returns `api_error(...)` or raises `ApiError` from anywhere below it
(`cti.web.guard.require` does); the `api_errors` middleware turns the exception into
the same JSON answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web


def api_error(
    status: int,
    code: str,
    detail: str,
    *,
    field: str | None = None,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"error": code, "detail": detail}
    if field is not None:
        body["field"] = field
    if extra:
        body.update(extra)
    return web.json_response(body, status=status, headers=dict(headers) if headers else None)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return api_error(self.status, self.code, self.detail, field=self.field, extra=self.extra, headers=self.headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        return err.response()
