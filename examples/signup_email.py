"""The brief's first story: a website's signup form tells an email tool, which sends a thank-you note.

    python3 examples/signup_email.py            # both halves in one process
    python3 examples/signup_email.py email      # terminal 1: the email tool waits on :8000
    python3 examples/signup_email.py signup     # terminal 2: Jane fills in the form

The website (App A) signs a ``user.signed_up`` event and POSTs it; the email
tool (App B) checks the signature and "sends" the thank-you note (printed
here: a real one would hand it to smtplib or an email API).
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

# Both apps know this secret. A real one comes from webhooklite.generate_secret()
# (or `python -m webhooklite secret`) and lives in an environment variable.
SECRET = os.environ.get("WEBHOOK_SECRET", "whsec_c2lnbnVwLWVtYWlsLWRlbW8tc2VjcmV0LTMyYnl0ZXM=")

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


def make_email_tool() -> webhooklite.Receiver:
    """App B: the email tool."""
    receiver = webhooklite.Receiver(SECRET)

    @receiver.on("user.signed_up")
    def send_thanks(event: webhooklite.Event) -> None:
        print(f"email tool: sending\n{thank_you_note(event['name'], event['email'])}", flush=True)

    return receiver


def signup(url: str) -> int:
    """App A: the website's signup form, just submitted."""
    delivery = webhooklite.send(url, "user.signed_up", SIGNUP, secret=SECRET)
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
    args = parser.parse_args()

    if args.role == "email":
        print(f"email tool: waiting for signups on http://127.0.0.1:{args.port}/ (Ctrl-C to stop)", flush=True)
        make_email_tool().serve(port=args.port)
        return 0
    if args.role == "signup":
        return signup(args.url or f"http://127.0.0.1:{args.port}/")

    # Both halves: the email tool on a free port in the background, then one signup.
    sent = threading.Event()
    receiver = make_email_tool()
    receiver.on("user.signed_up", lambda event: sent.set())
    with receiver.start(port=0) as server:
        status = signup(server.url)
    return status if sent.is_set() or status else 1


if __name__ == "__main__":
    sys.exit(main())
