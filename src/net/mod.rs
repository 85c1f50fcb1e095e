//! Listening: one accept loop for every listener, with connection limits, TLS handshakes and a
//! graceful drain ([`listener`]); HTTP/1.1 connections with their timeouts ([`http`], for the
//! data and admin listeners; the DAX front-end brings its own protocol); and the certificate
//! served over https ([`tls`]), reloadable.

pub(crate) mod http;
pub(crate) mod listener;
pub(crate) mod tls;
