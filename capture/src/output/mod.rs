//! Writing the capture file (SPEC §3).
//!
//! Rows are collected in Arrow builders ([`rows`]); about once a second they
//! become a closed, readable Parquet segment under `FILE.d/` ([`segments`]),
//! so a capture killed without warning loses at most the last second. A clean
//! stop merges the segments into `FILE` with the final metadata ([`merge`]).

pub mod merge;
pub mod meta;
pub mod rows;
pub mod segments;

use std::{fs, io, os::unix::fs::OpenOptionsExt, path::Path};

/// Creates (or truncates) a file readable by its owner only: captures hold
/// whatever the targets sent, credentials included.
pub fn create_private(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}
