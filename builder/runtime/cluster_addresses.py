"""Host addresses of the cluster model: IPv4/IPv6 addresses, `a-b` ranges and the
`--masters`/`--nodes` lists made of them, the placeholder addresses of containers not yet
made, and host names. Values only, no I/O; part of the model in cluster.py, which re-exports
`parse_ip` and `parse_ip_list`.
"""

from __future__ import annotations

import ipaddress
import re

from builder.errors import InvalidCluster

MAX_RANGE_ADDRESSES = 4096

_HOSTNAME = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def is_host_name(name: str) -> bool:
    """Dot-separated labels of letters, digits and '-', at most 253 (as /etc/hosts takes them)."""
    return len(name) <= 253 and bool(_HOSTNAME.match(name))


def parse_ip(text: str) -> str:
    """One IPv4 or IPv6 address in canonical form (`ipaddress`'s spelling)."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        hint = None
        if text.count(":") == 1 and "." in text:
            hint = "per-host SSH ports go in a Clusterfile (hosts[].ssh.port), or --port for all"
        elif text.strip().isdigit():
            hint = "a count of hosts goes with --provider docker (containers); SSH hosts are given by address"
        raise InvalidCluster(f"{text!r} is not an IP address", hint=hint) from None


_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_BROADCAST = ipaddress.ip_address("255.255.255.255")


def _not_a_host(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why `address` cannot be a host (None: it can). Unspecified, broadcast and multicast
    addresses name no machine: SSH to them fails late (or reaches this machine, for 0.0.0.0)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        if address.is_unspecified:
            return "the unspecified address"
        if address in _THIS_NETWORK:
            return "in 0.0.0.0/8 ('this network', RFC 1122)"
        if address == _BROADCAST:
            return "the broadcast address"
        if address.is_multicast:
            return "a multicast address (224.0.0.0/4)"
    elif address.is_unspecified:
        return "the unspecified address"
    elif address.is_multicast:
        return "a multicast address (ff00::/8)"
    return None


def parse_host_ip(text: str) -> str:
    """`parse_ip` for a host's address: unspecified, broadcast and multicast are refused."""
    ip = parse_ip(text)
    problem = _not_a_host(ipaddress.ip_address(ip))
    if problem is not None:
        raise InvalidCluster(f"{ip} is {problem}, not a host", hint="give the host's own address")
    return ip


def expand_ip_range(text: str, *, limit: int = MAX_RANGE_ADDRESSES) -> tuple[str, ...]:
    """`a-b` with two full addresses, inclusive, as sealer's `TransferToIPList`; at most `limit`."""
    start_text, sep, end_text = text.partition("-")
    if not sep or "-" in end_text:
        raise InvalidCluster(f"{text!r} is not an IP range: expected FIRST-LAST")
    start = ipaddress.ip_address(parse_ip(start_text))
    try:
        end = ipaddress.ip_address(parse_ip(end_text))
    except InvalidCluster:
        if end_text.strip().isdigit():
            raise InvalidCluster(
                f"{text!r}: the end of a range is a full address",
                hint=f"write {start_text.strip()}-<full address>, e.g. 10.0.0.1-10.0.0.3",
            ) from None
        raise
    if start.version != end.version:
        raise InvalidCluster(f"{text!r} mixes IPv4 and IPv6")
    count = int(end) - int(start) + 1
    if count < 1:
        raise InvalidCluster(f"{text!r}: the range ends before it starts")
    if count > limit:
        raise InvalidCluster(f"{text!r} spans {count} addresses; at most {limit} are allowed")
    return tuple(str(start + i) for i in range(count))


def parse_ip_list(text: str, *, limit: int = MAX_RANGE_ADDRESSES) -> tuple[str, ...]:
    """A `--masters`/`--nodes` value: comma-separated addresses and `a-b` ranges, in order.

    sealer accepts either a list or one range; this accepts any mix of both. Duplicates,
    unspecified, broadcast and multicast addresses are refused; the whole expansion is
    bounded by `limit` addresses.
    """
    out: list[str] = []
    seen: set[str] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise InvalidCluster(f"{text!r} has an empty item")
        ips = expand_ip_range(item, limit=limit) if "-" in item else (parse_ip(item),)
        for ip in ips:
            parse_host_ip(ip)
            if ip in seen:
                raise InvalidCluster(f"{ip} is listed twice")
            seen.add(ip)
            out.append(ip)
            if len(out) > limit:
                raise InvalidCluster(f"{text!r} names more than {limit} addresses")
    return tuple(out)


# A CONTAINER cluster's hosts that do not exist yet (a Clusterfile's hosts[].count, a dry-run)
# stand at addresses of TEST-NET-1 (RFC 5737, never a real host) until the engine gives theirs.
PLACEHOLDER_NET = ipaddress.ip_network("192.0.2.0/24")
_PLACEHOLDER_FIRST = 10


def placeholder_ip(index: int) -> str:
    """The `index`th placeholder address (192.0.2.10, .11, ...)."""
    if not 0 <= index < 240:
        raise InvalidCluster(f"at most 240 containers at once, not {index + 1}", field="hosts")
    return str(PLACEHOLDER_NET[_PLACEHOLDER_FIRST + index])


def is_placeholder(ip: str) -> bool:
    return ipaddress.ip_address(ip) in PLACEHOLDER_NET
