//! Tests on real Go binaries: the test peers of `scripts/peers/grpc/`
//! (Go 1.19 and grpc-go 1.33.3 from Debian's packages), built once per
//! machine into the system's temporary folder (see [`peers`]).

use std::collections::hash_map::DefaultHasher;
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use object::{Object, ObjectSection, ObjectSymbol};

use super::elf::Elf;
use super::offsets::Field;
use super::pclntab::Pclntab;
use super::*;

/// The folder of the Go test peers, built by
/// `scripts/peers/grpc/build-go-all.sh` on first use. The binaries are kept
/// in `$TMPDIR/podtap-go-peers/<hash of the scripts and sources>/`, so test
/// processes (and later runs) share them; a file lock keeps two processes
/// from building at once. Panics (failing the test) if the build fails, e.g.
/// without the Go toolchain from `scripts/setup.sh`.
fn peers() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        build_peers().unwrap_or_else(|e| panic!("building the Go test peers failed: {e}"))
    })
}

fn build_peers() -> std::io::Result<PathBuf> {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/peers/grpc");
    let script = scripts.join("build-go-all.sh");
    let mut inputs = vec![script.clone(), scripts.join("helloworld.proto")];
    let mut dirs = vec![scripts.join("go")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                inputs.push(path);
            }
        }
    }
    inputs.sort();
    let mut hasher = DefaultHasher::new();
    for input in &inputs {
        input.file_name().hash(&mut hasher);
        fs::read(input)?.hash(&mut hasher);
    }
    let root = std::env::temp_dir().join("podtap-go-peers");
    fs::create_dir_all(&root)?;
    let lock = File::create(root.join(".lock"))?;
    lock.lock()?;
    let dir = root.join(format!("{:016x}", hasher.finish()));
    if !dir.join(".complete").exists() {
        let status = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .env("GOCACHE", root.join("gocache"))
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!("{}: {status}", script.display())));
        }
        fs::write(dir.join(".complete"), b"")?;
    }
    Ok(dir)
}

fn peer(name: &str) -> PathBuf {
    peers().join(name)
}

fn instrumentable(name: &str, options: &InspectOptions) -> GoBinary {
    match inspect_with(&peer(name), options) {
        Ok(Inspection::Instrumentable(b)) => b,
        other => panic!("{name}: {other:?}"),
    }
}

/// The 1.33 table entry.
fn table_1_33() -> GoOffsets {
    offsets::known(&GrpcVersion::parse("1.33.3").expect("version"), &toolchain_version())
        .expect("1.33 is listed")
}

/// `go version`'s version of the toolchain that built the peers.
fn toolchain_version() -> String {
    let out = Command::new("/usr/lib/go-1.19/bin/go").arg("version").output().expect("go version");
    let out = String::from_utf8(out.stdout).expect("utf-8");
    out.split_whitespace().nth(2).expect("go version GOVERSION GOOS/GOARCH").to_owned()
}

