"""API errors: a status, a stable slug and the field at fault, as JSON."""

from __future__ import annotations

from typing import Any

from aiohttp import web


def api_error(status: int, code: str, detail: str, *, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": code, "detail": detail}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status)
