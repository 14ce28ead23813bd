"""Sends one raw HTTPS request to keel server; prints status and body.

usage: raw.py KUBECONFIG METHOD PATH CONTENT_TYPE BODY_FILE|- TOKEN|-|admin
"""
import base64, http.client, json, ssl, sys, tempfile

import yaml

kc_path, method, path, ctype, body_file, token = sys.argv[1:7]
kc = yaml.safe_load(open(kc_path))
cluster = kc["clusters"][0]["cluster"]
host = cluster["server"].removeprefix("https://")
ca = tempfile.NamedTemporaryFile(delete=False, suffix=".crt")
ca.write(base64.b64decode(cluster["certificate-authority-data"]))
ca.close()
ctx = ssl.create_default_context(cafile=ca.name)
headers = {"Content-Type": ctype, "Accept": "application/json"}
if token == "admin":
    # The kubeconfig's client certificate (CN keel:admin, O system:masters).
    user = kc["users"][0]["user"]
    pem = tempfile.NamedTemporaryFile(delete=False, suffix=".pem")
    pem.write(base64.b64decode(user["client-certificate-data"]))
    pem.write(base64.b64decode(user["client-key-data"]))
    pem.close()
    ctx.load_cert_chain(pem.name)
elif token != "-":
    headers["Authorization"] = "Bearer " + token
body = None if body_file == "-" else open(body_file, "rb").read()
conn = http.client.HTTPSConnection(host, context=ctx, timeout=30)
conn.request(method, path, body=body, headers=headers)
resp = conn.getresponse()
print(resp.status)
print(resp.read().decode())
