//! The guest's stdout and stderr: the last [`TAIL_BYTES`] of each call kept
//! for the error of a crash (a Rust panic message, a Python traceback), and
//! every write logged at debug through `tracing` with the session's tags.
//!
//! Threat model: a guest may write without end, so only a bounded tail is
//! kept and each logged write is truncated; a write never blocks, fails or
//! traps. It may print the secrets it can read (`sockets.secrets`): they are
//! removed when the tail is read and before a write is logged.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use super::log::LogTags;
use super::secrets::SocketSecrets;

/// How many of the last bytes a call wrote are kept, stdout and stderr together.
pub const TAIL_BYTES: usize = 4096;

/// Longest write passed on to `tracing`, in bytes.
const MAX_LOGGED: usize = 2048;

/// The kept tail, shared by the session's stdout and stderr streams.
#[derive(Clone, Default)]
pub(crate) struct GuestOutput(Arc<Mutex<VecDeque<u8>>>);

impl GuestOutput {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forget what earlier calls wrote.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The tail as text (invalid UTF-8 replaced, secret values removed,
    /// trailing whitespace dropped); `None` when nothing was written.
    pub fn tail(&self, secrets: &SocketSecrets) -> Option<String> {
        let bytes: Vec<u8> = self.lock().iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        let text = secrets.redact(text.trim_end()).into_owned();
        (!text.is_empty()).then_some(text)
    }

    fn keep(&self, bytes: &[u8]) {
        let mut tail = self.lock();
        let bytes = &bytes[bytes.len().saturating_sub(TAIL_BYTES)..];
        let overflow = (tail.len() + bytes.len()).saturating_sub(TAIL_BYTES);
        tail.drain(..overflow);
        tail.extend(bytes);
    }
}

/// One of the guest's output streams (`stdout` or `stderr`).
#[derive(Clone)]
pub(crate) struct GuestStream {
    pub output: GuestOutput,
    pub name: &'static str,
    pub tags: LogTags,
    pub secrets: SocketSecrets,
}

impl GuestStream {
    fn write(&self, bytes: &[u8]) {
        self.output.keep(bytes);
        if tracing::enabled!(target: "sluice::guest", tracing::Level::DEBUG) {
            let shown = &bytes[..bytes.len().min(MAX_LOGGED)];
            let text = String::from_utf8_lossy(shown);
            let text = self.secrets.redact(text.trim_end());
            tracing::debug!(
                target: "sluice::guest",
                connector = &*self.tags.connector,
                session = self.tags.session,
                stream = self.name,
                "{text}"
            );
        }
    }
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        GuestStream::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_bytes_are_kept_and_secrets_never_leave() {
        let output = GuestOutput::default();
        let mut secrets = SocketSecrets::default();
        secrets.provide("pw", "hunter2");
        output.keep(&vec![b'a'; TAIL_BYTES]);
        output.keep(b"the password is hunter2\n");
        let tail = output.tail(&secrets).unwrap();
        assert_eq!(tail.len(), TAIL_BYTES - "hunter2\n".len() + "***".len());
        assert!(tail.ends_with("the password is ***"), "{tail}");
        output.keep(&vec![b'b'; 3 * TAIL_BYTES]);
        assert_eq!(output.tail(&secrets).unwrap(), "b".repeat(TAIL_BYTES));
        output.clear();
        assert_eq!(output.tail(&secrets), None);
    }
}
