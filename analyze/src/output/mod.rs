//! What `analyze` writes: the exchange file ([`exchanges`]), the RED table
//! on stdout ([`table`]) and the xlsx report ([`xlsx`]). Metrics have their
//! own module, [`crate::metrics`].

pub mod exchanges;
pub mod table;
pub mod xlsx;

pub use exchanges::ExchangeWriter;

use std::{fs, io, os::unix::fs::OpenOptionsExt, path::Path};

/// Creates (or truncates) an output file readable by its owner only (SPEC
/// §9): podtap's outputs hold request headers and bodies.
pub fn create_private(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}
