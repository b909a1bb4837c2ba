"""Users, roles and sessions against a real hub over real HTTP and websockets: who may
use which route, cookie vs bearer, CSRF, websocket origin, login throttling and
lockout, disabled users."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cti.app import Hub
from cti.web.guard import AuthOptions
from cti.web.login_throttle import Limits, LoginThrottle
from tests.e2e.harness import http_base, running_hub

ROLES = {"agent": "agent01", "supervisor": "super1", "qa": "qa1", "admin": "admin"}


def jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)  # the hub is at 127.0.0.1: an IP, not a domain


async def login(http: aiohttp.ClientSession, hub: Hub, username: str, password: str = "demo", **kwargs: Any) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with http.post(f"{http_base(hub)}/api/login", json={"username": username, "password": password}, **kwargs) as resp:
        return resp.status, await resp.json(), resp


async def close_code(socket: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> int | None:
    """Read (and drop) messages until the hub closes the socket; the code in its close
    frame. (Not `socket.close_code`: the client's reply may find the connection gone
    already, and aiohttp then reports 1006.)"""
    async with asyncio.timeout(timeout):
        while (message := await socket.receive()).type is not aiohttp.WSMsgType.CLOSE:
            assert message.type is not aiohttp.WSMsgType.CLOSED, "the connection ended without a close frame"
    return int(message.data)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    async with http.request(method, url, **kwargs) as resp:
        return resp.status, await resp.json()


async def ws_status(http: aiohttp.ClientSession, hub: Hub, **kwargs: Any) -> int:
    """101 when the agent websocket opens (then closed again), else the refusal's status."""
    try:
        socket = await http.ws_connect(f"{http_base(hub)}/ws/agent", **kwargs)
    except aiohttp.WSServerHandshakeError as err:
        return err.status
    await socket.receive_json()  # hello
    await socket.close()
    return 101


async def test_each_role_reaches_what_it_may_and_nothing_else(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, aiohttp.ClientSession() as http:
        base = http_base(hub)
        # No credential at all: 401 on every non-public route; the public ones answer.
        assert (await call(http, "GET", f"{base}/api/me"))[1]["error"] == "not_logged_in"
        assert (await call(http, "GET", f"{base}/api/users"))[0] == 401
        status, body = await call(http, "GET", f"{base}/ws/agent")
        assert (status, body["error"]) == (401, "not_logged_in")
        assert await ws_status(http, hub) == 401
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"{base}/metrics") as resp:
            assert resp.status == 200
        # A token nobody issued, and a malformed Authorization header.
        assert (await call(http, "GET", f"{base}/api/me", headers=bearer("forged")))[1]["error"] == "session_expired"
        status, body = await call(http, "GET", f"{base}/api/me", headers={"Authorization": "Basic YWRtaW46ZGVtbw=="})
        assert (status, body["error"]) == (401, "bad_authorization")

        for role, username in ROLES.items():
            status, session, _ = await login(http, hub, username)
            assert status == 200 and session["role"] == role, session
            auth = bearer(session["token"])
            status, me = await call(http, "GET", f"{base}/api/me", headers=auth)
            assert status == 200 and me["username"] == username and me["permissions"] == session["permissions"]
            assert me["csrf_token"] == session["csrf_token"]

            status, body = await call(http, "GET", f"{base}/api/users", headers=auth)
            if role == "admin":
                assert status == 200
                assert {u["username"]: u["role"] for u in body["users"]}["super1"] == "supervisor"
            else:
                assert status == 403, body
                assert body["error"] == "forbidden" and body["permission"] == "users.manage" and body["role"] == role
                assert "users.manage" in body["detail"]

            if role == "agent":
                assert await ws_status(http, hub, headers=auth) == 101
            else:
                status, body = await call(http, "GET", f"{base}/ws/agent", headers=auth)
                assert (status, body["error"], body["permission"]) == (403, "forbidden", "agent.desktop")
                assert await ws_status(http, hub, headers=auth) == 403

        # Permissions as the table says (the full table is tested in tests/unit).
        _, agent, _ = await login(http, hub, "agent01")
        _, admin, _ = await login(http, hub, "admin")
        assert agent["permissions"] == ["agent.desktop", "customer.read", "evaluations.read_own"]
        assert "customer.read_sensitive" in admin["permissions"] and "agent.desktop" not in admin["permissions"]


