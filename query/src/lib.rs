//! sluice's query side. Time windows are shared by every endpoint and the CLI.

pub mod window;
