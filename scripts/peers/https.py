"""An HTTPS/1.1 server on Python's ssl module (the system's OpenSSL), for the
TLS tests: `https.py CERT KEY [--plain]` listens on 127.0.0.1, prints
"port N", and answers GET PATH with 200 and the body "hello PATH\n", POST
with the body it got; Connection keep-alive (HTTP/1.1). With --plain the same
process also serves plain HTTP on a second port, printed as "plain M"."""
import http.server
import ssl
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(f"hello {self.path}\n".encode())

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.reply(self.rfile.read(length))


def main():
    cert, key = sys.argv[1], sys.argv[2]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"port {server.server_address[1]}", flush=True)
    if "--plain" in sys.argv[3:]:
        plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        print(f"plain {plain.server_address[1]}", flush=True)
        threading.Thread(target=plain.serve_forever, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
