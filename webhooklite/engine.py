"""The engine: worker threads, one dispatcher, leases, renewals and pacing, over any durable job table.

There is no SQL here. A *queue* (the outbox's deliveries; the inbox's stored events) claims jobs
for the engine and writes down what became of them; the engine decides when to claim and how many,
which thread runs which job, when to renew the leases, and what an outcome means: done, retried at
a time on the schedule, or dead. :class:`Queue` is everything a queue offers, and a queue runs its
database's named queries through a backend (``webhooklite.backends``), so the engine works the same
on sqlite and on PostgreSQL.

    engine = Engine(queue, attempt, schedule=(0, 5, 300), workers=4, per_lane=2, lease=60.0)
    engine.start()
    engine.drain(queue.any_pending, timeout=30)
    engine.stop()

- **Lanes.** A queue's jobs come in lanes (the outbox: one lane per endpoint). At most
  ``per_lane`` threads work for one lane, so a slow lane never holds them all, and threads take
  jobs round-robin over the lanes.
- **Claims ahead, by pace.** The dispatcher claims about 0.1 s of work per thread slot at the
  lane's recent pace (2 to 64 jobs a slot): deep for a fast lane, so threads never wait for the
  database, shallow for a slow one, so other processes share its backlog. Before a lane's pace is
  known it claims the least, so a process that starts first does not take a backlog that a second
  process could share.
- **Leases.** A claim lasts ``lease`` seconds; the dispatcher renews every claim it holds (queued or
  in flight) every ``lease / 3`` seconds. A thread never starts a job whose lease could lapse
  before the attempt's own time budget ends (say the database was unreachable and the renewals
  failed): it drops the claim instead, and the job is claimed again when its lease runs out.
- **One writer.** The threads only run attempts; the dispatcher does every write in batches: the
  outcomes, the hand-backs, the renewals and the new claims of a round are one transaction.
- **Crews.** Each :meth:`Engine.start` makes a crew (a token, the threads, their queues, its own
  connection). A :meth:`Engine.stop` that times out leaves its crew to finish on its own (its
  dispatcher records the attempts still in flight and hands back the rest) while the engine may
  start a new crew at once: a hung attempt never wedges it.
- **Errors.** When the database fails (restarted, unreachable, locked), the dispatcher keeps the
  outcomes it could not record, drops its connection, and tries again with a growing pause (at
  most 2 s); it logs the first failure and the recovery.
"""
import collections
import logging
import os
import random
import socket
import threading
import time
from typing import (
    Any, Callable, ContextManager, Deque, Dict, Hashable, Iterable, List, Optional, Sequence, Set, Tuple,
)

try:  # typing.Protocol is 3.8+; kept optional so the module imports anywhere
    from typing import Protocol
except ImportError:  # pragma: no cover
    Protocol = object  # type: ignore

__all__ = ["Engine", "Job", "Outcome", "Settled", "Queue", "Stopper", "DONE", "RETRY", "DEAD"]

log = logging.getLogger("webhooklite")

#: Claims per thread slot: about _PREFETCH_SECONDS of work at the lane's pace, from _PREFETCH_MIN
#: (also the depth before any pace is known) to _PREFETCH_MAX.
_PREFETCH_MIN, _PREFETCH_MAX, _PREFETCH_SECONDS = 2, 64, 0.1
#: Outcomes waiting to be recorded that make the dispatcher record them at once...
_FLUSH_AT = 64
#: ...and the longest they wait otherwise (seconds).
_FLUSH_DELAY = 0.02
#: A wake-up (new work stored) starts a round no sooner than this after the last one began, so a
#: stream of sends or stored events is claimed a batch per round, not one round each (seconds).
_KICK_GAP = 0.010

#: What an outcome became.
DONE, RETRY, DEAD = "done", "retry", "dead"

Lane = Hashable


class Job:
    """One claimed unit of work: its row id, its lane, how many attempts failed before, and the queue's data."""

    __slots__ = ("id", "lane", "tries", "data", "config", "budget", "until")

    def __init__(self, id: int, lane: Lane, tries: int, data: Any) -> None:
        #: The job's row id in its table.
        self.id = id
        #: Its lane (the outbox: the endpoint id).
        self.lane = lane
        #: Attempts that failed before this one.
        self.tries = tries
        #: What the queue's claim returned for the attempt (the outbox: message id, event, body).
        self.data = data
        #: The lane's config when it was claimed (the outbox: the endpoint's Sender).
        self.config: Any = None
        #: Seconds one attempt may take at most (the lease must outlast it).
        self.budget = 0.0
        #: ``time.monotonic()`` by which the lease ends, unless renewed.
        self.until = 0.0


