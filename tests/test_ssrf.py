"""The sender against hostile URLs and hostile endpoints.

- The SSRF guard (``Sender(..., block_private=True)``): loopback names and
  literals, IPv6 forms, decimal/hex IPv4 spellings, private ranges, and a
  resolver that changes its answer between check and connect (DNS rebinding).
- A hostile endpoint: a response body read only up to a cap, a response that
  trickles in forever hits the timeout.
- TLS: certificates verified by default, ``ssl_context`` for a custom CA and
  mutual TLS, and the host name still verified when the guard connects to an IP.
- No header injection: CR/LF in event types and header values is refused.

The whole test world is loopback, so "public" addresses appear only in pure
checks (``refusal``) or through ``allow_networks``, never on the wire.
"""
import shutil
import socket
import ssl
import subprocess
import threading
import time
from typing import Callable, List, Optional

import pytest

import webhooklite
from webhooklite.guard import AddressGuard, BlockedAddressError, refusal, resolve

SECRET = "whsec_c3NyZi10ZXN0LXNlY3JldC1vZi0zMi1ieXRlcy1sb25n"


class TCPServer:
    """A loopback server that runs ``serve(conn)`` for each connection and counts requests."""

    def __init__(self, serve: Callable[["TCPServer", socket.socket], None], host: str = "127.0.0.1",
                 port: int = 0, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, port), family=family)
        self.sock.settimeout(0.05)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.serve, self.ssl_context = serve, ssl_context
        self.requests: List[bytes] = []
        self.errors: List[BaseException] = []
        self.server_names: List[Optional[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            if self.ssl_context is not None:
                conn = self.ssl_context.wrap_socket(conn, server_side=True)
            self.serve(self, conn)
        except (OSError, ssl.SSLError) as e:
            self.errors.append(e)
        finally:
            conn.close()

    def read_request(self, conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.append(head)
        return head

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)


def answer_ok(server: TCPServer, conn: socket.socket) -> None:
    while server.read_request(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")


@pytest.fixture
def servers():
    made: List[TCPServer] = []

    def make(serve=answer_ok, **kw) -> TCPServer:
        s = TCPServer(serve, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def guarded(url: str, **kw) -> webhooklite.Sender:
    kw.setdefault("retry", webhooklite.Retry(attempts=3, backoff=0.01))
    kw.setdefault("timeout", 3)
    return webhooklite.Sender(url, SECRET, block_private=True, **kw)


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# -- the guard: loopback names and literals, every spelling ---------------------------------------

# glibc's getaddrinfo parses a host with inet_aton rules first, so "2130706433" (decimal),
# "0x7f000001" (hex), "0177.0.0.1" (octal) and "127.1" (short) all mean 127.0.0.1 without any
# DNS query. A guard that looked at the URL text would miss them; this one checks what the
# name resolves to, which is also what is connected to.
V4_SPELLINGS = ["127.0.0.1", "localhost", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]"]


@pytest.mark.parametrize("host", V4_SPELLINGS)
def test_loopback_spellings_are_refused_and_not_retried(servers, host):
    server = servers()
    url = f"http://{host}:{server.port}/hook"
    try:
        reachable = webhooklite.Sender(url, timeout=3, retry=webhooklite.Retry(attempts=1)).send("x.y", {})
    except ValueError:
        pytest.skip(f"{host} is not a URL host on this Python")
    if not reachable.ok:
        pytest.skip(f"{host} does not reach 127.0.0.1 here: {reachable.error}")
    assert len(server.requests) == 1  # unguarded, this spelling really reaches the loopback server

    with guarded(url) as sender:
        d = sender.send("x.y", {})
    assert not d.ok and d.status is None and not d.retryable
    assert d.attempts == 1  # never retried
    assert "loopback" in d.error and "127.0.0.1" in d.error, d.error
    assert len(server.requests) == 1  # the guarded sender never got there


def test_ipv6_loopback_is_refused(servers):
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    server = servers(host="::1")
    url = f"http://[::1]:{server.port}/"
    assert webhooklite.Sender(url, retry=webhooklite.Retry(attempts=1)).send("x", {}).ok
    d = guarded(url).send("x", {})
    assert not d.ok and d.attempts == 1
    assert "::1" in d.error and "loopback" in d.error
    assert len(server.requests) == 1


def test_numeric_spellings_resolve_to_loopback():
    # Documents what the guard relies on: the resolved address, not the URL text.
    for spelling in ("2130706433", "0x7f000001", "127.1"):
        assert resolve(spelling, 80) == ["127.0.0.1"]


@pytest.mark.parametrize(
    "host, words",
    [
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("100.64.0.1", "not globally routable"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "255.255.255.255"),
        ("[fe80::1]", "link-local"),
        ("[fc00::1]", "private"),
        ("[fec0::1]", "site-local"),
        ("[feff:ffff::1]", "site-local"),
        ("[::]", "unspecified"),
        ("[ff02::1]", "multicast"),
        ("[::ffff:10.0.0.1]", "10.0.0.1 inside an IPv6"),
        ("[::ffff:169.254.169.254]", "cloud metadata"),
        ("[64:ff9b::a9fe:a9fe]", "169.254.169.254 inside an IPv6"),
        ("[2002:7f00:1::]", "127.0.0.1 inside an IPv6"),
    ],
)
def test_private_and_special_addresses_are_refused_before_connecting(host, words):
    start = time.monotonic()
    d = guarded(f"http://{host}:9/").send("x", {})
    assert not d.ok and d.attempts == 1 and not d.retryable
    assert words in d.error and host.strip("[]") in d.error, d.error
    assert time.monotonic() - start < 1.0  # refused on the address; no connection was tried


def test_public_addresses_pass_the_check():
    for address in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"):
        assert refusal(address) is None, address
    for address in ("127.0.0.1", "::1", "10.1.2.3", "::ffff:127.0.0.1", "169.254.169.254", "fe80::1%eth0"):
        assert refusal(address) is not None, address


def test_one_private_answer_among_public_ones_refuses_the_host():
    guard = AddressGuard(resolver=lambda host, port: ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(BlockedAddressError) as info:
        guard.check("mixed.example", 443)
    assert info.value.address == "10.0.0.7" and info.value.reason == "private address"
    assert "mixed.example (10.0.0.7)" in str(info.value)


def test_allow_networks_lets_one_internal_network_through(servers):
    server = servers()
    url = f"http://127.0.0.1:{server.port}/"
    assert guarded(url, allow_networks=["127.0.0.1/32"]).send("x", {}).ok
    assert not guarded(url, allow_networks=["10.0.0.0/8"]).send("x", {}).ok
    with pytest.raises(ValueError):
        webhooklite.Sender(url, allow_networks=["127.0.0.1/32"])  # only meaningful with block_private


# -- DNS rebinding: the address checked is the address connected to -------------------------------


class Rebinding:
    """A resolver whose answer changes after the first call, like a rebinding DNS server."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.calls: List[str] = []

    def __call__(self, host: str, port: int) -> List[str]:
        self.calls.append(host)
        return [self.answers[min(len(self.calls), len(self.answers)) - 1]]


@pytest.fixture
def two_hosts(servers):
    """A stand-in "public" server on 127.0.0.2 and an "internal" one on 127.0.0.1, same port."""
    for _ in range(20):
        public = servers(host="127.0.0.2")
        try:
            internal = servers(host="127.0.0.1", port=public.port)
        except OSError:
            continue
        return public, internal
    pytest.skip("could not bind 127.0.0.1 and 127.0.0.2 on one port")


def test_a_resolver_that_changes_its_answer_cannot_redirect_the_connection(two_hosts):
    public, internal = two_hosts
    resolver = Rebinding("127.0.0.2", "127.0.0.1")  # checked: "public"; then: internal
    sender = guarded(f"http://hooks.example:{public.port}/hook", allow_networks=["127.0.0.2/32"], resolver=resolver)
    d = sender.send("x", {})
    assert d.ok, d.error
    # Resolved once for the connection; the request went to the address that was checked.
    # ("hooks.example" has no DNS record: had http.client resolved it again, it would have failed.)
    assert resolver.calls == ["hooks.example"]
    assert len(public.requests) == 1 and not internal.requests
    assert b"Host: hooks.example:" in public.requests[0]  # the URL's host, not the IP
    # A new connection resolves again, and is checked again: now it is refused.
    sender.close()
    d = sender.send("x", {})
    assert not d.ok and d.attempts == 1 and "127.0.0.1" in d.error
    assert resolver.calls == ["hooks.example", "hooks.example"]
    assert not internal.requests


def test_a_refused_answer_is_not_retried_or_resolved_again(two_hosts):
    public, internal = two_hosts
    resolver = Rebinding("127.0.0.1", "127.0.0.2")
    d = guarded(f"http://hooks.example:{public.port}/", allow_networks=["127.0.0.2/32"], resolver=resolver).send("x", {})
    assert not d.ok and d.attempts == 1
    assert "hooks.example (127.0.0.1): loopback address" in d.error
    assert resolver.calls == ["hooks.example"]
    assert not internal.requests and not public.requests


# -- a hostile endpoint -----------------------------------------------------------------------------


def test_a_huge_response_is_read_only_up_to_the_cap(servers):
    sent = {}

    def huge(server, conn):
        server.read_request(conn)
        total = 0
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
            chunk = b"x" * 65536
            while total < 100_000_000:
                conn.sendall(chunk)
                total += len(chunk)
        finally:
            sent["bytes"] = total

    server = servers(huge)
    start = time.monotonic()
    d = webhooklite.Sender(f"http://127.0.0.1:{server.port}/", timeout=5).send("x", {})
    assert d.ok and len(d.response_body) == webhooklite.sender.RESPONSE_CAP
    assert time.monotonic() - start < 2
    time.sleep(0.2)
    assert sent["bytes"] < 10_000_000  # the sender hung up long before 100 MB


@pytest.mark.parametrize("where", ["status line", "headers", "body", "chunked body"])
def test_a_response_that_trickles_forever_hits_the_timeout(servers, where):
    def trickle(server, conn):
        server.read_request(conn)
        prefix = {
            "status line": b"",
            "headers": b"HTTP/1.1 200 OK\r\n",
            "body": b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
            "chunked body": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        }[where]
        conn.sendall(prefix)
        filler = b"1\r\nx\r\n" if where == "chunked body" else (b"HTTP/1.1 200 OK" if where == "status line" else b"X")
        for i in range(200):  # never ends within the test: 20 s of one byte per 0.1 s
            conn.sendall(filler[i % len(filler):i % len(filler) + 1])
            time.sleep(0.1)

    server = servers(trickle)
    start = time.monotonic()
    d = webhooklite.Sender(f"http://127.0.0.1:{server.port}/", timeout=1.0, retry=webhooklite.Retry(attempts=1)).send("x", {})
    elapsed = time.monotonic() - start
    assert not d.ok and "timed out" in d.error and d.retryable, d
    assert elapsed < 2.0, elapsed


def test_header_injection_is_refused():
    with pytest.raises(ValueError):
        webhooklite.Sender("http://127.0.0.1:9/", headers={"X-A": "1\r\nX-Injected: 1"})
    with pytest.raises(ValueError):
        webhooklite.Sender("http://127.0.0.1:9/", headers={"X-A\r\nX-B": "1"})
    with pytest.raises(ValueError):
        webhooklite.Sender("http://127.0.0.1:9/", headers={"X A": "1"})
    with pytest.raises(ValueError):
        webhooklite.Sender("http://127.0.0.1:9/", headers={"X-A": "1\x00"})
    sender = webhooklite.Sender("http://127.0.0.1:9/")
    for event in ("a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00"):
        with pytest.raises(ValueError):
            sender.send(event, {})
    with pytest.raises(ValueError):
        webhooklite.Sender("http://127.0.0.1:9/", SECRET, scheme="github").send("push\r\nX-Injected: 1", {})


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: cannot make a test certificate")
    d = tmp_path_factory.mktemp("tls")

    def make(name: str, subject: str, san: str) -> None:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.pem"), "-days", "2",
             "-subj", subject, "-addext", f"subjectAltName={san}"],
            check=True, capture_output=True, timeout=20,
        )

    make("server", "/CN=localhost", "DNS:localhost,DNS:hooks.example,IP:127.0.0.1")
    make("client", "/CN=webhooklite-client", "DNS:client.example")
    return d


def tls_server(servers, certs, *, client_ca: bool = False) -> TCPServer:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(certs / "server.pem"), str(certs / "server.key"))
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(certs / "client.pem"))
    names: List[Optional[str]] = []

    def on_sni(sock, name, context):
        names.append(name)

    ctx.sni_callback = on_sni
    server = servers(ssl_context=ctx)
    server.server_names = names
    return server


def test_tls_is_verified_by_default(servers, certs):
    server = tls_server(servers, certs)
    d = webhooklite.Sender(f"https://localhost:{server.port}/", SECRET, retry=webhooklite.Retry(attempts=3)).send("x", {})
    assert not d.ok and d.attempts == 1 and not d.retryable
    assert "certificate" in d.error, d.error
    assert not server.requests


def test_ssl_context_with_a_custom_ca(servers, certs):
    server = tls_server(servers, certs)
    ctx = ssl.create_default_context(cafile=str(certs / "server.pem"))
    d = webhooklite.Sender(f"https://localhost:{server.port}/", SECRET, ssl_context=ctx).send("x", {})
    assert d.ok, d.error
    assert server.server_names == ["localhost"]


def test_the_guard_connects_to_the_ip_but_verifies_the_url_host(servers, certs):
    server = tls_server(servers, certs)
    ctx = ssl.create_default_context(cafile=str(certs / "server.pem"))
    to_loopback = lambda host, port: ["127.0.0.1"]  # noqa: E731
    d = guarded(f"https://hooks.example:{server.port}/", ssl_context=ctx, allow_networks=["127.0.0.1/32"],
                resolver=to_loopback).send("x", {})
    assert d.ok, d.error
    assert server.server_names == ["hooks.example"]  # SNI is the URL's host, not the address
    # A host the certificate does not name fails verification, though the address is the same.
    d = guarded(f"https://other.example:{server.port}/", ssl_context=ctx, allow_networks=["127.0.0.1/32"],
                resolver=to_loopback).send("x", {})
    assert not d.ok and "certificate" in d.error and not d.retryable, d.error
    assert len(server.requests) == 1


def test_mutual_tls_with_a_client_certificate(servers, certs):
    server = tls_server(servers, certs, client_ca=True)
    url = f"https://localhost:{server.port}/"
    ctx = ssl.create_default_context(cafile=str(certs / "server.pem"))
    ctx.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
    d = webhooklite.Sender(url, SECRET, ssl_context=ctx).send("x", {})
    assert d.ok, d.error
    plain = ssl.create_default_context(cafile=str(certs / "server.pem"))
    d = webhooklite.Sender(url, SECRET, ssl_context=plain, retry=webhooklite.Retry(attempts=1)).send("x", {})
    assert not d.ok and d.status is None
    assert len(server.requests) == 1


def test_the_default_tls_context_is_built_once_per_sender(servers, certs, monkeypatch):
    # Issue 10 item 13. ssl.create_default_context() reads SSL_CERT_FILE when it is called: a
    # context built per connection would see the change below; one built once does not.
    def answer_and_close(server, conn):
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    server = tls_server(servers, certs)
    server.serve = answer_and_close
    monkeypatch.setenv("SSL_CERT_FILE", str(certs / "server.pem"))
    with webhooklite.Sender(f"https://localhost:{server.port}/", SECRET, retry=webhooklite.Retry(attempts=1)) as sender:
        assert sender.send("x", {}).ok
        monkeypatch.setenv("SSL_CERT_FILE", str(certs / "client.pem"))  # a CA that did not sign the server
        d = sender.send("x", {})  # a new connection: the server closed the first one
        assert d.ok, d.error
    assert len(server.requests) == 2
    d = webhooklite.Sender(f"https://localhost:{server.port}/", SECRET, retry=webhooklite.Retry(attempts=1)).send("x", {})
    assert not d.ok and "certificate" in d.error  # a new Sender builds its own, with today's CAs
