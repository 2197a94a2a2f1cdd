//! Log: guest events into the host's `tracing`, tagged with connector and session.
//!
//! Threat model: a guest can log as much as it likes, so messages and field
//! blobs are truncated before they reach a subscriber; and it may log the
//! secrets it can read (`sockets.secrets`), so their values are removed.

use std::sync::Arc;

use wasmtime::component::HasData;

use super::secrets::SocketSecrets;
use crate::bindings::sluice::connector::log::{Host, Level};

/// Longest message or fields text passed on, in bytes.
const MAX_LOG_TEXT: usize = 8 * 1024;

/// What every event of one session is tagged with.
#[derive(Debug, Clone)]
pub(crate) struct LogTags {
    pub connector: Arc<str>,
    pub session: u64,
}

/// What the log host borrows from a store's state: the session's tags and
/// the secrets to keep out of its events.
pub(crate) struct LogView<'a> {
    /// The tags every event of the session carries.
    pub tags: &'a LogTags,
    /// Secret values removed from messages and fields.
    pub secrets: &'a SocketSecrets,
}

/// Links [`LogView`] into `add_to_linker`.
pub(crate) struct HasLog;

impl HasData for HasLog {
    type Data<'a> = LogView<'a>;
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

impl Host for LogView<'_> {
    async fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Option<String>,
    ) -> wasmtime::Result<()> {
        let connector = &*self.tags.connector;
        let session = self.tags.session;
        // Redact before truncating, so no prefix of a secret survives a cut.
        let message = self.secrets.redact(&message);
        let message = truncate(&message);
        let fields = self.secrets.redact(fields.as_deref().unwrap_or(""));
        let fields = truncate(&fields);
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
