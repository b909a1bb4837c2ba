"""CRM: the customer data model and store, caller lookup and screen-pop profile assembly.

Owns the CRM tables (customers, phones, KYC, trading accounts, interactions) and the
only code that reads or writes them. Must never talk to telephony, routing or the web
layer; they call in through `CrmStore` and get plain frozen dataclasses or dicts back.
"""

from crm_sync.phones import normalize_phone
from crm_sync.profile import (
    AccountView,
    CustomerProfile,
    CustomerSummary,
    InteractionView,
    KycView,
    PhoneView,
    effective_kyc_status,
    mask_tail,
)
from crm_sync.store import CrmStore

__all__ = [
    "AccountView",
    "CrmStore",
    "CustomerProfile",
    "CustomerSummary",
    "InteractionView",
    "KycView",
    "PhoneView",
    "effective_kyc_status",
    "mask_tail",
    "normalize_phone",
]
