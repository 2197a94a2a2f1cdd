//! HTTP exchanges on tape, at the `wasi:http` send hook: recorded as the
//! connector sent the request and received the answer (the body as it read
//! it), replayed from the recording with no network.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use super::event::{Event, HeaderLine, HttpAnswer, HttpFailure, HttpRequest, RecordedDenial};
use super::player::{Player, RecordedBody};
use super::recorder::Recorder;
use super::redact::Redactor;
use crate::capability::denial::{Capability, Denial, Denials};
use crate::capability::http::{IoFuture, SendFuture};

/// The largest request body a recorded or replayed session sends (it is
/// held whole to be written down and compared).
const MAX_TAPED_REQUEST_BODY: usize = 64 << 20;

/// A request's body, whole.
async fn whole(body: WasiBody) -> Result<Bytes, HttpError> {
    Ok(http_body_util::Limited::new(body, MAX_TAPED_REQUEST_BODY)
        .collect()
        .await
        .map_err(|e| match e.downcast::<HttpError>() {
            Ok(error) => *error,
            Err(_) => HttpError::HttpRequestBodySize(Some(MAX_TAPED_REQUEST_BODY as u64)),
        })?
        .to_bytes())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn full(bytes: Bytes) -> WasiBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The request as recorded: redacted, its body whole.
fn recorded_request(redactor: &Redactor, parts: &http::request::Parts, body: &[u8]) -> HttpRequest {
    HttpRequest {
        method: parts.method.to_string(),
        uri: redactor.uri(&parts.uri.to_string()),
        headers: header_lines(redactor, &parts.headers),
        body: b64(&redactor.body(body)),
    }
}

fn header_lines(redactor: &Redactor, headers: &http::HeaderMap) -> Vec<HeaderLine> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                redactor.header(name.as_str(), value.as_bytes()),
            )
        })
        .collect()
}

/// Send `request` with `send`, recording the exchange (and, for a request
/// the host denies, the denial it adds to `denials`).
pub(crate) fn record(
    recorder: Arc<Recorder>,
    request: http::Request<WasiBody>,
    denials: Denials,
    send: impl FnOnce(http::Request<WasiBody>) -> SendFuture + Send + 'static,
) -> SendFuture {
    Box::new(async move {
        let (parts, body) = request.into_parts();
        let body = whole(body).await?;
        let recorded = recorded_request(recorder.redactor(), &parts, &body);
        let id = recorder.next_http_id();
        let before = denials.len();
        match Box::into_pin(send(http::Request::from_parts(parts, full(body)))).await {
            Err(error) => {
                let redactor = recorder.redactor();
                let mut failure = failure_of(redactor, &error);
                if matches!(error, HttpError::HttpRequestDenied) {
                    failure.denial = denials.first_since(before).map(|d| RecordedDenial {
                        attempted: redactor.text(&d.attempted),
                        grant: redactor.text(&d.grant),
                        api_grant: redactor.text(&d.api_grant),
                    });
                }
                recorder.write(Event::Http {
                    id,
                    request: recorded,
                    answer: HttpAnswer::Failed(failure),
                });
                Err(error)
            }
            Ok((response, io)) => {
                recorder.write(Event::Http {
                    id,
                    request: recorded,
                    answer: HttpAnswer::Response {
                        status: response.status().as_u16(),
                        headers: header_lines(recorder.redactor(), response.headers()),
                    },
                });
                let response = response.map(|inner| {
                    TeeBody {
                        inner,
                        recorder,
                        id,
                        ended: false,
                    }
                    .boxed_unsync()
                });
                Ok((response, io))
            }
        }
    })
}

/// A response body that writes each piece to the recording as the connector reads it.
struct TeeBody {
    inner: WasiBody,
    recorder: Arc<Recorder>,
    id: u64,
    ended: bool,
}

impl TeeBody {
    fn end(&mut self, trailers: Option<Vec<HeaderLine>>, error: Option<HttpFailure>) {
        if !self.ended {
            self.ended = true;
            self.recorder.write(Event::HttpEnd {
                id: self.id,
                trailers,
                error,
            });
        }
    }
}

