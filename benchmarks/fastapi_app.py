"""FastAPI + standardwebhooks, the way people write it: an ``async def`` route that reads the raw
body, verifies it on the event loop (CPU only) and returns a dict. Served by uvicorn (1 worker,
uvloop and httptools when installed) from ``servers.py fastapi PORT``.
"""
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from standardwebhooks import Webhook, WebhookVerificationError

app = FastAPI()
wh = Webhook(os.environ["BENCH_SECRET"])
seen = [0]


@app.post("/")
async def hook(request: Request):
    try:
        payload = wh.verify(await request.body(), request.headers)
    except WebhookVerificationError:
        return JSONResponse({"error": "bad signature"}, status_code=401)
    if payload.get("event") == "payment.completed":
        seen[0] += 1  # the application's work would go here
    return {"status": "ok"}