class Outcome:
    """What one attempt of a job came to, as the attempt function reports it."""

    __slots__ = ("ok", "error", "retry_after", "elapsed", "close", "detail")

    def __init__(self, ok: bool, *, error: Optional[str] = None, retry_after: Optional[float] = None,
                 elapsed: float = 0.0, close: Optional[str] = None, detail: Any = None) -> None:
        #: The job is done.
        self.ok = ok
        #: Why it failed, in words.
        self.error = error
        #: The earliest the next attempt may be (seconds from now), when the other side said so.
        self.retry_after = retry_after
        #: Seconds the attempt took.
        self.elapsed = elapsed
        #: A reason to close the job's lane (the outbox: the endpoint answered 410 Gone).
        self.close = close
        #: Anything the queue records about the attempt (the outbox: the Sender's Delivery).
        self.detail = detail


class Settled:
    """An outcome with the engine's verdict on it, as a queue's ``settle`` gets it."""

    __slots__ = ("job", "outcome", "started", "verdict", "due", "tries", "report")

    def __init__(self, job: Job, outcome: Outcome, started: float, verdict: str, due: Optional[float], tries: int) -> None:
        self.job, self.outcome, self.started = job, outcome, started
        #: DONE, RETRY or DEAD.
        self.verdict = verdict
        #: For RETRY: when the next attempt is due (``time.time()``).
        self.due = due
        #: Attempts made, this one included.
        self.tries = tries
        #: What the queue's ``settle`` noted for the ``on_settled`` hook, which sees it once the round
        #: is committed (the outbox: the deliveries this outcome made dead, the lane it disabled).
        self.report: List[Any] = []


class Queue(Protocol):
    """What a durable job table offers the engine. Every write method runs inside ``transaction(conn)``."""

    def connect(self) -> Any:
        """A connection of the dispatcher's own."""

    def disconnect(self, conn: Any) -> None:
        """Close it (best effort: it may be broken)."""

    def transaction(self, conn: Any) -> ContextManager[Any]:
        """One write transaction."""

    def lanes(self, conn: Any) -> Dict[Lane, Tuple[Any, float]]:
        """The open lanes: lane -> (config for its attempts, seconds one attempt may take)."""

    def first_due(self, conn: Any, lanes: Sequence[Lane]) -> Dict[Lane, Optional[float]]:
        """When each lane's earliest unsettled job is due (``time.time()``), or None if it has none."""

    def claim(self, conn: Any, token: str, lane: Lane, limit: int, now: float, until: float) -> List[Job]:
        """Claim up to ``limit`` due jobs of a lane for ``token`` until ``until``, in the order to run them."""

    def settle(self, conn: Any, token: str, settled: List[Settled]) -> Set[Lane]:
        """Record outcomes; return the lanes they closed."""

    def renew(self, conn: Any, token: str, ids: Sequence[int], until: float) -> Tuple[Set[int], int]:
        """Extend ``token``'s claims; return (ids no longer ours to run, how many another worker holds)."""

    def release(self, conn: Any, token: str, ids: Sequence[int], now: float) -> None:
        """Hand back claims that will not be started (due again at once)."""

    def listen(self, wake: Callable[[], None], stop: "Stopper") -> Optional[threading.Thread]:
        """Call ``wake()`` whenever new work is committed elsewhere, until ``stop`` is set (None: poll only)."""


