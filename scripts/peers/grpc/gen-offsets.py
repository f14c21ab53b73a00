#!/usr/bin/env python3
"""Generates podtap's table of grpc-go struct offsets and argument registers
(capture/src/golang/offsets.json) from the DWARF of real binaries.

It builds the Go peers of the version matrix (matrix.sh: every grpc-go
version of go/matrix/versions.txt, by every Go toolchain of the matrix, in
the plain form, which keeps DWARF) and Debian's Go 1.19 + grpc-go 1.33 peers
(build-go-all.sh), asks `capture --inspect` what each binary's DWARF says,
and groups the versions by layout:

- grpc-go's side (grpc-go's and golang.org/x/net's struct offsets, the
  argument registers) must not depend on the Go toolchain; consecutive
  matrix versions with the same layout make one entry, which covers the
  minors from its first to its last verified version. Debian's 1.33 is an
  entry of its own (the releases between it and the matrix were not looked
  at).
- the Go runtime's side (net.TCPConn -> conn.fd, net.netFD -> pfd.Sysfd)
  is grouped the same way by Go release.

  gen-offsets.py [--capture PATH] [--out DIR] [--check] [VERSION...]

Without --check it writes the table. With --check it builds only the grpc-go
VERSIONs named (all, if none) and fails, printing the difference, unless
every layout it finds is the committed table's for that version.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
TABLE = ROOT / "capture/src/golang/offsets.json"
CACHE = pathlib.Path(os.environ.get("PODTAP_CACHE", "/var/cache/podtap"))

# The Go runtime's fields; the rest of GoOffsets is grpc-go's side.
RUNTIME = ["tcpconn_fd", "netfd_sysfd"]
# Which probed function needs which fields and argument registers (as
# capture/src/golang/offsets.rs's needed_by).
COMMON = ["field_size", "field_name", "field_value", "field_sensitive"]
FRAME = ["meta_headers", "meta_fields", "meta_truncated", "frame_flags", "frame_stream_id"]
NEEDS = {
    "server_operate_headers": (["server_conn"] + FRAME, ["server_transport", "server_frame"]),
    "client_operate_headers": (["client_conn"] + FRAME, ["client_transport", "client_frame"]),
    "loopy_write_header": (
        ["loopy_framer", "framer_writer", "bufwriter_conn"],
        ["loopy_writer", "loopy_stream_id", "loopy_end_stream", "loopy_fields_ptr",
         "loopy_fields_len"],
    ),
}


def die(message):
    print(f"gen-offsets: {message}", file=sys.stderr)
    sys.exit(1)


def inspect(capture, path):
    """What capture --inspect says of one binary, with offsets from DWARF."""
    out = subprocess.run([capture, "--inspect", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        die(f"capture --inspect {path}: {out.stderr.strip() or out.stdout.strip()}")
    line = json.loads(out.stdout)
    if line["outcome"] != "grpc_headers":
        die(f"{path}: {line['outcome']}: {line.get('reason')}")
    go = line["go"]
    if go["offsets_source"] != "dwarf":
        die(f"{path}: offsets not from DWARF")
    return go


def layout(binaries):
    """The layout the binaries of one build agree on: (grpc side, runtime side)."""
    grpc_offsets, args, runtime = {}, {}, {}

    def put(into, key, value, path):
        if into.setdefault(key, value) != value:
            die(f"{path}: {key} is {value}, another binary of the build says {into[key]}")

    for path, go in binaries:
        offsets = go["offsets"]
        for function, (fields, registers) in NEEDS.items():
            if go["functions"][function] is None:
                continue
            for key in fields + COMMON:
                put(grpc_offsets, key, offsets[key], path)
            for key in registers:
                put(args, key, offsets["args"][key], path)
        for key in RUNTIME:
            put(runtime, key, offsets[key], path)
    wanted_fields = sorted({k for f, _ in NEEDS.values() for k in f} | set(COMMON))
    wanted_args = sorted({k for _, a in NEEDS.values() for k in a})
    if sorted(grpc_offsets) != wanted_fields or sorted(args) != wanted_args:
        die(f"{[str(p) for p, _ in binaries]}: not every probed function was found")
    return (dict(sorted(grpc_offsets.items())), dict(sorted(args.items()))), dict(runtime)


def version_key(v):
    return tuple(int(x) for x in v.removeprefix("go").split("."))


def minor(v):
    major, minor_, *_ = v.removeprefix("go").split(".")
    return f"{major}.{minor_}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capture", default=str(ROOT / "target/release/capture"))
    parser.add_argument("--out", default=str(CACHE / "go-peers/offsets"))
    parser.add_argument("--check", action="store_true")
    parser.add_argument("versions", nargs="*")
    opts = parser.parse_args()
    out = pathlib.Path(opts.out)

    matrix = subprocess.run([HERE / "matrix.sh", "versions"], capture_output=True, text=True,
                            check=True).stdout.split()
    versions = opts.versions or matrix
    for v in versions:
        if v not in matrix:
            die(f"grpc-go {v} is not in go/matrix/versions.txt")
    env = dict(os.environ, FORMS="plain")
    subprocess.run([HERE / "matrix.sh", "build", out / "matrix", *versions], env=env, check=True)
    debian = out / "debian"
    subprocess.run([HERE / "build-go-all.sh", debian], check=True,
                   env=dict(os.environ, GOCACHE=str(CACHE / "go/build-1.19")))

    # Every build: (grpc-go version, Go version) -> layout.
    builds = {}
    for row in (out / "matrix/manifest.tsv").read_text().splitlines():
        toolchain, grpc, _form, folder = row.split("\t")
        binaries = [(p, inspect(opts.capture, p))
                    for p in (pathlib.Path(folder) / "grpc-server", pathlib.Path(folder) / "grpc-client")]
        go_version = binaries[0][1]["go_version"]
        if go_version != toolchain:
            die(f"{folder}: built by {go_version}, not {toolchain}")
        builds[(grpc, go_version)] = layout(binaries)
    debian_binaries = [(p, inspect(opts.capture, p))
                       for p in (debian / "grpc-server", debian / "grpc-client")]
    debian_build = (debian_binaries[0][1]["grpc_version"], debian_binaries[0][1]["go_version"])
    builds[debian_build] = layout(debian_binaries)

    # grpc-go's side must not depend on the toolchain.
    by_grpc = {}
    for (grpc, go), (grpc_side, _) in builds.items():
        if by_grpc.setdefault(grpc, grpc_side) != grpc_side:
            die(f"grpc-go {grpc}: the layout differs between Go toolchains")
    by_go = {}
    for (_, go), (_, runtime) in builds.items():
        if by_go.setdefault(go, runtime) != runtime:
            die(f"{go}: the runtime layout differs between builds")

    if opts.check:
        check(builds)
        return

    # Consecutive matrix versions with one layout make one entry.
    grpc_entries = []
    for grpc in sorted(by_grpc, key=version_key):
        offsets, args = by_grpc[grpc]
        verified = sorted([g, go] for (g, go) in builds if g == grpc)
        last = grpc_entries[-1] if grpc_entries else None
        in_matrix = grpc in matrix
        if (last and in_matrix and last["_matrix"] and last["offsets"] == offsets
                and last["args"] == args):
            last["last"] = minor(grpc)
            last["verified"] += verified
        else:
            grpc_entries.append({"first": minor(grpc), "last": minor(grpc), "verified": verified,
                                 "offsets": offsets, "args": args, "_matrix": in_matrix})
    for e in grpc_entries:
        del e["_matrix"]
    go_entries = []
    for go in sorted(by_go, key=version_key):
        last = go_entries[-1] if go_entries else None
        if last and last["offsets"] == by_go[go]:
            last["last"] = "go" + minor(go)
            last["verified"].append(go)
        else:
            go_entries.append({"first": "go" + minor(go), "last": "go" + minor(go),
                               "verified": [go], "offsets": by_go[go]})
    table = {
        "about": "podtap's table of grpc-go struct offsets and argument registers, read from "
                 "the DWARF of the Go peers by scripts/peers/grpc/gen-offsets.py (see "
                 "capture/src/golang/offsets.rs). Generated: run the script again rather "
                 "than editing it.",
        "grpc": grpc_entries,
        "go": go_entries,
    }
    TABLE.write_text(json.dumps(table, indent=2) + "\n")
    print(f"wrote {TABLE.relative_to(ROOT)}: {len(grpc_entries)} grpc-go layout(s), "
          f"{len(go_entries)} Go runtime layout(s), from {len(builds)} builds")


def check(builds):
    """Every build's layout is the committed table's for its versions."""
    table = json.loads(TABLE.read_text())
    wrong = []
    for (grpc, go), ((offsets, args), runtime) in sorted(builds.items()):
        entry = next((e for e in table["grpc"]
                      if version_key(e["first"]) <= version_key(minor(grpc))
                      <= version_key(e["last"])), None)
        go_entry = next((e for e in table["go"]
                         if version_key(e["first"]) <= version_key(minor(go))
                         <= version_key(e["last"])), None)
        if entry is None or go_entry is None:
            wrong.append(f"grpc-go {grpc} / {go}: not covered by the table")
            continue
        if [grpc, go] not in entry["verified"] or go not in go_entry["verified"]:
            wrong.append(f"grpc-go {grpc} / {go}: not listed as verified")
        for key, value in {**offsets, **runtime}.items():
            committed = {**entry["offsets"], **go_entry["offsets"]}.get(key)
            if committed != value:
                wrong.append(f"grpc-go {grpc} / {go}: {key} is {value}, the table says {committed}")
        for key, value in args.items():
            if entry["args"].get(key) != value:
                wrong.append(f"grpc-go {grpc} / {go}: register {key} is {value}, "
                             f"the table says {entry['args'].get(key)}")
    if wrong:
        print("\n".join(wrong), file=sys.stderr)
        die("the committed table is not what the binaries say: run gen-offsets.py")
    print(f"gen-offsets: {len(builds)} builds agree with {TABLE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
