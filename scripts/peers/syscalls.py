#!/usr/bin/env python3
"""A framed TCP echo peer that moves its bytes with every syscall podtap traces.

    syscalls.py server
        Prints "port N". Frames are OP (1 byte), LENGTH (4 bytes, big endian),
        BODY. OP "E": the body comes back as a frame. OP "D": the server throws
        the body away with recv(MSG_TRUNC) and answers an empty frame. OP "F":
        the server answers with LENGTH bytes sent with sendfile(). The server
        reads each frame with a different call in turn (recv after a
        recv(MSG_PEEK), read, readv, recvmsg_into, recv_into) and writes with a
        different call in turn (write, writev, sendmsg, send).

    syscalls.py client --port N --log DIR SPEC...
        SPEC is "E:BYTES", "D:BYTES" or "F:BYTES". Writes every byte sent
        (sent.bin) and received (recv.bin), and files.json with the offsets in
        recv.bin of sendfile() bodies. Prints "done".
"""
import argparse
import json
import os
import socket
import struct
import tempfile
import threading


def pattern(n, seed=0):
    return bytes((i * 13 + seed) % 251 for i in range(n))


def read_exact(sock, n, how):
    """Reads n bytes with the syscall `how` picks."""
    out = bytearray()
    fd = sock.fileno()
    while len(out) < n:
        want = n - len(out)
        if how == 0:
            sock.recv(1, socket.MSG_PEEK)
            chunk = sock.recv(want)
        elif how == 1:
            chunk = os.read(fd, want)
        elif how == 2:
            a = bytearray(max(1, want // 2))
            b = bytearray(want - len(a))
            got = os.readv(fd, [a, b])
            chunk = bytes((a + b)[:got])
        elif how == 3:
            a = bytearray(max(1, want // 3))
            b = bytearray(want - len(a))
            got, _, _, _ = sock.recvmsg_into([a, b])
            chunk = bytes((a + b)[:got])
        else:
            buf = bytearray(want)
            got = sock.recv_into(buf)
            chunk = bytes(buf[:got])
        if not chunk:
            raise EOFError
        out += chunk
    return bytes(out)


def write_all(sock, data, how):
    """Writes data with the syscall `how` picks."""
    fd = sock.fileno()
    view = memoryview(data)
    while view:
        third = max(1, len(view) // 3)
        if how == 0:
            n = os.write(fd, view)
        elif how == 1:
            n = os.writev(fd, [view[:third], view[third : 2 * third], view[2 * third :]])
        elif how == 2:
            n = sock.sendmsg([view[:third], view[third:]])
        else:
            n = sock.send(view)
        view = view[n:]


def handle(conn):
    turn = 0
    with tempfile.TemporaryFile() as spool:
        while True:
            try:
                head = read_exact(conn, 5, turn % 5)
            except EOFError:
                return
            op, length = head[:1], struct.unpack(">I", head[1:])[0]
            turn += 1
            if op == b"D":
                left = length
                while left:
                    left -= len(conn.recv(left, socket.MSG_TRUNC))
                write_all(conn, b"D" + struct.pack(">I", 0), turn % 4)
            elif op == b"F":
                body = pattern(length, seed=length % 7)
                spool.seek(0)
                spool.truncate()
                spool.write(body)
                spool.flush()
                write_all(conn, b"F" + struct.pack(">I", length), turn % 4)
                sent = 0
                while sent < length:
                    sent += os.sendfile(conn.fileno(), spool.fileno(), sent, length - sent)
            else:
                body = read_exact(conn, length, turn % 5)
                write_all(conn, b"E" + struct.pack(">I", length) + body, turn % 4)
            turn += 1


def serve():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    print(f"port {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def recv_exact(sock, n):
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError("server closed the connection")
        out += chunk
    return bytes(out)


def client(args):
    sock = socket.create_connection(("127.0.0.1", args.port))
    print(f"local {sock.getsockname()[1]}", flush=True)
    sent, recv, files = bytearray(), bytearray(), []
    for spec in args.spec:
        op, size = spec.split(":")
        size = int(size)
        if op == "F":
            frame = b"F" + struct.pack(">I", size)
        else:
            frame = op.encode() + struct.pack(">I", size) + pattern(size)
        sock.sendall(frame)
        sent += frame
        head = recv_exact(sock, 5)
        length = struct.unpack(">I", head[1:])[0]
        body = recv_exact(sock, length)
        if op == "F":
            files.append([len(recv) + 5, length])
        recv += head + body
    os.makedirs(args.log, exist_ok=True)
    with open(os.path.join(args.log, "sent.bin"), "wb") as f:
        f.write(sent)
    with open(os.path.join(args.log, "recv.bin"), "wb") as f:
        f.write(recv)
    with open(os.path.join(args.log, "files.json"), "w") as f:
        json.dump(files, f)
    sock.close()
    print("done", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("server")
    c = sub.add_parser("client")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--log", required=True)
    c.add_argument("spec", nargs="+")
    args = parser.parse_args()
    if args.command == "server":
        serve()
    else:
        client(args)


if __name__ == "__main__":
    main()
