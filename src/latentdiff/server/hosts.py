"""Which `Host` header names the server answers to: the guard against DNS rebinding.

A page on evil.example whose DNS name is re-pointed at 127.0.0.1 makes the victim's browser send
requests to this server that the browser thinks are same-origin with the page; they carry
`Host: evil.example[:port]`. So the name in `Host` is compared exactly (a prefix test once let
`127.0.0.1.evil.example` through): IP literals are parsed with `ipaddress`, names must match one the
server knows. Answered are:
- `localhost`, any 127.0.0.0/8 address and `::1` (bracketed in `Host`: `[::1]:7860`),
- the host given to `--host`, and every name given to `--allowed-hosts` (`*` turns the check off),
- any IP literal when the server listens on every interface (`--host 0.0.0.0` or `::`): a request
  addressed to an IP literal cannot come from a rebound name, and LAN clients use the machine's addresses.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable

LOCALHOST = "localhost"
ANY_HOST = "*"
# RFC 9110 Host = uri-host [ ":" port ]; a name is letters, digits, dots and dashes (no userinfo, no path)
_HOST_HEADER = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+))(?::[0-9]*)?")


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def normal_host(host: str) -> str:
    """One spelling per host: names lower-cased, addresses in their compressed form ('0:0::1' -> '::1')."""
    ip = ip_literal(host)
    return str(ip) if ip is not None else host.lower()


def is_loopback(host: str) -> bool:
    """True for `localhost`, 127.0.0.0/8 and ::1 (a `--host` value or a parsed Host name)."""
    ip = ip_literal(host)
    return host.lower() == LOCALHOST if ip is None else ip.is_loopback


def is_any_interface(host: str) -> bool:
    """True for 0.0.0.0 and :: (listen on every interface)."""
    ip = ip_literal(host)
    return ip is not None and ip.is_unspecified


def host_from_header(value: str) -> str | None:
    """The host of a `Host` header (`host[:port]`, IPv6 in brackets), normalised; None if malformed."""
    match = _HOST_HEADER.fullmatch(value)
    if match is None:
        return None
    ipv6, name = match.groups()
    if ipv6 is not None and not isinstance(ip_literal(ipv6), ipaddress.IPv6Address):
        return None
    return normal_host(ipv6 if ipv6 is not None else name)


class HostPolicy:
    """The names a server listening on `bind_host` answers to (see the module docstring)."""

    def __init__(self, bind_host: str, allowed_hosts: Iterable[str] = ()):
        allowed = [h.strip() for h in allowed_hosts if h.strip()]
        self.any_host = ANY_HOST in allowed
        self.any_ip = is_any_interface(bind_host)
        self.names = {LOCALHOST, *(normal_host(h) for h in allowed if h != ANY_HOST)}
        if not self.any_ip:
            self.names.add(normal_host(bind_host))

    def allows(self, host_header: str) -> bool:
        if self.any_host:
            return True
        host = host_from_header(host_header)
        if host is None:
            return False
        if host in self.names:
            return True
        ip = ip_literal(host)
        return ip is not None and (ip.is_loopback or self.any_ip)
