#!/usr/bin/env bash
# A long-lived gRPC connection joined late: the client makes 50 SayHello calls
# to the grpc-go server (the target) before the capture starts, then more
# calls during it. Header fields the encoders indexed before the capture
# (SayHello's :path, the response headers, grpc-status 0) refer to HPACK
# state the capture never saw: they must come out unknown, never guessed,
# while everything indexed after the start (SayHelloError's path and status)
# decodes exactly. Golden: the client's own log (match "known-or-null").
source "$(dirname "$0")/../lib.sh"
start_grpc_go
coproc CLIENT { "${GRPC_CLIENT[@]}" --port "$PORT" --log "$WORK/calls.json" --warmup 50 \
  unary:ada error:bo unary:cy error:di stream:ed:3 unary:fi error:gu; }
read -r line <&"${CLIENT[0]}"
[ "$line" = paused ] || { echo "client did not pause: $line" >&2; exit 1; }
start_capture --pid "$SERVER" --max-payload 65536
echo go >&"${CLIENT[1]}"
read -r line <&"${CLIENT[0]}"
[ "$line" = done ] || { echo "client did not finish: $line" >&2; exit 1; }
stop_capture
write_expected known-or-null "$WORK/calls.json"
