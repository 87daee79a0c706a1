//! The live tail of pod logs across container restarts: lines as the
//! pipeline hands them to its writers, a second or more before the table
//! commit and the index.
//!
//! - [`hub`]: the published stream, its replay, the open tails' limits;
//! - [`filter`]: which lines a tail follows (search filters or LogQL);
//! - [`session`]: one tail: backfill joined by `line_id`, restart notices,
//!   the bounded buffer of a client;
//! - [`routes`]: `GET /v1/logs/tail` (NDJSON); Loki's WebSocket tail is
//!   [`crate::loki::tail`].

pub mod filter;
pub mod hub;
pub mod metrics;
pub mod routes;
pub mod session;

pub use hub::LiveHub;
