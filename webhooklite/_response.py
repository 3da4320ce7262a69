"""Reading one HTTP/1.1 response from bytes (sans-IO): the Sender's and the AsyncSender's parser.

Neither transport reads a socket through ``http.client``: the thread Sender
calls ``recv`` and the AsyncSender gets ``data_received``, and both hand the
bytes to a :class:`ResponseReader`, which knows where the answer ends
(Content-Length, chunked, or the connection's close, RFC 9112 §6.3), keeps
at most ``cap`` bytes of its body, and says whether the connection can carry
the next request. One set of framing rules for both, as h11 has one for its
sync and async users.

It is strict where a mistake would make the next answer on a kept-alive
connection the wrong one (a malformed status line, a header name that is not a
token, two different Content-Lengths, a bad chunk size: :class:`ProtocolError`)
and lenient where RFC 9112 lets a recipient be (a bare LF ends a line, an
obsolete folded header line is joined with a space, the reason phrase may be
missing). Interim 1xx answers (``100 Continue``, ``103 Early Hints``) are
skipped.
"""
import re
from typing import Dict, List, Set

from .headers import parse_uint

__all__ = ["ProtocolError", "ResponseReader", "MAX_HEAD"]

#: Most bytes of status line and headers together (http.client allows 100 lines of 64 KiB).
MAX_HEAD = 64 * 1024
#: Most header lines in one response.
MAX_HEADERS = 100
#: Longest chunk-size line (size, extensions) or trailer line.
_MAX_LINE = 4096

#: The empty line that ends a head; a bare LF ends a line too (RFC 9112 §2.2).
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_STATUS_LINE = re.compile(r"HTTP/(\d)\.(\d) ([0-9]{3})(?: (.*))?")
#: A header name (RFC 9110 token). headers.py will offer one shared check; until then, this regex.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
#: Header names already found to be tokens (servers repeat the same few): the regex runs once per name.
_NAMES_SEEN: Set[str] = set()

