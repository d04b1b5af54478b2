#!/usr/bin/env python3
"""A backend of the DWS gateway with Python's standard library only (docs/gateway.md).

  backend.py bind GATEWAY_URL TOKEN           bind the sandbox's test card through the gateway
  backend.py listen PORT SECRET EVENTS_FILE   receive forwarded events: verify, de-duplicate, append
"""
import base64, hashlib, hmac, json, sys, time, urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer


# The ten lines a backend needs: Standard Webhooks verification and de-duplication on webhook-id.
def accept(secret, seen, headers, body):
    msg_id, ts, sigs = headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"]
    if msg_id is None or ts is None or sigs is None or abs(time.time() - int(ts)) > 300:
        return 401                                   # unsigned, or replayed / clock skew
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    if not any(hmac.compare_digest(base64.b64encode(mac).decode(), s[3:])
               for s in sigs.split() if s.startswith("v1,")):
        return 401                                   # not from our gateway
    if msg_id in seen:
        return 200                                   # a repeat: already handled, say so again
    seen.add(msg_id)
    return 201                                       # new: handle it (then answer 2xx)


def listen(port, secret, events_file):
    seen = set()
    try:  # what was handled before a restart stays handled
        with open(events_file) as f:
            seen = {json.loads(line)["id"] for line in f if line.strip()}
    except FileNotFoundError:
        pass

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = accept(secret, seen, self.headers, body)
            if status == 201:
                with open(events_file, "a") as f:
                    f.write(json.dumps({"id": self.headers["webhook-id"], "event": json.loads(body)}) + "\n")
            elif status == 200:
                with open(events_file + ".repeats", "a") as f:
                    f.write(self.headers["webhook-id"] + "\n")
            self.send_response(200 if status == 201 else status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    HTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()


def bind(gateway, token):
    card = {"cardNo": "4111111111111111", "securityCode": "123", "expiryMonth": "12",
            "expiryYear": str(time.gmtime().tm_year + 1),
            "instUserName": {"firstName": "Ada", "lastName": "Lovelace"}}
    body = json.dumps({"customerId": "2162878776333", "env": {"terminalType": "WEB"}, "card": card})
    req = urllib.request.Request(gateway + "/v1/bindings", data=body.encode(), method="POST", headers={
        "Authorization": "Bearer " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            status, answer = res.status, res.read()
    except urllib.error.HTTPError as e:
        status, answer = e.code, e.read()
    print(status, answer.decode())
    return 0 if status in (200, 202) else 1


if __name__ == "__main__":
    if sys.argv[1] == "bind":
        sys.exit(bind(sys.argv[2], sys.argv[3]))
    listen(sys.argv[2], sys.argv[3], sys.argv[4])
