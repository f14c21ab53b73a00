#!/usr/bin/env bash
# gRPC against a Python grpcio server (the target): unary calls,
# server-streaming calls and calls failing with NOT_FOUND (a percent-encoded
# grpc-message), on one connection. Golden: the client's own log.
source "$(dirname "$0")/../lib.sh"
start_grpc_python
start_capture --pid "$SERVER" --max-payload 65536
"${GRPC_CLIENT[@]}" --port "$PORT" --log "$WORK/calls.json" \
  unary:ada stream:bob:5 error:cy unary:dan stream:eve:2 error:fay unary:gus > /dev/null
stop_capture
write_expected exact "$WORK/calls.json"
