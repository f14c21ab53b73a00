#!/usr/bin/env python3
"""Real HTTP/1.1 peers for podtap's tests, demo and benchmarks.

    http1.py server [--mode threading|forking] [--host 127.0.0.1] [--port 0] [--chunk BYTES] [--noise]
        Prints "port N" once listening. With --noise, every request also
        sends a UDP datagram, talks over a unix socket pair and writes a file
        (traffic podtap must not record). Routes:
          GET  /bytes/N       N bytes of a fixed pattern, written CHUNK bytes at a time
          GET  /chunked/N     the same bytes with Transfer-Encoding: chunked
          GET  /status/CODE   an empty-bodied response with that status
          POST /echo          the request body back
          anything else       "hello\\n"
        A request with a Cookie gets it back as Set-Cookie. Connections are
        kept alive (HTTP/1.1).

    http1.py client [--host 127.0.0.1] --port N [--log DIR] [--pause-after K] [--repeat R] [--interval S] SPEC...
        One keep-alive connection; SPEC is "GET /path" or "POST /path BYTES".
        Prints "local PORT" after connecting, "paused" before request K (then
        waits for a line on stdin), and "done" at the end. With --log, writes
        every byte sent (sent.bin) and received (recv.bin), and marks.json with
        how many of them came before the pause.
        --wait: print "ready" and wait for a line on stdin before connecting.
        --header "NAME: VALUE": sent with every request (repeatable).
        --byte-by-byte: every request is written one byte per send().
        --nonblocking-connect: connect the way event loops do (EINPROGRESS).
        --half-close: send every request (the last with "Connection: close"),
        shut down the sending side, wait, then read the responses to the end.
"""
import argparse
import errno
import http.server
import json
import os
import select
import socket
import socketserver
import sys
import time


def pattern(n):
    """Deterministic bytes: the same on every run, never a repeating HTTP-looking line."""
    block = bytes((i * 31 + 7) % 251 for i in range(251))
    return (block * (n // 251 + 1))[:n]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    chunk = 16384
    noise = False

    def log_message(self, *args):
        pass

    def make_noise(self):
        """I/O on things that are not TCP sockets."""
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.sendto(b"udp noise", ("127.0.0.1", 9))
        udp.close()
        left, right = socket.socketpair()
        left.sendall(b"unix noise")
        right.recv(100)
        left.close()
        right.close()
        with open(os.devnull, "wb") as f:
            f.write(b"file noise")

    def handle_one_request(self):
        if self.noise:
            self.make_noise()
        super().handle_one_request()

    def _send(self, code, body, content_type="application/octet-stream"):
        self.send_response(code)
        if self.headers.get("Cookie"):
            self.send_header("Set-Cookie", self.headers["Cookie"])
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for i in range(0, len(body), self.chunk):
            self.wfile.write(body[i : i + self.chunk])

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "bytes":
            self._send(200, pattern(int(parts[1])))
        elif len(parts) == 2 and parts[0] == "chunked":
            body = pattern(int(parts[1]))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), self.chunk):
                piece = body[i : i + self.chunk]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif len(parts) == 2 and parts[0] == "status":
            self._send(int(parts[1]), b"", "text/plain")
        else:
            self._send(200, b"hello\n", "text/plain")

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "6")
        self.end_headers()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self._send(200, body)


class ForkingServer(socketserver.ForkingMixIn, http.server.HTTPServer):
    daemon_threads = True


def server_class(base, host):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return type("Server", (base,), {"address_family": family})


def serve(args):
    Handler.chunk = args.chunk
    Handler.noise = args.noise
    base = ForkingServer if args.mode == "forking" else http.server.ThreadingHTTPServer
    server = server_class(base, args.host)((args.host, args.port), Handler)
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


def body_size(raw):
    """Body length of a complete raw response (chunked decoded)."""
    head_end = raw.index(b"\r\n\r\n") + 4
    head = raw[:head_end].decode("latin-1").lower()
    body = raw[head_end:]
    if "transfer-encoding: chunked" not in head:
        return len(body)
    size, pos = 0, 0
    while True:
        line_end = body.index(b"\r\n", pos)
        n = int(body[pos:line_end].split(b";")[0], 16)
        if n == 0:
            return size
        size += n
        pos = line_end + 2 + n + 2


def record(exchanges, request, response, head_request=False):
    """Notes an exchange as the client saw it."""
    method, path = request.split(b" ", 2)[:2]
    status = int(response.split(b" ", 2)[1])
    req_head_end = request.index(b"\r\n\r\n") + 4
    exchanges.append(
        {
            "protocol": "http1",
            "method": method.decode(),
            "path": path.decode(),
            "status": status,
            "request_body_size": len(request) - req_head_end,
            "response_body_size": 0 if head_request else body_size(response),
        }
    )


