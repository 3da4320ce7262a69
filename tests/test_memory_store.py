"""MemoryStore: begin/commit/abort, and it remembers exactly the last max_ids handled ids."""
import random
import threading
from collections import OrderedDict

import pytest

from webhooklite import MemoryStore


class Reference:
    """The obvious implementation (an OrderedDict of handled ids), to compare against."""

    def __init__(self, max_ids: int) -> None:
        self.max_ids = max_ids
        self.done: "OrderedDict[str, None]" = OrderedDict()
        self.busy = set()

    def begin(self, id: str) -> str:
        if id in self.done:
            return "done"
        if id in self.busy:
            return "busy"
        self.busy.add(id)
        return "new"

    def commit(self, id: str) -> None:
        self.busy.discard(id)
        self.done[id] = None
        if len(self.done) > self.max_ids:
            self.done.popitem(last=False)

    def abort(self, id: str) -> None:
        self.busy.discard(id)


def test_new_busy_done_and_abort():
    s = MemoryStore()
    assert s.begin("a") == "new"
    assert s.begin("a") == "busy"
    s.abort("a")
    assert s.begin("a") == "new"  # a failed attempt may be handled again
    s.commit("a")
    assert s.begin("a") == "done"
    assert s.begin("a") == "done"
    assert len(s) == 1


def test_max_ids_must_be_positive():
    with pytest.raises(ValueError):
        MemoryStore(max_ids=0)


def test_forgets_the_oldest_first():
    s = MemoryStore(max_ids=3)
    for id in "abcde":
        assert s.begin(id) == "new"
        s.commit(id)
    assert len(s) == 3
    assert [s.begin(id) for id in "cde"] == ["done"] * 3
    assert s.begin("a") == "new" and s.begin("b") == "new"


def test_committing_a_remembered_id_again_keeps_its_place():
    s = MemoryStore(max_ids=3)
    for id in "abc":
        s.commit(id)
    s.commit("a")  # already remembered: not moved to the newest place, nothing forgotten
    assert len(s) == 3
    s.commit("d")  # so "a" is still the oldest
    assert s.begin("a") == "new"
    assert [s.begin(id) for id in "bcd"] == ["done"] * 3


@pytest.mark.parametrize("max_ids", [1, 2, 7, 64, 65, 1000])
def test_same_answers_as_an_ordered_dict(max_ids):
    rnd = random.Random(max_ids)
    s, ref = MemoryStore(max_ids=max_ids), Reference(max_ids)
    ids = [f"msg_{i}" for i in range(3 * max_ids + 50)]
    for step in range(20 * max_ids + 2000):
        id = rnd.choice(ids) if rnd.random() < 0.3 else ids[step % len(ids)]
        answer = s.begin(id)
        assert answer == ref.begin(id), (step, id)
        if answer == "new":
            if rnd.random() < 0.1:
                s.abort(id), ref.abort(id)
            else:
                s.commit(id), ref.commit(id)
        elif rnd.random() < 0.05:
            s.commit(id), ref.commit(id)  # a commit without begin, or a second one
        assert len(s) == len(ref.done)
    assert all(s.begin(id) == "done" for id in ref.done)


def test_bounded_after_many_ids():
    s = MemoryStore(max_ids=1000)
    for i in range(20_000):
        s.commit(f"id{i}")
    assert len(s) == 1000
    assert all(s.begin(f"id{i}") == "done" for i in range(19_000, 20_000))
    assert all(s.begin(f"id{i}") == "new" for i in range(18_000, 19_000))


def test_threads_each_id_handled_once():
    s = MemoryStore(max_ids=100_000)
    ids = [f"id{i}" for i in range(5000)]
    won = []
    lock = threading.Lock()

    def work(seed: int) -> None:
        mine = ids[:]
        random.Random(seed).shuffle(mine)
        for id in mine:
            if s.begin(id) == "new":
                s.commit(id)
                with lock:
                    won.append(id)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads)
    assert sorted(won) == sorted(ids)
    assert len(s) == len(ids)


def test_bounded_beyond_the_shard_count():
    s = MemoryStore(max_ids=300_000)  # more than 64 ids per shard
    for i in range(310_000):
        s.commit(f"id{i}")
    assert len(s) == 300_000
    assert s.begin("id9999") == "new" and s.begin("id10000") == "done" and s.begin("id309999") == "done"
