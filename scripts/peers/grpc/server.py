#!/usr/bin/env python3
"""gRPC Greeter server (grpcio). Prints "port N" once listening on 127.0.0.1."""
import argparse
from concurrent import futures

import grpc

import gen

pb2, pb2_grpc = gen.stubs()


class Greeter(pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):
        return pb2.HelloReply(message=f"Hello, {request.name}!")

    def SayHelloStream(self, request, context):
        for i in range(max(request.count, 1)):
            yield pb2.HelloReply(message=f"Hello #{i}, {request.name}!")

    def SayHelloError(self, request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, f"no greeting for {request.name}: 100% gone")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"port {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
