//! What `capture` needs to know about the running kernel before loading
//! programs: privileges, BTF, tracefs, structure offsets, clocks.

pub mod clock;
pub mod offsets;
pub mod preflight;
