"""The speed-ups (issue 4) change no behaviour: each fast path against the slow one it skips.

benchmarks/ measures the speed; these prove the answers stay the same.
"""
import datetime
import decimal
import io
import json
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

import webhooklite
from webhooklite.events import _json, encode_json
from webhooklite.server import WebhookServer

ROOT = Path(__file__).resolve().parent.parent

HEADS = [
    b"Host: x\r\nContent-Length: 2\r\n\r\n",
    b"Host: x\r\nX-A: 1\r\nx-a: 2\r\nX-B:   spaced \t \r\nEmpty:\r\n\r\n",
    b"Host: x\r\nX-Latin: caf\xe9\r\n\r\n",
    b"Host: x\nBare-LF: 1\r\n\r\n",  # bare LF line end
    b"Host: x\r\nBare-CR: a\rb\r\n\r\n",  # bare CR in a value
    b"Host: x\r\nNul: a\x00b\r\n\r\n",
    b"Host: x\r\n folded: 1\r\n\r\n",  # obs-fold / leading white space
    b"Host: x\r\nBad : 1\r\n\r\n",  # white space before the colon
    b"Host: x\r\nno colon\r\n\r\n",
    b"Host: x\r\n: no name\r\n\r\n",
    b"\r\n",  # no header at all
    b"Host: x\r\nX: " + b"v" * 200 + b"\r\n\r\n",  # over max_line below
    b"".join(b"H%d: v\r\n" % i for i in range(12)) + b"\r\n",  # over max_headers below
    b"Host: x\r\nTrunc",  # the head has not all arrived
    b"Host: x\r\nVt: a\x0bb\r\n\r\n",  # VT and FF: refused like CR and LF
    b"Host: x\r\nFf: a\x0cb\r\n\r\n",
    b"Host: x\r\nTab: a\tb\x7f\x85\xff\r\n\r\n",  # tab, DEL and obs-text are allowed
    b"Host: x\r\nHost\r\n\r\n",  # a name seen valid before, without its colon
    b"Host: x\r\r\n\r\n",  # a CR that ends the last line before the CRLF
    b"Host: x\n\r\n\r\n",
    b"Host: x\r\nX-\xe9: 1\r\n\r\n",  # a name outside the token characters
]


def _parse(server, head, fast):
    rfile = io.BufferedReader(io.BytesIO(head + b"BODY\r\n\r\nmore"), 65536)
    if fast:
        got = server._read_plain_headers(rfile, server.max_header_line, server.max_headers, server.max_header_bytes)
        return (None if got is None else dict(got.items())), rfile.read()
    try:
        return dict(server._read_headers.__func__(_SlowOnly(server), rfile).items()), rfile.read()
    except Exception as e:  # _Reject: the status the slow path answers
        return ("refused", e.response.status), None


class _SlowOnly:
    """The server with its fast path switched off: _read_headers runs line by line."""

    def __init__(self, server):
        self._server = server

    def __getattr__(self, name):
        return getattr(self._server, name)

    @staticmethod
    def _read_plain_headers(*args):
        return None


@pytest.fixture
def server():
    s = WebhookServer(webhooklite.Receiver(None), max_header_line=100, max_headers=10)
    yield s
    s.stop()


@pytest.mark.parametrize("head", HEADS)
def test_plain_head_fast_path_matches_the_line_by_line_parser(server, head):
    fast, fast_rest = _parse(server, head, fast=True)
    slow, slow_rest = _parse(server, head, fast=False)
    if fast is None:
        # Declined: nothing consumed, the slow path decides (and refuses the malformed ones).
        assert fast_rest == head + b"BODY\r\n\r\nmore"
    else:
        assert fast == slow and fast_rest == slow_rest == b"BODY\r\n\r\nmore"
    plain = head.endswith(b"\r\n\r\n") and head[:2] != b"\r\n" and b"\x00" not in head
    plain = plain and b"\n" not in head.replace(b"\r\n", b"") and b"\r" not in head.replace(b"\r\n", b"")
    if plain and isinstance(slow, dict):
        assert fast is not None, "an ordinary head must take the fast path"


