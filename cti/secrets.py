"""The hub's secret key: signs SIP digest nonces (and later webhook state).

Taken from CTIHUB_SECRET_KEY when set. Otherwise generated once and kept in the data
dir with mode 0600, so a restart keeps nonces valid; several hubs must share one key
through the setting.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cti.config import Settings

KEY_FILE = "secret.key"


def load_secret_key(settings: Settings) -> bytes:
    if settings.secret_key:
        return settings.secret_key.encode()
    path = Path(settings.data_dir) / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32).encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
    return key
