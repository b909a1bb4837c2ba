"""The demo contact center: three queues behind the numbers 1000, 2000 and 3000, ten
agents with skills and languages, and one user of each other role.

Demo passwords are public on purpose (they are printed at start-up and in the README);
`ctihub serve --demo` is for trying the hub, never for production.
"""

from __future__ import annotations

from dataclasses import dataclass

from cti.directory.store import DirectoryStore, hash_password


@dataclass(frozen=True, slots=True)
class DemoUser:
    username: str
    display_name: str
    role: str
    skills: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()


DEMO_PASSWORD = "demo"

DEMO_QUEUES = (
    ("sales", "Sales (front office)", ("sales",), ("1000",)),
    ("support", "Support (back office)", ("support",), ("2000",)),
    ("kyc", "KYC / back office", ("kyc",), ("3000",)),
)

DEMO_USERS = (
    DemoUser("agent01", "Anna Keller", "agent", ("sales", "support"), ("de", "en")),
    DemoUser("agent02", "Ben Carter", "agent", ("sales",), ("en",)),
    DemoUser("agent03", "Chloé Martin", "agent", ("sales", "kyc"), ("fr", "en")),
    DemoUser("agent04", "Diego Romero", "agent", ("support",), ("es", "en")),
    DemoUser("agent05", "Elena Rossi", "agent", ("support", "sales"), ("it", "en")),
    DemoUser("agent06", "Filip Nowak", "agent", ("kyc", "compliance"), ("pl", "en", "de")),
    DemoUser("agent07", "Grace Okafor", "agent", ("kyc", "compliance", "support"), ("en",)),
    DemoUser("agent08", "Hannah Schmidt", "agent", ("sales", "crypto"), ("de", "en")),
    DemoUser("agent09", "Idris Haddad", "agent", ("support", "sales"), ("ar", "en", "fr")),
    DemoUser("agent10", "Julia Weber", "agent", ("kyc", "support"), ("de", "en")),
    DemoUser("super1", "Sam Supervisor", "supervisor"),
    DemoUser("qa1", "Quinn Reviewer", "qa"),
    DemoUser("admin", "Ada Admin", "admin"),
)


async def seed_demo_directory(store: DirectoryStore, *, sip_realm: str) -> None:
    """Idempotent: existing queues and users are left as they are."""
    for name, display, skills, numbers in DEMO_QUEUES:
        await store.ensure_queue(name=name, display_name=display, required_skills=skills, numbers=numbers)
    # One argon2 hash (salted once) serves every demo user: they share one public
    # password anyway, and hashing thirteen times would cost seconds at every start.
    demo_hash = await hash_password(DEMO_PASSWORD)
    for user in DEMO_USERS:
        await store.add_user(
            username=user.username,
            display_name=user.display_name,
            role=user.role,
            password=DEMO_PASSWORD,
            password_hash=demo_hash,
            skills=user.skills,
            languages=user.languages,
        )
        if user.role == "agent":
            # Demo phones register as agentNN with the same public demo password.
            await store.set_sip_password(user.username, realm=sip_realm, password=DEMO_PASSWORD)
