"""Which client sent a request, as the limits on bcrypt checks count clients (verification/admission.py).

With no trusted proxy (-trusted-proxies 0, the default) the client is the
connection's peer, and X-Forwarded-For is never read: anyone can write it.
Behind N trusted proxies, each appends the address it received the request
from, so the Nth entry from the right is the address the outermost trusted
proxy saw; whatever a client wrote itself sits further left and is never
read. Several X-Forwarded-For headers are one list, in order (Tornado joins
them with commas). When the header has fewer than N entries, or that entry
is no IP address, the request did not come through the proxies as
configured, and the peer (the nearest proxy) is the client: such requests
share one budget rather than choose their own.

An IPv6 client is its /64: a host is commonly given a whole /64 and could
otherwise take a fresh budget from each of its addresses. An IPv4 client
is its address. The result is text fit for a log line, never the header's
own text.
"""

import ipaddress
from typing import Optional

# The prefix an IPv6 client is counted by: a whole /64 is a common allocation to one host or one home.
IPV6_CLIENT_PREFIX = 64
_IPV6_HOST_BITS = 128 - IPV6_CLIENT_PREFIX


def client_of_address(text: str) -> Optional[str]:
    """The client an address stands for (an IPv4 address, or an IPv6 /64 as "2001:db8:1:2::/64"); None if
    text is no IP address. text may carry a port ("192.0.2.1:443", "[2001:db8::1]:443") and spaces."""
    text = text.strip()
    if text.startswith("["):
        text, closed, _port = text[1:].partition("]")
        if not closed:
            return None
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port; an IPv6 address has two colons or more
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Address(int(address) >> _IPV6_HOST_BITS << _IPV6_HOST_BITS)
        return f"{network}/{IPV6_CLIENT_PREFIX}"
    return str(address)


def client_address(peer: str, forwarded_for: str, trusted_proxies: int) -> str:
    """The client of a request from peer (the connection's remote address) with X-Forwarded-For forwarded_for
    ("" when absent), behind trusted_proxies trusted proxies."""
    if trusted_proxies:
        # Split from the right, trusted_proxies times at most: a long header costs no more than a short one.
        entries = forwarded_for.rsplit(",", trusted_proxies)
        if len(entries) >= trusted_proxies:
            client = client_of_address(entries[-trusted_proxies])
            if client is not None:
                return client
    return client_of_address(peer) or peer
