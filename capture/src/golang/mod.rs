//! Inspection of Go executables for the grpc-go uprobes: whether a binary can
//! be instrumented, where to attach, and which struct offsets its probes need.
//!
//! The uprobe loader calls [`inspect`] once per distinct executable (it may be
//! `/proc/PID/exe`). The answer is an [`Inspection`]: the file is not a Go
//! program, a Go program without grpc-go, a Go program podtap cannot
//! instrument (with the reason), or a [`GoBinary`] with everything the loader
//! needs:
//!
//! - **where**: the file offsets (what a uprobe attaches to, not virtual
//!   addresses) of `(*http2Server).operateHeaders`,
//!   `(*http2Client).operateHeaders` and `(*loopyWriter).writeHeader` in
//!   grpc-go's `internal/transport`, found in the ELF symbol table or, in
//!   stripped binaries, in Go's own function table (`.gopclntab`), which
//!   stripping keeps. Vendored copies of grpc-go (GOPATH `vendor/` folders,
//!   whose symbols carry a `<dir>/vendor/` prefix) are matched too.
//! - **what**: the [`GoOffsets`] of the Go struct fields the probes read, from
//!   the binary's DWARF when it has it (only `DW_TAG_structure_type` entries
//!   are read), else from podtap's table of verified grpc-go versions (see
//!   [`offsets`]), keyed by the grpc-go version found in the build info's
//!   module list or in the `grpc-go/<version>` user agent the linker keeps as a
//!   string. A GOPATH-built server has neither (no module list, and a server
//!   never dials, so the user agent is left out): stripped, it is unsupported
//!   unless [`InspectOptions::fallback_grpc_version`] names the version.
//! - **which Go**: `.go.buildinfo` gives the Go version: the probes read their
//!   arguments from registers, Go's register ABI, which amd64 has from Go 1.17
//!   on. Older Go and other architectures are [`Inspection::Unsupported`].
//!
//! Nothing in the file is trusted: every length and offset is checked, so a
//! corrupt or hostile binary gives an [`InspectError`] or an
//! [`Inspection::Unsupported`], never a panic. Files over [`MAX_FILE_SIZE`]
//! are refused. The whole file is read into memory; in a release build an
//! unstripped 10 MB binary takes about 15 ms (most of it inflating the
//! compressed `.debug_info`), a stripped one about 3 ms.

mod buildinfo;
mod dwarf;
mod elf;
pub mod offsets;
mod pclntab;
pub mod sanity;
mod symbols;
mod version;

#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

// The one line to change if the offsets struct moves.
pub use formats::wire::{GoArgs, GoOffsets};
use serde::Serialize;

use self::elf::Elf;
use self::symbols::GrpcCopy;
pub use self::symbols::Target;
pub use self::version::GrpcVersion;

/// Largest file [`inspect`] reads; larger ones give [`InspectError::TooLarge`].
pub const MAX_FILE_SIZE: u64 = 256 << 20;

/// Oldest Go whose amd64 binaries pass arguments in registers (Go 1.17).
pub const MIN_GO_MINOR: u32 = 17;

/// What [`inspect`] found out about one executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inspection {
    /// An ELF file without Go build info (nginx, python, a C program, ...).
    NotGo,
    /// A Go program that does not link grpc-go's transport.
    NoGrpc {
        /// The toolchain's version, e.g. `go1.19.8`.
        go_version: String,
    },
    /// A Go program podtap cannot instrument.
    Unsupported {
        /// The toolchain's version, when the build info tells it.
        go_version: Option<String>,
        /// grpc-go's version (`1.33.3`), when known.
        grpc_version: Option<String>,
        /// Why, in words fit for a log line.
        reason: String,
    },
    /// A Go program with grpc-go that the uprobes can be attached to.
    Instrumentable(GoBinary),
}

