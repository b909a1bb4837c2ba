"""Imports every module that defines tables, so that Base.metadata is complete."""

import crm_sync.schema  # noqa: F401
import crm_sync.sync_schema  # noqa: F401
import cti.audit_schema  # noqa: F401
import cti.directory.schema  # noqa: F401
import cti.routing_store  # noqa: F401
import recordings.schema  # noqa: F401
from recordings import qa_schema  # noqa: F401