impl Body for TeeBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let recorder = Arc::clone(&self.recorder);
        let redactor = recorder.redactor();
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    self.recorder.write(Event::HttpBody {
                        id: self.id,
                        data: b64(&redactor.body(data)),
                    });
                } else if let Some(trailers) = frame.trailers_ref() {
                    self.end(Some(header_lines(redactor, trailers)), None);
                }
            }
            Some(Err(error)) => self.end(None, Some(failure_of(redactor, error))),
            None => self.end(None, None),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// Answer `request` from the recording: the next recorded exchange, when
/// the request is the one recorded (a recorded denial is added to
/// `denials` again); a divergence otherwise.
pub(crate) fn replay(
    player: Arc<Player>,
    request: http::Request<WasiBody>,
    denials: Denials,
) -> SendFuture {
    Box::new(async move {
        let (parts, body) = request.into_parts();
        let body = whole(body).await?;
        let made = recorded_request(&player.redactor, &parts, &body);
        let refuse = |player: &Player, what: String| {
            player.diverge(what.clone());
            Err(HttpError::InternalError(Some(format!(
                "replay diverged: {what}"
            ))))
        };
        let Some(exchange) = player.next_exchange() else {
            return refuse(
                &player,
                format!(
                    "the connector sent HTTP {} {}, and the recorded run sent no more HTTP requests",
                    made.method, made.uri
                ),
            );
        };
        if let Some(difference) = difference(&exchange.request, &made) {
            return refuse(
                &player,
                format!("HTTP request {}: {difference}", exchange.id),
            );
        }
        player.matched();
        let (status, headers) = match exchange.answer {
            HttpAnswer::Failed(failure) => {
                if let Some(denial) = &failure.denial {
                    denials.record(Denial {
                        capability: Capability::Http,
                        attempted: denial.attempted.clone(),
                        grant: denial.grant.clone(),
                        api_grant: denial.api_grant.clone(),
                        connector_error: None,
                    });
                }
                return Err(error_of(&failure));
            }
            HttpAnswer::Response { status, headers } => (status, headers),
        };
        let mut response = http::Response::new(
            ReplayBody {
                recorded: player.take_body(exchange.id),
                player: Arc::clone(&player),
                id: exchange.id,
                done: false,
            }
            .boxed_unsync(),
        );
        *response.status_mut() = http::StatusCode::from_u16(status)
            .map_err(|_| HttpError::InternalError(Some(format!("recorded status {status}"))))?;
        *response.headers_mut() = header_map(&headers);
        let io: IoFuture = Box::new(async { Ok(()) });
        Ok((response, io))
    })
}

