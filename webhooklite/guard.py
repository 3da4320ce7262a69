"""The sender's SSRF guard: refuse to connect to addresses inside the network.

A sender that POSTs to URLs its users type in can be aimed at the machine it
runs on (``http://127.0.0.1:6379/``), the private network, or a cloud's
metadata service (``http://169.254.169.254/``). With
``Sender(url, block_private=True)`` the host is resolved once, every address
it resolves to is checked, and the connection is made to a checked address
(so a DNS answer that changes between check and connect cannot slip through);
TLS still verifies the certificate against the URL's host name.

Refused: loopback, private (RFC 1918, ULA ``fc00::/7``, site-local ``fec0::/10``), link-local
(``169.254.0.0/16`` with the metadata service, ``fe80::/10``), multicast,
unspecified, reserved and every other non-global range (e.g. ``100.64.0.0/10``),
and IPv6 addresses that embed a refused IPv4 one (``::ffff:127.0.0.1``, NAT64
``64:ff9b::/96``, 6to4 ``2002::/16``).
"""
import ipaddress
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union

from .errors import WebhookError

__all__ = ["BlockedAddressError", "Resolver", "refusal", "resolve", "AddressGuard", "guard_for", "addresses"]

#: ``resolver(host, port) -> IP address strings``; the default is :func:`resolve`.
Resolver = Callable[[str, int], Iterable[str]]

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_METADATA = ipaddress.ip_address("169.254.169.254")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddressError(WebhookError):
    """A URL's host is, or resolves to, an address the SSRF guard refuses.

    It is never retried: the message says which address and why.
    """

    def __init__(self, message: str, address: str, reason: str) -> None:
        super().__init__(message)
        #: The refused IP address, as text.
        self.address = address
        #: Why, in words: "loopback address", "private address", ...
        self.reason = reason


def _embedded_v4(ip: ipaddress.IPv6Address) -> Optional[ipaddress.IPv4Address]:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def refusal(address: Union[str, IPAddress]) -> Optional[str]:
    """Why the guard refuses ``address`` (e.g. ``"loopback address"``), or None when it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            why = refusal(inner)
            if why is not None:
                return f"{why} {inner} inside an IPv6 address"
            if ip.ipv4_mapped is not None or ip in _NAT64:
                return None  # ::ffff:a.b.c.d and 64:ff9b::a.b.c.d reach a.b.c.d, which is public
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if ip == _METADATA:
        return "link-local address (the cloud metadata service)"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_private:
        return "private address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        # fec0::/10: deprecated (RFC 3879) but still routed inside some networks; ipaddress calls it global.
        return "site-local address (fec0::/10)"
    if ip.is_reserved:
        return "reserved address"
    if not ip.is_global:
        return "address that is not globally routable"
    return None


def _same_ip(host: str, ip: IPAddress) -> bool:
    try:
        return ipaddress.ip_address(host) == ip
    except ValueError:
        return False


def resolve(host: str, port: int) -> List[str]:
    """Every address ``host`` resolves to for a TCP connection (``socket.getaddrinfo``)."""
    import socket

    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class AddressGuard:
    """Resolves a host once and checks every address; the Sender connects only to those.

    ``allow`` lists networks that are let through anyway (``["10.1.2.0/24"]``
    for one internal service). ``resolver(host, port)`` returns address
    strings; it defaults to :func:`resolve` (tests pass their own).
    """

    def __init__(self, allow: Iterable[str] = (), resolver: Optional[Resolver] = None) -> None:
        self.allow: Sequence[IPNetwork] = tuple(ipaddress.ip_network(n, strict=False) for n in allow)
        self.resolver: Resolver = resolver or resolve

    def _allowed(self, ip: IPAddress) -> bool:
        if any(ip in net for net in self.allow):
            return True
        inner = _embedded_v4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        return inner is not None and any(inner in net for net in self.allow)

    def check(self, host: str, port: int) -> List[IPAddress]:
        """The addresses to connect to; raises BlockedAddressError if any of them is refused."""
        found: List[IPAddress] = []
        for text in self.resolver(host, port):
            ip = ipaddress.ip_address(str(text).split("%", 1)[0])
            if ip in found:
                continue
            why = None if self._allowed(ip) else refusal(ip)
            if why is not None:
                shown = host if _same_ip(host, ip) else f"{host} ({ip})"
                raise BlockedAddressError(
                    f"refused to connect to {shown}: {why}; block_private=True allows "
                    "only public addresses",
                    str(ip),
                    why,
                )
            found.append(ip)
        if not found:
            import socket

            raise socket.gaierror(f"{host} resolved to no address")
        return found


def guard_for(block_private: bool, allow_networks: Iterable[str], resolver: Optional[Resolver]) -> Optional[AddressGuard]:
    """The guard a sender's ``block_private``/``allow_networks``/``resolver`` options ask for, or None."""
    if block_private:
        return AddressGuard(allow_networks, resolver)
    if allow_networks:
        raise ValueError("allow_networks is an option of block_private=True")
    return None


def addresses(host: str, port: int, guard: Optional[AddressGuard] = None,
              resolver: Optional[Resolver] = None) -> List[Tuple[int, Any]]:
    """``(family, sockaddr)`` to connect to for ``host:port``, in the order to try them.

    Checked by ``guard`` when there is one; from ``resolver`` or the system's
    resolver otherwise. Blocking (DNS): the AsyncSender calls it in a thread.
    """
    import socket

    if guard is not None:
        ips = [str(ip) for ip in guard.check(host, port)]
    elif resolver is not None:
        ips = [str(a).split("%", 1)[0] for a in resolver(host, port)]
    else:
        found: List[Tuple[int, Any]] = []
        for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
            if (family, sockaddr) not in found:
                found.append((family, sockaddr))
        return interleave(found)
    if not ips:
        raise socket.gaierror(f"{host} resolved to no address")
    return interleave([(socket.AF_INET6 if ":" in ip else socket.AF_INET, (ip, port)) for ip in ips])


def interleave(addresses: List[Tuple[int, Any]]) -> List[Tuple[int, Any]]:
    """Addresses in the resolver's order, families alternating from the first's (RFC 8305 §4)."""
    if len({family for family, _ in addresses}) < 2:
        return addresses
    first = addresses[0][0]
    same = [a for a in addresses if a[0] == first]
    other = [a for a in addresses if a[0] != first]
    out: List[Tuple[int, Any]] = []
    for i in range(max(len(same), len(other))):
        out += same[i:i + 1] + other[i:i + 1]
    return out