def read_response(sock, buf, head_request=False):
    """Reads one response from sock (buf holds bytes already read); returns (raw, rest)."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise EOFError("connection closed in the middle of a response head")
        buf += data
    head_end = buf.index(b"\r\n\r\n") + 4
    head = buf[:head_end].decode("latin-1").lower()
    headers = dict(
        line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line
    )
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    status = int(head.split(" ", 2)[1])
    if head_request or status in (204, 304) or 100 <= status < 200:
        return buf[:head_end], buf[head_end:]
    if headers.get("transfer-encoding") == "chunked":
        pos = head_end
        while True:
            while b"\r\n" not in buf[pos:]:
                buf += sock.recv(65536)
            line_end = buf.index(b"\r\n", pos)
            size = int(buf[pos:line_end], 16)
            need = line_end + 2 + size + 2
            while len(buf) < need:
                buf += sock.recv(65536)
            pos = need
            if size == 0:
                break
        end = pos
    else:
        end = head_end + int(headers.get("content-length", "0"))
        while len(buf) < end:
            data = sock.recv(65536)
            if not data:
                raise EOFError("connection closed in the middle of a response body")
            buf += data
    return buf[:end], buf[end:]


def build_request(spec, port, host="127.0.0.1", headers=()):
    if ":" in host:
        host = f"[{host}]"
    words = spec.split()
    method, path = words[0], words[1]
    extra = "".join(f"{h}\r\n" for h in headers)
    if method == "POST":
        body = pattern(int(words[2]))
        return (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    return f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}User-Agent: podtap-test\r\n\r\n".encode()


def connect(args):
    if not args.nonblocking_connect:
        return socket.create_connection((args.host, args.port))
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    err = sock.connect_ex((args.host, args.port))
    assert err in (0, errno.EINPROGRESS), os.strerror(err)
    select.select([], [sock], [], 5)
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    assert err == 0, os.strerror(err)
    # A second connect() on the finished socket, as some event loops do.
    sock.connect_ex((args.host, args.port))
    sock.setblocking(True)
    return sock


def half_close(args, sock, specs, sent, recv):
    for i, spec in enumerate(specs):
        request = build_request(spec, args.port, args.host)
        if i == len(specs) - 1:
            request = request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
        sock.sendall(request)
        sent += request
    sock.shutdown(socket.SHUT_WR)
    # The server answers and closes meanwhile: its FIN and the responses wait
    # in this socket's receive queue.
    time.sleep(0.5)
    while True:
        data = sock.recv(65536)
        if not data:
            break
        recv += data


def client(args):
    if args.wait:
        print("ready", flush=True)
        sys.stdin.readline()
    sock = connect(args)
    print(f"local {sock.getsockname()[1]}", flush=True)
    sent, recv, rest = bytearray(), bytearray(), b""
    marks = {"sent_before_pause": 0, "recv_before_pause": 0}
    exchanges = []
    specs = args.spec * args.repeat
    if args.half_close:
        half_close(args, sock, specs, sent, recv)
        specs = []
    if args.pipeline:
        requests = [build_request(spec, args.port, args.host) for spec in specs]
        sock.sendall(b"".join(requests))
        sent += b"".join(requests)
        for request in requests:
            head_request = request.startswith(b"HEAD ")
            response, rest = read_response(sock, rest, head_request)
            recv += response
            record(exchanges, request, response, head_request)
        specs = []
    for i, spec in enumerate(specs):
        if i == args.pause_after:
            marks = {"sent_before_pause": len(sent), "recv_before_pause": len(recv)}
            print("paused", flush=True)
            sys.stdin.readline()
        request = build_request(spec, args.port, args.host, args.header)
        if args.interval and i:
            time.sleep(args.interval)
        if args.byte_by_byte:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for b in request:
                sock.send(bytes([b]))
        else:
            sock.sendall(request)
        sent += request
        head_request = request.startswith(b"HEAD ")
        response, rest = read_response(sock, rest, head_request)
        recv += response
        if i >= max(args.pause_after, 0):
            record(exchanges, request, response, head_request)
    if args.log:
        os.makedirs(args.log, exist_ok=True)
        with open(os.path.join(args.log, "sent.bin"), "wb") as f:
            f.write(sent)
        with open(os.path.join(args.log, "recv.bin"), "wb") as f:
            f.write(recv)
        with open(os.path.join(args.log, "marks.json"), "w") as f:
            json.dump(marks, f)
        with open(os.path.join(args.log, "exchanges.json"), "w") as f:
            json.dump(exchanges, f, indent=1)
    print("done", flush=True)
    sock.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("server")
    s.add_argument("--mode", choices=["threading", "forking"], default="threading")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--noise", action="store_true")
    s.add_argument("--chunk", type=int, default=16384)
    c = sub.add_parser("client")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--log")
    c.add_argument("--pause-after", type=int, default=-1)
    c.add_argument("--repeat", type=int, default=1)
    c.add_argument("--interval", type=float, default=0, help="seconds to wait between requests")
    c.add_argument("--wait", action="store_true")
    c.add_argument("--nonblocking-connect", action="store_true")
    c.add_argument("--half-close", action="store_true")
    c.add_argument("--pipeline", action="store_true")
    c.add_argument("--header", action="append", default=[])
    c.add_argument("--byte-by-byte", action="store_true")
    c.add_argument("spec", nargs="+")
    args = parser.parse_args()
    if args.command == "server":
        serve(args)
    else:
        client(args)


if __name__ == "__main__":
    main()
