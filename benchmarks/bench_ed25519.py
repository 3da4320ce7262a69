"""Ed25519 (Standard Webhooks v1a) sign and verify time: webhooklite's pure Python beside PyNaCl's C.

    python3 benchmarks/bench_ed25519.py [--reps 5] [--ops 300] [--size 337] [--profile]

The message is what v1a signs, ``"{msg_id}.{timestamp}.{body}"`` with a JSON
body of --size bytes. Each repetition times --ops operations of every case in
turn (interleaved, so load on the shared machine hits them alike); the table
shows the median time per operation and webhooklite's time over PyNaCl's.
"First use" is one call after the lazily built tables are dropped: what the
first message after start-up costs. PyNaCl is optional: without it the C
column is blank. ``--profile`` prints where verify spends its time (cProfile).

Target (issue 17): verify <= 3 ms per message.
"""
import argparse
import cProfile
import os
import platform
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webhooklite import ed25519  # noqa: E402

try:
    import nacl
    import nacl.signing
except ImportError:
    nacl = None  # type: ignore[assignment]

TARGET_VERIFY_MS = 3.0


def per_op(fn: Callable[[], object], ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        fn()
    return (time.perf_counter() - start) / ops


def first_use(fn: Callable[[], object]) -> float:
    ed25519._base_windows.cache_clear()
    ed25519._base_odd_multiples.cache_clear()
    ed25519._minus_a_table.cache_clear()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ms(seconds: Optional[float]) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.3f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ops", type=int, default=300)
    ap.add_argument("--size", type=int, default=337, help="JSON body bytes")
    ap.add_argument("--profile", action="store_true", help="cProfile --ops verifies and print the top")
    args = ap.parse_args()

    seed = os.urandom(32)
    body = b'{"event":"payment.completed","data":"' + b"x" * max(0, args.size - 40) + b'"}'
    message = b"msg_2KWPBgLlAfxdpx2AI54pPJ85f4W.1674087231." + body
    key = ed25519.SigningKey(seed)
    sig = key.sign(message)
    assert ed25519.verify(key.public_key, message, sig)

    ours: Dict[str, Callable[[], object]] = {
        "verify": lambda: ed25519.verify(key.public_key, message, sig),
        "sign (SigningKey.sign)": lambda: key.sign(message),
        "sign (sign(seed, msg), expands the key)": lambda: ed25519.sign(seed, message),
    }
    theirs: Dict[str, Callable[[], object]] = {}
    if nacl is not None:
        nkey = nacl.signing.SigningKey(seed)
        nverify = nkey.verify_key
        assert nkey.sign(message).signature == sig
        nverify.verify(message, sig)
        theirs = {
            "verify": lambda: nverify.verify(message, sig),
            "sign (SigningKey.sign)": lambda: nkey.sign(message),
            "sign (sign(seed, msg), expands the key)": lambda: nacl.signing.SigningKey(seed).sign(message),
        }

    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(per_op, ours["verify"], args.ops)
        pstats.Stats(prof).sort_stats("tottime").print_stats(8)

    cold = {"verify": first_use(ours["verify"]), "sign (SigningKey.sign)": first_use(ours["sign (SigningKey.sign)"])}
    times: Dict[Tuple[str, str], List[float]] = {}
    for _ in range(args.reps):
        for name, fn in ours.items():
            times.setdefault(("ours", name), []).append(per_op(fn, args.ops))
            if name in theirs:
                times.setdefault(("theirs", name), []).append(per_op(theirs[name], args.ops))

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
          f"message {len(message)} bytes; median of {args.reps} x {args.ops} operations"
          + (f"; PyNaCl {nacl.__version__}" if nacl else "; PyNaCl not installed"))
    print()
    print("| operation | webhooklite (pure Python) | PyNaCl (libsodium, C) | ratio | first use (tables built) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in ours:
        mine = statistics.median(times[("ours", name)])
        c = statistics.median(times[("theirs", name)]) if name in theirs else None
        ratio = f"{mine / c:,.0f}x" if c else ""
        print(f"| {name} | {ms(mine)} | {ms(c)} | {ratio} | {ms(cold.get(name))} |")
    verify_ms = statistics.median(times[("ours", "verify")]) * 1e3
    verdict = "met" if verify_ms <= TARGET_VERIFY_MS else "MISSED"
    print()
    print(f"Target verify <= {TARGET_VERIFY_MS:g} ms: {verdict} ({verify_ms:.2f} ms, "
          f"{1000 / verify_ms:,.0f} verifications/s on one core).")


if __name__ == "__main__":
    main()
