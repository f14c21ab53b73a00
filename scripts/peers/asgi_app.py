"""A small ASGI application for HTTP/2 peers (served by hypercorn, h2c).

Routes, as in http1.py: GET /bytes/N (N bytes), GET /status/CODE (empty),
POST /echo (the body back), anything else "hello\\n".

    cd scripts/peers && hypercorn --bind 127.0.0.1:PORT asgi_app:app
"""


def pattern(n):
    block = bytes((i * 31 + 7) % 251 for i in range(251))
    return (block * (n // 251 + 1))[:n]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    parts = scope["path"].strip("/").split("/")
    status, content_type, out = 200, b"text/plain", b"hello\n"
    if len(parts) == 2 and parts[0] == "bytes":
        content_type, out = b"application/octet-stream", pattern(int(parts[1]))
    elif len(parts) == 2 and parts[0] == "status":
        status, out = int(parts[1]), b""
    elif scope["path"] == "/echo":
        content_type, out = b"application/octet-stream", body
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(out)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": out})
