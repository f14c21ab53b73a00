//! Struct field offsets and argument registers from a Go binary's DWARF.
//!
//! Go's linker writes one `DW_TAG_structure_type` per Go struct type, named
//! with its full import path (`google.golang.org/grpc/internal/transport.http2Server`,
//! `net.netFD`), with `DW_TAG_member` children carrying a constant
//! `DW_AT_data_member_location`; and one `DW_TAG_subprogram` per function
//! (`google.golang.org/grpc/internal/transport.(*http2Server).operateHeaders`)
//! whose `DW_TAG_formal_parameter` children have a location list: at the
//! function's entry, the registers the register ABI put each word of the
//! parameter in (`DW_OP_reg3 RBX, DW_OP_piece 8, DW_OP_reg2 RCX, ...`). The
//! entries are walked raw, reading the attributes of structure types and
//! subprograms only, and the members and parameters of the few wanted;
//! everything else is skipped. The location lists of the wanted parameters
//! are then read (`.debug_loc` in DWARF 4, Go before 1.25; `.debug_loclists`
//! in DWARF 5).
//!
//! Which copy of a package a struct belongs to follows GOPATH's vendoring:
//! grpc-go's structs carry the prefix of the grpc-go copy whose functions are
//! probed; golang.org/x/net's are looked up in the `vendor/` folders the
//! compiler would have searched from grpc-go's transport package, nearest
//! first, then unvendored; the standard library's are unprefixed.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use gimli::{
    constants, AttributeValue, DebugAbbrevOffset, EndianSlice, LittleEndian, Operation, Reader,
};

use super::elf::Elf;
use super::offsets::{is_abi_register, Arg, Field, PartialOffsets};
use super::symbols::{Target, TRANSPORT};
use super::InspectError;

type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// grpc-go's structs, after `<prefix>google.golang.org/grpc/internal/transport.`.
const GRPC_TYPES: [&str; 5] = ["http2Server", "http2Client", "loopyWriter", "framer", "bufWriter"];
/// golang.org/x/net's structs, after a vendor prefix (if any).
const XNET_TYPES: [&str; 4] = [
    "golang.org/x/net/http2.MetaHeadersFrame",
    "golang.org/x/net/http2.HeadersFrame",
    "golang.org/x/net/http2.FrameHeader",
    "golang.org/x/net/http2/hpack.HeaderField",
];
/// The standard library's structs.
const STD_TYPES: [&str; 4] = ["net.TCPConn", "net.conn", "net.netFD", "internal/poll.FD"];

/// What DWARF says about one struct.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct StructInfo {
    size: Option<u64>,
    members: HashMap<String, u64>,
}

/// Where a wanted parameter is, as its `DW_AT_location` says.
#[derive(Clone, Debug)]
enum ParamLocation {
    /// One expression for the whole function.
    Expr(Vec<u8>),
    /// A location list, by offset.
    List(gimli::LocationListsOffset),
    /// A location list, by index (DWARF 5 `DW_FORM_loclistx`).
    Index(gimli::DebugLocListsIndex),
}

/// What a unit's own entry says that its location lists need.
#[derive(Clone, Copy, Debug)]
struct UnitInfo {
    encoding: gimli::Encoding,
    /// The base address of its location lists (`DW_AT_low_pc`).
    low_pc: u64,
    loclists_base: gimli::DebugLocListsBase,
    addr_base: gimli::DebugAddrBase,
}

/// A function's entry address: in the entry, or (DWARF 5, Go 1.25 on) an
/// index into `.debug_addr`.
#[derive(Clone, Copy, Debug)]
enum LowPc {
    Addr(u64),
    Index(gimli::DebugAddrIndex),
}

/// A wanted function as the entries describe it.
#[derive(Clone, Debug)]
struct FunctionEntry {
    unit: UnitInfo,
    low_pc: Option<LowPc>,
    params: HashMap<String, ParamLocation>,
}

