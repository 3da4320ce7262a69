"""Shared fixtures: secrets, signed requests, and the transports a Receiver runs on."""
import contextlib
import http.client
import json
import time
from typing import Callable, Dict, Iterator, Optional, Tuple

import pytest

import webhooklite
from webhooklite.signing import new_message_id

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

#: (status, headers as a lower-case dict, body) of one answer.
Answer = Tuple[int, Dict[str, str], bytes]
#: call(method, path, headers, body) -> Answer
Call = Callable[[str, str, Dict[str, str], bytes], Answer]


def signed(
    event: str = "payment.completed",
    data: Optional[dict] = None,
    *,
    secret=SECRET,
    msg_id: Optional[str] = None,
    timestamp: Optional[int] = None,
    body: Optional[bytes] = None,
) -> Tuple[Dict[str, str], bytes]:
    """Headers and body of a request signed the way a Sender signs it."""
    if body is None:
        body = webhooklite.events.encode_event(event, data or {"item": "Blue T-Shirt"})
    msg_id = msg_id or new_message_id()
    headers = {"Content-Type": "application/json"}
    headers.update(webhooklite.sign(body, secret, msg_id=msg_id, timestamp=timestamp))
    return headers, body


@contextlib.contextmanager
def socket_transport(receiver: webhooklite.Receiver) -> Iterator[Call]:
    """The Receiver on its own HTTP server, over a real loopback socket."""
    with receiver.start(port=0) as server:
        def call(method: str, path: str, headers: Dict[str, str], body: bytes) -> Answer:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
            finally:
                conn.close()

        yield call


#: Every transport a Receiver can run on; the status table is driven against each.
TRANSPORTS: Dict[str, Callable[[webhooklite.Receiver], "contextlib.AbstractContextManager[Call]"]] = {
    "socket": socket_transport,
}


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request):
    """A factory: ``with transport(receiver) as call: call(method, path, headers, body)``."""
    return TRANSPORTS[request.param]


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def body_json(answer: Answer) -> dict:
    return json.loads(answer[2])
