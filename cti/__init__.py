"""CTI Hub: links SIP calls, ACD routing, IVR and chat to CRM records with live screen pops."""

__version__ = "0.1.0"
