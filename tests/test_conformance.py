"""The receiver conformance check: webhooklite's own Receiver passes every probe; a receiver that
answers 200 to everything fails every probe a careful receiver refuses."""
import pytest

import webhooklite
from webhooklite.conformance import ACCEPT, REFUSE, probes, run

SECRETS = {"standard": webhooklite.generate_secret(), "github": "It's a Secret to Everybody", "stripe": "whsec_test_secret"}


def post_to(receiver):
    def post(headers, body):
        r = receiver.handle("POST", "/", headers, body)
        return r.status, r.body

    return post


@pytest.mark.parametrize("scheme", sorted(SECRETS))
def test_webhooklite_receiver_passes_every_probe(scheme):
    receiver = webhooklite.Receiver(SECRETS[scheme], scheme=scheme)
    runs = []
    receiver.on("*", lambda e: runs.append(e.id))
    results = run(probes(SECRETS[scheme], scheme), post_to(receiver))
    assert [r.probe.name for r in results if not r.ok] == []
    assert {r.probe.expect for r in results} == {ACCEPT, REFUSE}
    # The redelivery was answered 2xx without running the handler again.
    accepted = [r for r in results if r.probe.expect == ACCEPT]
    assert len(runs) == len(accepted) - 1


@pytest.mark.parametrize("scheme", sorted(SECRETS))
def test_a_receiver_that_answers_200_to_everything_fails_every_refusal(scheme):
    results = run(probes(SECRETS[scheme], scheme), lambda headers, body: (200, b"ok"))
    failed = [r.probe.name for r in results if not r.ok]
    assert failed == [r.probe.name for r in results if r.probe.expect == REFUSE]
    assert "bad signature" in failed and "body changed by one byte" in failed
    if scheme != "github":
        assert {"stale timestamp", "future timestamp"} <= set(failed)


def test_a_probe_that_gets_no_answer_fails_and_the_redelivery_waits_for_its_original():
    def down(headers, body):
        raise ConnectionRefusedError("connection refused")

    results = run(probes(SECRETS["standard"]), down)
    assert not any(r.ok for r in results)
    assert "connection refused" in results[0].got
    assert results[1].error.startswith("not sent")
