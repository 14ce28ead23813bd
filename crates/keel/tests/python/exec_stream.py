"""The official Python client's `stream` (WebSocket, v4.channel.k8s.io)
against keel: exec with stdout, stderr, stdin and the exit code from the
error channel. Usage: exec_stream.py NAMESPACE POD CONTAINER."""
import sys

from kubernetes import client, config
from kubernetes.stream import stream

ns, pod, container = sys.argv[1:4]
config.load_kube_config()
core = client.CoreV1Api()

# One-shot: output collected, both streams. Repeated: the client reads one
# frame per poll of its raw socket, so it hung whenever the last frames came
# in one TLS record and the connection stayed open behind them.
for _ in range(10):
    out = stream(core.connect_get_namespaced_pod_exec, pod, ns, container=container,
                 command=["sh", "-c", "echo py-out; echo py-err >&2"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert "py-out" in out and "py-err" in out, repr(out)

# Interactive: stdin in, separate streams out, exit code 7.
resp = stream(core.connect_get_namespaced_pod_exec, pod, ns, container=container,
              command=["sh", "-c", "read line; echo got-$line; echo oops >&2; exit 7"],
              stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
resp.write_stdin("hello\n")
import json, time
stdout, stderr, status = "", "", None
deadline = time.time() + 60
# Until the status arrives on the error channel (3): the client's
# `returncode` waits for the socket's close instead.
while status is None and time.time() < deadline:
    resp.update(timeout=1)
    stdout += resp.read_stdout() if resp.peek_stdout() else ""
    stderr += resp.read_stderr() if resp.peek_stderr() else ""
    if resp.peek_channel(3):
        status = json.loads(resp.read_channel(3))
stdout += resp.read_stdout() if resp.peek_stdout() else ""
stderr += resp.read_stderr() if resp.peek_stderr() else ""
resp.close()
assert status is not None, "no status within 60 s"
assert stdout.strip() == "got-hello", repr(stdout)
assert stderr.strip() == "oops", repr(stderr)
causes = status.get("details", {}).get("causes", [])
code = [c["message"] for c in causes if c.get("reason") == "ExitCode"]
assert status["status"] == "Failure" and code == ["7"], status
print("ok")
