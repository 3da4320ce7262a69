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
from typing import Callable, Iterable, List, Optional, Sequence, Union

from .errors import WebhookError

__all__ = ["BlockedAddressError", "Resolver", "refusal", "resolve", "AddressGuard"]

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
