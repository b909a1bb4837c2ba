"""Routes of the routing configuration: queues, skills, agents and arrival rules.

Thin: each route checks `Permission.ROUTING_CONFIGURE`, reads its input and calls
`cti.routing_admin.RoutingAdmin`, which checks the change in full, saves it and applies
it to the live router. Invalid configuration answers 422 with the path of the field at
fault. The contract is the OpenAPI document of cti.web.routing_openapi, served at
GET /api/routing/openapi.json (and kept in docs/openapi/routing.json).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from cti.agents.sessions import Session
from cti.routing_admin import SECTIONS, ItemError, RoutingAdmin
from cti.web.auth import Permission
from cti.web.errors import ApiError
from cti.web.guard import require
from cti.web.routing_openapi import openapi_document
from routing import ConfigError, RoutingError

ROUTING_ADMIN = web.AppKey("routing_admin", RoutingAdmin)

_PARAMS = {"queues": "name", "agents": "agent_id", "rules": "name"}


def add_routing_routes(app: web.Application) -> None:
    """The routes; the hub puts its `RoutingAdmin` under ROUTING_ADMIN (without one
    they answer 503)."""
    app.router.add_get("/api/routing/openapi.json", get_openapi)
    app.router.add_get("/api/routing/config", get_config)
    app.router.add_put("/api/routing/config", put_config)
    app.router.add_get("/api/routing/skills", get_skills)
    app.router.add_put("/api/routing/skills", put_skills)
    for section, param in _PARAMS.items():
        app.router.add_get(f"/api/routing/{section}", _list_items(section))
        app.router.add_get(f"/api/routing/{section}/{{{param}}}", _get_item(section, param))
        app.router.add_put(f"/api/routing/{section}/{{{param}}}", _put_item(section, param))
    app.router.add_delete("/api/routing/rules/{name}", delete_rule)


async def _admin(request: web.Request) -> tuple[RoutingAdmin, Session]:
    session = await require(request, Permission.ROUTING_CONFIGURE)
    admin = request.config_dict.get(ROUTING_ADMIN)
    if admin is None:
        raise ApiError(503, "routing_unavailable", "routing configuration is not available on this hub")
    return admin, session


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the body must be JSON") from None


def _configuration(admin: RoutingAdmin) -> dict[str, Any]:
    return {
        "revision": admin.revision,
        "source": admin.source,
        "updated_at": admin.updated_at.isoformat() if admin.updated_at is not None else None,
        "updated_by": admin.updated_by,
        "config": admin.document(),
    }


def _invalid(err: ConfigError) -> ApiError:
    return ApiError(422, "invalid_config", str(err), field=err.path)


def _refused(err: RoutingError) -> ApiError:
    return ApiError(409, getattr(err, "code", "routing_error"), str(err))


async def get_openapi(request: web.Request) -> web.Response:
    await _admin(request)
    return web.json_response(openapi_document())


async def get_config(request: web.Request) -> web.Response:
    admin, _ = await _admin(request)
    return web.json_response(_configuration(admin))


async def put_config(request: web.Request) -> web.Response:
    """PUT /api/routing/config: the whole document replaces the configuration."""
    admin, session = await _admin(request)
    body = await _body(request)
    try:
        await admin.replace(body, by=session.username)
    except ConfigError as err:
        raise _invalid(err) from None
    except RoutingError as err:
        raise _refused(err) from None
    return web.json_response(_configuration(admin))


async def get_skills(request: web.Request) -> web.Response:
    admin, _ = await _admin(request)
    return web.json_response(admin.document().get("skills", []))


async def put_skills(request: web.Request) -> web.Response:
    admin, session = await _admin(request)
    body = await _body(request)
    try:
        await admin.set_skills(body, by=session.username)
    except ConfigError as err:
        raise _invalid(err) from None
    except RoutingError as err:
        raise _refused(err) from None
    return web.json_response(admin.document().get("skills", []))


def _list_items(section: str) -> Any:
    async def list_items(request: web.Request) -> web.Response:
        admin, _ = await _admin(request)
        return web.json_response(admin.document().get(section, []))

    list_items.__name__ = f"list_{section}"
    return list_items


def _get_item(section: str, param: str) -> Any:
    async def get_item(request: web.Request) -> web.Response:
        admin, _ = await _admin(request)
        key = request.match_info[param]
        try:
            return web.json_response(admin.item(section, key))
        except ItemError:
            raise ApiError(404, f"unknown_{section[:-1]}", f"no {section[:-1]} {key!r}", field=param) from None

    get_item.__name__ = f"get_{section[:-1]}"
    return get_item


def _put_item(section: str, param: str) -> Any:
    async def put_item(request: web.Request) -> web.Response:
        admin, session = await _admin(request)
        key = request.match_info[param]
        body = await _body(request)
        if isinstance(body, dict) and body.get(SECTIONS[section], key) != key:
            raise ApiError(
                422, "invalid_config", f"{SECTIONS[section]}: {body[SECTIONS[section]]!r} differs from the path's {key!r}",
                field=SECTIONS[section],
            )
        try:
            _, created = await admin.put_item(section, key, body, by=session.username)
        except ConfigError as err:
            raise _invalid(err) from None
        except RoutingError as err:
            raise _refused(err) from None
        return web.json_response(admin.item(section, key), status=201 if created else 200)

    put_item.__name__ = f"put_{section[:-1]}"
    return put_item


async def delete_rule(request: web.Request) -> web.Response:
    admin, session = await _admin(request)
    name = request.match_info["name"]
    try:
        await admin.delete_rule(name, by=session.username)
    except ItemError:
        raise ApiError(404, "unknown_rule", f"no rule {name!r}", field="name") from None
    except ConfigError as err:
        raise _invalid(err) from None
    return web.json_response(_configuration(admin))


__all__ = ["ROUTING_ADMIN", "add_routing_routes"]
