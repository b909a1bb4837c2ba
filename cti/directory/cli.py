"""`ctihub users add|list|disable|enable|set-password`.

Owns the commands' arguments, password prompts, output and exit codes: 0 when done;
2 with one line on stderr for anything the operator must fix (bad settings, unknown
role, bad, duplicate or unknown username, a missing or mismatched password, an
unusable database). `cti.cli` mounts them with `add_parser(commands)` and dispatches
with `run(args)`.

Passwords come from a getpass prompt (asked twice) or, with --password-stdin, from the
first line of stdin; never from an argument, which `ps` and shell history would show.
The commands migrate the schema first, as `serve` does, so that the first admin can
be created before the hub ever ran.
Must never: talk to a running hub. Changes go to the database only; a running hub
applies them on its next check of the user's sessions (every request, and every few
seconds for open websockets; see docs/api.md).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TextIO

from sqlalchemy.exc import SQLAlchemyError

from cti.config import ConfigError, Settings, load_settings
from cti.db import make_engine, make_sessionmaker, migrate
from cti.directory.store import ROLES, DirectoryStore, UserRecord, username_problem

__all__ = ["MIN_PASSWORD", "add_parser", "run"]

MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # what POST /api/login accepts


class _Refused(Exception):
    """The one line to print before exiting 2."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add `users ...` to the `ctihub` parser's subcommands."""
    parser = commands.add_parser("users", help="add, list, disable and enable users, set passwords")
    actions = parser.add_subparsers(dest="users_command", required=True)
    add = actions.add_parser("add", help="create a user (agents also get their routing record)")
    add.add_argument("name")
    # Checked by `run`, not by argparse's choices, so the error is one line that names them.
    add.add_argument("--role", required=True, help=f"one of {', '.join(ROLES)}")
    add.add_argument("--display-name", help="the name shown on screens (default: the username)")
    add.add_argument("--skills", default="", help="agents: comma-separated skills, e.g. sales,kyc")
    add.add_argument("--languages", default="", help="agents: comma-separated languages, e.g. en,de")
    actions.add_parser("list", help="every user: username, role, display name, disabled")
    for name, help_text in (
        ("disable", "refuse the user's logins and end their sessions"),
        ("enable", "allow the user's logins again (ended sessions stay ended)"),
        ("set-password", "set a new password; ends the user's sessions"),
    ):
        actions.add_parser(name, help=help_text).add_argument("name")
    for sub in actions.choices.values():
        sub.add_argument("--data-dir", help="the hub's data dir (default ./var)")
        sub.add_argument("--database-url", help="SQLAlchemy URL (default SQLite in the data dir)")
    for name in ("add", "set-password"):
        actions.choices[name].add_argument(
            "--password-stdin", action="store_true", help="read the password from the first line of stdin instead of a prompt"
        )
    return parser


def run(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the parsed `users` command; returns the exit code."""
    out = out or sys.stdout
    try:
        settings = load_settings({"data_dir": args.data_dir, "database_url": args.database_url}, environ=environ)
        command = args.users_command
        if command == "add":
            _check_new_user(args.name, args.role)
            password = _password(args, stdin or sys.stdin)
            return asyncio.run(_add(settings, args, password, out))
        if command == "list":
            return asyncio.run(_list(settings, out))
        if command in ("disable", "enable"):
            return asyncio.run(_set_disabled(settings, args.name, command == "disable", out))
        if command == "set-password":
            password = _password(args, stdin or sys.stdin)
            return asyncio.run(_set_password(settings, args.name, password, out))
    except (ConfigError, _Refused) as err:
        print(f"ctihub: {err}", file=sys.stderr)
        return 2
    except (SQLAlchemyError, OSError) as err:
        print(f"ctihub: cannot use the database: {_first_line(err)}", file=sys.stderr)
        return 2
    return 2


def _check_new_user(name: str, role: str) -> None:
    if role not in ROLES:
        raise _Refused(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    problem = username_problem(name)
    if problem is not None:
        raise _Refused(f"bad username {name!r}: {problem}")


def _password(args: argparse.Namespace, stdin: TextIO) -> str:
    if args.password_stdin:
        password = stdin.readline().rstrip("\r\n")
        if not password:
            raise _Refused("no password on stdin (--password-stdin reads its first line)")
    else:
        if not stdin.isatty():
            raise _Refused("no terminal to ask for the password on; pipe it in with --password-stdin")
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Password (again): "):
            raise _Refused("the two passwords differ")
    if len(password) < MIN_PASSWORD:
        raise _Refused(f"the password is shorter than {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise _Refused(f"the password is longer than {MAX_PASSWORD} characters")
    return password


@asynccontextmanager
async def _directory(settings: Settings) -> AsyncIterator[DirectoryStore]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    try:
        await migrate(engine)
        yield DirectoryStore(make_sessionmaker(engine))
    finally:
        await engine.dispose()


async def _add(settings: Settings, args: argparse.Namespace, password: str, out: TextIO) -> int:
    async with _directory(settings) as store:
        created = await store.add_user(
            username=args.name,
            display_name=args.display_name or args.name,
            role=args.role,
            password=password,
            skills=_names(args.skills),
            languages=_names(args.languages),
        )
    if not created:
        raise _Refused(f"user {args.name!r} exists already")
    print(f"added {args.name} ({args.role})", file=out)
    return 0


async def _list(settings: Settings, out: TextIO) -> int:
    async with _directory(settings) as store:
        users = await store.list_users()
    for line in _table(users):
        print(line, file=out)
    return 0


async def _set_disabled(settings: Settings, name: str, disabled: bool, out: TextIO) -> int:
    async with _directory(settings) as store:
        found = await store.set_disabled(name, disabled)
    if not found:
        raise _Refused(f"no user {name!r}")
    print(f"{'disabled' if disabled else 'enabled'} {name}", file=out)
    return 0


async def _set_password(settings: Settings, name: str, password: str, out: TextIO) -> int:
    async with _directory(settings) as store:
        found = await store.set_password(name, password)
    if not found:
        raise _Refused(f"no user {name!r}")
    print(f"password of {name} set; their sessions have ended", file=out)
    return 0


def _table(users: list[UserRecord]) -> list[str]:
    rows = [("USERNAME", "ROLE", "DISPLAY NAME", "DISABLED")]
    rows += [(u.username, u.role, u.display_name, "yes" if u.disabled else "no") for u in users]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows]


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