/// The wanted structs and functions found in the DWARF, by full name.
#[derive(Clone, Debug, Default)]
pub(crate) struct Structs {
    by_name: HashMap<String, StructInfo>,
    functions: HashMap<String, FunctionEntry>,
    /// For each wanted function: each parameter's words' registers at the
    /// function's entry (`None` for a word not in a register there).
    registers: HashMap<String, HashMap<String, Vec<Option<u8>>>>,
}

impl Structs {
    /// Reads the wanted structs and functions from the binary's DWARF;
    /// `None` if it has no `.debug_info`.
    pub fn load(elf: &Elf<'_>) -> Result<Option<Self>, InspectError> {
        let Some(info) = elf.debug_section(".debug_info")? else { return Ok(None) };
        let section =
            |name| -> Result<_, InspectError> { Ok(elf.debug_section(name)?.unwrap_or_default()) };
        let (abbrev, strs) = (section(".debug_abbrev")?, section(".debug_str")?);
        let (loc, loclists, addr) =
            (section(".debug_loc")?, section(".debug_loclists")?, section(".debug_addr")?);
        let mut structs = Self::scan(
            &gimli::DebugInfo::new(&info, LittleEndian),
            &gimli::DebugAbbrev::new(&abbrev, LittleEndian),
            &gimli::DebugStr::new(&strs, LittleEndian),
        )
        .map_err(|e| InspectError::corrupt(".debug_info", e.to_string()))?;
        let lists = gimli::LocationLists::new(
            gimli::DebugLoc::new(&loc, LittleEndian),
            gimli::DebugLocLists::new(&loclists, LittleEndian),
        );
        structs.resolve_registers(
            &lists,
            &gimli::DebugAddr::from(EndianSlice::new(&addr, LittleEndian)),
        );
        Ok(Some(structs))
    }

    /// Reads, for every wanted function found, where its parameters are at
    /// its entry. A list that cannot be read leaves that parameter out.
    fn resolve_registers(
        &mut self,
        lists: &gimli::LocationLists<Slice<'_>>,
        addr: &gimli::DebugAddr<Slice<'_>>,
    ) {
        for (name, entry) in &self.functions {
            let low_pc = match entry.low_pc {
                Some(LowPc::Addr(a)) => a,
                Some(LowPc::Index(i)) => {
                    let size = entry.unit.encoding.address_size;
                    match addr.get_address(size, entry.unit.addr_base, i) {
                        Ok(a) => a,
                        Err(_) => continue,
                    }
                }
                None => continue,
            };
            let mut params = HashMap::new();
            for (param, location) in &entry.params {
                if let Some(words) = param_registers(lists, addr, &entry.unit, location, low_pc) {
                    params.insert(param.clone(), words);
                }
            }
            self.registers.insert(name.clone(), params);
        }
    }

    fn scan(
        debug_info: &gimli::DebugInfo<Slice<'_>>,
        debug_abbrev: &gimli::DebugAbbrev<Slice<'_>>,
        debug_str: &gimli::DebugStr<Slice<'_>>,
    ) -> gimli::Result<Self> {
        let string = |value: AttributeValue<EndianSlice<'_, LittleEndian>>| -> Option<Vec<u8>> {
            match value {
                AttributeValue::String(s) => Some(s.slice().to_vec()),
                AttributeValue::DebugStrRef(o) => {
                    debug_str.get_str(o).ok().map(|s| s.slice().to_vec())
                }
                _ => None,
            }
        };

