"""`ctihub users ...` as real processes against a temporary database, and its effect on
a running hub (the hub re-reads the user's row; docs/api.md)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from cti.web.guard import AuthOptions
from tests.e2e.harness import http_base, running_hub
from tests.e2e.test_auth import close_code

CTIHUB = [sys.executable, "-m", "cti.cli"]


async def ctihub(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """Run `ctihub` as its own process (without the test's terminal) and wait for it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTIHUB_")}
    process = await asyncio.create_subprocess_exec(
        *CTIHUB, *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin is not None else b""), 60)
    return process.returncode or 0, out.decode(), err.decode()


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


async def test_users_commands_against_a_temporary_sqlite_database(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "var")]
    code, out, err = await ctihub("users", "add", "ada", "--role", "admin", "--display-name", "Ada Lovelace", "--password-stdin", *data, stdin="correct horse\n")
    assert (code, err) == (0, ""), err
    assert "added ada (admin)" in out
    code, out, err = await ctihub(
        "users", "add", "anna", "--role", "agent", "--skills", "sales,kyc", "--languages", "de,en", "--password-stdin", *data, stdin="battery staple\n"
    )
    assert code == 0, err

    code, _, err = await ctihub("users", "add", "ada", "--role", "qa", "--password-stdin", *data, stdin="another pass\n")
    assert code == 2 and "exists" in one_line(err)
    code, _, err = await ctihub("users", "add", "bob", "--role", "boss", "--password-stdin", *data, stdin="another pass\n")
    line = one_line(err)
    assert code == 2 and "boss" in line and all(role in line for role in ("agent", "supervisor", "qa", "admin"))
    code, _, err = await ctihub("users", "add", "bad name", "--role", "qa", "--password-stdin", *data, stdin="another pass\n")
    assert code == 2 and "username" in one_line(err)
    code, _, err = await ctihub("users", "add", "bob", "--role", "qa", "--password-stdin", *data, stdin="")
    assert code == 2 and "stdin" in one_line(err)
    code, _, err = await ctihub("users", "add", "bob", "--role", "qa", "--password-stdin", *data, stdin="short\n")
    assert code == 2 and "shorter than 8" in one_line(err)
    # Without --password-stdin it prompts on the terminal; there is none here.
    code, _, err = await ctihub("users", "add", "bob", "--role", "qa", *data)
    assert code == 2 and "--password-stdin" in one_line(err)
    # There is no way to pass the password as an argument.
    code, _, err = await ctihub("users", "add", "bob", "--role", "qa", "--password", "secret123", *data)
    assert code == 2 and "unrecognized arguments" in err

    code, out, err = await ctihub("users", "disable", "anna", *data)
    assert (code, out.strip()) == (0, "disabled anna"), err
    code, _, err = await ctihub("users", "disable", "nobody", *data)
    assert code == 2 and "nobody" in one_line(err)
    code, _, err = await ctihub("users", "enable", "nobody", *data)
    assert code == 2 and "nobody" in one_line(err)

    code, out, err = await ctihub("users", "list", *data)
    assert code == 0, err
    header, *rows = out.strip().splitlines()
    assert header.split() == ["USERNAME", "ROLE", "DISPLAY", "NAME", "DISABLED"]
    assert [row.split()[:2] + [row.split()[-1]] for row in rows] == [["ada", "admin", "no"], ["anna", "agent", "yes"]]
    assert "Ada Lovelace" in rows[0]
    # Columns line up under the header.
    assert all(row.index(row.split()[1]) == header.index("ROLE") for row in rows)

    code, out, err = await ctihub("users", "enable", "anna", *data)
    assert (code, out.strip()) == (0, "enabled anna"), err
    code, _, err = await ctihub("users", "set-password", "anna", "--password-stdin", *data, stdin="a new password\n")
    assert code == 0, err
    code, _, err = await ctihub("users", "set-password", "nobody", "--password-stdin", *data, stdin="a new password\n")
    assert code == 2 and "nobody" in one_line(err)

    code, _, err = await ctihub("users", "list", "--database-url", "mysql://db/hub")
    assert code == 2 and "CTIHUB_DATABASE_URL" in one_line(err)
    code, _, err = await ctihub("users", "list", "--database-url", "postgresql+asyncpg://postgres@127.0.0.1:1/none")
    assert code == 2 and "cannot use the database" in one_line(err)

    # What the commands wrote is what the hub reads: log in with the new password.
    async with running_hub(tmp_path) as hub, aiohttp.ClientSession() as http:
        assert await _login(http, hub, "anna", "battery staple") == 401
        assert await _login(http, hub, "anna", "a new password") == 200
        assert await _login(http, hub, "ada", "correct horse") == 200


async def _login(http: aiohttp.ClientSession, hub: Any, username: str, password: str) -> int:
    async with http.post(f"{http_base(hub)}/api/login", json={"username": username, "password": password}) as resp:
        return resp.status


async def _session(http: aiohttp.ClientSession, hub: Any, username: str, password: str = "demo") -> dict[str, Any]:
    async with http.post(f"{http_base(hub)}/api/login", json={"username": username, "password": password}) as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def test_the_cli_disables_a_user_on_the_running_hub(tmp_path: Path, database_url: str) -> None:
    db = ["--database-url", database_url]
    async with (
        running_hub(tmp_path, database_url=database_url, auth=AuthOptions(recheck_s=0.5)) as hub,
        aiohttp.ClientSession() as http,
    ):
        base = http_base(hub)
        agent = await _session(http, hub, "agent07")
        auth = {"Authorization": f"Bearer {agent['token']}"}
        socket = await http.ws_connect(f"{base}/ws/agent", headers=auth)
        assert (await socket.receive_json())["type"] == "hello"

        code, _, err = await ctihub("users", "disable", "agent07", *db)
        assert code == 0, err
        # The next request sees it (or the re-check got there first: the same answer)...
        async with http.get(f"{base}/api/me", headers=auth) as resp:
            body = await resp.json()
            assert (resp.status, body["error"]) == (401, "session_revoked")
            assert "disabled" in body["detail"]
        # ...and the open websocket is closed (by that request, or by the re-check).
        assert await close_code(socket) == 1008
        async with http.post(f"{base}/api/login", json={"username": "agent07", "password": "demo"}) as resp:
            assert (resp.status, (await resp.json())["error"]) == (403, "account_disabled")

        code, _, err = await ctihub("users", "enable", "agent07", *db)
        assert code == 0, err
        fresh = await _session(http, hub, "agent07")

        # A new password ends the sessions issued under the old one, websockets included.
        socket = await http.ws_connect(f"{base}/ws/agent", headers={"Authorization": f"Bearer {fresh['token']}"})
        await socket.receive_json()
        code, _, err = await ctihub("users", "set-password", "agent07", "--password-stdin", *db, stdin="new secret pass\n")
        assert code == 0, err
        assert await close_code(socket) == 1008  # at the next re-check: no request came in between
        async with http.get(f"{base}/api/me", headers={"Authorization": f"Bearer {fresh['token']}"}) as resp:
            assert resp.status == 401
        assert await _login(http, hub, "agent07", "demo") == 401
        assert await _login(http, hub, "agent07", "new secret pass") == 200
