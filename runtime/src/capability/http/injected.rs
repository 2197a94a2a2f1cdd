//! What the host injected into a request, and keeping it out of the
//! response the guest reads.
//!
//! Threat model: upstreams build URLs from the request URL — a `Link`
//! header for the next page, a `Location`, a `Content-Location` — so a key
//! the host put in the query comes straight back in a response header, into
//! guest memory, checkpoints and cursors; some echo the `Authorization`
//! header too. So before the guest sees a response, every header value
//! holding an injected secret (as sent, or percent-encoded) is scrubbed: the
//! injected query parameter is removed from URLs (the host adds it again to
//! the next request), and any other occurrence is replaced by `[redacted]`.
//! Trailers (HTTP/2 and chunked HTTP/1.1; gRPC's status and message live in
//! them) are scrubbed the same way as they pass ([`ScrubbedTrailers`]).
//! The host cannot scrub a response *body* that echoes a secret: it does not
//! know the body's format, and rewriting it could corrupt data.

use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// Credentials the host added to one request.
#[derive(Debug, Default)]
pub(crate) struct Injected {
    /// The query parameter holding a key, when the key went in the URL.
    pub query_param: Option<String>,
    /// Every secret value that went out (keys, passwords, encoded pairs, tokens).
    pub values: Vec<String>,
}

impl Injected {
    /// Whether nothing secret was injected.
    pub fn is_empty(&self) -> bool {
        self.values.iter().all(String::is_empty)
    }

    /// Scrub every header of `headers` that holds an injected value.
    pub fn scrub(&self, headers: &mut http::HeaderMap) {
        if self.is_empty() {
            return;
        }
        let mut changed = Vec::new();
        for (name, value) in headers.iter() {
            let text = String::from_utf8_lossy(value.as_bytes());
            if let Cow::Owned(clean) = self.scrub_text(&text) {
                changed.push((name.clone(), clean));
            }
        }
        for (name, clean) in changed {
            headers.remove(&name);
            if let Ok(value) = http::HeaderValue::from_str(&clean) {
                headers.insert(name, value);
            }
        }
    }

    /// `text` with every injected value taken out, borrowed when there was none.
    fn scrub_text<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for value in self.values.iter().filter(|v| !v.is_empty()) {
            for form in forms(value) {
                if !out.contains(form.as_str()) {
                    continue;
                }
                let mut clean = out.into_owned();
                if let Some(param) = &self.query_param {
                    for key in forms(param) {
                        clean = remove_pair(&clean, &format!("{key}={form}"));
                    }
                }
                out = Cow::Owned(clean.replace(form.as_str(), "[redacted]"));
            }
        }
        out
    }
}

/// A response body whose trailers are scrubbed of injected values, as its
/// headers were.
pub(crate) struct ScrubbedTrailers {
    pub inner: WasiBody,
    pub injected: Injected,
}

impl Body for ScrubbedTrailers {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let mut frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &mut frame {
            if let Some(trailers) = frame.trailers_mut() {
                self.injected.scrub(trailers);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The ways a value can appear in a header: as sent, form-encoded, and
/// percent-encoded.
fn forms(value: &str) -> Vec<String> {
    let encoded = super::auth::url_encode(value, false);
    let mut forms = vec![
        value.to_string(),
        super::auth::url_encode(value, true),
        lower_hex(&encoded),
        encoded,
    ];
    forms.sort();
    forms.dedup();
    forms
}

/// `%2F` written `%2f`, as some servers do.
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut hex_left = 0;
    for c in encoded.chars() {
        if c == '%' {
            hex_left = 2;
            out.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Remove every `pair` that is a whole query parameter of a URL in `text`,
/// with its separator.
fn remove_pair(text: &str, pair: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(pair) {
        let before = &rest[..at];
        let after = &rest[at + pair.len()..];
        let ends_value = after.is_empty() || after.starts_with(['&', '>', '"', ';', ',', ' ', '#']);
        match (before.chars().last(), ends_value) {
            (Some('&'), true) => {
                out.push_str(&before[..before.len() - 1]);
                rest = after;
            }
            (Some('?'), true) => {
                out.push_str(before);
                // `?key=v&more` keeps `?more`; `?key=v>` drops the lone `?`.
                rest = after.strip_prefix('&').unwrap_or_else(|| {
                    out.pop();
                    after
                });
            }
            _ => {
                out.push_str(&rest[..at + pair.len()]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_key(value: &str) -> Injected {
        Injected {
            query_param: Some("api_key".into()),
            values: vec![value.into()],
        }
    }

    #[tokio::test]
    async fn trailers_are_scrubbed_like_headers() {
        use http_body_util::{BodyExt, Full};
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-message", "bad token Bearer%20s3cr3t".parse().unwrap());
        trailers.insert("x-echo", "s3cr3t".parse().unwrap());
        trailers.insert("grpc-status", "16".parse().unwrap());
        let inner = Full::new(Bytes::from_static(b"s3cr3t in the body stays"))
            .with_trailers(async move { Some(Ok(trailers)) })
            .map_err(|never| match never {})
            .boxed_unsync();
        let body = ScrubbedTrailers {
            inner,
            injected: Injected {
                query_param: None,
                values: vec!["s3cr3t".into()],
            },
        };
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(trailers["grpc-message"], "bad token Bearer%20[redacted]");
        assert_eq!(trailers["x-echo"], "[redacted]");
        assert_eq!(trailers["grpc-status"], "16");
        assert_eq!(collected.to_bytes(), "s3cr3t in the body stays");
    }

    #[test]
    fn an_injected_query_key_is_removed_from_links() {
        let injected = query_key("s3cr3t");
        let cases = [
            (
                "<http://h/items?after=10&api_key=s3cr3t>; rel=\"next\"",
                "<http://h/items?after=10>; rel=\"next\"",
            ),
            (
                "<http://h/items?api_key=s3cr3t&after=10>; rel=\"next\"",
                "<http://h/items?after=10>; rel=\"next\"",
            ),
            (
                "<http://h/items?api_key=s3cr3t>; rel=\"next\"",
                "<http://h/items>; rel=\"next\"",
            ),
            (
                "http://h/items?a=1&api_key=s3cr3t&b=2",
                "http://h/items?a=1&b=2",
            ),
        ];
        for (dirty, clean) in cases {
            assert_eq!(injected.scrub_text(dirty), clean, "{dirty}");
        }
    }

    #[test]
    fn any_other_echo_of_a_secret_is_redacted_in_every_encoding() {
        let injected = Injected {
            query_param: None,
            values: vec!["tok en/+".into()],
        };
        for dirty in [
            "Bearer tok en/+",
            "x=tok%20en%2F%2B",
            "x=tok+en%2F%2B",
            "x=tok%20en%2f%2b",
        ] {
            let clean = injected.scrub_text(dirty);
            assert!(
                clean.contains("[redacted]") && !clean.contains("tok"),
                "{dirty} -> {clean}"
            );
        }
        assert!(matches!(
            injected.scrub_text("nothing here"),
            Cow::Borrowed(_)
        ));
    }
}
