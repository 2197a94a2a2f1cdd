//! `HostPattern`: the one allow-list matcher for HTTP origins.
//!
//! Threat model: a guest controls the URL of every request it makes. An empty
//! allow-list denies everything; a pattern matches exactly one scheme, one
//! port and one host, or every subdomain of a suffix (`*.example.com` matches
//! `api.example.com` but neither `example.com` nor `badexample.com`). IP
//! literals are compared in one canonical form (`[::ffff:10.0.0.1]` is
//! `10.0.0.1`), so two spellings of one address are one host.

use std::fmt;
use std::net::IpAddr;

use crate::capability::host::{canonical_host, split_host_port};

use crate::error::Error;

/// One allowed origin: `scheme://host[:port]`, host optionally `*.suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: String,
    host: HostMatch,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Exact(String),
    /// Any host ending in `.suffix` (stored with the leading dot).
    Subdomains(String),
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Where a request goes, `scheme://host:port`, its host in canonical form:
/// made once per request, then matched against every pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    scheme: String,
    /// Canonical (see `capability::host`); empty when the URI has none.
    pub(crate) host: String,
    port: u16,
}

impl Target {
    /// The target `scheme://host:port`.
    pub(crate) fn new(scheme: &str, host: &str, port: u16) -> Self {
        Self {
            scheme: scheme.to_ascii_lowercase(),
            host: canonical_host(host),
            port,
        }
    }

    /// The target of a request URI: `https` and its default port when unsaid.
    pub(crate) fn of(uri: &http::Uri) -> Self {
        let scheme = uri.scheme_str().unwrap_or("https");
        let port = uri
            .port_u16()
            .unwrap_or_else(|| default_port(scheme).unwrap_or(443));
        Self::new(scheme, uri.host().unwrap_or(""), port)
    }
}

