#!/usr/bin/env bash
# Builds the Go gRPC Greeter server offline, in GOPATH mode, from Debian's
# packages (golang-1.19-go, golang-google-grpc-dev, golang-goprotobuf-dev,
# protobuf-compiler).
#
#   build-go.sh OUT [--stripped]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "$1")
gopath=$(mktemp -d /tmp/podtap-gopath.XXXXXX)
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/podtap/peers/helloworld" "$gopath/src/podtap/peers/grpcserver"
cp "$here/helloworld.proto" "$gopath/src/podtap/peers/helloworld/"
(cd "$gopath/src/podtap/peers/helloworld" && protoc --go_out=plugins=grpc,paths=source_relative:. helloworld.proto)
cp "$here/go/server/main.go" "$gopath/src/podtap/peers/grpcserver/main.go"
flags=()
[ "${2:-}" = "--stripped" ] && flags=(-ldflags=-s\ -w)
cd "$gopath/src/podtap/peers/grpcserver"
PATH=/usr/lib/go-1.19/bin:$PATH GO111MODULE=off GOPROXY=off GOPATH="$gopath:/usr/share/gocode" \
  GOCACHE="$gopath/cache" go build "${flags[@]}" -o "$out" .
