//! The probed grpc-go functions among a binary's function names, from the
//! ELF symbol table or from Go's function table.
//!
//! A name counts when it is `<prefix>google.golang.org/grpc/internal/transport.<rest>`
//! with an empty prefix or one ending in `/vendor/` (a GOPATH-vendored copy).
//! The probed functions are the exact `<rest>`s of [`Target`]: closures
//! (`...operateHeaders.func1`) and ABI wrappers (`... .abi0`) do not match.
//! Names are grouped by prefix: each group is one copy of grpc-go.

use std::collections::BTreeMap;

use object::{Object, ObjectSymbol, SymbolKind};

use super::elf::Elf;
use super::pclntab::Pclntab;
use super::InspectError;

/// grpc-go's transport package, as function names spell it.
pub(crate) const TRANSPORT: &str = "google.golang.org/grpc/internal/transport.";

/// A probed grpc-go function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// `(*http2Server).operateHeaders`.
    ServerOperateHeaders,
    /// `(*http2Client).operateHeaders`.
    ClientOperateHeaders,
    /// `(*loopyWriter).writeHeader`.
    LoopyWriteHeader,
}

impl Target {
    /// Every probed function.
    pub const ALL: [Target; 3] =
        [Self::ServerOperateHeaders, Self::ClientOperateHeaders, Self::LoopyWriteHeader];

    /// The method's name after the package: `(*http2Server).operateHeaders`.
    pub fn method(self) -> &'static str {
        match self {
            Self::ServerOperateHeaders => "(*http2Server).operateHeaders",
            Self::ClientOperateHeaders => "(*http2Client).operateHeaders",
            Self::LoopyWriteHeader => "(*loopyWriter).writeHeader",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One copy of grpc-go: its symbol prefix and the probed functions' virtual
/// addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GrpcCopy {
    /// `""`, or `<dir>/vendor/`.
    pub prefix: String,
    addresses: [Option<u64>; 3],
}

impl GrpcCopy {
    /// The address of one probed function.
    pub fn address(&self, target: Target) -> Option<u64> {
        self.addresses[target.index()]
    }

    /// The import path of this copy's grpc package.
    pub fn package(&self) -> String {
        format!("{}google.golang.org/grpc", self.prefix)
    }

    fn has_targets(&self) -> bool {
        self.addresses.iter().any(Option::is_some)
    }
}

/// The copies of grpc-go seen in a list of function names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GrpcFunctions {
    copies: BTreeMap<String, GrpcCopy>,
}

impl GrpcFunctions {
    /// Takes note of one function; the first address of a name wins.
    pub fn add(&mut self, name: &[u8], addr: u64) {
        let Ok(name) = std::str::from_utf8(name) else { return };
        let Some(at) = name.find(TRANSPORT) else { return };
        let prefix = &name[..at];
        if !(prefix.is_empty() || prefix.ends_with("/vendor/")) {
            return;
        }
        let rest = &name[at + TRANSPORT.len()..];
        let copy = self
            .copies
            .entry(prefix.to_owned())
            .or_insert_with(|| GrpcCopy { prefix: prefix.to_owned(), ..GrpcCopy::default() });
        if let Some(target) = Target::ALL.into_iter().find(|t| t.method() == rest) {
            copy.addresses[target.index()].get_or_insert(addr);
        }
    }

    /// Whether any copy of grpc-go's transport was seen.
    pub fn has_copies(&self) -> bool {
        !self.copies.is_empty()
    }

    /// Whether any probed function was seen.
    pub fn has_targets(&self) -> bool {
        self.copies.values().any(GrpcCopy::has_targets)
    }

    /// The copy to instrument: the only one with probed functions; an error
    /// (a reason not to instrument) if none or several have them.
    pub fn choose(self) -> Result<GrpcCopy, String> {
        let mut with: Vec<GrpcCopy> =
            self.copies.into_values().filter(GrpcCopy::has_targets).collect();
        match with.len() {
            0 => Err("links grpc-go's transport, but none of the probed functions \
                      (operateHeaders, writeHeader) is in it"
                .to_owned()),
            1 => Ok(with.remove(0)),
            _ => Err(format!(
                "links {} copies of grpc-go ({}); podtap instruments one per binary",
                with.len(),
                with.iter().map(GrpcCopy::package).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// grpc-go's functions in the ELF symbol table (`.symtab`; empty if stripped).
pub(crate) fn from_symtab(elf: &Elf<'_>) -> GrpcFunctions {
    let mut found = GrpcFunctions::default();
    for symbol in elf.file().symbols() {
        if symbol.kind() != SymbolKind::Text || !symbol.is_definition() {
            continue;
        }
        if let Ok(name) = symbol.name_bytes() {
            found.add(name, symbol.address());
        }
    }
    found
}

/// grpc-go's functions in Go's function table.
pub(crate) fn from_pclntab(table: &Pclntab<'_>) -> Result<GrpcFunctions, InspectError> {
    let mut found = GrpcFunctions::default();
    table.for_each_function(|name, entry| found.add(name, entry))?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_exactly_with_vendor_prefixes() {
        let mut f = GrpcFunctions::default();
        let t = "google.golang.org/grpc/internal/transport.";
        f.add(format!("{t}(*http2Server).operateHeaders.func1").as_bytes(), 1);
        f.add(format!("{t}(*http2Server).operateHeaders.abi0").as_bytes(), 2);
        f.add(format!("x/{t}(*http2Server).operateHeaders").as_bytes(), 3);
        f.add(format!("vendor/{t}(*http2Server).operateHeaders").as_bytes(), 4);
        f.add(format!("type..eq.{t}(*http2Server).operateHeaders").as_bytes(), 5);
        f.add(b"\xff\xfe", 6);
        assert!(f.has_copies() && !f.has_targets());
        f.add(format!("{t}(*http2Server).operateHeaders").as_bytes(), 7);
        f.add(format!("{t}(*http2Server).operateHeaders").as_bytes(), 8);
        f.add(format!("a/b/vendor/{t}newLoopyWriter").as_bytes(), 9);
        let copy = f.clone().choose().unwrap();
        assert_eq!(copy.prefix, "");
        assert_eq!(copy.address(Target::ServerOperateHeaders), Some(7));
        assert_eq!(copy.address(Target::LoopyWriteHeader), None);
        // A second copy with probed functions: ambiguous.
        f.add(format!("a/b/vendor/{t}(*loopyWriter).writeHeader").as_bytes(), 10);
        let err = f.choose().unwrap_err();
        assert!(err.contains("2 copies"), "{err}");
        assert!(err.contains("a/b/vendor/google.golang.org/grpc"), "{err}");
    }
}
