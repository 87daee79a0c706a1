//! sluice's HTTP edge, shared by every role that listens: the server with
//! its connection limits and timeouts ([`server`]), the one bearer-token
//! check ([`auth`]), the one error body ([`error`]) and the protections
//! against requests a web page makes on a browser's behalf ([`browser`]).

pub mod auth;
pub mod browser;
pub mod error;
pub mod jwt;
pub mod server;
