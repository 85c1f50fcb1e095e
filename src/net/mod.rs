//! Listening: accepting connections within limits, graceful drain ([`server`], for the data
//! and admin listeners), and the certificate served over https ([`tls`]), reloadable.

pub mod server;
pub mod tls;
