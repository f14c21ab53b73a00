#!/usr/bin/env python3
"""A stand-in Kubernetes API server for podtap's tests: the pod endpoints
`capture --ns` uses, answering with the JSON a real API server returns.

    kube_api.py PODS.json [--forbid]

PODS.json holds a list of Pod objects (as `kubectl get pod -o json` shows
them). Prints "port N" once listening on 127.0.0.1. Serves:

    GET  /api/v1/namespaces/NS/pods            a PodList, honouring
         ?fieldSelector=spec.nodeName=NODE and ?labelSelector=k=v,k!=v
    GET  /api/v1/namespaces/NS/pods?watch=1    a watch stream (one JSON event
         per line, chunked) of changes after ?resourceVersion
    GET  /api/v1/namespaces/NS/pods/NAME       a Pod, or a 404 Status
    POST /podtap/pods                          add a Pod (body), as ADDED
    POST /podtap/delete/UID                    remove a pod, as DELETED

With --forbid every API call gets the 403 Status a real server sends when
RBAC denies it.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

lock = threading.Condition()
pods = []  # (resourceVersion, pod)
events = []  # (resourceVersion, type, pod)
version = [1000]
forbid = False


def status(code, reason, message, details=None):
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def labels_match(pod, selector):
    labels = pod["metadata"].get("labels", {})
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key.strip().rstrip("=")) != value.strip().lstrip("="):
                return False
        elif labels.get(term.strip()) is None:
            return False
    return True


def fields_match(pod, selector):
    for term in filter(None, (selector or "").split(",")):
        key, value = term.split("=", 1)
        if key == "spec.nodeName" and pod["spec"].get("nodeName") != value:
            return False
        if key == "metadata.name" and pod["metadata"]["name"] != value:
            return False
    return True


def stamp(pod):
    version[0] += 1
    pod["metadata"]["resourceVersion"] = str(version[0])
    return version[0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        if parts[:3] != ["api", "v1", "namespaces"] or len(parts) < 5 or parts[4] != "pods":
            return self.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
        namespace = parts[3]
        if forbid:
            return self.send_json(403, status(
                403, "Forbidden",
                'pods is forbidden: User "system:serviceaccount:podtap:podtap" cannot list resource '
                f'"pods" in API group "" in the namespace "{namespace}"',
                {"kind": "pods"}))
        wanted = lambda pod: (pod["metadata"]["namespace"] == namespace
                              and fields_match(pod, query.get("fieldSelector"))
                              and labels_match(pod, query.get("labelSelector")))
        if len(parts) == 6:
            with lock:
                found = [p for _, p in pods if p["metadata"]["namespace"] == namespace
                         and p["metadata"]["name"] == parts[5]]
            if found:
                return self.send_json(200, found[0])
            return self.send_json(404, status(404, "NotFound", f'pods "{parts[5]}" not found',
                                              {"name": parts[5], "kind": "pods"}))
        if query.get("watch") in ("1", "true"):
            return self.watch(wanted, int(query.get("resourceVersion") or 0),
                              float(query.get("timeoutSeconds") or 290))
        with lock:
            items = [p for _, p in pods if wanted(p)]
            rv = version[0]
        self.send_json(200, {"kind": "PodList", "apiVersion": "v1",
                             "metadata": {"resourceVersion": str(rv)}, "items": items})

    def watch(self, wanted, since, timeout):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + timeout
        sent = since
        try:
            while time.monotonic() < deadline:
                with lock:
                    fresh = [e for e in events if e[0] > sent]
                    if not fresh:
                        lock.wait(timeout=1.0)
                        fresh = [e for e in events if e[0] > sent]
                for rv, kind, pod in fresh:
                    sent = max(sent, rv)
                    if wanted(pod):
                        line = json.dumps({"type": kind, "object": pod}).encode() + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                        self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        with lock:
            if self.path == "/podtap/pods":
                pod = json.loads(body)
                rv = stamp(pod)
                pods.append((rv, pod))
                events.append((rv, "ADDED", pod))
            elif self.path.startswith("/podtap/delete/"):
                uid = self.path.rsplit("/", 1)[1]
                gone = [p for _, p in pods if p["metadata"]["uid"] == uid]
                pods[:] = [(v, p) for v, p in pods if p["metadata"]["uid"] != uid]
                for pod in gone:
                    events.append((stamp(pod), "DELETED", pod))
            else:
                return self.send_json(404, status(404, "NotFound", "no such control endpoint"))
            lock.notify_all()
        self.send_json(200, {})


def main():
    global forbid
    args = sys.argv[1:]
    forbid = "--forbid" in args
    path = [a for a in args if not a.startswith("--")][0]
    with open(path) as f:
        for pod in json.load(f):
            pods.append((stamp(pod), pod))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("port", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
