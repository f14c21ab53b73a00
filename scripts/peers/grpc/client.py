#!/usr/bin/env python3
"""gRPC Greeter client (grpcio): one channel (one HTTP/2 connection), calls
as SPECs: unary:NAME, stream:NAME:COUNT, error:NAME.

    client.py --port N [--log FILE] [--warmup K] SPEC...

--warmup K: make K unary calls first, print "paused" and wait for a line on
stdin (a capture starts meanwhile); they are not logged.
--metadata KEY=VALUE: sent with every call (repeatable).
--log FILE: every logged call as an exchange, as the client saw it: path,
grpc status code and message, replies received.
"""
import argparse
import json
import sys

import grpc

import gen

pb2, pb2_grpc = gen.stubs()
SERVICE = "/helloworld.Greeter/"


def call(stub, spec, metadata=()):
    kind, name, *rest = spec.split(":")
    request = pb2.HelloRequest(name=name, count=int(rest[0]) if rest else 1)
    try:
        if kind == "unary":
            stub.SayHello(request, metadata=metadata)
            return "SayHello", grpc.StatusCode.OK, None, 1
        if kind == "stream":
            replies = sum(1 for _ in stub.SayHelloStream(request, metadata=metadata))
            return "SayHelloStream", grpc.StatusCode.OK, None, replies
        stub.SayHelloError(request, metadata=metadata)
        return "SayHelloError", grpc.StatusCode.OK, None, 1
    except grpc.RpcError as e:
        method = {"unary": "SayHello", "stream": "SayHelloStream", "error": "SayHelloError"}[kind]
        return method, e.code(), e.details(), 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log")
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--metadata", action="append", default=[])
    parser.add_argument("spec", nargs="*")
    args = parser.parse_args()
    channel = grpc.insecure_channel(f"127.0.0.1:{args.port}")
    stub = pb2_grpc.GreeterStub(channel)
    for i in range(args.warmup):
        stub.SayHello(pb2.HelloRequest(name=f"warmup{i}"))
    if args.warmup:
        print("paused", flush=True)
        sys.stdin.readline()
    log = []
    for spec in args.spec:
        metadata = [tuple(m.split("=", 1)) for m in args.metadata]
        method, code, details, replies = call(stub, spec, metadata)
        log.append({"protocol": "grpc", "method": "POST", "path": SERVICE + method, "status": 200,
                    "grpc_status": code.value[0], "grpc_message": details})
    if args.log:
        json.dump(log, open(args.log, "w"), indent=1)
    channel.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