impl HostPattern {
    /// Parse `scheme://host[:port]`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] saying what to write instead, for a missing or
    /// unknown scheme, a path, query or user info, an empty host, a wildcard
    /// anywhere but the first label, or a bad port.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |why: &str| {
            Error::InvalidGrant(format!(
                "http origin `{text}`: {why}; write `scheme://host[:port]`, e.g. `https://api.example.com` or `https://*.example.com:8443`"
            ))
        };
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("missing scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default = default_port(&scheme).ok_or_else(|| bad("scheme must be http or https"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad("an origin has no path, query, fragment or user info"));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| bad("bad port"))?;
        let port = port.unwrap_or(default);
        let host = canonical_host(host);
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let host = match host.strip_prefix("*.") {
            Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => {
                HostMatch::Subdomains(format!(".{suffix}"))
            }
            Some(_) => return Err(bad("`*.` must be followed by a domain")),
            None if host.contains('*') => {
                return Err(bad(
                    "a wildcard may only be the whole first label (`*.example.com`)",
                ))
            }
            None => HostMatch::Exact(host),
        };
        Ok(Self { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` is allowed by this pattern.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.admits(&Target::new(scheme, host, port))
    }

    /// Whether this pattern's scheme is `scheme`.
    pub fn matches_scheme(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// Whether a request to `target` is allowed by this pattern.
    pub(crate) fn admits(&self, target: &Target) -> bool {
        if !self.scheme.eq_ignore_ascii_case(&target.scheme) || self.port != target.port {
            return false;
        }
        let host = target.host.as_str();
        match &self.host {
            HostMatch::Exact(exact) => exact == host,
            // A name's subdomains: never an IP address that happens to end alike.
            HostMatch::Subdomains(suffix) => {
                host.parse::<IpAddr>().is_err()
                    && host.len() > suffix.len()
                    && host.ends_with(suffix.as_str())
            }
        }
    }

    /// Whether every request this pattern allows, `other` allows too: the
    /// same scheme and port, and the same host, or a host (or subdomain
    /// pattern) beneath `other`'s `*.suffix`. How a tenant's ceiling bounds
    /// the origins its instances may be granted.
    pub fn within(&self, other: &HostPattern) -> bool {
        if self.scheme != other.scheme || self.port != other.port {
            return false;
        }
        match (&self.host, &other.host) {
            (HostMatch::Exact(a), HostMatch::Exact(b)) => a == b,
            (HostMatch::Exact(host), HostMatch::Subdomains(suffix)) => {
                host.parse::<IpAddr>().is_err()
                    && host.len() > suffix.len()
                    && host.ends_with(suffix.as_str())
            }
            (HostMatch::Subdomains(inner), HostMatch::Subdomains(outer)) => {
                inner.ends_with(outer.as_str())
            }
            (HostMatch::Subdomains(_), HostMatch::Exact(_)) => false,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.host {
            HostMatch::Exact(h) if h.contains(':') => format!("[{h}]"),
            HostMatch::Exact(h) => h.clone(),
            HostMatch::Subdomains(s) => format!("*{s}"),
        };
        if default_port(&self.scheme) == Some(self.port) {
            write!(f, "{}://{host}", self.scheme)
        } else {
            write!(f, "{}://{host}:{}", self.scheme, self.port)
        }
    }
}

crate::text_form!(
    HostPattern,
    "Origin",
    "An HTTP origin, `scheme://host[:port]`; the host may be `*.suffix`."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_origin_matches_only_its_scheme_host_and_port() {
        let p = HostPattern::parse("https://API.example.com").unwrap();
        assert!(p.matches("https", "api.example.com", 443));
        assert!(!p.matches("http", "api.example.com", 443));
        assert!(!p.matches("https", "api.example.com", 8443));
        assert!(!p.matches("https", "evil.com", 443));
    }

    #[test]
    fn wildcard_matches_subdomains_but_not_the_apex_or_lookalikes() {
        let p = HostPattern::parse("http://*.example.com:8080").unwrap();
        assert!(p.matches("http", "a.example.com", 8080));
        assert!(p.matches("http", "a.b.example.com", 8080));
        assert!(!p.matches("http", "example.com", 8080));
        assert!(!p.matches("http", "badexample.com", 8080));
        assert!(!p.matches("http", "a.example.com", 80));
    }

    #[test]
    fn a_wildcard_never_matches_an_ip_address() {
        let p = HostPattern::parse("http://*.0.0.1").unwrap();
        assert!(!p.matches("http", "127.0.0.1", 80));
        assert!(!HostPattern::parse("http://127.0.0.1").unwrap().within(&p));
        assert!(
            p.matches("http", "a.0.0.1", 80),
            "a name is still a subdomain"
        );
    }

    #[test]
    fn malformed_origins_are_rejected_with_advice() {
        for bad in [
            "api.example.com",
            "ftp://x",
            "https://x/path",
            "https://a.*.com",
            "https://x:99999",
            "https://",
        ] {
            let err = HostPattern::parse(bad).unwrap_err().to_string();
            assert!(err.contains("scheme://host[:port]"), "{bad}: {err}");
        }
    }

    #[test]
    fn ip_literals_are_one_host_however_written() {
        let p = HostPattern::parse("http://[::ffff:10.0.0.1]:8080").unwrap();
        assert_eq!(p.to_string(), "http://10.0.0.1:8080");
        assert!(p.matches("http", "10.0.0.1", 8080));
        assert!(p.matches("http", "[::ffff:10.0.0.1]", 8080));
        let v6 = HostPattern::parse("http://[0:0::1]").unwrap();
        assert!(v6.matches("http", "::1", 80));
        assert!(!v6.matches("http", "127.0.0.1", 80));
    }

    #[test]
    fn within_admits_the_same_origin_and_subdomains_of_a_wildcard_only() {
        let p = |t: &str| HostPattern::parse(t).unwrap();
        let wild = p("https://*.example.com");
        assert!(p("https://api.example.com").within(&p("https://API.example.com/")));
        assert!(p("https://api.example.com").within(&wild));
        assert!(p("https://a.b.example.com").within(&wild));
        assert!(p("https://*.api.example.com").within(&wild));
        assert!(wild.within(&wild));
        assert!(!p("https://example.com").within(&wild));
        assert!(!p("https://badexample.com").within(&wild));
        assert!(!wild.within(&p("https://api.example.com")));
        assert!(!p("http://api.example.com").within(&wild), "scheme");
        assert!(!p("https://api.example.com:8443").within(&wild), "port");
        assert!(
            p("https://api.example.com:443").within(&wild),
            "default port"
        );
        assert!(p("http://[::ffff:127.0.0.1]").within(&p("http://127.0.0.1:80")));
    }

    #[test]
    fn serde_reads_and_writes_the_text_form() {
        let p: HostPattern = serde_json::from_str(r#""https://*.X.org:8443""#).unwrap();
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#""https://*.x.org:8443""#
        );
        let err = serde_json::from_str::<HostPattern>(r#""x.org""#).unwrap_err();
        assert!(err.to_string().contains("missing scheme"), "{err}");
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "https://api.example.com",
            "http://*.x.org:8080",
            "http://127.0.0.1:3000",
            "http://[::1]:3000",
        ] {
            assert_eq!(HostPattern::parse(text).unwrap().to_string(), text);
        }
    }
}
