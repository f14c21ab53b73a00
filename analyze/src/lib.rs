//! podtap `analyze`: decodes HTTP/1.x and HTTP/2 (gRPC) exchanges from capture
//! files offline (SPEC §4). Built and run without root or the eBPF toolchain.
//!
//! The flow, one direction only: [`input`] finds and checks captures and
//! streams their rows; [`engine`] reassembles each connection
//! ([`reassembly`]), detects its protocol and feeds the decoders in
//! [`protocol`]; [`exchange`] turns what they produce into exchanges, which
//! [`output`] writes and [`stats`] summarises.

pub mod engine;
pub mod exchange;
pub mod input;
pub mod metrics;
pub mod output;
pub mod protocol;
pub mod reassembly;
pub mod red;
pub mod route;
pub mod rows;
pub mod stats;
