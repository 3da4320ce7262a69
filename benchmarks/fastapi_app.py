"""FastAPI + standardwebhooks, the way people write it: an ``async def`` route that reads the raw
body, verifies it on the event loop (CPU only) and returns a dict. Served by uvicorn (1 worker,
uvloop and httptools when installed) from ``servers.py fastapi PORT``.

``app_thread`` (``servers.py fastapi-thread PORT``) is the same route handing the application's work
to a thread, ``await run_in_threadpool(handle, payload)``, as FastAPI's docs advise for blocking
work: the like-for-like of webhooklite's sync handler under ``receiver.asgi``.
"""
import os

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from standardwebhooks import Webhook, WebhookVerificationError

wh = Webhook(os.environ["BENCH_SECRET"])
seen = [0]


def handle(payload: dict) -> None:
    if payload.get("event") == "payment.completed":
        seen[0] += 1  # the application's work would go here


def make_app(in_thread: bool) -> FastAPI:
    app = FastAPI()

    @app.post("/")
    async def hook(request: Request):
        try:
            payload = wh.verify(await request.body(), request.headers)
        except WebhookVerificationError:
            return JSONResponse({"error": "bad signature"}, status_code=401)
        if in_thread:
            await run_in_threadpool(handle, payload)
        else:
            handle(payload)
        return {"status": "ok"}

    return app


app, app_thread = make_app(in_thread=False), make_app(in_thread=True)