        let mut structs = Self::default();
        // Go's units all share one abbreviation table: parse it once.
        let mut abbreviations: HashMap<DebugAbbrevOffset, gimli::Abbreviations> = HashMap::new();
        let mut units = debug_info.units();
        while let Some(unit) = units.next()? {
            let abbrevs = match abbreviations.entry(unit.debug_abbrev_offset()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(unit.abbreviations(debug_abbrev)?),
            };
            let encoding = unit.encoding();
            let mut unit_info = UnitInfo {
                encoding,
                low_pc: 0,
                loclists_base: gimli::DebugLocListsBase::default_for_encoding_and_file(
                    encoding,
                    gimli::DwarfFileType::Main,
                ),
                addr_base: gimli::DebugAddrBase(0),
            };
            let mut entries = unit.entries_raw(abbrevs, None)?;
            // The wanted struct whose members are being read, and its depth.
            let mut current: Option<(isize, String, StructInfo)> = None;
            // The wanted function whose parameters are being read, and its depth.
            let mut function: Option<(isize, String, FunctionEntry)> = None;
            while !entries.is_empty() {
                let depth = entries.next_depth();
                let Some(abbrev) = entries.read_abbreviation()? else { continue };
                if current.as_ref().is_some_and(|(d, ..)| depth <= *d) {
                    structs.insert(current.take());
                }
                if function.as_ref().is_some_and(|(d, ..)| depth <= *d) {
                    structs.insert_function(function.take());
                }
                match abbrev.tag() {
                    constants::DW_TAG_compile_unit => {
                        for spec in abbrev.attributes() {
                            let attr = entries.read_attribute(*spec)?;
                            match (attr.name(), attr.value()) {
                                (constants::DW_AT_low_pc, AttributeValue::Addr(a)) => {
                                    unit_info.low_pc = a
                                }
                                (
                                    constants::DW_AT_loclists_base,
                                    AttributeValue::DebugLocListsBase(b),
                                ) => unit_info.loclists_base = b,
                                (constants::DW_AT_addr_base, AttributeValue::DebugAddrBase(b)) => {
                                    unit_info.addr_base = b
                                }
                                _ => {}
                            }
                        }
                    }
                    constants::DW_TAG_subprogram => {
                        let (mut name, mut low_pc) = (None, None);
                        for spec in abbrev.attributes() {
                            let attr = entries.read_attribute(*spec)?;
                            match attr.name() {
                                constants::DW_AT_name => name = string(attr.value()),
                                constants::DW_AT_low_pc => {
                                    low_pc = match attr.value() {
                                        AttributeValue::Addr(a) => Some(LowPc::Addr(a)),
                                        AttributeValue::DebugAddrIndex(i) => Some(LowPc::Index(i)),
                                        _ => None,
                                    }
                                }
                                _ => {}
                            }
                        }
                        let name = name.and_then(|n| String::from_utf8(n).ok());
                        if let Some(name) = name.filter(|n| wanted_function(n)) {
                            let entry =
                                FunctionEntry { unit: unit_info, low_pc, params: HashMap::new() };
                            if abbrev.has_children() {
                                function = Some((depth, name, entry));
                            } else {
                                structs.insert_function(Some((depth, name, entry)));
                            }
                        }
                    }
                    constants::DW_TAG_formal_parameter
                        if function.as_ref().is_some_and(|(d, ..)| depth == *d + 1) =>
                    {
                        let (mut name, mut location) = (None, None);
                        for spec in abbrev.attributes() {
                            let attr = entries.read_attribute(*spec)?;
                            match attr.name() {
                                constants::DW_AT_name => name = string(attr.value()),
                                constants::DW_AT_location => {
                                    location = match attr.value() {
                                        AttributeValue::Exprloc(e) => {
                                            Some(ParamLocation::Expr(e.0.slice().to_vec()))
                                        }
                                        AttributeValue::LocationListsRef(o) => {
                                            Some(ParamLocation::List(o))
                                        }
                                        AttributeValue::DebugLocListsIndex(i) => {
                                            Some(ParamLocation::Index(i))
                                        }
                                        _ => None,
                                    }
                                }
                                _ => {}
                            }
                        }
                        if let (Some(name), Some(location), Some((_, _, entry))) =
                            (name, location, function.as_mut())
                        {
                            if let Ok(name) = String::from_utf8(name) {
                                entry.params.entry(name).or_insert(location);
                            }
                        }
                    }
                    constants::DW_TAG_structure_type => {
                        let (mut name, mut size) = (None, None);
                        for spec in abbrev.attributes() {
                            let attr = entries.read_attribute(*spec)?;
                            match attr.name() {
                                constants::DW_AT_name => name = string(attr.value()),
                                constants::DW_AT_byte_size => size = attr.udata_value(),
                                _ => {}
                            }
                        }
                        let name = name.and_then(|n| String::from_utf8(n).ok());
                        if let Some(name) = name.filter(|n| wanted(n)) {
                            let info = StructInfo { size, members: HashMap::new() };
                            if abbrev.has_children() {
                                current = Some((depth, name, info));
                            } else {
                                structs.insert(Some((depth, name, info)));
                            }
                        }
                    }
                    constants::DW_TAG_member
                        if current.as_ref().is_some_and(|(d, ..)| depth == *d + 1) =>
                    {
                        let (mut name, mut location) = (None, None);
                        for spec in abbrev.attributes() {
                            let attr = entries.read_attribute(*spec)?;
                            match attr.name() {
                                constants::DW_AT_name => name = string(attr.value()),
                                constants::DW_AT_data_member_location => {
                                    location = member_location(attr.value())
                                }
                                _ => {}
                            }
                        }
                        if let (Some(name), Some(location), Some((_, _, info))) =
                            (name, location, current.as_mut())
                        {
                            if let Ok(name) = String::from_utf8(name) {
                                info.members.entry(name).or_insert(location);
                            }
                        }
                    }
                    _ => entries.skip_attributes(abbrev.attributes())?,
                }
            }
            structs.insert(current.take());
            structs.insert_function(function.take());
        }
        Ok(structs)
    }

    /// Keeps a struct read; the first definition of a name wins.
    fn insert(&mut self, read: Option<(isize, String, StructInfo)>) {
        if let Some((_, name, info)) = read {
            self.by_name.entry(name).or_insert(info);
        }
    }

    /// Keeps a function read; the first definition of a name wins.
    fn insert_function(&mut self, read: Option<(isize, String, FunctionEntry)>) {
        if let Some((_, name, entry)) = read {
            self.functions.entry(name).or_insert(entry);
        }
    }

    /// The register of one word of a parameter of a probed function of the
    /// grpc-go copy with symbol prefix `grpc_prefix`, if DWARF tells it.
    fn arg_register(&self, grpc_prefix: &str, arg: Arg) -> Option<u8> {
        let function = format!("{grpc_prefix}{TRANSPORT}{}", arg.target().method());
        let (param, word) = arg.param();
        let register = (*self.registers.get(&function)?.get(param)?.get(word)?)?;
        is_abi_register(register).then_some(register)
    }

    fn get(&self, name: &str) -> Option<&StructInfo> {
        self.by_name.get(name)
    }

    /// The [`GoOffsets`](super::GoOffsets) fields the DWARF gives, for the
    /// grpc-go copy with symbol prefix `grpc_prefix`.
    pub fn offsets(&self, grpc_prefix: &str) -> PartialOffsets {
        let grpc = |t: &str| self.get(&format!("{grpc_prefix}{TRANSPORT}{t}"));
        let vendors = vendor_prefixes(grpc_prefix);
        let xnet = |t: &str| vendors.iter().find_map(|p| self.get(&format!("{p}{t}")));
        let std = |t: &str| self.get(t);
        let member = |s: Option<&StructInfo>, m: &str| s?.members.get(m).copied();
        let sum = |a: Option<u64>, b: Option<u64>| a?.checked_add(b?);

        let meta = xnet("golang.org/x/net/http2.MetaHeadersFrame");
        let headers = xnet("golang.org/x/net/http2.HeadersFrame");
        let frame_header = xnet("golang.org/x/net/http2.FrameHeader");
        let field = xnet("golang.org/x/net/http2/hpack.HeaderField");
        let in_headers = |m: &str| sum(member(headers, "FrameHeader"), member(frame_header, m));

        let mut out = PartialOffsets::default();
        let values = [
            (Field::ServerConn, member(grpc("http2Server"), "conn")),
            (Field::ClientConn, member(grpc("http2Client"), "conn")),
            (Field::LoopyFramer, member(grpc("loopyWriter"), "framer")),
            (Field::FramerWriter, member(grpc("framer"), "writer")),
            (Field::BufwriterConn, member(grpc("bufWriter"), "conn")),
            (
                Field::TcpconnFd,
                sum(member(std("net.TCPConn"), "conn"), member(std("net.conn"), "fd")),
            ),
            (
                Field::NetfdSysfd,
                sum(member(std("net.netFD"), "pfd"), member(std("internal/poll.FD"), "Sysfd")),
            ),
            (Field::MetaHeaders, member(meta, "HeadersFrame")),
            (Field::MetaFields, member(meta, "Fields")),
            (Field::MetaTruncated, member(meta, "Truncated")),
            (Field::FrameFlags, in_headers("Flags")),
            (Field::FrameStreamId, in_headers("StreamID")),
            (Field::HeaderFieldSize, field.and_then(|f| f.size)),
            (Field::HeaderFieldName, member(field, "Name")),
            (Field::HeaderFieldValue, member(field, "Value")),
            (Field::HeaderFieldSensitive, member(field, "Sensitive")),
        ];
        for (f, value) in values {
            if let Some(value) = value.and_then(|v| u32::try_from(v).ok()) {
                out.set(f, value);
            }
        }
        for arg in Arg::ALL {
            if let Some(register) = self.arg_register(grpc_prefix, arg) {
                out.set_arg(arg, register);
            }
        }
        out
    }
}

