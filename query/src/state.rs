//! What every HTTP handler of the query service shares: the engine, the
//! guardrail settings, the log index and the live stream. Its own module so the SQL API
//! (`api`) and the Loki API (`loki`) both use it without importing each
//! other.

use std::sync::Arc;

use crate::config::GuardrailsConfig;
use crate::engine::Engine;

pub struct ApiState {
    pub engine: Arc<Engine>,
    pub guardrails: GuardrailsConfig,
    pub logs: Arc<crate::logsearch::LogIndex>,
    /// The live stream the tails read.
    pub live: Arc<crate::live::LiveHub>,
}