# States of the reader.
_HEAD, _LENGTH, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _DONE = range(8)


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 that can be read safely."""


class ResponseReader:
    """One response to a POST, from the bytes fed to it; ``done`` once it is complete.

    ``feed(data)`` as bytes arrive and ``feed_eof()`` when the server closes;
    both return ``done``. Then ``status``, ``reason``, ``headers`` (lower-case
    names; repeated fields joined with ", "), ``body`` (at most ``cap``
    bytes) and ``reusable`` (the answer was framed, read to its end, did not
    ask to close, and nothing came after it) are set.
    """

    __slots__ = ("cap", "status", "reason", "headers", "body", "done", "truncated", "reusable", "started",
                 "_state", "_buf", "_left", "_parts", "_size", "_keep_alive", "_lines")

    def __init__(self, cap: int) -> None:
        #: Most body bytes kept; past that the reading stops (the connection is not reused).
        self.cap = cap
        #: The status code, once the head is read.
        self.status = 0
        #: The reason phrase ("" when the server sent none).
        self.reason = ""
        #: The response headers, lower-case names.
        self.headers: Dict[str, str] = {}
        #: The body, at most ``cap`` bytes (set when done).
        self.body = b""
        #: True when the whole answer is read (or ``cap`` bytes of its body).
        self.done = False
        #: True when the body went past ``cap`` and was cut.
        self.truncated = False
        #: True when the connection may carry another request.
        self.reusable = False
        #: True once any byte has arrived (a kept-alive connection closed before that may be retried).
        self.started = False
        self._state = _HEAD
        self._buf = b""
        self._left = 0
        self._parts: List[bytes] = []
        self._size = 0
        self._keep_alive = False
        self._lines = 0

    def feed(self, data: bytes) -> bool:
        """Take the next bytes from the connection; return ``done``."""
        if not data:
            return self.done
        self.started = True
        if self._state == _DONE:
            self.reusable = False  # the server spoke out of turn: never reuse this connection
            return True
        buf = self._buf + data if self._buf else data
        self._buf = b""
        while buf and self._state != _DONE:
            buf = self._step(buf)
        if buf and self._state == _DONE:
            self.reusable = False  # more than one answer to one request
        return self.done

    def feed_eof(self) -> bool:
        """The server closed the connection; return ``done`` (False: the answer was cut short)."""
        if self._state == _UNTIL_CLOSE:
            self._finish()
        self.reusable = False
        return self.done

    # -- the states ----------------------------------------------------------------------------

    def _step(self, buf: bytes) -> bytes:
        """Consume what the current state can from ``buf``; return the rest (kept if incomplete)."""
        state = self._state
        if state == _HEAD:
            m = _HEAD_END.search(buf)
            if m is None:
                if len(buf) > MAX_HEAD:
                    raise ProtocolError(f"the response head is larger than {MAX_HEAD} bytes")
                self._buf = buf
                return b""
            end = m.start()
            if end > MAX_HEAD:
                raise ProtocolError(f"the response head is larger than {MAX_HEAD} bytes")
            self._head(buf[:end].decode("latin-1"))
            return buf[m.end():]
        if state == _LENGTH or state == _CHUNK_DATA:
            n = len(buf)
            left = self._left
            if n >= left:
                self._take(buf[:left] if n > left else buf)
                self._left = 0
                if self._state != _DONE:
                    if state == _LENGTH:
                        self._finish()
                    else:
                        self._state = _CHUNK_END
                return buf[left:] if n > left else b""
            self._take(buf)
            self._left = left - n
            return b""
        if state == _UNTIL_CLOSE:
            self._take(buf)
            return b""
        # Line-oriented states: a chunk size, the CRLF after a chunk, a trailer line.
        nl = buf.find(b"\n")
        if nl < 0:
            if len(buf) > _MAX_LINE:
                raise ProtocolError("a chunk-size or trailer line is too long")
            self._buf = buf
            return b""
        line = buf[:nl - 1] if nl and buf[nl - 1] == 13 else buf[:nl]
        rest = buf[nl + 1:]
        if state == _CHUNK_END:
            if line:
                raise ProtocolError("a chunk's data is not followed by CRLF")
            self._state = _CHUNK_SIZE_LINE
        elif state == _CHUNK_SIZE_LINE:
            size = line.split(b";", 1)[0].strip(b" \t")
            if not _CHUNK_SIZE.fullmatch(size):
                raise ProtocolError(f"malformed chunk size {printable_bytes(line)}")
            self._left = int(size, 16)
            self._state = _CHUNK_DATA if self._left else _TRAILER
        else:  # _TRAILER: skipped (nothing here reads them); an empty line ends the response
            if not line:
                self._finish()
            else:
                self._lines += 1
                if self._lines > MAX_HEADERS:
                    raise ProtocolError(f"more than {MAX_HEADERS} header and trailer lines")
        return rest

    def _head(self, head: str) -> None:
        crlf = head.count("\n")
        if head.count("\r") == crlf and "\x00" not in head:
            lines = head.split("\r\n")  # every line ends in CRLF, no bare CR, no NUL: the usual answer
            if len(lines) != crlf + 1:
                lines = head.split("\n")  # a CR that is not before its LF: the slow path finds it
        else:
            lines = head.split("\n")
        first = lines[0][:-1] if lines[0].endswith("\r") else lines[0]
        m = _STATUS_LINE.fullmatch(first)
        if m is None:
            raise ProtocolError(f"malformed status line {printable_str(first)}")
        major, minor, code, reason = m.groups()
        if major != "1":
            raise ProtocolError(f"not an HTTP/1.x answer: {printable_str(first)}")
        status = int(code)
        if len(lines) > MAX_HEADERS + 1:
            raise ProtocolError(f"more than {MAX_HEADERS} header lines")
        headers: Dict[str, str] = {}
        last = ""
        for raw in lines[1:]:
            line = raw[:-1] if raw.endswith("\r") else raw
            if "\r" in line or "\x00" in line:
                raise ProtocolError(f"a header line holds a CR or NUL: {printable_str(line)}")
            if line[:1] in (" ", "\t"):
                if not last:
                    raise ProtocolError("the first header line is folded")
                headers[last] += " " + line.strip(" \t")  # obsolete line folding (RFC 9112 §5.2)
                continue
            name, colon, value = line.partition(":")
            if not colon:
                raise ProtocolError(f"malformed header line {printable_str(line)}")
            if name not in _NAMES_SEEN:
                if not _TOKEN.fullmatch(name):
                    raise ProtocolError(f"malformed header line {printable_str(line)}")
                if len(_NAMES_SEEN) < 512:
                    _NAMES_SEEN.add(name)
            last = name.lower()
            value = value.strip(" \t")
            headers[last] = headers[last] + ", " + value if last in headers else value
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError("101 Switching Protocols, which was not asked for")
            self._lines = 0
            return  # an interim answer: the final one follows on the same connection
        self.status, self.reason, self.headers = status, reason or "", headers
        connection = headers.get("connection", "").lower()
        if minor == "0":
            self._keep_alive = "keep-alive" in connection
        else:
            self._keep_alive = "close" not in connection
        if status == 204 or status == 304:
            self._finish()
            return
        te = headers.get("transfer-encoding")
        if te is not None:
            if "content-length" in headers:
                self._keep_alive = False  # RFC 9112 §6.3: chunked wins, and the connection closes after
            if te.rsplit(",", 1)[-1].strip(" \t").lower() == "chunked":
                self._state = _CHUNK_SIZE_LINE
            else:
                self._state, self._keep_alive = _UNTIL_CLOSE, False
            return
        cl = headers.get("content-length")
        if cl is not None:
            values = {parse_uint(v) for v in cl.split(",")}  # "13, 13" is one length, "13, 14" is none
            length = values.pop() if len(values) == 1 else None
            if length is None:
                raise ProtocolError(f"malformed Content-Length {printable_str(cl)}")
            self._left = length
            if length:
                self._state = _LENGTH
            else:
                self._finish()
            return
        self._state, self._keep_alive = _UNTIL_CLOSE, False

    def _take(self, data: bytes) -> None:
        room = self.cap - self._size
        if len(data) > room:
            data = data[:room]
            self.truncated = True
        if data:
            self._parts.append(data)
            self._size += len(data)
        if self.truncated:
            self._finish()

    def _finish(self) -> None:
        parts = self._parts
        self.body = parts[0] if len(parts) == 1 else b"".join(parts)
        self._state = _DONE
        self.done = True
        self.reusable = self._keep_alive and not self.truncated


def printable_str(text: str, limit: int = 200) -> str:
    """``text`` quoted for an error message: at most ``limit`` characters, controls escaped."""
    return repr(text[:limit])


def printable_bytes(data: bytes, limit: int = 200) -> str:
    return repr(data[:limit].decode("latin-1"))