/// Whether a function name is one of the probed grpc-go functions, under an
/// empty or `.../vendor/` prefix.
fn wanted_function(name: &str) -> bool {
    Target::ALL.iter().any(|t| {
        name.strip_suffix(t.method())
            .and_then(|rest| rest.strip_suffix(TRANSPORT))
            .is_some_and(|prefix| prefix.is_empty() || prefix.ends_with("/vendor/"))
    })
}

/// The registers of a parameter's words at `pc` (the function's entry):
/// the location list entry that covers `pc` (or the one expression), read
/// as `DW_OP_regN [DW_OP_piece size] ...`. `None` if the list cannot be
/// read or has no entry there.
fn param_registers(
    lists: &gimli::LocationLists<Slice<'_>>,
    addr: &gimli::DebugAddr<Slice<'_>>,
    unit: &UnitInfo,
    location: &ParamLocation,
    pc: u64,
) -> Option<Vec<Option<u8>>> {
    let list =
        |offset| lists.locations(offset, unit.encoding, unit.low_pc, addr, unit.addr_base).ok();
    let expression = match location {
        ParamLocation::Expr(bytes) => gimli::Expression(EndianSlice::new(bytes, LittleEndian)),
        ParamLocation::List(offset) => entry_at(list(*offset)?, pc)?,
        ParamLocation::Index(index) => {
            let offset = lists.get_offset(unit.encoding, unit.loclists_base, *index).ok()?;
            entry_at(list(offset)?, pc)?
        }
    };
    let mut words = Vec::new();
    let mut register = None;
    let mut ops = expression.operations(unit.encoding);
    while let Ok(Some(op)) = ops.next() {
        match op {
            Operation::Register { register: r } => register = u8::try_from(r.0).ok(),
            Operation::Piece { .. } => words.push(register.take()),
            // Anything else (a stack slot, a computed value) is no register.
            _ => register = None,
        }
    }
    if register.is_some() || words.is_empty() {
        words.push(register);
    }
    Some(words)
}

