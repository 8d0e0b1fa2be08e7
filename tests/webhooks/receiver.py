#!/usr/bin/env python3
"""A webhook receiver for keyward's tests that verifies every delivery with
the PyPI `standardwebhooks` package (an implementation that is not keyward's).

    receiver.py PORT SECRETS_FILE OUT_FILE

Listens on 127.0.0.1:PORT. For each POST it re-reads SECRETS_FILE (one
`whsec_...` per line, so a test can add the secret of a rotation) and tries
each secret on its own; it appends one JSON line to OUT_FILE:
{"id", "timestamp", "type", "verified_by": [indexes of the secrets that verify],
"signatures": number of signatures sent, "body": the parsed body}.
It answers 204 when some secret verifies, else 400. Prints "ready" once listening.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT, SECRETS, OUT = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        headers = {k: v for k, v in self.headers.items()}
        with open(SECRETS) as f:
            secrets = [line.strip() for line in f if line.strip()]
        verified = []
        for i, secret in enumerate(secrets):
            try:
                Webhook(secret).verify(body, headers)
                verified.append(i)
            except WebhookVerificationError:
                pass
        record = {
            "id": self.headers.get("webhook-id"),
            "timestamp": self.headers.get("webhook-timestamp"),
            "content_type": self.headers.get("content-type"),
            "signatures": len((self.headers.get("webhook-signature") or "").split(" ")),
            "verified_by": verified,
            "body": json.loads(body),
        }
        record["type"] = record["body"].get("type")
        with open(OUT, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.send_response(204 if verified else 400)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
server.serve_forever()
