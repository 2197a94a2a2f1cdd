//! Record and replay: every answer the host gives a connector — HTTP
//! exchanges, `sql` results, files opened and directories listed, clock
//! readings, random bytes — written to a file with secrets redacted
//! ([`Recorder`]), and a connector run again against that file with no
//! network and no credentials ([`Player`]), which reports the first request
//! that differs from the recorded one.
//!
//! Each capability is recorded at one seam: the `wasi:http` send hook (the
//! request as the connector sent it, before the host adds credentials; the
//! answer as the connector received it, after the host scrubbed them), the
//! `sql` host's calls, `wasi:filesystem`'s `open-at` and `read-directory`,
//! and the WASI clocks and random generators. Raw TCP sockets and SFTP are
//! not recorded: a recording says so, and a replay refuses them.
//!
//! ```no_run
//! # async fn run(connector: sluice::Connector, grants: sluice::Grants) -> Result<(), sluice::Error> {
//! use std::sync::Arc;
//! use sluice::tape::{Player, Recorder, Tape};
//!
//! let config = r#"{"base_url": "https://api.example.com"}"#;
//! let recorder = Arc::new(Recorder::create(
//!     "run.tape".as_ref(), &connector, config, &grants, serde_json::json!("health"),
//! )?);
//! let tape = Tape::Record(Arc::clone(&recorder));
//! let mut session = connector.open_taped(config, &grants, &connector.runtime().config().limits, tape).await?;
//! let result = session.health().await;
//! recorder.finish(result.as_ref().err().map(ToString::to_string).as_deref())?;
//!
//! // Later, elsewhere, without the credentials:
//! let player = Arc::new(Player::open("run.tape".as_ref())?);
//! let config = player.header().config.to_string();
//! let grants = player.grants()?;
//! let limits = connector.runtime().config().limits.clone();
//! let mut session = connector.open_taped(&config, &grants, &limits, Tape::Replay(Arc::clone(&player))).await?;
//! let result = session.health().await;
//! let report = player.finish(result.as_ref().err().map(ToString::to_string).as_deref());
//! if let Some(divergence) = &report.divergence {
//!     eprintln!("{divergence}");
//! }
//! # Ok(()) }
//! ```

mod clock;
mod event;
pub(crate) mod files;
pub(crate) mod http;
mod player;
mod recorder;
mod redact;
pub(crate) mod sql;

pub use event::{Outcome, RecordedMount, RecordingHeader, FORMAT_VERSION};
pub use player::{Player, ReplayReport};
pub use recorder::Recorder;

pub(crate) use clock::apply as apply_clocks;

use std::sync::Arc;

/// What a session does with its host answers besides giving them to the connector.
#[derive(Clone)]
pub enum Tape {
    /// Write each one to a recording.
    Record(Arc<Recorder>),
    /// Take each one from a recording instead of the outside world.
    Replay(Arc<Player>),
}

impl std::fmt::Debug for Tape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tape::Record(_) => f.write_str("Tape::Record"),
            Tape::Replay(_) => f.write_str("Tape::Replay"),
        }
    }
}

impl Tape {
    /// The recorder, when recording.
    pub(crate) fn recorder(&self) -> Option<&Arc<Recorder>> {
        match self {
            Tape::Record(recorder) => Some(recorder),
            Tape::Replay(_) => None,
        }
    }

    /// The player, when replaying.
    pub(crate) fn player(&self) -> Option<&Arc<Player>> {
        match self {
            Tape::Replay(player) => Some(player),
            Tape::Record(_) => None,
        }
    }
}
