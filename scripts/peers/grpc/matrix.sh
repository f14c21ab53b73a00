#!/usr/bin/env bash
# The Go peers' version matrix: the Greeter server and the scripted client
# of go/ (a Go module, podtap/peers) built with every grpc-go version of
# go/matrix/versions.txt, by every Go toolchain of $TOOLCHAINS, in every
# form of $FORMS. Modules come from the Go module proxy through the
# committed go/matrix/grpc-VERSION.mod and .sum files (go build -modfile).
#
#   matrix.sh build OUTDIR [VERSION...]   build (all versions, or those named)
#   matrix.sh tidy [VERSION...]           write the .mod and .sum files anew
#   matrix.sh versions                    print the versions, one a line
#
# build writes OUTDIR/TOOLCHAIN/grpc-VERSION/FORM/{grpc-server,grpc-client}
# and OUTDIR/manifest.tsv (toolchain, grpc-go version, form, folder; a line
# an entry, in matrix order). An entry whose inputs (sources, module files,
# toolchain, form and its flags) are unchanged since its last build is kept
# as it is, so a second run takes seconds. The build and module caches are
# $PODTAP_CACHE/go/{build,mod} (default /var/cache/podtap), outside the
# clone. Prints one line per entry built.
#
# Forms: plain (symbols and DWARF), stripped (-ldflags='-s -w': neither),
# pie (-buildmode=pie). Toolchains: go1.26.8 (the machine's own `go`) and
# go1.27.3 (GOTOOLCHAIN, fetched by the go command from the module proxy).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$here/go
matrix=$src/matrix
cache=${PODTAP_CACHE:-/var/cache/podtap}
export GOMODCACHE=${GOMODCACHE:-$cache/go/mod} GOCACHE=${GOCACHE:-$cache/go/build}
export GOFLAGS="-modcacherw -buildvcs=false" GOWORK=off GOPATH=${GOPATH:-$cache/go/path}
TOOLCHAINS=${TOOLCHAINS:-go1.26.8 go1.27.3}
FORMS=${FORMS:-plain stripped pie}

versions() {
  sed -e 's/#.*//' "$matrix/versions.txt" | awk 'NF {print $1}'
}

# toolchain_env TOOLCHAIN: the GOTOOLCHAIN value that runs TOOLCHAIN.
toolchain_env() {
  local local_version
  local_version=$(GOTOOLCHAIN=local go env GOVERSION)
  if [ "$1" = "$local_version" ]; then echo local; else echo "$1"; fi
}

form_flags() {
  case $1 in
    plain) ;;
    stripped) echo "-ldflags=-s -w" ;;
    pie) echo "-buildmode=pie" ;;
    *) echo "matrix.sh: unknown form $1" >&2; exit 2 ;;
  esac
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  versions) versions ;;
  tidy)
    [ $# -gt 0 ] || set -- $(versions)
    for v in "$@"; do
      mod=$matrix/grpc-$v.mod
      printf 'module podtap/peers\n\ngo 1.19\n\nrequire google.golang.org/grpc v%s\n' "$v" > "$mod"
      rm -f "${mod%.mod}.sum"
      (cd "$src" && GOTOOLCHAIN=local GOFLAGS="$GOFLAGS -mod=mod" go mod tidy -modfile="$mod")
      echo "tidied grpc-go $v"
    done
    ;;
  build)
    [ $# -ge 1 ] || { echo "usage: $0 build OUTDIR [VERSION...]" >&2; exit 2; }
    out=$(realpath -m "$1")
    shift
    [ $# -gt 0 ] || set -- $(versions)
    mkdir -p "$out"
    # One build at a time per OUTDIR (test processes share one).
    exec 9> "$out/.lock"
    flock 9
    sources=$(cd "$src" && find server client helloworld go.mod go.sum -type f | sort)
    base_key=$( (cd "$src" && cat $sources) | sha256sum | cut -c1-32)
    manifest=$out/.manifest.tmp
    : > "$manifest"
    for tc in $TOOLCHAINS; do
      gotc=$(toolchain_env "$tc")
      for v in "$@"; do
        mod=$matrix/grpc-$v.mod
        [ -f "$mod" ] || { echo "matrix.sh: no $mod (matrix.sh tidy $v)" >&2; exit 1; }
        for form in $FORMS; do
          dir=$out/$tc/grpc-$v/$form
          key=$( (echo "$base_key $tc $form $(form_flags "$form")"; cat "$mod" "${mod%.mod}.sum") |
            sha256sum | cut -c1-32)
          printf '%s\t%s\t%s\t%s\n' "$tc" "$v" "$form" "$dir" >> "$manifest"
          if [ "$(cat "$dir/.key" 2>/dev/null)" = "$key" ]; then continue; fi
          tmp=$out/.build.$$
          rm -rf "$tmp"
          mkdir -p "$tmp"
          flags=$(form_flags "$form")
          (cd "$src" && GOTOOLCHAIN=$gotc GOFLAGS="$GOFLAGS -mod=readonly" \
            go build -modfile="$mod" ${flags:+"$flags"} -o "$tmp/" ./server ./client)
          mv "$tmp/server" "$tmp/grpc-server"
          mv "$tmp/client" "$tmp/grpc-client"
          echo "$key" > "$tmp/.key"
          rm -rf "$dir"
          mkdir -p "$(dirname "$dir")"
          mv "$tmp" "$dir"
          echo "built $tc grpc-go $v $form"
        done
      done
    done
    mv -f "$manifest" "$out/manifest.tsv"
    ;;
  *)
    echo "usage: $0 build OUTDIR [VERSION...] | tidy [VERSION...] | versions" >&2
    exit 2
    ;;
esac
