//! Streamed answers: records as NDJSON while the connector produces them,
//! ending with an error line when the stream cannot go on.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

use sluice::FetchRequest;

use crate::body::Reply;
use crate::invoke::AckMode;
use crate::ApiError;
use crate::State;

/// A chunked NDJSON body fed by the streaming task; dropping it (client gone) stops the task.
pub(crate) struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// Who a stream belongs to, for its metrics and its log line.
pub(crate) struct StreamContext {
    pub(crate) state: Arc<State>,
    pub(crate) tenant: String,
    pub(crate) connector: String,
    pub(crate) instance: String,
    pub(crate) request_id: String,
}

/// What to stream: the request, where to resume, how many records a batch
/// holds, and how delivered records are acknowledged.
pub(crate) struct StreamRequest {
    pub(crate) fetch: FetchRequest,
    pub(crate) checkpoint: Option<String>,
    pub(crate) batch_size: u32,
    pub(crate) ack: AckMode,
}

/// Start a stream. Until its first batch (or its end) the answer is not
/// committed: a stream that fails before streaming anything answers with the
/// error's own status; one that fails later ends with an error line.
pub(crate) async fn stream(
    session: sluice::Session,
    request: StreamRequest,
    permit: tokio::sync::OwnedSemaphorePermit,
    context: StreamContext,
) -> Reply {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let _active = context.state.metrics.session();
        let mut start = Some(started_tx);
        let outcome = pump(session, request, tx, &mut start).await;
        // A stream refused before it started is counted by `invoke`, as an error answer.
        if start.is_none() {
            tracing::info!(
                request_id = context.request_id,
                tenant = context.tenant,
                instance = context.instance,
                outcome,
                ms = started.elapsed().as_millis() as u64,
                "stream ended"
            );
            context.state.metrics.invocation(
                &context.tenant,
                &context.connector,
                "stream",
                outcome,
                started.elapsed(),
            );
        }
        drop(permit);
    });
    match started_rx.await {
        Ok(Ok(())) => Ok(Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/x-ndjson")
            .body(ChannelBody(rx).boxed())
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(sluice::Error::Host("the stream task ended early".into()).into()),
    }
}

/// Stream outcome `err`: the answer's status while nothing was streamed
/// (`start` still held), else an error line ending the stream. Returns the
/// error code as the outcome.
pub(crate) async fn report(
    tx: &mpsc::Sender<Bytes>,
    start: &mut Option<StartSignal>,
    err: sluice::Error,
) -> &'static str {
    let err = ApiError::from(err);
    let code = err.code;
    match start.take() {
        Some(signal) => {
            let _ = signal.send(Err(err));
        }
        None => {
            let mut line = String::new();
            sluice::wire::error_line(err.code, &err.message, &err.details, &mut line);
            let _ = tx.send(Bytes::from(line)).await;
        }
    }
    code
}

/// Tells the handler how a stream began: streaming (answer 200), or refused.
pub(crate) type StartSignal = tokio::sync::oneshot::Sender<Result<(), ApiError>>;

/// Move a stream's batches into the response; returns the outcome.
pub(crate) async fn pump(
    mut session: sluice::Session,
    request: StreamRequest,
    tx: mpsc::Sender<Bytes>,
    start: &mut Option<StartSignal>,
) -> &'static str {
    let mut acking = request.ack == AckMode::Auto;
    {
        let checkpoint = request.checkpoint.as_deref();
        let mut stream = match session.stream(&request.fetch, checkpoint).await {
            Ok(stream) => stream,
            Err(e) => return report(&tx, start, e).await,
        };
        loop {
            match stream.next(request.batch_size.max(1)).await {
                Ok(Some(batch)) => {
                    let mut chunk = String::new();
                    for record in &batch.records {
                        // A record that is not JSON ends the stream with an error line; the
                        // batch is not sent, so resuming from the last checkpoint loses nothing.
                        if let Err(e) = sluice::wire::record_line(record, &mut chunk) {
                            return report(&tx, start, e).await;
                        }
                    }
                    if let Some(cp) = &batch.checkpoint {
                        sluice::wire::checkpoint_line(cp, &mut chunk);
                    }
                    if let Some(signal) = start.take() {
                        let _ = signal.send(Ok(()));
                    }
                    if tx.send(Bytes::from(chunk)).await.is_err() {
                        // The client went away: dropping the session cancels the guest.
                        return "client_gone";
                    }
                    if acking {
                        match stream.ack_records(&batch.records).await {
                            Ok(settles) => acking = settles,
                            Err(e) => return report(&tx, start, e).await,
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => return report(&tx, start, e).await,
            }
        }
        let _ = stream.close().await;
    }
    let _ = session.close().await;
    if let Some(signal) = start.take() {
        let _ = signal.send(Ok(()));
    }
    "ok"
}
