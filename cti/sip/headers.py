"""SIP header fields as an ordered, case-insensitive multimap.

Owns header-name normalization (compact forms, canonical spelling) and the split of
comma-separated list headers into elements. Must never interpret a header's value
beyond that split: parsing a Via or a From is the URI module's job.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

from cti.sip._grammar import is_token, split_list

_COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "f": "From",
    "t": "To",
    "v": "Via",
    "l": "Content-Length",
    "c": "Content-Type",
    "e": "Content-Encoding",
    "k": "Supported",
    "s": "Subject",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "y": "Identity",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
}

_CANONICAL = {
    name.lower(): name
    for name in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info",
        "Allow", "Allow-Events", "Authentication-Info", "Authorization", "Call-ID",
        "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
        "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date",
        "Diversion", "Error-Info", "Event", "Expires", "From", "History-Info",
        "Identity", "Identity-Info", "In-Reply-To", "Join", "Max-Forwards",
        "MIME-Version", "Min-Expires", "Min-SE", "Organization", "P-Asserted-Identity",
        "P-Preferred-Identity", "Path", "Priority", "Privacy", "Proxy-Authenticate",
        "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route",
        "Refer-Sub", "Refer-To", "Referred-By", "Reject-Contact", "Replaces",
        "Reply-To", "Request-Disposition", "Require", "Retry-After", "Route", "RSeq",
        "Security-Client", "Security-Server", "Security-Verify", "Server",
        "Service-Route", "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject",
        "Subscription-State", "Supported", "Target-Dialog", "Timestamp", "To",
        "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
    )
}

# Headers whose grammar is `1#element`: several values may share one line. Headers
# whose values contain commas of their own (Date, the auth headers, From/To) are
# deliberately absent.
_LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info",
        "Allow", "Allow-Events", "Call-Info", "Contact", "Content-Encoding",
        "Content-Language", "Error-Info", "History-Info", "In-Reply-To", "Path",
        "P-Asserted-Identity", "P-Preferred-Identity", "Privacy", "Proxy-Require",
        "Reason", "Record-Route", "Reject-Contact", "Request-Disposition", "Require",
        "Route", "Security-Client", "Security-Server", "Security-Verify",
        "Service-Route", "Supported", "Unsupported", "Via", "Warning",
    )
)


_NONE: list[str] = []  # what a lookup of an absent header reads (never changed)


def canonical_name(name: str) -> str:
    """The spelling we send: compact forms expanded, well-known names capitalized."""
    key = name.lower()
    if len(key) == 1 and key in _COMPACT:
        return _COMPACT[key]
    return _CANONICAL.get(key, name)


def is_list_header(name: str) -> bool:
    return canonical_name(name).lower() in _LIST_HEADERS


@functools.lru_cache(maxsize=512)
def _lookup_key(name: str) -> str:
    # Lookups name a handful of headers, mostly as literals: each spelling is worked
    # out once instead of on every call.
    return canonical_name(name).lower()


class Headers:
    """Ordered (name, value) pairs, one per header line, looked up case-insensitively.

    Lookups go through an index (lowercase name -> the values of its lines, in order),
    built at the first lookup and dropped at every change: a message is read many times
    (transactions, validation, the dialog, the application) and changed rarely.
    """

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        self._index: dict[str, list[str]] | None = None
        for name, value in items:
            self.add(name, value)

    @staticmethod
    def _key(name: str) -> str:
        return _lookup_key(name)

    def _lines_of(self, key: str) -> list[str]:
        index = self._index
        if index is None:
            index = {}
            for n, v in self._items:
                lower = n.lower()
                values = index.get(lower)
                if values is None:
                    index[lower] = [v]
                else:
                    values.append(v)
            self._index = index
        return index.get(key, _NONE)

    def add(self, name: str, value: str) -> None:
        # Local misuse (not peer garbage), so a plain ValueError: a CR or LF here would
        # let a value inject header lines into what we send.
        if not is_token(name):
            raise ValueError(f"invalid SIP header name {name!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"CR/LF in value of header {name!r}")
        self._items.append((canonical_name(name), value))
        self._index = None

    def _add_parsed(self, name: str, value: str) -> None:
        """`add` for the parser, which has checked the name and split the lines already."""
        self._items.append((canonical_name(name), value))
        self._index = None

    def set(self, name: str, value: str) -> None:
        """Replace every line of `name` by one, kept where the first one was."""
        key = self._key(name)
        index = next((i for i, (n, _) in enumerate(self._items) if n.lower() == key), None)
        self.remove(name)
        self.add(name, value)
        if index is not None:
            self._items.insert(index, self._items.pop())

    def remove(self, name: str) -> None:
        key = self._key(name)
        self._items = [(n, v) for n, v in self._items if n.lower() != key]
        self._index = None

    def get(self, name: str) -> str | None:
        values = self._lines_of(self._key(name))
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        """Every value: one per line, and list headers split into their elements."""
        key = self._key(name)
        values = self._lines_of(key)
        if key in _LIST_HEADERS:
            return [element for v in values for element in split_list(v)]
        return list(values)

    def get_lines(self, name: str) -> list[str]:
        """The raw value of each line of `name`, unsplit (what a response echoes)."""
        return list(self._lines_of(self._key(name)))

    def count(self, name: str) -> int:
        return len(self._lines_of(self._key(name)))

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def copy(self) -> Headers:
        clone = Headers()
        clone._items = list(self._items)
        clone._index = self._index  # never changed in place, only dropped: safe to share
        return clone

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.count(name) > 0

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(n.lower(), v) for n, v in self._items] == [
            (n.lower(), v) for n, v in other._items
        ]

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"