/// The expression of the location list entry whose range holds `pc`.
fn entry_at<'a>(
    mut list: gimli::LocListIter<Slice<'a>>,
    pc: u64,
) -> Option<gimli::Expression<Slice<'a>>> {
    while let Ok(Some(entry)) = list.next() {
        if entry.range.begin <= pc && pc < entry.range.end {
            return Some(entry.data);
        }
    }
    None
}

/// Whether a struct name is one of the wanted types: grpc-go's or x/net's
/// under an empty or `.../vendor/` prefix, or the standard library's.
fn wanted(name: &str) -> bool {
    let valid = |prefix: &str| prefix.is_empty() || prefix.ends_with("/vendor/");
    STD_TYPES.contains(&name)
        || XNET_TYPES.iter().any(|t| name.strip_suffix(t).is_some_and(valid))
        || GRPC_TYPES.iter().any(|t| {
            name.strip_suffix(t).and_then(|rest| rest.strip_suffix(TRANSPORT)).is_some_and(valid)
        })
}

/// The prefixes under which the compiler would have looked for a vendored
/// golang.org/x/net from grpc-go's transport package (GOPATH rules: the
/// `vendor/` folder of every enclosing directory, innermost first), then the
/// empty prefix.
fn vendor_prefixes(grpc_prefix: &str) -> Vec<String> {
    let dir = format!("{grpc_prefix}{}", TRANSPORT.trim_end_matches('.'));
    let mut out = vec![format!("{dir}/vendor/")];
    out.extend(dir.rmatch_indices('/').map(|(at, _)| format!("{}/vendor/", &dir[..at])));
    out.push(String::new());
    out
}