/// `go tool buildid`'s build id of a binary.
fn go_build_id(path: &Path) -> String {
    let out = Command::new("/usr/lib/go-1.19/bin/go")
        .args(["tool", "buildid"])
        .arg(path)
        .output()
        .expect("go tool buildid");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

/// The needed fields of `offsets` equal the table's.
fn assert_needed_match_table(b: &GoBinary) {
    let table = table_1_33();
    for f in Field::needed_by(&b.functions) {
        assert_eq!(f.get(&b.offsets), f.get(&table), "{}", f.go_name());
    }
}

#[test]
fn server_offsets_from_dwarf_equal_the_table() {
    let b = instrumentable("grpc-server", &InspectOptions::default());
    assert_eq!(b.go_version, toolchain_version());
    assert!(b.go_version.starts_with("go1.19."), "{}", b.go_version);
    assert_eq!(b.build_id.as_deref(), Some(go_build_id(&peer("grpc-server")).as_str()));
    // A module build lists grpc-go among its dependencies.
    assert_eq!(
        (b.grpc_version.as_deref(), b.grpc_version_source),
        (Some("1.33.3"), Some(GrpcVersionSource::BuildInfo))
    );
    assert_eq!(b.grpc_package, "google.golang.org/grpc");
    assert_eq!(b.symbols_source, SymbolSource::Symtab);
    assert_eq!(b.offsets_source, OffsetSource::Dwarf);
    assert!(Target::ALL.iter().all(|&t| b.functions.get(t).is_some()), "{:?}", b.functions);
    // Every field is needed, and the table's 1.33 entry is what DWARF says.
    assert_eq!(Field::needed_by(&b.functions), Field::ALL);
    assert_eq!(b.offsets, table_1_33());
}

#[test]
fn client_version_from_the_user_agent() {
    // A GOPATH build has no module list; a client keeps grpc-go's user agent.
    let b = instrumentable("grpc-client-vendored", &InspectOptions::default());
    assert_eq!(b.go_version, toolchain_version());
    assert_eq!(b.grpc_version.as_deref(), Some("1.33.3"));
    assert_eq!(b.grpc_version_source, Some(GrpcVersionSource::UserAgent));
    assert_eq!(b.offsets_source, OffsetSource::Dwarf);
    // A client has no server transport.
    assert_eq!(b.functions.server_operate_headers, None);
    assert!(
        b.functions.client_operate_headers.is_some() && b.functions.loopy_write_header.is_some()
    );
    assert_needed_match_table(&b);
}

/// Function file offsets, checked against `nm`'s addresses and the segments.
#[test]
fn function_offsets_are_file_offsets() {
    let path = peer("grpc-server");
    let data = fs::read(&path).expect("read");
    let file = object::File::parse(&*data).expect("elf");
    let b = instrumentable("grpc-server", &InspectOptions::default());
    let text = file.section_by_name(".text").expect(".text");
    let (text_off, _) = text.file_range().expect("in file");
    for target in Target::ALL {
        let name = format!("google.golang.org/grpc/internal/transport.{}", target.method());
        let sym = file.symbols().find(|s| s.name() == Ok(name.as_str())).expect("symbol");
        let expected = sym.address() - text.address() + text_off;
        assert_eq!(b.functions.get(target), Some(expected), "{name}");
        // Go functions start with the stack check: mov %fs:..., or cmp.
        let at = usize::try_from(expected).expect("usize");
        assert!(data.get(at..at + 16).is_some());
    }
}

/// The address of `runtime.text` in the symbol table: where the function
/// table's entry offsets start.
fn runtime_text(elf: &Elf<'_>) -> u64 {
    elf.file()
        .symbols()
        .find(|s| s.name() == Ok("runtime.text"))
        .map(|s| s.address())
        .expect("runtime.text")
}

#[test]
fn pclntab_agrees_with_symtab() {
    for name in ["grpc-server", "grpc-client", "grpc-client-vendored", "go-plain"] {
        let data = fs::read(peer(name)).expect("read");
        let elf = Elf::parse(&data).expect("elf");
        let table = Pclntab::find(&elf).expect("parses").expect("present");
        assert_eq!(table.layout, pclntab::Layout::Go118);
        assert_eq!(table.text_start, runtime_text(&elf), "{name}");
        let from_symtab = symbols::from_symtab(&elf);
        let from_pclntab = symbols::from_pclntab(&table).expect("walks");
        assert_eq!(from_symtab.has_copies(), name != "go-plain", "{name}");
        assert_eq!(from_symtab, from_pclntab, "{name}");
        let mut count = 0;
        table.for_each_function(|_, _| count += 1).expect("walks");
        assert!(count > 1000 && count == table.len(), "{name}: {count}");
    }
}

#[test]
fn stripped_binaries_use_pclntab_and_the_table() {
    let client = instrumentable("grpc-client", &InspectOptions::default());
    let stripped = instrumentable("grpc-client-stripped", &InspectOptions::default());
    assert_eq!(stripped.symbols_source, SymbolSource::Pclntab);
    assert_eq!(stripped.offsets_source, OffsetSource::Table);
    assert_eq!(stripped.grpc_version.as_deref(), Some("1.33.3"));
    assert_eq!(stripped.grpc_version_source, Some(GrpcVersionSource::BuildInfo));
    assert_eq!(stripped.offsets, table_1_33());
    // -s -w leaves the code where it was.
    assert_eq!(stripped.functions, client.functions);

    // A stripped server built in GOPATH mode tells no grpc-go version:
    // unsupported, unless the caller assumes one.
    match inspect(&peer("grpc-server-gopath-stripped")).expect("inspects") {
        Inspection::Unsupported { go_version, grpc_version, reason } => {
            assert_eq!(go_version, Some(toolchain_version()));
            assert_eq!(grpc_version, None);
            assert!(
                reason.contains("no DWARF") && reason.contains("version is unknown"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    let assume = InspectOptions { fallback_grpc_version: Some("v1.33.3".to_owned()) };
    let server = instrumentable("grpc-server", &assume);
    let stripped = instrumentable("grpc-server-gopath-stripped", &assume);
    assert_eq!(stripped.symbols_source, SymbolSource::Pclntab);
    assert_eq!(stripped.offsets_source, OffsetSource::Table);
    assert_eq!(stripped.grpc_version_source, Some(GrpcVersionSource::Assumed));
    assert_eq!(stripped.offsets, server.offsets);
    // The binary's own word wins over an assumed version.
    assert_eq!(server.grpc_version_source, Some(GrpcVersionSource::BuildInfo));
    // An assumed version not in the table: unsupported, saying so.
    let unknown = InspectOptions { fallback_grpc_version: Some("1.99.0".to_owned()) };
    match inspect_with(&peer("grpc-server-gopath-stripped"), &unknown).expect("inspects") {
        Inspection::Unsupported { grpc_version, reason, .. } => {
            assert_eq!(grpc_version.as_deref(), Some("1.99.0"));
            assert!(reason.contains("grpc-go 1.99.0 is not in podtap's offset table"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

/// The module list path, on a real binary: the stripped server with one of
/// its build info lines replaced, in place, by a `dep` line for grpc-go.
#[test]
fn grpc_version_from_the_module_list() {
    let data = fs::read(peer("grpc-server-stripped")).expect("read");
    let with_dep = |version: &str| -> Vec<u8> {
        let file = object::File::parse(&*data).expect("elf");
        let section = file.section_by_name(".go.buildinfo").expect(".go.buildinfo");
        let (start, size) = section.file_range().expect("in file");
        let (start, end) = (start as usize, (start + size) as usize);
        let old: &[u8] = b"build\tCGO_CFLAGS=\nbuild\tCGO_CPPFLAGS=\nbuild\tCGO_CXXFLAGS=\n";
        let at = data[start..end].windows(old.len()).position(|w| w == old).expect("build lines");
        let mut line = format!("dep\tgoogle.golang.org/grpc\t{version}\th1:");
        line.extend(std::iter::repeat_n('x', old.len() - 1 - line.len()));
        line.push('\n');
        let mut copy = data.clone();
        copy[start + at..start + at + old.len()].copy_from_slice(line.as_bytes());
        copy
    };
    match inspect_bytes(&with_dep("v1.33.3"), &InspectOptions::default()) {
        Ok(Inspection::Instrumentable(b)) => {
            assert_eq!(b.grpc_version.as_deref(), Some("1.33.3"));
            assert_eq!(b.grpc_version_source, Some(GrpcVersionSource::BuildInfo));
            assert_eq!(b.offsets_source, OffsetSource::Table);
            assert_eq!(b.offsets, table_1_33());
        }
        other => panic!("{other:?}"),
    }
    match inspect_bytes(&with_dep("v1.99.0"), &InspectOptions::default()) {
        Ok(Inspection::Unsupported { grpc_version, reason, .. }) => {
            assert_eq!(grpc_version.as_deref(), Some("1.99.0"));
            assert!(reason.contains("grpc-go 1.99.0 is not in podtap's offset table"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn vendored_grpc_is_found() {
    let b = instrumentable("grpc-client-vendored", &InspectOptions::default());
    assert_eq!(b.grpc_package, "podtap/peers/grpcclient/vendor/google.golang.org/grpc");
    assert!(b.grpc_package.ends_with("/vendor/google.golang.org/grpc"));
    assert_eq!(b.symbols_source, SymbolSource::Symtab);
    assert_eq!(b.offsets_source, OffsetSource::Dwarf);
    assert!(
        b.functions.client_operate_headers.is_some() && b.functions.loopy_write_header.is_some()
    );
    assert_eq!(b.grpc_version.as_deref(), Some("1.33.3"));
    assert_needed_match_table(&b);
}

#[test]
fn plain_go_and_other_programs() {
    match inspect(&peer("go-plain")).expect("inspects") {
        Inspection::NoGrpc { go_version } => assert_eq!(go_version, toolchain_version()),
        other => panic!("{other:?}"),
    }
    let mut others = 0;
    for path in ["/bin/ls", "/usr/sbin/nginx", "/usr/bin/python3.11", "/proc/self/exe"] {
        if Path::new(path).exists() {
            assert_eq!(inspect(Path::new(path)).expect(path), Inspection::NotGo, "{path}");
            others += 1;
        }
    }
    assert!(others >= 2, "no non-Go ELF programs to try");
}

#[test]
fn unreadable_and_non_elf_files() {
    let dir = std::env::temp_dir().join(format!("podtap-golang-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("mkdir");
    let missing = dir.join("missing");
    let err = inspect(&missing).unwrap_err();
    assert!(matches!(err, InspectError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing"), "{err}");

    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..4096).map(|_| xorshift(&mut seed) as u8).collect();
    let path = dir.join("random");
    fs::write(&path, &random).expect("write");
    assert!(matches!(inspect(&path), Err(InspectError::NotElf)));
    // An ELF magic in front of noise.
    let mut fake = b"\x7fELF\x02\x01\x01\0".to_vec();
    fake.extend_from_slice(&random);
    assert!(inspect_bytes(&fake, &InspectOptions::default()).is_err());

    // Over the limit: refused from the size alone (a sparse file).
    let big = dir.join("big");
    File::create(&big).and_then(|f| f.set_len(MAX_FILE_SIZE + 1)).expect("sparse file");
    let err = inspect(&big).unwrap_err();
    assert!(matches!(err, InspectError::TooLarge { .. }), "{err:?}");
    fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn truncated_binaries_never_panic() {
    let opts = InspectOptions::default();
    for name in ["grpc-server", "grpc-client-stripped"] {
        let data = fs::read(peer(name)).expect("read");
        for len in [0, 1, 4, 16, 63, 64, 200, 1000, 4096] {
            assert!(inspect_bytes(&data[..len], &opts).is_err(), "{name} cut at {len}");
        }
        let n = data.len();
        for len in [n / 10, n / 3, n / 2, n * 2 / 3, n * 9 / 10, n - 1000, n - 1] {
            let _ = inspect_bytes(&data[..len], &opts);
        }
    }
}

/// Flips bytes in the structures the inspector reads: it may answer
/// anything but must not panic.
#[test]
fn flipped_bytes_never_panic() {
    let opts = InspectOptions::default();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    // Outcomes, to see that the flips reach the checks: [ok, unsupported, error].
    let mut outcomes = [0; 3];
    let mut tally = |r: Result<Inspection, InspectError>| {
        outcomes[match r {
            Ok(Inspection::Instrumentable(_)) => 0,
            Ok(_) => 1,
            Err(_) => 2,
        }] += 1;
    };
    let cases: [(&str, &[&str], usize); 3] = [
        ("grpc-client-stripped", &[".gopclntab", ".go.buildinfo", ".note.go.buildid"], 300),
        ("grpc-server-stripped", &[".gopclntab", ".go.buildinfo"], 100),
        // Inflating the DWARF makes these slow in a debug build: fewer.
        ("grpc-client", &[".debug_info", ".debug_abbrev", ".symtab", ".strtab"], 20),
    ];
    for (name, sections, rounds) in cases {
        let data = fs::read(peer(name)).expect("read");
        let file = object::File::parse(&*data).expect("elf");
        let ranges: Vec<(u64, u64)> = sections
            .iter()
            .map(|s| file.section_by_name(s).and_then(|s| s.file_range()).expect(s))
            .collect();
        for round in 0..rounds {
            let mut copy = data.clone();
            for _ in 0..1 + round % 8 {
                let (start, size) = ranges[xorshift(&mut seed) as usize % ranges.len()];
                // Headers are where most of the checks are: favour them.
                let span = if round % 2 == 0 { size.min(128) } else { size };
                let at = start + xorshift(&mut seed) % span.max(1);
                copy[at as usize] ^= (xorshift(&mut seed) as u8) | 1;
            }
            tally(inspect_bytes(&copy, &opts));
        }
    }
    // The ELF headers themselves (the section headers are near the start).
    let data = fs::read(peer("grpc-client-stripped")).expect("read");
    for _ in 0..100 {
        let mut copy = data.clone();
        let at = xorshift(&mut seed) as usize % 0x800;
        copy[at] ^= (xorshift(&mut seed) as u8) | 1;
        tally(inspect_bytes(&copy, &opts));
    }
    eprintln!("instrumentable, unsupported, errors: {outcomes:?}");
    assert!(outcomes[2] > 0 && outcomes[0] > 0, "{outcomes:?}");
}

/// The DWARF reader takes both kinds of compressed sections, and none.
#[test]
fn compressed_and_plain_debug_sections() {
    let Some(objcopy) = which("objcopy") else {
        eprintln!("skipped: no objcopy");
        return;
    };
    let original = instrumentable("grpc-server", &InspectOptions::default());
    let dir = std::env::temp_dir().join(format!("podtap-golang-objcopy-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("mkdir");
    for (flag, section) in [
        ("--compress-debug-sections=zlib-gnu", ".zdebug_info"),
        ("--decompress-debug-sections", ".debug_info"),
    ] {
        let out = dir.join(section);
        let status = Command::new(&objcopy)
            .arg(flag)
            .arg(peer("grpc-server"))
            .arg(&out)
            .status()
            .expect("objcopy");
        assert!(status.success(), "objcopy {flag}");
        let data = fs::read(&out).expect("read");
        let file = object::File::parse(&*data).expect("elf");
        let raw = file.sections().find(|s| s.name() == Ok(section)).expect(section);
        assert_eq!(
            raw.compressed_file_range().map(|r| r.format).ok(),
            Some(if section.starts_with(".z") {
                object::CompressionFormat::Zlib
            } else {
                object::CompressionFormat::None
            })
        );
        let b = match inspect_bytes(&data, &InspectOptions::default()) {
            Ok(Inspection::Instrumentable(b)) => b,
            other => panic!("{flag}: {other:?}"),
        };
        assert_eq!(b.offsets_source, OffsetSource::Dwarf, "{flag}");
        assert_eq!(b.offsets, original.offsets, "{flag}");
    }
    fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn summary_serialises() {
    let b = instrumentable("grpc-client", &InspectOptions::default());
    let json = serde_json::to_value(&b).expect("serialises");
    assert_eq!(json["go_version"], b.go_version.as_str());
    assert_eq!(json["grpc_version"], "1.33.3");
    assert_eq!(json["grpc_version_source"], "build_info");
    assert_eq!(json["symbols_source"], "symtab");
    assert_eq!(json["offsets_source"], "dwarf");
    assert_eq!(json["offsets"]["client_conn"], 72);
    assert_eq!(json["functions"]["server_operate_headers"], serde_json::Value::Null);
    assert_eq!(json["offsets"]["field_size"], 40);
}

fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[test]
fn probes_sit_on_the_stack_check_branch() {
    for name in ["grpc-server", "grpc-server-stripped", "grpc-client-vendored"] {
        let data = fs::read(peer(name)).expect("read");
        let b = instrumentable(name, &InspectOptions::default());
        for target in Target::ALL {
            let (Some(entry), Some(probe)) = (b.functions.get(target), b.probes.get(target)) else {
                continue;
            };
            // lea r12, [rsp-N] (5 or 8 bytes), cmp r12, 16(r14), then jbe.
            assert!([9, 12].contains(&(probe - entry)), "{name} {target:?}: {}", probe - entry);
            let at = usize::try_from(probe).expect("usize");
            assert_eq!(&data[at..at + 2], &[0x0f, 0x86], "{name} {target:?}");
        }
    }
}

#[test]
fn stack_check_shapes() {
    // Small frame: cmp rsp, 16(r14); jbe rel8.
    assert_eq!(stack_check_branch(&[0x49, 0x3b, 0x66, 0x10, 0x76, 0x20]), Some(4));
    // lea r12, [rsp-0x40]; cmp r12, 16(r14); jbe rel32.
    let lea8 = [0x4c, 0x8d, 0x64, 0x24, 0xc0, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 1, 0, 0, 0];
    assert_eq!(stack_check_branch(&lea8), Some(9));
    // No stack check (a NOSPLIT function), or cut short: the entry is used.
    assert_eq!(stack_check_branch(&[0x48, 0x89, 0x44, 0x24, 0x08, 0xc3]), None);
    assert_eq!(stack_check_branch(&[0x49, 0x3b, 0x66]), None);
    assert_eq!(stack_check_branch(&[0x49, 0x3b, 0x66, 0x10, 0x72, 0x20]), None);
}

/// The version matrix's builds (`scripts/peers/grpc/matrix.sh`), built on
/// first use into the cache outside the clone: (toolchain, grpc-go version,
/// form, folder).
fn matrix() -> &'static [(String, String, String, PathBuf)] {
    static ENTRIES: OnceLock<Vec<(String, String, String, PathBuf)>> = OnceLock::new();
    ENTRIES.get_or_init(|| {
        let cache = std::env::var_os("PODTAP_CACHE")
            .map_or_else(|| PathBuf::from("/var/cache/podtap"), PathBuf::from);
        let dir = cache.join("go-peers/matrix");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/peers/grpc/matrix.sh");
        let status = Command::new(script).arg("build").arg(&dir).status().expect("matrix.sh");
        assert!(status.success(), "building the version matrix failed: {status}");
        fs::read_to_string(dir.join("manifest.tsv"))
            .expect("manifest")
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f[0].to_owned(), f[1].to_owned(), f[2].to_owned(), PathBuf::from(f[3]))
            })
            .collect()
    })
}

#[test]
fn every_matrix_build_is_instrumentable_with_dwarf_equal_to_the_table() {
    let mut checked = 0;
    for (toolchain, grpc, form, dir) in matrix() {
        for name in ["grpc-server", "grpc-client"] {
            let path = dir.join(name);
            let what = format!("{toolchain} grpc-go {grpc} {form} {name}");
            let b = match inspect(&path) {
                Ok(Inspection::Instrumentable(b)) => b,
                other => panic!("{what}: {other:?}"),
            };
            assert_eq!(&b.go_version, toolchain, "{what}");
            assert_eq!(b.grpc_version.as_deref(), Some(grpc.as_str()), "{what}");
            assert_eq!(b.grpc_version_source, Some(GrpcVersionSource::BuildInfo), "{what}");
            // Both transports are linked into either program.
            assert!(Target::ALL.iter().all(|&t| b.functions.get(t).is_some()), "{what}");
            let table = offsets::known(&GrpcVersion::parse(grpc).unwrap(), toolchain)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let (symbols, source) = match form.as_str() {
                "stripped" => (SymbolSource::Pclntab, OffsetSource::Table),
                _ => (SymbolSource::Symtab, OffsetSource::Dwarf),
            };
            assert_eq!((b.symbols_source, b.offsets_source), (symbols, source), "{what}");
            assert_eq!(b.offsets, table, "{what}: DWARF and the table differ");
            // The probes sit on the stack-check branch in every build.
            for (at, on_branch) in b.probe_points().into_iter().flatten() {
                assert!(on_branch, "{what}: a probe at {at:#x} is on the entry");
            }
            checked += 1;
        }
    }
    assert!(checked >= 12 * 2 * 3 * 2, "{checked}");
}

#[test]
fn matrix_function_tables_agree_with_the_symbols_and_stripping_moves_nothing() {
    let builds = matrix();
    for (toolchain, grpc, form, dir) in builds.iter().filter(|b| b.2 != "stripped") {
        for name in ["grpc-server", "grpc-client"] {
            let what = format!("{toolchain} grpc-go {grpc} {form} {name}");
            let data = fs::read(dir.join(name)).expect("read");
            let elf = Elf::parse(&data).expect("elf");
            let table = Pclntab::find(&elf).expect("parses").expect("present");
            assert_eq!(table.layout, pclntab::Layout::Go118, "{what}");
            assert_eq!(table.text_start, runtime_text(&elf), "{what}");
            assert_eq!(
                symbols::from_symtab(&elf),
                symbols::from_pclntab(&table).expect("walks"),
                "{what}"
            );
        }
        if form == "plain" {
            let stripped = builds
                .iter()
                .find(|b| &b.0 == toolchain && &b.1 == grpc && b.2 == "stripped")
                .expect("a stripped build");
            for name in ["grpc-server", "grpc-client"] {
                let plain = match inspect(&dir.join(name)) {
                    Ok(Inspection::Instrumentable(b)) => b,
                    other => panic!("{other:?}"),
                };
                let bare = match inspect(&stripped.3.join(name)) {
                    Ok(Inspection::Instrumentable(b)) => b,
                    other => panic!("{other:?}"),
                };
                assert_eq!(plain.functions, bare.functions, "{toolchain} {grpc} {name}");
                assert_eq!(plain.probes, bare.probes, "{toolchain} {grpc} {name}");
            }
        }
    }
}
