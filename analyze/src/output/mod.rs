//! What `analyze` writes: the exchange file ([`exchanges`]), the RED table
//! on stdout ([`table`]) and the xlsx report ([`xlsx`]). Metrics have their
//! own module, [`crate::metrics`].

pub mod exchanges;
pub mod table;
pub mod xlsx;

pub use exchanges::ExchangeWriter;
