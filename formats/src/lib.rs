//! Types shared by podtap's kernel programs, the `capture` loader and `analyze`.
//!
//! The crate is `#![no_std]` by default so the eBPF programs can use the same
//! `#[repr(C)]` wire structs as userspace (the shape of aya's template `-common`
//! crate). Feature `user` adds the userspace side (`aya::Pod`, parsing of ring
//! buffer records); feature `schema` adds the Arrow schemas of the Parquet files
//! podtap writes, so the writer and every reader share one definition.
#![cfg_attr(not(feature = "std"), no_std)]

pub mod wire;

#[cfg(feature = "schema")]
pub mod schema;

#[cfg(feature = "user")]
mod user;
#[cfg(feature = "user")]
pub use user::{H2Field, ParseError, Record};
