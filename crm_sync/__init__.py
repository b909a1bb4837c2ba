"""CRM: the customer data model and store, caller lookup and screen-pop profile assembly.

Owns the CRM tables (customers, phones, emails, KYC, trading accounts, interactions,
tasks, leads) and the only code that reads or writes them, plus the profile cache. Must
never talk to telephony, routing or the web layer; they call in through `CrmStore` and
get plain frozen dataclasses or dicts back.
"""

from crm_sync.cache import MemoryProfileCache, ProfileCache, RedisProfileCache
from crm_sync.phones import normalize_phone
from crm_sync.profile import (
    AccountView,
    CustomerProfile,
    CustomerSummary,
    EmailView,
    InteractionView,
    KycView,
    LeadView,
    PhoneView,
    TaskView,
    effective_kyc_status,
    mask_tail,
)
from crm_sync.store import CrmStore

__all__ = [
    "AccountView",
    "CrmStore",
    "CustomerProfile",
    "CustomerSummary",
    "EmailView",
    "InteractionView",
    "KycView",
    "LeadView",
    "MemoryProfileCache",
    "PhoneView",
    "ProfileCache",
    "RedisProfileCache",
    "TaskView",
    "effective_kyc_status",
    "mask_tail",
    "normalize_phone",
]
