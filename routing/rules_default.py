"""The brokerage's default arrival rules, as data: compliance routing for EDD flags and
unverified KYC, priority for VIP and professional clients, the customer's language.

Owns: `DEFAULT_RULES` only (the same rules as the `rules:` section of demo.yaml). Must
never: hold logic; change the rules here or in configuration, never in the router.
"""

from __future__ import annotations

from routing.model import Rule

DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(
        name="edd_or_unverified_kyc_to_compliance",
        when='edd == true or kyc_status in ["not_started", "pending", "rejected", "expired"]',
        require="compliance >= 1",
    ),
    Rule(name="vip_first", when='tier == "vip"', priority=2),
    Rule(name="professional_client_first", when='tier == "professional"', priority=1),
    Rule(
        name="speak_the_customers_language",
        when="language",
        require="$language in languages",
        relax_after_s=120.0,
    ),
)
