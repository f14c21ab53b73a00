#!/usr/bin/env bash
# gRPC against a Go grpc-go server (the target, built offline from Debian's
# packages): unary, server-streaming and failing calls on one connection.
# Golden: the client's own log.
source "$(dirname "$0")/../lib.sh"
start_grpc_go
start_capture --pid "$SERVER" --max-payload 65536
"${GRPC_CLIENT[@]}" --port "$PORT" --log "$WORK/calls.json" \
  unary:ada stream:bob:5 error:cy unary:dan stream:eve:2 error:fay unary:gus > /dev/null
stop_capture
write_expected exact "$WORK/calls.json"