/// A Go executable with grpc-go: where to attach the uprobes, and the struct
/// offsets they need. Serialised as it is into the capture file's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GoBinary {
    /// The Go build id (from `.note.go.buildid`), else the GNU build id in hex.
    pub build_id: Option<String>,
    /// The toolchain's version, e.g. `go1.19.8`.
    pub go_version: String,
    /// grpc-go's version without the `v` (`1.33.3`), when the binary tells it.
    pub grpc_version: Option<String>,
    /// Where [`GoBinary::grpc_version`] came from; `None` exactly when it is.
    pub grpc_version_source: Option<GrpcVersionSource>,
    /// The import path of the grpc-go package instrumented:
    /// `google.golang.org/grpc`, or `<dir>/vendor/google.golang.org/grpc`.
    pub grpc_package: String,
    /// File offsets of the probed functions.
    pub functions: Functions,
    /// Where the probes go: each function's stack-check branch (see
    /// [`stack_check_branch`]) where its prologue has the usual shape, else
    /// its entry.
    pub probes: Functions,
    /// Where [`GoBinary::functions`] came from.
    pub symbols_source: SymbolSource,
    /// Offsets of the struct fields the probes read. Only the fields the found
    /// functions need are meaningful (see [`offsets::Field::needed_by`]); the
    /// others are 0.
    pub offsets: GoOffsets,
    /// Where [`GoBinary::offsets`] came from.
    pub offsets_source: OffsetSource,
}

/// File offsets (from the start of the executable, what a uprobe attaches to)
/// of the probed grpc-go functions; `None` for a function the linker left out
/// (a client has no `(*http2Server).operateHeaders`). At least one is `Some`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Functions {
    /// `transport.(*http2Server).operateHeaders`: HEADERS frames a server receives.
    pub server_operate_headers: Option<u64>,
    /// `transport.(*http2Client).operateHeaders`: HEADERS frames a client receives.
    pub client_operate_headers: Option<u64>,
    /// `transport.(*loopyWriter).writeHeader`: HEADERS frames either side sends.
    pub loopy_write_header: Option<u64>,
}

impl Functions {
    /// The offset of one probed function.
    pub fn get(&self, target: Target) -> Option<u64> {
        match target {
            Target::ServerOperateHeaders => self.server_operate_headers,
            Target::ClientOperateHeaders => self.client_operate_headers,
            Target::LoopyWriteHeader => self.loopy_write_header,
        }
    }

    fn set(&mut self, target: Target, offset: u64) {
        match target {
            Target::ServerOperateHeaders => self.server_operate_headers = Some(offset),
            Target::ClientOperateHeaders => self.client_operate_headers = Some(offset),
            Target::LoopyWriteHeader => self.loopy_write_header = Some(offset),
        }
    }
}

/// Where the function addresses came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SymbolSource {
    /// The ELF symbol table (`.symtab`).
    Symtab,
    /// Go's function table (`.gopclntab`), which stripped binaries keep.
    Pclntab,
}

/// Where the struct offsets came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetSource {
    /// The binary's own DWARF.
    Dwarf,
    /// podtap's table of verified grpc-go versions ([`offsets::known`]).
    Table,
}

/// Where the grpc-go version came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrpcVersionSource {
    /// The module list of the build info (module-mode builds).
    BuildInfo,
    /// The `grpc-go/<version>` user agent among the binary's strings (clients;
    /// a server never dials, so the linker drops it there).
    UserAgent,
    /// Nothing in the binary: [`InspectOptions::fallback_grpc_version`].
    Assumed,
}

impl fmt::Display for SymbolSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Symtab => "symtab",
            Self::Pclntab => "pclntab",
        })
    }
}

impl fmt::Display for OffsetSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dwarf => "dwarf",
            Self::Table => "table",
        })
    }
}

impl fmt::Display for GrpcVersionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BuildInfo => "build info",
            Self::UserAgent => "user agent",
            Self::Assumed => "assumed",
        })
    }
}