class Stopper:
    """A stop signal a listener can ``select()`` on beside its socket (``fileno()``), as well as wait for."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._r, self._w = socket.socketpair()

    def set(self) -> None:
        if not self._event.is_set():
            self._event.set()
            try:
                self._w.send(b"x")
            except OSError:
                pass

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    def fileno(self) -> int:
        return self._r.fileno()

    def close(self) -> None:
        self._r.close()
        self._w.close()


class Engine:
    """Runs a queue's jobs: see the module docstring. ``attempt(job) -> Outcome`` runs in the worker threads."""

    def __init__(
        self,
        queue: Queue,
        attempt: Callable[[Job], Outcome],
        *,
        schedule: Sequence[float],
        workers: int,
        per_lane: int,
        lease: float,
        poll: float = 0.5,
        jitter: float = 0.2,
        name: str = "webhooklite",
        on_settled: Optional[Callable[[List[Settled]], None]] = None,
    ) -> None:
        self.queue = queue
        self.attempt = attempt
        self.schedule = tuple(schedule)
        self.workers = workers
        self.per_lane = per_lane
        self.lease = lease
        self.poll = poll
        self.jitter = jitter
        self.name = name
        #: Called from the dispatcher with each round's settled outcomes, once they are committed.
        self.on_settled = on_settled
        self.reset()

    def reset(self) -> None:
        """Forget every crew (in a child after fork(): the parent's threads do not exist here)."""
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)  # notified whenever a crew commits a round
        self._crew: Optional[_Crew] = None
        self._drainers = 0  # drain() calls running on a crew that drain() started
        self._kept = False  # start() was called: the crew runs on after the drains that started it
        self._ending: Optional[_Crew] = None  # the crew the last drain() out is stopping (stop() waits for it too)
        self._stopped = threading.Event()
        self._stopped.set()

    @property
    def running(self) -> bool:
        """Whether a crew is delivering."""
        return self._crew is not None

    @property
    def token(self) -> Optional[str]:
        """The running crew's token (written into the claims it holds)."""
        crew = self._crew
        return crew.token if crew is not None else None

    def delay(self, n: int, retry_after: Optional[float] = None, cap: float = float("inf")) -> float:
        """Seconds before attempt ``n + 1`` (``n`` made): the schedule's, jittered, never under ``retry_after``.

        ``retry_after`` (what the other side asked for) counts up to ``cap``.
        """
        base = self.schedule[n]
        if self.jitter and base:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        if retry_after is not None and retry_after == retry_after:  # not NaN
            base = max(base, min(retry_after, cap))
        return base

    def start(self) -> None:
        """Start a crew unless one is running; it runs until :meth:`stop` (a drain() ending leaves it)."""
        self._start(keep=True)

    def _start(self, keep: bool) -> None:
        with self._lock:
            if keep:
                self._kept = True
            if self._crew is not None:
                return
            crew = _Crew(self)
            self._crew = crew
            self._stopped.clear()
        crew.start()

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Stop the crew: attempts in flight finish and are recorded; queued claims are handed back.

        Returns False when ``timeout`` ran out first: the crew then finishes in the background,
        and the engine can be started again at once.
        """
        with self._lock:
            self._kept = False
            crew = self._crew or self._ending
        if crew is None:
            return True
        done = crew.stop(timeout)
        with self._lock:
            if self._crew is crew:
                self._crew = None
                self._stopped.set()
        if not done:
            log.warning("%s: stop() timed out with attempts still in flight; they finish and are recorded "
                        "in the background", self.name)
        return done

    def wake(self) -> None:
        """New work may be due: look now rather than at the next poll."""
        crew = self._crew
        if crew is not None:
            crew.wake()

    def busy(self) -> bool:
        """Whether the crew holds anything not yet recorded (queued, in flight, or being claimed)."""
        crew = self._crew
        return crew is not None and crew.busy()

    def drain(self, pending: Callable[[], bool], timeout: Optional[float] = None) -> bool:
        """Run until ``pending()`` is false (True), or ``timeout`` passes (False).

        A StorageError from ``pending()`` counts as "still pending" (the database comes back, and so
        do the workers). When no crew runs, one is started for the call and stopped at its end; concurrent drains
        share it, and the last one out stops it, unless :meth:`start` was called meanwhile.
        """
        with self._lock:
            borrowing = self._crew is None or self._drainers > 0
            if borrowing:
                self._drainers += 1
        if borrowing:
            self._start(keep=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        failing = False
        try:
            while True:
                try:
                    some = pending()
                except Exception as exc:  # the database failed: still pending; the workers recover too
                    if not _is_storage_error(exc):
                        raise
                    if not failing:
                        log.warning("%s: drain() cannot see the database (%s); waiting for it", self.name, exc)
                    failing, some = True, True
                if not some:
                    return True
                wait = 0.05
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    wait = min(wait, left)
                with self._lock:
                    self._progress.wait(wait)
        finally:
            if borrowing:
                with self._lock:
                    self._drainers -= 1
                    crew = None
                    if self._drainers == 0 and not self._kept:  # else start() was called meanwhile: keep it
                        # From now on a start() starts a crew of its own, and a stop() waits for this one.
                        crew, self._crew = self._crew, None
                        self._ending = crew
                if crew is not None:
                    crew.stop(None)
                    with self._lock:
                        if self._ending is crew:
                            self._ending = None
                        if self._crew is None:
                            self._stopped.set()

    def wait_stopped(self, timeout: float) -> bool:
        """Wait until no crew runs (stopped from another thread)."""
        return self._stopped.wait(timeout)

    def _progressed(self) -> None:
        with self._lock:
            self._progress.notify_all()


class _Crew:
    """The threads of one start(): workers that run attempts, and the dispatcher that does the writing."""

    def __init__(self, engine: Engine) -> None:
        self.e = engine
        self.token = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self.lock = threading.Lock()
        self.work_cv = threading.Condition(self.lock)  # workers wait for jobs
        self.disp_cv = threading.Condition(self.lock)  # the dispatcher waits for outcomes and wake-ups
        self.queues: Dict[Lane, Deque[Job]] = {}
        self.inflight: Dict[Lane, int] = {}
        self.held: Dict[int, Job] = {}
        self.closing: Set[Lane] = set()  # lanes an outcome just closed, until that is recorded
        self.more: Set[Lane] = set()  # lanes whose last claim was full: more is probably due
        self.pace: Dict[Lane, float] = {}  # seconds per attempt, moving average
        self.results: List[Tuple[Job, Outcome, float]] = []
        self.first_result = 0.0
        self.next_due = float("inf")
        self.rr = 0
        self.kick = True
        self.round_started = 0.0  # when the last round began (monotonic)
        self.rounding = False  # a round is between reading the queues and updating them
        self.stopping = False
        self.max_budget = 0.0  # the longest attempt budget of the open lanes
        self.stop_listening = Stopper()
        self.threads: List[threading.Thread] = []

    def start(self) -> None:
        name = self.e.name
        self.threads = [threading.Thread(target=self.dispatch, name=f"{name}-dispatcher", daemon=True)]
        self.threads += [threading.Thread(target=self.work, name=f"{name}-{i}", daemon=True) for i in range(self.e.workers)]
        for t in self.threads:
            t.start()
        try:
            listener = self.e.queue.listen(self.wake, self.stop_listening)
        except Exception:
            log.exception("%s: could not listen for new work; polling every %g s", name, self.e.poll)
            listener = None
        if listener is not None:
            self.threads.append(listener)

    def stop(self, timeout: Optional[float]) -> bool:
        with self.lock:
            self.stopping = True
            self.work_cv.notify_all()
            self.disp_cv.notify_all()
        self.stop_listening.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self.threads:
            if t is threading.current_thread() or t.ident is None:
                continue
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        done = not any(t.is_alive() for t in self.threads if t is not threading.current_thread())
        if done:
            self.stop_listening.close()
        return done

    def wake(self) -> None:
        # Once kicked, the dispatcher goes round within _KICK_GAP whatever comes meanwhile: a
        # notify per new row would wake it only to wait again (a thread switch per batch stored).
        # Read without the lock: a round clears the flag before it claims, and the caller's
        # rows are committed before this reads it, so a flag still set means a claim to come.
        if self.kick:
            return
        with self.lock:
            self.kick = True
            self.disp_cv.notify()

    def busy(self) -> bool:
        with self.lock:
            return self.rounding or bool(self.held) or bool(self.results) or any(self.inflight.values())

    def renew_every(self) -> float:
        """Seconds between renewals: lease/3, or sooner when attempts may take most of the lease
        (a claim must keep more lease left than an attempt may take, or it is not started)."""
        return min(self.e.lease / 3, max(0.01, (self.e.lease - self.max_budget) / 2))

    def depth(self, lane: Lane) -> int:
        """How many claims to hold for a lane (queued and in flight), from its recent pace."""
        pace = self.pace.get(lane)
        per_slot = _PREFETCH_MIN
        if pace is not None:
            per_slot = max(_PREFETCH_MIN, min(_PREFETCH_MAX, int(_PREFETCH_SECONDS / max(pace, 1e-6))))
        return self.e.per_lane * per_slot

    # -- the worker threads ----------------------------------------------------------

    def pick(self) -> Optional[Job]:
        """The next job, round-robin over lanes with room (called with the lock held)."""
        lanes = list(self.queues)
        n = len(lanes)
        for k in range(n):
            lane = lanes[(self.rr + k) % n]
            queue = self.queues[lane]
            while queue and self.inflight.get(lane, 0) < self.e.per_lane and lane not in self.closing:
                job = queue.popleft()
                if job.until - time.monotonic() <= job.budget:
                    # The lease could lapse mid-attempt (renewals failed): another worker may take it
                    # over then, so do not start it. It is claimed again once its lease runs out.
                    self.held.pop(job.id, None)
                    log.debug("%s: dropped claim %s: its lease is too short to start it", self.e.name, job.id)
                    continue
                self.rr = (self.rr + k + 1) % n
                return job
        return None

    def work(self) -> None:
        while True:
            with self.lock:
                while True:
                    if self.stopping:
                        return
                    job = self.pick()
                    if job is not None:
                        break
                    self.work_cv.wait()
                self.inflight[job.lane] = self.inflight.get(job.lane, 0) + 1
            started = time.time()
            try:
                outcome = self.e.attempt(job)
            except BaseException as exc:  # a bug, a bad stored value, a sys.exit(): a failed attempt, never a dead thread
                log.exception("%s: attempt of job %s failed unexpectedly", self.e.name, job.id)
                outcome = Outcome(False, error=f"{type(exc).__name__}: {exc}", elapsed=time.time() - started)
            with self.lock:
                lane = job.lane
                self.inflight[lane] -= 1
                pace = self.pace.get(lane)
                self.pace[lane] = outcome.elapsed if pace is None else 0.8 * pace + 0.2 * outcome.elapsed
                if outcome.close:
                    self.closing.add(lane)  # nothing more to this lane, even before it is recorded
                if not self.results:
                    self.first_result = time.monotonic()
                    self.disp_cv.notify()  # the dispatcher records it within _FLUSH_DELAY
                self.results.append((job, outcome, started))
                if outcome.close or self.stopping or len(self.results) >= _FLUSH_AT or (
                    lane in self.more and len(self.queues.get(lane, ())) < self.depth(lane) // 2
                ):
                    # Record now and claim more. Otherwise outcomes are recorded in batches, within
                    # _FLUSH_DELAY: one transaction for many jobs, and fewer thread switches.
                    self.disp_cv.notify()

    # -- the dispatcher -------------------------------------------------------------------

    def urgent(self) -> bool:
        """Whether the dispatcher should go round now (called with the lock held)."""
        if self.stopping or self.closing or len(self.results) >= _FLUSH_AT:
            return True
        if self.kick and time.monotonic() - self.round_started >= _KICK_GAP:
            return True
        return any(len(self.queues.get(lane, ())) < self.depth(lane) // 2 for lane in self.more)

    def dispatch(self) -> None:
        e = self.e
        conn = None
        last_renew = time.monotonic()
        failures = 0
        try:
            while True:
                with self.lock:
                    results, self.results = self.results, []
                    self.kick = False
                    self.round_started = time.monotonic()
                    stopping = self.stopping
                    room: Optional[Dict[Lane, int]] = None
                    if not stopping:
                        room = {lane: len(q) + self.inflight.get(lane, 0) for lane, q in self.queues.items()}
                    self.rounding = True
                failed = False
                try:
                    if conn is None:
                        conn = e.queue.connect()
                    renew = bool(self.held) and time.monotonic() - last_renew >= self.renew_every()
                    renew_start = time.monotonic()
                    wait = self.round(conn, results, room, renew)
                    if renew:
                        last_renew = renew_start
                    if failures:
                        log.warning("%s: the database answers again; delivering", e.name)
                    failures = 0
                except Exception as exc:
                    if failures == 0:
                        log.error("%s: the delivery loop hit an error (%s); retrying", e.name, exc,
                                  exc_info=not _is_storage_error(exc))
                    failures += 1
                    with self.lock:
                        self.results[:0] = results  # not recorded: kept for the next round
                    if conn is not None:
                        e.queue.disconnect(conn)
                        conn = None
                    wait, failed = min(2.0, 0.1 * 2 ** min(failures, 5)), True
                with self.lock:
                    self.rounding = False
                    if self.stopping and not self.results and not any(self.inflight.values()) and not failed:
                        if not stopping:
                            continue  # stop() came during this round: one more, to record everything
                        break
                    if self.stopping and failed and not any(self.inflight.values()) and failures > 5:
                        # Stopping, and the database has been gone for a while: the outcomes left are
                        # lost to the log only (their claims lapse and the jobs run again elsewhere).
                        log.error("%s: stopping without recording %d outcome(s): the database is unreachable",
                                  e.name, len(self.results))
                        self.results.clear()
                        break
                    if not self.held:
                        last_renew = time.monotonic()  # nothing to renew: the clock starts with the next claim
                    elif not failed:  # a failed round keeps its back-off, even with a renewal overdue
                        wait = min(wait, last_renew + self.renew_every() - time.monotonic())
                    if self.stopping:
                        if failed or not self.results:
                            self.disp_cv.wait(0.05 if not failed else wait)  # attempts in flight notify as they end
                        continue
                    if failed:  # back off: new outcomes and wake-ups wait for the database too (stop() does not)
                        self.disp_cv.wait(wait)
                        continue
                    until = time.monotonic() + wait
                    while not self.urgent():
                        left = until - time.monotonic()
                        if self.results and not failed:
                            left = min(left, self.first_result + _FLUSH_DELAY - time.monotonic())
                        if self.kick:
                            left = min(left, self.round_started + _KICK_GAP - time.monotonic())
                        if left <= 0:
                            break
                        self.disp_cv.wait(left)
                e._progressed()
        finally:
            self.release(conn)
            self.stop_listening.set()
            e._progressed()

    def round(self, conn: Any, results: List[Tuple[Job, Outcome, float]], room: Optional[Dict[Lane, int]],
              renew: bool) -> float:
        """Record outcomes, hand back, renew, claim: one transaction. Returns seconds to sleep."""
        e, q = self.e, self.e.queue
        now = time.time()
        wait = e.poll
        want: Dict[Lane, int] = {}
        lanes: Dict[Lane, Tuple[Any, float]] = {}
        dropped: List[int] = []
        if room is not None:
            # Reads first: the write transaction is opened only when there is something to write.
            lanes = q.lanes(conn)
            self.max_budget = max((budget for _, budget in lanes.values()), default=0.0)
            with self.lock:
                # Claims queued for a lane closed meanwhile (disabled by hand, or a 410 seen by
                # another process) are not started: they are handed back.
                for lane in [lane for lane in self.queues if lane not in lanes]:
                    for job in self.queues.pop(lane):
                        self.held.pop(job.id, None)
                        dropped.append(job.id)
                # A lane whose config changed meanwhile (update_endpoint: a new URL, secret, headers): its
                # queued claims go out with the new one. (Each round does it, so a queue's first job tells.)
                for lane, queue in self.queues.items():
                    current = lanes[lane]
                    if queue and queue[0].config is not current[0]:
                        for job in queue:
                            job.config, job.budget = current
            # How many more each lane may hold, computed once: the pace (so the depth) moves as attempts end.
            free = {lane: self.depth(lane) - room.get(lane, 0) for lane in lanes}
            hungry = [lane for lane, n in free.items() if n > 0]
            firsts = q.first_due(conn, hungry) if hungry else {}
            for lane in hungry:
                first = firsts.get(lane)
                if first is None:
                    continue
                if first <= now:
                    want[lane] = free[lane]
                else:
                    wait = min(wait, first - now)
                    self.more.discard(lane)
            for job, _, _ in results:
                # Settled in this round, before its claims: what it held back (the next delivery with
                # its ordering key) may be claimable the moment it is recorded.
                if free.get(job.lane, 0) > 0:
                    want[job.lane] = free[job.lane]
        if not results and not renew and not want and not dropped:
            return wait

        settled = [self.verdict(job, outcome, started, now) for job, outcome, started in results]
        claimed: List[Job] = []
        full: Dict[Lane, bool] = {}
        closed: Set[Lane] = set()
        lost: Set[int] = set()
        taken = 0
        self.next_due = min((s.due for s in settled if s.due is not None), default=float("inf"))
        mono = time.monotonic()
        with q.transaction(conn):
            if settled:
                closed = q.settle(conn, self.token, settled)
            if dropped:
                q.release(conn, self.token, dropped, now)
            if renew:
                with self.lock:
                    ids = sorted(set(self.held) - {s.job.id for s in settled})
                if ids:
                    lost, taken = q.renew(conn, self.token, ids, time.time() + e.lease)
            now = time.time()
            for lane, limit in want.items():
                if lane in closed or limit <= 0:
                    continue
                jobs = q.claim(conn, self.token, lane, limit, now, now + e.lease)
                full[lane] = len(jobs) == limit
                config, budget = lanes[lane]
                for job in jobs:
                    job.config, job.budget = config, budget
                claimed += jobs
        if taken:
            log.warning("%s: %d claim(s) were taken over by another worker (lease of %g s ran out)",
                        e.name, taken, e.lease)
        # Committed: now the local state follows.
        until = mono + e.lease
        with self.lock:
            for s in settled:
                self.held.pop(s.job.id, None)
            for lane in closed:
                for job in self.queues.pop(lane, ()):
                    self.held.pop(job.id, None)
            self.closing -= {s.job.lane for s in settled if s.outcome.close}
            if renew:
                for job in self.held.values():
                    if job.id not in lost:
                        job.until = until
            if lost:
                for lane, queue in self.queues.items():
                    kept = [j for j in queue if j.id not in lost]
                    if len(kept) != len(queue):
                        self.queues[lane] = collections.deque(kept)
                for i in lost:
                    self.held.pop(i, None)
            for lane, more in full.items():
                (self.more.add if more else self.more.discard)(lane)
            fresh = 0
            for job in claimed:
                old = self.held.get(job.id)
                if old is not None:  # already queued here (a late renewal let it come due): keep one
                    old.until = until
                    continue
                job.until = until
                self.held[job.id] = job
                self.queues.setdefault(job.lane, collections.deque()).append(job)
                fresh += 1
            if fresh:
                # Wake only as many workers as can start now (each lane has per_lane slots).
                slots = sum(
                    min(len(queue), e.per_lane - self.inflight.get(lane, 0))
                    for lane, queue in self.queues.items() if lane not in self.closing
                )
                if slots > 0:
                    self.work_cv.notify(slots)
        if settled and e.on_settled is not None:
            try:
                e.on_settled(settled)
            except Exception:
                log.exception("%s: the on_settled hook raised; nothing is lost", e.name)
        # Claims are topped up when a queue runs low (urgent), not after every round.
        return min(wait, self.next_due - time.time())

    def verdict(self, job: Job, outcome: Outcome, started: float, now: float) -> Settled:
        """What an outcome means: done, retried when the schedule (and the other side) says, or dead."""
        tries = job.tries + 1
        if outcome.ok:
            return Settled(job, outcome, started, DONE, None, tries)
        if outcome.close or tries >= len(self.e.schedule):
            return Settled(job, outcome, started, DEAD, None, tries)
        due = now + self.e.delay(tries, outcome.retry_after, _retry_after_cap(self.e.schedule))
        return Settled(job, outcome, started, RETRY, due, tries)

    def release(self, conn: Any) -> None:
        """On the way out: hand back claims never started, so others need not wait for their lease."""
        with self.lock:
            queued = [j.id for q in self.queues.values() for j in q]
            self.queues.clear()
            self.held.clear()
        q = self.e.queue
        try:
            if queued:
                if conn is None:
                    conn = q.connect()
                with q.transaction(conn):
                    q.release(conn, self.token, queued, time.time())
        except Exception as exc:
            log.warning("%s: could not hand back %d claim(s) (%s); they return when their lease ends",
                        self.e.name, len(queued), exc)
        finally:
            if conn is not None:
                q.disconnect(conn)


#: The longest a Retry-After may put the next attempt off (seconds), whatever the schedule: a
#: hostile or broken receiver asking for years cannot park messages for ever (the schedule's own
#: longest delay counts when it is longer).
RETRY_AFTER_CAP = 86400.0


def _retry_after_cap(schedule: Iterable[float]) -> float:
    return max(RETRY_AFTER_CAP, max(schedule, default=0.0))


def _is_storage_error(exc: BaseException) -> bool:
    from .backends import StorageError

    return isinstance(exc, StorageError)
