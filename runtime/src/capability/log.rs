//! Log: guest events into the host's `tracing`, tagged with connector and session.
//!
//! Threat model: a guest can log as much as it likes, so messages and field
//! blobs are truncated before they reach a subscriber.

use std::sync::Arc;

use crate::bindings::sluice::connector::log::{Host, Level};
use crate::state::HostState;

/// Longest message or fields text passed on, in bytes.
const MAX_LOG_TEXT: usize = 8 * 1024;

/// What every event of one session is tagged with.
#[derive(Debug, Clone)]
pub(crate) struct LogTags {
    pub connector: Arc<str>,
    pub session: u64,
}

fn truncate(text: &str) -> &str {
    if text.len() <= MAX_LOG_TEXT {
        return text;
    }
    let mut end = MAX_LOG_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Host for HostState {
    async fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Option<String>,
    ) -> wasmtime::Result<()> {
        let connector = &*self.log.connector;
        let session = self.log.session;
        let message = truncate(&message);
        let fields = fields.as_deref().map(truncate).unwrap_or("");
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(target: "sluice::guest", $level, connector, session, fields, "{message}")
            };
        }
        match level {
            Level::Trace => emit!(tracing::Level::TRACE),
            Level::Debug => emit!(tracing::Level::DEBUG),
            Level::Info => emit!(tracing::Level::INFO),
            Level::Warn => emit!(tracing::Level::WARN),
            Level::Error => emit!(tracing::Level::ERROR),
        }
        Ok(())
    }

    async fn enabled(&mut self, level: Level) -> wasmtime::Result<bool> {
        Ok(match level {
            Level::Trace => tracing::enabled!(target: "sluice::guest", tracing::Level::TRACE),
            Level::Debug => tracing::enabled!(target: "sluice::guest", tracing::Level::DEBUG),
            Level::Info => tracing::enabled!(target: "sluice::guest", tracing::Level::INFO),
            Level::Warn => tracing::enabled!(target: "sluice::guest", tracing::Level::WARN),
            Level::Error => tracing::enabled!(target: "sluice::guest", tracing::Level::ERROR),
        })
    }
}
