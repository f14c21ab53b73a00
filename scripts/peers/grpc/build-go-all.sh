#!/usr/bin/env bash
# Builds every Go test peer offline from Debian's packages (golang-1.19-go,
# golang-google-grpc-dev, golang-golang-x-net-dev, golang-golang-x-sys-dev,
# golang-golang-x-text-dev, golang-goprotobuf-dev, golang-google-genproto-dev,
# protobuf-compiler), into OUTDIR:
#
#   grpc-server, grpc-server-stripped   go/server, the Greeter server
#   grpc-client, grpc-client-stripped   go/client, the scripted client
#   grpc-server-pie, grpc-client-pie     the same, position-independent
#                                       (-buildmode=pie)
#   grpc-server-gopath-stripped         go/server in GOPATH mode: no grpc-go
#                                       version anywhere in the binary
#   grpc-client-vendored                go/client again, with grpc-go vendored
#                                       GOPATH-style: its symbols are
#                                       podtap/peers/grpcclient/vendor/
#                                       google.golang.org/grpc/...
#   go-plain                            go/plain, net/http only, no grpc-go
#
# Stripped means -ldflags='-s -w' (no symbol table, no DWARF); the others keep
# both.
#
# Three layouts:
#
#   module   grpc-server, grpc-server-stripped, grpc-client,
#            grpc-client-stripped and the -pie pair. Module mode with -mod=vendor: a module
#            podtap/peers (go 1.19) holding helloworld, grpcserver and
#            grpcclient, whose go.mod requires the real module paths at
#            Debian's versions ($modules below) and whose vendor/ holds a copy
#            of just the packages the peers link, found by `go list -deps` in
#            the GOPATH layout. So, as in real-world module builds,
#            .go.buildinfo lists `dep google.golang.org/grpc v1.33.3` (all a
#            stripped server carries of its grpc-go version), and symbols keep
#            their import paths (google.golang.org/grpc/...).
#   GOPATH   grpc-server-gopath-stripped, go-plain: podtap/peers/helloworld
#            beside the peers, grpc-go from /usr/share/gocode. .go.buildinfo
#            lists no modules.
#   vendored grpc-client-vendored: the GOPATH layout with grpc-go (and
#            helloworld) copied under the client's vendor/ directory.
#
# Nothing is downloaded (GOPROXY=off, GOSUMDB=off, -mod=vendor). One build
# cache serves the whole run (a GOCACHE set in the environment is used
# instead, to keep it across runs; packages under the run's temporary
# directory, the module layout's vendor/ among them, are compiled anew each
# run all the same, as the cache keys them by directory). Each binary
# replaces the old one by a rename, so running it again is safe, even while
# the old binaries run. Prints nothing on success.
#
#   build-go-all.sh OUTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out=$(realpath -m "$1")
mkdir -p "$out"
tmp=$(mktemp -d /tmp/podtap-gopath.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
gocode=/usr/share/gocode
export PATH=/usr/lib/go-1.19/bin:$PATH GOPROXY=off GOSUMDB=off GOFLAGS= GOWORK=off
export GOMODCACHE=$tmp/modcache GOTOOLCHAIN=local
export GOCACHE=${GOCACHE:-$tmp/cache}

# The modules the module layout requires, with the versions of Debian's
# packages (dpkg -l 'golang-*'): golang-goprotobuf-dev 1.3.5,
# golang-golang-x-net-dev 0.7.0, golang-golang-x-sys-dev 0.3.0,
# golang-golang-x-text-dev 0.7.0, golang-google-genproto-dev
# 0.0~git20200413.b5235f6 (upstream's pseudo-version of that commit),
# golang-google-grpc-dev 1.33.3. google.golang.org/protobuf is left out: no
# package the peers link is in it (github.com/golang/protobuf 1.3.5 does not
# build on it).
modules=(
  "github.com/golang/protobuf v1.3.5"
  "golang.org/x/net v0.7.0"
  "golang.org/x/sys v0.3.0"
  "golang.org/x/text v0.7.0"
  "google.golang.org/genproto v0.0.0-20200413115906-b5235f65be36"
  "google.golang.org/grpc v1.33.3"
)

# helloworld DIR: the generated Greeter package (grpc plugin) in DIR.
helloworld() {
  mkdir -p "$1"
  cp "$here/helloworld.proto" "$1/"
  (cd "$1" && protoc --go_out=plugins=grpc,paths=source_relative:. helloworld.proto)
}

# place SOURCE DIR: go/SOURCE/main.go as DIR/main.go.
place() {
  mkdir -p "$2"
  cp "$here/go/$1/main.go" "$2/main.go"
}

# build DIR NAME [GO-BUILD-FLAGS...]: builds the main package in DIR into
# $out/NAME, in the mode the environment (gopath or modvendor) sets.
build() {
  local dir=$1 name=$2
  shift 2
  (cd "$dir" && go build "$@" -o "$out/.$name.tmp" .)
  mv -f "$out/.$name.tmp" "$out/$name"
}

# gopath GOPATH COMMAND...: COMMAND in GOPATH mode (Debian's GOPATH after it).
gopath() {
  local p=$1
  shift
  GO111MODULE=off GOPATH="$p:$gocode" "$@"
}

# modvendor COMMAND...: COMMAND in module mode, from vendor/ only.
modvendor() {
  GO111MODULE=on GOFLAGS="-mod=vendor -buildvcs=false" GOPATH="$tmp/modpath" "$@"
}

# The GOPATH layout.
plain=$tmp/plain
helloworld "$plain/src/podtap/peers/helloworld"
place server "$plain/src/podtap/peers/grpcserver"
place client "$plain/src/podtap/peers/grpcclient"
place plain "$plain/src/podtap/peers/goplain"
gopath "$plain" build "$plain/src/podtap/peers/grpcserver" grpc-server-gopath-stripped -ldflags='-s -w'
gopath "$plain" build "$plain/src/podtap/peers/goplain" go-plain

# The module layout. Its vendor/ gets the packages (all but the standard
# library's and podtap/peers' own) that the GOPATH layout's server and client
# link, each directory's files but tests, and modules.txt lists them under
# their modules, each marked explicit with the go version of its go.mod.
mod=$tmp/module
helloworld "$mod/helloworld"
place server "$mod/grpcserver"
place client "$mod/grpcclient"
deps=$(cd "$plain/src/podtap/peers" && gopath "$plain" go list -deps \
  -f '{{if not .Standard}}{{.ImportPath}} {{.Dir}}{{end}}' ./grpcserver ./grpcclient | sort)
{
  printf 'module podtap/peers\n\ngo 1.19\n\nrequire (\n'
  printf '\t%s\n' "${modules[@]}"
  printf ')\n'
} > "$mod/go.mod"
mkdir -p "$mod/vendor"
: > "$mod/vendor/modules.txt"
declare -A owned=()
for m in "${modules[@]}"; do
  path=${m% *}
  gover=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gocode/src/$path/go.mod" 2>/dev/null || true)
  { echo "# $m"; echo "## explicit${gover:+; go $gover}"; } >> "$mod/vendor/modules.txt"
  while read -r pkg dir; do
    case $pkg in
      "$path" | "$path"/*) ;;
      *) continue ;;
    esac
    owned[$pkg]=1
    echo "$pkg" >> "$mod/vendor/modules.txt"
    mkdir -p "$mod/vendor/$pkg"
    find "$dir" -maxdepth 1 -type f ! -name '*_test.go' -exec cp -t "$mod/vendor/$pkg" {} +
  done <<< "$deps"
done
while read -r pkg dir; do
  case $pkg in podtap/peers/*) continue ;; esac
  [ -n "${owned[$pkg]:-}" ] || { echo "$0: $pkg ($dir) is in no module of \$modules" >&2; exit 1; }
done <<< "$deps"
modvendor build "$mod/grpcserver" grpc-server
modvendor build "$mod/grpcserver" grpc-server-stripped -ldflags='-s -w'
modvendor build "$mod/grpcclient" grpc-client
modvendor build "$mod/grpcclient" grpc-client-stripped -ldflags='-s -w'
modvendor build "$mod/grpcserver" grpc-server-pie -buildmode=pie
modvendor build "$mod/grpcclient" grpc-client-pie -buildmode=pie

# The vendored layout: grpc-go copied under the client's vendor/, and
# helloworld too, so that its own import of grpc resolves to the vendored copy
# (a second, unvendored grpc-go would otherwise be linked in beside it).
vendored=$tmp/vendored
vendor=$vendored/src/podtap/peers/grpcclient/vendor
mkdir -p "$vendor/google.golang.org"
cp -r "$gocode/src/google.golang.org/grpc" "$vendor/google.golang.org/"
helloworld "$vendor/podtap/peers/helloworld"
place client "$vendored/src/podtap/peers/grpcclient"
gopath "$vendored" build "$vendored/src/podtap/peers/grpcclient" grpc-client-vendored
