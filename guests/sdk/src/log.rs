//! Structured logs into the host's `tracing`, tagged with connector and session.

use crate::bindings::sluice::connector::log as host;

pub use host::Level;

/// Emit an event with extra fields (a JSON object).
pub fn event(level: Level, message: &str, fields: Option<&serde_json::Value>) {
    host::log(level, message, fields.map(|f| f.to_string()).as_deref());
}

/// Whether the host records events at `level`.
pub fn enabled(level: Level) -> bool {
    host::enabled(level)
}

/// Emit a debug event.
pub fn debug(message: &str) {
    event(Level::Debug, message, None);
}

/// Emit an info event.
pub fn info(message: &str) {
    event(Level::Info, message, None);
}

/// Emit a warning.
pub fn warn(message: &str) {
    event(Level::Warn, message, None);
}

/// Emit an error event.
pub fn error(message: &str) {
    event(Level::Error, message, None);
}