/// A member's offset: a constant, or (older producers) a `DW_OP_plus_uconst`
/// expression.
fn member_location(value: AttributeValue<EndianSlice<'_, LittleEndian>>) -> Option<u64> {
    if let AttributeValue::Exprloc(expr) = value {
        let mut r = expr.0;
        return match r.read_u8().ok()? {
            op if op == constants::DW_OP_plus_uconst.0 => {
                let v = r.read_uleb128().ok()?;
                r.is_empty().then_some(v)
            }
            _ => None,
        };
    }
    value.udata_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_names() {
        for yes in [
            "net.netFD",
            "internal/poll.FD",
            "google.golang.org/grpc/internal/transport.http2Server",
            "a/vendor/google.golang.org/grpc/internal/transport.framer",
            "golang.org/x/net/http2.FrameHeader",
            "a/b/vendor/golang.org/x/net/http2/hpack.HeaderField",
        ] {
            assert!(wanted(yes), "{yes}");
        }
        for no in [
            "net.netFDx",
            "*net.netFD",
            "google.golang.org/grpc/internal/transport.http2ServerX",
            "google.golang.org/grpc/internal/transport.xframer",
            "vendor/golang.org/x/net/http2/hpack.HeaderField",
            "x/golang.org/x/net/http2.FrameHeader",
            "[]golang.org/x/net/http2/hpack.HeaderField",
            "",
        ] {
            assert!(!wanted(no), "{no}");
        }
    }

    #[test]
    fn vendor_lookup_order() {
        assert_eq!(
            vendor_prefixes("a/vendor/"),
            [
                "a/vendor/google.golang.org/grpc/internal/transport/vendor/",
                "a/vendor/google.golang.org/grpc/internal/vendor/",
                "a/vendor/google.golang.org/grpc/vendor/",
                "a/vendor/google.golang.org/vendor/",
                "a/vendor/vendor/",
                "a/vendor/",
                "",
            ]
        );
        assert_eq!(vendor_prefixes("").last().map(String::as_str), Some(""));
    }

    #[test]
    fn member_locations() {
        let expr = |b: &'static [u8]| {
            AttributeValue::Exprloc(gimli::Expression(EndianSlice::new(b, LittleEndian)))
        };
        assert_eq!(member_location(AttributeValue::Udata(40)), Some(40));
        assert_eq!(member_location(AttributeValue::Data1(2)), Some(2));
        assert_eq!(member_location(expr(&[0x23, 0x90, 0x01])), Some(144));
        assert_eq!(member_location(expr(&[0x23])), None);
        assert_eq!(member_location(expr(&[0x10, 0x01])), None);
        assert_eq!(member_location(AttributeValue::Sdata(-1)), None);
    }

    #[test]
    fn garbage_dwarf_is_an_error_or_empty() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        for len in [0usize, 1, 4, 11, 12, 100, 1000] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = Structs::scan(
                &gimli::DebugInfo::new(&bytes, LittleEndian),
                &gimli::DebugAbbrev::new(&bytes, LittleEndian),
                &gimli::DebugStr::new(&bytes, LittleEndian),
            );
        }
    }
}