def test_parse_field_section_accepts_exactly_what_the_grammar_does():
    """Its str-method checks against the grammar's regular expression (each line through
    split_field_line, as the line-by-line path reads them), over heads built from the troublesome
    characters (CR, LF, NUL, VT, FF, tab, colon, space, obs-text, beyond latin-1)."""
    import random

    from webhooklite.headers import parse_field_section, split_field_line

    rng = random.Random(9112)
    pieces = ["Host", "X-A", "x-a", ":", " ", "\t", "v1,abc=", "\r\n", "\r", "\n", "\x00", "\x0b", "\x0c",
              "\x7f", "\x85", "\xff", "\u0100", "(", ""]
    for _ in range(20000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        hosts = [line for line in text.split("\r\n") if line.partition(":")[0].lower() == "host"]
        want = all(split_field_line(line) for line in text.split("\r\n")) and len(hosts) <= 1
        got = parse_field_section(text)
        assert (got is not None) == want, repr(text)
        if got is not None:
            for line in text.split("\r\n"):
                name, _, value = line.partition(":")
                assert value.strip(" \t") in got[name.lower()].split(", "), repr(text)


def test_parse_field_section_counts_lines_not_names():
    from webhooklite.headers import parse_field_section

    twelve = "\r\n".join(["X-A: 1"] * 12)  # one name on twelve lines: twelve against the limit
    assert parse_field_section(twelve, max_lines=12) == {"x-a": ", ".join(["1"] * 12)}
    assert parse_field_section(twelve, max_lines=11) is None


def test_utc_remembers_one_second_and_answers_each_other_one_afresh():
    from webhooklite.events import utc

    def fresh(ts):
        return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)

    for ts in (1764660000, 1764660000, 1764660001, 1764660000, 0, 1764660001):
        assert utc(ts) == fresh(ts) and utc(ts).tzinfo is datetime.timezone.utc, ts
    assert utc(None) is None and utc(10**20) is None and utc(1764660001) == fresh(1764660001)


def test_encode_json_plain_fast_path_is_byte_for_byte_the_full_encoder():
    values = [
        {"event": "payment.completed", "amount": 25.0, "n": 3, "ok": True, "none": None, "t": (1, 2),
         "nested": {"é": "naïve ☃", "list": [1.5, -0.0, 10**20]}},
        [1, "two", 3.0],
        "plain",
    ]
    for v in values:
        assert encode_json(v) == _json()[2]("\x00m\x00").encode(v).encode("utf-8")  # the rich encoder
    # Types only the full encoder knows still go through it.
    mixed = {"when": datetime.datetime(2026, 4, 14, 8, 30, tzinfo=datetime.timezone.utc),
             "price": decimal.Decimal("25.10"), "id": uuid.UUID(int=1)}
    assert json.loads(encode_json(mixed)) == {"when": "2026-04-14T08:30:00Z", "price": 25.1,
                                               "id": "00000000-0000-0000-0000-000000000001"}
    assert b'"price":25.10' in encode_json(mixed)
    with pytest.raises(ValueError):
        encode_json({"x": float("nan")})
    with pytest.raises(TypeError):
        encode_json({"x": object()})


def test_import_stays_light():
    heavy = ["logging", "http", "http.client", "email", "urllib", "uuid", "dataclasses", "decimal",
             "socket", "sqlite3", "random", "select"]
    code = (
        "import sys; before = set(sys.modules); import webhooklite; "
        f"print([m for m in {heavy!r} if m in sys.modules and m not in before])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_sender_writes_head_and_body_in_one_write_and_reuses_the_connection():
    """One recv gets the whole request (it leaves in one write); two sends use one connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    port = listener.getsockname()[1]
    seen = {"connections": 0, "first_reads": []}

    def serve():
        conn, _ = listener.accept()
        seen["connections"] += 1
        conn.settimeout(5)
        with conn:
            for _ in range(2):
                data = conn.recv(65536)  # one write of head + body arrives whole on loopback
                seen["first_reads"].append(data)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with webhooklite.Sender(f"http://127.0.0.1:{port}/", "whsec_" + "A" * 40, timeout=5) as sender:
        for n in range(2):
            assert sender.send("x.y", {"n": n}).ok
    t.join(5)
    listener.close()
    assert seen["connections"] == 1
    for n, data in enumerate(seen["first_reads"]):
        head, sep, body = data.partition(b"\r\n\r\n")
        assert sep and json.loads(body)["n"] == n
        assert int(dict(l.split(b": ", 1) for l in head.split(b"\r\n")[1:])[b"Content-Length"]) == len(body)
