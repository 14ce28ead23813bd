"""An admission webhook for keel's tests, as a user would write one: HTTPS
with its own certificate, AdmissionReview v1 in and out.

  /mutate    adds the label mutated-by=webhook (a JSON patch), with a warning
  /validate  refuses objects labelled deny=yes (403, with a message)
  /slow      answers after 3 s (for timeouts)

usage: webhook_server.py CERT KEY PORT_FILE LOG_FILE
"""
import base64
import json
import ssl
import sys
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CERT, KEY, PORT_FILE, LOG_FILE = sys.argv[1:5]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        review = json.loads(body)
        req = review["request"]
        path = self.path.split("?")[0]
        with open(LOG_FILE, "a") as log:
            log.write(json.dumps({"path": self.path, "operation": req["operation"],
                                  "user": req["userInfo"]["username"],
                                  "name": req.get("name"), "namespace": req.get("namespace"),
                                  "kind": req["kind"]["kind"]}) + "\n")
        resp = {"uid": req["uid"], "allowed": True}
        obj = req.get("object") or {}
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if path == "/mutate":
            ops = []
            if not (obj.get("metadata") or {}).get("labels"):
                ops.append({"op": "add", "path": "/metadata/labels", "value": {}})
            ops.append({"op": "add", "path": "/metadata/labels/mutated-by", "value": "webhook"})
            resp["warnings"] = ["labelled by the test webhook"]
            resp["patchType"] = "JSONPatch"
            resp["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
        elif path == "/validate" and labels.get("deny") == "yes":
            resp["allowed"] = False
            resp["status"] = {"code": 403, "message": "objects labelled deny=yes are not allowed here"}
        elif path == "/slow":
            time.sleep(3)
        out = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                          "response": resp}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CERT, KEY)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