fn header_map(lines: &[HeaderLine]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in lines {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// How `made` differs from `recorded`, in words; `None` when it does not.
fn difference(recorded: &HttpRequest, made: &HttpRequest) -> Option<String> {
    if recorded.method != made.method || recorded.uri != made.uri {
        return Some(format!(
            "the connector sent {} {}; the recording has {} {}",
            made.method, made.uri, recorded.method, recorded.uri
        ));
    }
    // The body is compared on its own, redacted (which may change its length).
    let comparable = |lines: &[HeaderLine]| -> Vec<HeaderLine> {
        lines
            .iter()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length"))
            .cloned()
            .collect()
    };
    if comparable(&recorded.headers) != comparable(&made.headers) {
        let shown = |lines: &[HeaderLine]| {
            lines
                .iter()
                .map(|(n, v)| format!("{n}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Some(format!(
            "{} {}: the connector sent the headers [{}]; the recording has [{}]",
            made.method,
            made.uri,
            shown(&made.headers),
            shown(&recorded.headers)
        ));
    }
    if recorded.body != made.body {
        let text = |body: &str| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let cut: String = text.chars().take(200).collect();
            if cut.len() < text.len() {
                format!("{cut}…")
            } else {
                cut
            }
        };
        return Some(format!(
            "{} {}: the connector sent the body `{}`; the recording has `{}`",
            made.method,
            made.uri,
            text(&made.body),
            text(&recorded.body)
        ));
    }
    None
}

/// A recorded response body, read back.
struct ReplayBody {
    recorded: RecordedBody,
    player: Arc<Player>,
    id: u64,
    done: bool,
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if let Some(chunk) = self.recorded.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        self.done = true;
        Poll::Ready(match self.recorded.end.take() {
            Some((Some(trailers), _)) => Some(Ok(Frame::trailers(header_map(&trailers)))),
            Some((None, Some(failure))) => Some(Err(error_of(&failure))),
            Some((None, None)) => None,
            None => {
                let what = format!(
                    "HTTP request {}: the connector read its response body further than the recorded run did",
                    self.id
                );
                self.player.diverge(what.clone());
                Some(Err(HttpError::InternalError(Some(format!(
                    "replay diverged: {what}"
                )))))
            }
        })
    }
}

/// An HTTP error as recorded (its `wasi:http` error-code name).
fn failure_of(redactor: &Redactor, error: &HttpError) -> HttpFailure {
    let code = |code: &str| HttpFailure {
        code: code.to_string(),
        detail: None,
        denial: None,
    };
    match error {
        HttpError::HttpRequestDenied => code("HTTP-request-denied"),
        HttpError::ConnectionRefused => code("connection-refused"),
        HttpError::ConnectionTimeout => code("connection-timeout"),
        HttpError::ConnectionReadTimeout => code("connection-read-timeout"),
        HttpError::ConnectionTerminated => code("connection-terminated"),
        HttpError::DestinationNotFound => code("destination-not-found"),
        HttpError::HttpResponseIncomplete => code("HTTP-response-incomplete"),
        HttpError::HttpResponseTimeout => code("HTTP-response-timeout"),
        HttpError::HttpProtocolError => code("HTTP-protocol-error"),
        HttpError::TlsCertificateError => code("TLS-certificate-error"),
        HttpError::TlsProtocolError => code("TLS-protocol-error"),
        HttpError::HttpResponseBodySize(limit) => HttpFailure {
            detail: limit.map(|l| l.to_string()),
            ..code("HTTP-response-body-size")
        },
        HttpError::InternalError(detail) => HttpFailure {
            detail: detail.as_deref().map(|d| redactor.text(d)),
            ..code("internal-error")
        },
        other => HttpFailure {
            detail: Some(redactor.text(&format!("{other:?}"))),
            ..code("internal-error")
        },
    }
}

/// The HTTP error a recorded failure stands for.
fn error_of(failure: &HttpFailure) -> HttpError {
    match failure.code.as_str() {
        "HTTP-request-denied" => HttpError::HttpRequestDenied,
        "connection-refused" => HttpError::ConnectionRefused,
        "connection-timeout" => HttpError::ConnectionTimeout,
        "connection-read-timeout" => HttpError::ConnectionReadTimeout,
        "connection-terminated" => HttpError::ConnectionTerminated,
        "destination-not-found" => HttpError::DestinationNotFound,
        "HTTP-response-incomplete" => HttpError::HttpResponseIncomplete,
        "HTTP-response-timeout" => HttpError::HttpResponseTimeout,
        "HTTP-protocol-error" => HttpError::HttpProtocolError,
        "TLS-certificate-error" => HttpError::TlsCertificateError,
        "TLS-protocol-error" => HttpError::TlsProtocolError,
        "HTTP-response-body-size" => {
            HttpError::HttpResponseBodySize(failure.detail.as_deref().and_then(|d| d.parse().ok()))
        }
        _ => HttpError::InternalError(failure.detail.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_recorded_error_code_reads_back_as_itself() {
        let redactor = Redactor::default();
        for error in [
            HttpError::HttpRequestDenied,
            HttpError::ConnectionRefused,
            HttpError::ConnectionTimeout,
            HttpError::ConnectionReadTimeout,
            HttpError::ConnectionTerminated,
            HttpError::DestinationNotFound,
            HttpError::HttpResponseIncomplete,
            HttpError::HttpResponseTimeout,
            HttpError::HttpProtocolError,
            HttpError::TlsCertificateError,
            HttpError::TlsProtocolError,
            HttpError::HttpResponseBodySize(Some(1024)),
            HttpError::InternalError(Some("breaker open".into())),
        ] {
            let failure = failure_of(&redactor, &error);
            assert_eq!(failure_of(&redactor, &error_of(&failure)), failure);
        }
    }
}