async def test_login_contract(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, aiohttp.ClientSession() as http:
        base = http_base(hub)
        status, body, resp = await login(http, hub, "agent01")
        assert status == 200
        assert {"token", "csrf_token", "username", "role", "display_name", "permissions"} <= set(body)
        cookie = next(h for h in resp.headers.getall("Set-Cookie") if h.startswith("ctihub_session="))
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path"} <= attributes and "secure" not in attributes  # plain HTTP here
        assert "samesite=strict" in cookie.lower()
        assert body["token"] in cookie and body["csrf_token"] not in cookie

        status, body, _ = await login(http, hub, "agent01", "wrong")
        assert (status, body["error"]) == (401, "bad_credentials")
        status, body, _ = await login(http, hub, "nobody", "wrong")
        assert (status, body["error"]) == (401, "bad_credentials")
        status, body = await call(http, "POST", f"{base}/api/login", json={"username": "agent01"})
        assert (status, body["error"], body["field"]) == (422, "missing_field", "password")
        status, body = await call(http, "POST", f"{base}/api/login", json={"username": "a" * 65, "password": "x"})
        assert (status, body["field"]) == (422, "username")
        # A cross-site form can post text/plain; a foreign page cannot log a browser in.
        status, body = await call(
            http, "POST", f"{base}/api/login", data='{"username": "agent01", "password": "demo"}', headers={"Content-Type": "text/plain"}
        )
        assert (status, body["error"]) == (415, "unsupported_media_type")
        status, body, _ = await login(http, hub, "agent01", headers={"Origin": "https://evil.example"})
        assert (status, body["error"]) == (403, "bad_origin")
        status, body, _ = await login(http, hub, "agent01", headers={"Origin": base})
        assert status == 200
        # A token in the URL is for websockets only: not accepted by the HTTP API.
        status, body = await call(http, "GET", f"{base}/api/me?token={body['token']}")
        assert (status, body["error"]) == (401, "not_logged_in")


async def test_cookie_requests_need_the_csrf_token_and_bearer_requests_do_not(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, aiohttp.ClientSession(cookie_jar=jar()) as browser, aiohttp.ClientSession() as api:
        base = http_base(hub)
        status, admin, _ = await login(browser, hub, "admin")
        assert status == 200
        # The browser now carries the cookie only; reads need nothing more.
        status, me = await call(browser, "GET", f"{base}/api/me")
        assert status == 200 and me["csrf_token"] == admin["csrf_token"]

        url = f"{base}/api/users/agent02/disable"
        status, body = await call(browser, "POST", url)
        assert (status, body["error"]) == (403, "csrf_failed")
        assert "X-CSRF-Token" in body["detail"]
        status, body = await call(browser, "POST", url, headers={"X-CSRF-Token": "guessed"})
        assert (status, body["error"]) == (403, "csrf_failed")
        # Another session's CSRF token does not fit this session (session-bound).
        _, other, _ = await login(api, hub, "admin")
        status, body = await call(browser, "POST", url, headers={"X-CSRF-Token": other["csrf_token"]})
        assert (status, body["error"]) == (403, "csrf_failed")
        status, users = await call(browser, "GET", f"{base}/api/users")
        assert not {u["username"]: u for u in users["users"]}["agent02"]["disabled"]  # nothing happened

        status, body = await call(browser, "POST", url, headers={"X-CSRF-Token": admin["csrf_token"]})
        assert (status, body) == (200, {"username": "agent02", "disabled": True})
        # A bearer token is not an ambient credential: no CSRF token needed.
        status, body = await call(api, "POST", f"{base}/api/users/agent02/enable", headers=bearer(admin["token"]))
        assert (status, body) == (200, {"username": "agent02", "disabled": False})
        # The Authorization header wins over a cookie, and is judged on its own.
        status, body = await call(browser, "POST", f"{base}/api/users/agent02/enable", headers=bearer("forged"))
        assert (status, body["error"]) == (401, "session_expired")

        status, body = await call(api, "POST", f"{base}/api/users/admin/disable", headers=bearer(admin["token"]))
        assert (status, body["error"]) == (409, "cannot_disable_self")
        status, body = await call(api, "POST", f"{base}/api/users/nobody/disable", headers=bearer(admin["token"]))
        assert (status, body["error"]) == (404, "no_such_user")

        # Logging out with the cookie is a state change too.
        status, body = await call(browser, "POST", f"{base}/api/logout")
        assert (status, body["error"]) == (403, "csrf_failed")
        status, body = await call(browser, "POST", f"{base}/api/logout", headers={"X-CSRF-Token": admin["csrf_token"]})
        assert status == 200
        assert (await call(api, "GET", f"{base}/api/me", headers=bearer(admin["token"])))[0] == 401
        status, body = await call(browser, "POST", f"{base}/api/logout")  # nothing left to end: fine
        assert status == 200


async def test_a_websocket_opened_with_the_cookie_must_come_from_the_hubs_origin(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, aiohttp.ClientSession(cookie_jar=jar()) as browser:
        base = http_base(hub)
        status, agent, _ = await login(browser, hub, "agent01")
        assert status == 200
        status, body = await call(browser, "GET", f"{base}/ws/agent", headers={"Origin": "https://evil.example"})
        assert (status, body["error"]) == (403, "bad_origin")
        assert await ws_status(browser, hub, origin="https://evil.example") == 403
        assert await ws_status(browser, hub, origin=base) == 101
        # With the token in the URL (no ambient credential) the origin does not matter.
        async with aiohttp.ClientSession() as other:
            socket = await other.ws_connect(f"{base}/ws/agent?token={agent['token']}", origin="https://elsewhere.example")
            assert (await socket.receive_json())["type"] == "hello"
            await socket.close()


async def test_logout_ends_the_session_and_closes_its_websocket(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, aiohttp.ClientSession() as http:
        base = http_base(hub)
        _, first, _ = await login(http, hub, "agent01")
        _, second, _ = await login(http, hub, "agent01")
        socket = await http.ws_connect(f"{base}/ws/agent", headers=bearer(first["token"]))
        await socket.receive_json()
        status, _ = await call(http, "POST", f"{base}/api/logout", headers=bearer(first["token"]))
        assert status == 200
        assert await close_code(socket) == 1000
        assert (await call(http, "GET", f"{base}/api/me", headers=bearer(first["token"])))[0] == 401
        assert (await call(http, "GET", f"{base}/api/me", headers=bearer(second["token"])))[0] == 200


FAST = LoginThrottle(
    per_username=Limits(free=2, lock_after=5, base_delay_s=1.0, max_delay_s=2.0, lockout_s=3.0, window_s=3.0),
)


async def test_failed_logins_are_slowed_then_locked_out_then_let_in_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cti.auth")
    async with running_hub(tmp_path, auth=AuthOptions(throttle=FAST)) as hub, aiohttp.ClientSession() as http:
        for _ in range(3):  # two free failures, and a third that asks for 1 s
            assert (await login(http, hub, "agent03", "wrong"))[0] == 401
        status, body, resp = await login(http, hub, "agent03", "wrong")
        assert (status, body["error"], body["scope"]) == (429, "login_throttled", "username")
        assert resp.headers["Retry-After"] == "1" and body["retry_after"] == 1
        # Even the right password waits: it is not checked while throttled.
        assert (await login(http, hub, "agent03"))[0] == 429
        await asyncio.sleep(1.05)
        assert (await login(http, hub, "agent03", "wrong"))[0] == 401  # 4th failure: next wait 2 s
        status, _, resp = await login(http, hub, "agent03", "wrong")
        assert status == 429 and resp.headers["Retry-After"] == "2"
        await asyncio.sleep(2.05)
        assert (await login(http, hub, "agent03", "wrong"))[0] == 401  # 5th failure: locked for 3 s
        status, body, resp = await login(http, hub, "agent03")
        assert (status, body["error"]) == (429, "login_locked")
        assert resp.headers["Retry-After"] == "3" and "locked out" in body["detail"]
        # Another user from the same address is not affected.
        assert (await login(http, hub, "agent04"))[0] == 200
        await asyncio.sleep(3.05)
        assert (await login(http, hub, "agent03"))[0] == 200
        # The success cleared the slate: a typo now is just a typo.
        assert (await login(http, hub, "agent03", "wrong"))[0] == 401
        assert (await login(http, hub, "agent03", "wrong"))[0] == 401
    audit = [r.getMessage() for r in caplog.records if r.name == "cti.auth"]
    assert any("failed login for 'agent03'" in m for m in audit)
    assert any("username 'agent03' locked out for 3 s" in m for m in audit), audit
    assert any("refused: username locked out" in m for m in audit)


async def test_the_default_limits_slow_the_fourth_failure(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, aiohttp.ClientSession() as http:
        for _ in range(4):
            assert (await login(http, hub, "ghost", "wrong"))[0] == 401  # unknown users count the same
        status, body, resp = await login(http, hub, "ghost", "wrong")
        assert (status, body["error"], resp.headers["Retry-After"]) == (429, "login_throttled", "1")


async def test_failures_are_counted_across_hubs_sharing_redis(tmp_path: Path, redis_url: str, redis_client: Any) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    async with (
        running_hub(tmp_path / "a", redis_url=redis_url) as hub_a,
        running_hub(tmp_path / "b", redis_url=redis_url) as hub_b,
        aiohttp.ClientSession() as http,
    ):
        for hub in (hub_a, hub_b, hub_a, hub_b):
            assert (await login(http, hub, "agent05", "wrong"))[0] == 401
        assert await redis_client.exists("ctihub:login:user:agent05")
        status, body, _ = await login(http, hub_a, "agent05")
        assert (status, body["error"]) == (429, "login_throttled")
        await asyncio.sleep(1.05)
        assert (await login(http, hub_b, "agent05"))[0] == 200
        assert not await redis_client.exists("ctihub:login:user:agent05")


async def test_a_disabled_user_is_refused_and_their_websocket_closed(tmp_path: Path, database_url: str) -> None:
    async with running_hub(tmp_path, database_url=database_url) as hub, aiohttp.ClientSession() as http:
        base = http_base(hub)
        _, agent, _ = await login(http, hub, "agent06")
        _, admin, _ = await login(http, hub, "admin")
        socket = await http.ws_connect(f"{base}/ws/agent", headers=bearer(agent["token"]))
        assert (await socket.receive_json())["type"] == "hello"

        status, _ = await call(http, "POST", f"{base}/api/users/agent06/disable", headers=bearer(admin["token"]))
        assert status == 200
        assert await close_code(socket) == 1008
        status, body = await call(http, "GET", f"{base}/api/me", headers=bearer(agent["token"]))
        assert (status, body["error"]) == (401, "session_revoked") and "disabled" in body["detail"]
        status, body = await call(http, "GET", f"{base}/ws/agent", headers=bearer(agent["token"]))
        assert (status, body["error"]) == (401, "session_revoked")
        assert await ws_status(http, hub, headers=bearer(agent["token"])) == 401
        status, body, _ = await login(http, hub, "agent06")
        assert (status, body["error"]) == (403, "account_disabled")
        assert (await login(http, hub, "agent06", "wrong"))[0] == 401  # no hint without the password

        status, _ = await call(http, "POST", f"{base}/api/users/agent06/enable", headers=bearer(admin["token"]))
        assert status == 200
        # Enabling again does not revive the old session: a new login is needed.
        assert (await call(http, "GET", f"{base}/api/me", headers=bearer(agent["token"])))[0] == 401
        status, again, _ = await login(http, hub, "agent06")
        assert status == 200
        assert await ws_status(http, hub, headers=bearer(again["token"])) == 101
