"""Flask + standardwebhooks, the way its README shows it; served by gunicorn (gthread, 8 threads):

    gunicorn -k gthread --threads 8 -w 1 -b 127.0.0.1:PORT flask_app:app
"""
import os

from flask import Flask, jsonify, request
from standardwebhooks import Webhook, WebhookVerificationError

app = Flask(__name__)
wh = Webhook(os.environ["BENCH_SECRET"])


@app.post("/")
def hook():
    try:
        payload = wh.verify(request.get_data(), request.headers)
    except WebhookVerificationError:
        return jsonify(error="bad signature"), 401
    if payload.get("event") == "payment.completed":
        pass  # the application's work would go here
    return jsonify(status="ok")
