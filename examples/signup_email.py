"""The brief's first story: a website's signup form tells an email tool, which sends a thank-you note.

    python3 examples/signup_email.py                 # both halves in one process
    python3 examples/signup_email.py email --demo    # terminal 1: the email tool waits on :8000
    python3 examples/signup_email.py signup --demo   # terminal 2: Jane fills in the form

The website (App A) signs a ``user.signed_up`` event and POSTs it; the email
tool (App B) checks the signature and "sends" the thank-you note (printed
here: a real one would hand it to smtplib or an email API).

The two halves share a secret. On its own, each half talks to a port other
programs can reach, so it needs ``WEBHOOK_SECRET`` (the same in both
terminals; ``python3 -m webhooklite secret`` makes one) and refuses to run
without it; ``--demo`` uses the built-in secret instead, which is written
here for anyone to sign with. With no role, both halves run in this one
process over a loopback port that is open for a moment: that is the demo
itself, so the built-in secret is used without ``--demo``.
"""
import argparse
import os
import sys
import threading
from pathlib import Path

try:
    import webhooklite
except ImportError:  # run from a clone without installing: use the folder next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import webhooklite

#: The demo's secret: public, so for the demo (and --demo) only. A real one comes from
#: webhooklite.generate_secret() (or `python -m webhooklite secret`) and lives in WEBHOOK_SECRET.
DEMO_SECRET = "whsec_c2lnbnVwLWVtYWlsLWRlbW8tc2VjcmV0LTMyYnl0ZXM="

SIGNUP = {
    "user_id": "usr_1042",
    "name": "Jane D.",
    "email": "jane@example.com",
    "newsletter": True,
}


def thank_you_note(name: str, email: str) -> str:
    first = name.split()[0] if name.split() else "there"
    return (
        f"To: {email}\n"
        f"Subject: Thanks for signing up, {first}!\n"
        f"\n"
        f"Hi {first}, welcome aboard. Your account is ready."
    )


def make_email_tool(secret: str) -> webhooklite.Receiver:
    """App B: the email tool."""
    receiver = webhooklite.Receiver(secret)

    @receiver.on("user.signed_up")
    def send_thanks(event: webhooklite.Event) -> None:
        print(f"email tool: sending\n{thank_you_note(event['name'], event['email'])}", flush=True)

    return receiver


def signup(url: str, secret: str) -> int:
    """App A: the website's signup form, just submitted."""
    delivery = webhooklite.send(url, "user.signed_up", SIGNUP, secret=secret)
    if not delivery.ok:
        print(f"website: could not tell the email tool: {delivery.error}", file=sys.stderr)
        return 1
    print(f"website: email tool answered {delivery.status} in {delivery.elapsed * 1000:.0f} ms", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", nargs="?", choices=["email", "signup"], help="run one half only")
    parser.add_argument("--port", type=int, default=8000, help="email tool port (default 8000)")
    parser.add_argument("--url", default=None, help="where the website sends (default http://127.0.0.1:PORT/)")
    parser.add_argument("--demo", action="store_true", help="use the built-in secret (public: for trying it only)")
    args = parser.parse_args()
    secret = DEMO_SECRET if args.demo or args.role is None else os.environ.get("WEBHOOK_SECRET", "")
    if not secret:
        parser.error("set WEBHOOK_SECRET to the secret the website and the email tool share (or try --demo, "
                     "which uses a built-in one)")
    if secret == DEMO_SECRET and not (args.demo or args.role is None):
        parser.error("WEBHOOK_SECRET is the demo's public secret: use your own (or --demo)")

    if args.role == "email":
        try:
            email_tool = make_email_tool(secret)
        except ValueError as e:  # a malformed whsec_ secret
            parser.error(f"WEBHOOK_SECRET: {e}")
        print(f"email tool: waiting for signups on http://127.0.0.1:{args.port}/ (Ctrl-C to stop)", flush=True)
        email_tool.serve(port=args.port)
        return 0
    if args.role == "signup":
        try:
            return signup(args.url or f"http://127.0.0.1:{args.port}/", secret)
        except ValueError as e:
            parser.error(f"WEBHOOK_SECRET: {e}")

    # Both halves: the email tool on a free port in the background, then one signup.
    sent = threading.Event()
    receiver = make_email_tool(secret)
    receiver.on("user.signed_up", lambda event: sent.set())
    with receiver.start(port=0) as server:
        status = signup(server.url, secret)
    return status if sent.is_set() or status else 1


if __name__ == "__main__":
    sys.exit(main())