/// Knobs of [`inspect_with`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InspectOptions {
    /// grpc-go version to look the offset table up with when the binary tells
    /// none and has no DWARF: a stripped GOPATH-built server has neither
    /// module list nor user agent string. Only used in that case.
    pub fallback_grpc_version: Option<String>,
}

/// Why an executable could not be inspected at all.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is over [`MAX_FILE_SIZE`].
    #[error("{} is {size} bytes, more than the {limit} inspected", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size, or the bytes read before giving up.
        size: u64,
        /// [`MAX_FILE_SIZE`].
        limit: u64,
    },
    /// Not an ELF file at all.
    #[error("not an ELF file")]
    NotElf,
    /// The ELF headers do not parse.
    #[error("malformed ELF file: {0}")]
    Elf(#[from] object::Error),
    /// A section (or the structure named) is inconsistent.
    #[error("corrupt {section}: {reason}")]
    Corrupt {
        /// The section, e.g. `.gopclntab`.
        section: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl InspectError {
    pub(crate) fn corrupt(section: &'static str, reason: impl Into<String>) -> Self {
        Self::Corrupt { section, reason: reason.into() }
    }
}

/// Inspects the executable at `path` (it may be `/proc/PID/exe`).
#[cfg(test)]
pub fn inspect(path: &Path) -> Result<Inspection, InspectError> {
    inspect_with(path, &InspectOptions::default())
}

/// [`inspect`] with options.
#[cfg(test)]
pub fn inspect_with(path: &Path, options: &InspectOptions) -> Result<Inspection, InspectError> {
    let data = read_file(path)?;
    inspect_bytes(&data, options)
}

/// Reads a whole file of at most [`MAX_FILE_SIZE`] bytes.
pub fn read_file(path: &Path) -> Result<Vec<u8>, InspectError> {
    let io = |source| InspectError::Io { path: path.to_owned(), source };
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let too_large =
        |size| InspectError::TooLarge { path: path.to_owned(), size, limit: MAX_FILE_SIZE };
    if size > MAX_FILE_SIZE {
        return Err(too_large(size));
    }
    // The size is only a hint (the file may grow, or be a /proc file): read at
    // most one byte past the limit to tell.
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut data).map_err(io)?;
    if data.len() as u64 > MAX_FILE_SIZE {
        return Err(too_large(data.len() as u64));
    }
    Ok(data)
}

/// [`inspect_with`] on the contents of an executable.
pub fn inspect_bytes(data: &[u8], options: &InspectOptions) -> Result<Inspection, InspectError> {
    let elf = Elf::parse(data)?;

    // Go at all, and which Go.
    let Some(info) = buildinfo::find(&elf)? else {
        if elf.looks_like_go() {
            return Ok(unsupported(
                None,
                None,
                "a Go binary without build info (Go older than 1.13?)".to_owned(),
            ));
        }
        return Ok(Inspection::NotGo);
    };
    let go_version = info.go_version.clone();
    match version::go_minor(&go_version) {
        Some(minor) if minor >= MIN_GO_MINOR => {}
        Some(_) => {
            return Ok(unsupported(
                Some(go_version),
                None,
                format!("built by Go older than 1.{MIN_GO_MINOR}, without the register ABI"),
            ))
        }
        None => {
            return Ok(unsupported(
                Some(go_version.clone()),
                None,
                format!("cannot tell the Go release from the build info's version {go_version:?}"),
            ))
        }
    }
    if !elf.is_x86_64() {
        return Ok(unsupported(
            Some(go_version),
            None,
            format!("not an x86-64 binary ({})", elf.architecture_name()),
        ));
    }

    // grpc-go's transport, and where its functions are.
    let (copy, symbols_source) = match find_grpc(&elf)? {
        GrpcSearch::Absent => return Ok(Inspection::NoGrpc { go_version }),
        GrpcSearch::Unusable(reason) => return Ok(unsupported(Some(go_version), None, reason)),
        GrpcSearch::Found(copy, source) => (copy, source),
    };
    let mut functions = Functions::default();
    let mut probes = Functions::default();
    for target in Target::ALL {
        if let Some(addr) = copy.address(target) {
            let section = match symbols_source {
                SymbolSource::Symtab => ".symtab",
                SymbolSource::Pclntab => ".gopclntab",
            };
            let offset = elf.code_file_offset(addr).ok_or_else(|| {
                InspectError::corrupt(
                    section,
                    format!("{} at {addr:#x} is outside the executable segments", target.method()),
                )
            })?;
            functions.set(target, offset);
            let branch = elf.bytes_at(addr, PROLOGUE_LEN).and_then(stack_check_branch);
            probes.set(target, offset + branch.unwrap_or(0) as u64);
        }
    }
    let grpc_package = copy.package();

    // grpc-go's version, from the module list, else the user agent string.
    let mut grpc = buildinfo::module_version(&info.modinfo, "google.golang.org/grpc")
        .and_then(|v| GrpcVersion::parse(&v))
        .map(|v| (v, GrpcVersionSource::BuildInfo))
        .or_else(|| version::user_agent_version(&elf).map(|v| (v, GrpcVersionSource::UserAgent)));

    // The struct offsets and argument registers: DWARF first, then the table.
    let (offsets, offsets_source) = match dwarf_offsets(&elf, &copy.prefix, &functions)? {
        Ok(offsets) => (offsets, OffsetSource::Dwarf),
        Err(dwarf_note) => {
            if grpc.is_none() {
                let assumed = options.fallback_grpc_version.as_deref().and_then(GrpcVersion::parse);
                grpc = assumed.map(|v| (v, GrpcVersionSource::Assumed));
            }
            let known = match &grpc {
                Some((v, _)) => offsets::known(v, &go_version),
                None => Err("the grpc-go version is unknown (no module list entry, no grpc-go/ \
                             user agent string)"
                    .to_owned()),
            };
            match known {
                Ok(offsets) => {
                    tracing::debug!(%grpc_package, "{dwarf_note}: struct offsets from the table");
                    (offsets, OffsetSource::Table)
                }
                Err(why) => {
                    let grpc_version = grpc.map(|(v, _)| v.to_string());
                    let reason = format!("{dwarf_note}, and {why}");
                    return Ok(unsupported(Some(go_version), grpc_version, reason));
                }
            }
        }
    };
    let (grpc_version, grpc_version_source) = match grpc {
        Some((v, source)) => (Some(v.to_string()), Some(source)),
        None => (None, None),
    };

    Ok(Inspection::Instrumentable(GoBinary {
        build_id: elf.build_id(),
        go_version,
        grpc_version,
        grpc_version_source,
        grpc_package,
        functions,
        probes,
        symbols_source,
        offsets,
        offsets_source,
    }))
}

/// Whether the Go program in `data` has a function named `name` (its symbol
/// table, else `.gopclntab`): `crypto/tls.(*Conn).Read` tells a program that
/// can speak TLS with Go's own library, whose plaintext podtap does not read.
pub fn has_function(data: &[u8], name: &str) -> bool {
    use object::{Object, ObjectSymbol};
    let Ok(elf) = Elf::parse(data) else { return false };
    if elf.file().symbols().any(|s| s.name() == Ok(name)) {
        return true;
    }
    let Ok(Some(table)) = pclntab::Pclntab::find(&elf) else { return false };
    let mut found = false;
    let _ = table.for_each_function(|f, _| found |= f == name.as_bytes());
    found
}

impl GoBinary {
    /// Where each probe goes, in the order of [`Target::ALL`], and whether
    /// that is the function's stack-check branch rather than its entry.
    pub fn probe_points(&self) -> [Option<(u64, bool)>; 3] {
        let (f, p) = (&self.functions, &self.probes);
        let point = |entry: Option<u64>, at: Option<u64>| at.map(|at| (at, Some(at) != entry));
        [
            point(f.server_operate_headers, p.server_operate_headers),
            point(f.client_operate_headers, p.client_operate_headers),
            point(f.loopy_write_header, p.loopy_write_header),
        ]
    }
}

/// Bytes of a function's start that hold its stack check.
const PROLOGUE_LEN: u64 = 20;

/// Where, in the first bytes of a Go function (amd64, register ABI), the
/// conditional jump of its stack check is: after `[lea r12, [rsp-N];] cmp
/// rsp|r12, 16(r14)`, the `jbe` to `morestack`.
///
/// A uprobe there sees the same argument registers as at the entry (the
/// check touches only r12 and the flags), but costs less: the kernel
/// emulates a conditional jump, where the first instruction of the function
/// must be single-stepped out of line, a second trap. When the jump is
/// taken the goroutine's stack grows and the function starts over, so the
/// probe skips that hit (its flags say so) and counts the next one.
pub fn stack_check_branch(code: &[u8]) -> Option<usize> {
    let mut at = match code.get(..4)? {
        [0x4c, 0x8d, 0x64, 0x24] => 5,
        [0x4c, 0x8d, 0xa4, 0x24] => 8,
        _ => 0,
    };
    // REX.W(+B, +R for r12) 3B /r: cmp reg, [r14 + 0x10].
    match code.get(at..at + 4)? {
        [0x49 | 0x4d, 0x3b, 0x66, 0x10] => at += 4,
        _ => return None,
    }
    match code.get(at..at + 2)? {
        [0x0f, 0x86] | [0x76, _] => Some(at),
        _ => None,
    }
}

/// The offsets and registers the probes on `functions` need, from the
/// DWARF, for the grpc-go copy with symbol prefix `grpc_prefix`; the inner
/// error says why there are none ("no DWARF", "DWARF lacks ...").
fn dwarf_offsets(
    elf: &Elf<'_>,
    grpc_prefix: &str,
    functions: &Functions,
) -> Result<Result<GoOffsets, String>, InspectError> {
    let Some(structs) = dwarf::Structs::load(elf)? else {
        return Ok(Err("no DWARF".to_owned()));
    };
    let partial = structs.offsets(grpc_prefix);
    let missing = partial.missing(functions);
    if missing.is_empty() {
        return Ok(Ok(partial.to_offsets()));
    }
    Ok(Err(format!("DWARF lacks {}", missing.join(", "))))
}

fn unsupported(
    go_version: Option<String>,
    grpc_version: Option<String>,
    reason: String,
) -> Inspection {
    Inspection::Unsupported { go_version, grpc_version, reason }
}

/// What the function names say about grpc-go.
enum GrpcSearch {
    /// No grpc-go transport is linked.
    Absent,
    /// It is, but cannot be instrumented, for this reason.
    Unusable(String),
    /// The copy to instrument, and where its functions were found.
    Found(GrpcCopy, SymbolSource),
}

/// Looks for grpc-go's functions in the symbol table, else in Go's
/// function table.
fn find_grpc(elf: &Elf<'_>) -> Result<GrpcSearch, InspectError> {
    let from_symtab = symbols::from_symtab(elf);
    let (found, source) = if from_symtab.has_targets() {
        (from_symtab, SymbolSource::Symtab)
    } else if let Some(table) = pclntab::Pclntab::find(elf)? {
        // Stripped (or a symbol table without them): Go's own function table.
        let from_pclntab = symbols::from_pclntab(&table)?;
        if from_pclntab.has_targets() || !from_symtab.has_copies() {
            (from_pclntab, SymbolSource::Pclntab)
        } else {
            (from_symtab, SymbolSource::Symtab)
        }
    } else {
        (from_symtab, SymbolSource::Symtab)
    };
    if !found.has_copies() {
        return Ok(GrpcSearch::Absent);
    }
    Ok(match found.choose() {
        Ok(copy) => GrpcSearch::Found(copy, source),
        Err(reason) => GrpcSearch::Unusable(reason),
    })
}
