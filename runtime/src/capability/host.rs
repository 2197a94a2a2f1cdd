//! How hosts and ports are written and compared: one set of rules for http
//! origins, socket entries and sql hosts. An IPv6 address with a port goes
//! in brackets (`[::1]:5432`); a name compares in lower case without a
//! trailing dot; an IP address compares in one canonical text, an
//! IPv4-mapped IPv6 address as its IPv4 address — so two spellings of one
//! host are one host, to a grant and to a ceiling alike.

use std::net::IpAddr;

/// An IPv4-mapped IPv6 address as plain IPv4; any other address as it is.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A host as rules compare it: without IPv6 brackets or a trailing dot, a
/// name in lower case, an address in canonical text.
pub(crate) fn canonical_host(host: &str) -> String {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.');
    match host.parse::<IpAddr>() {
        Ok(ip) => canonical_ip(ip).to_string(),
        Err(_) => host.to_ascii_lowercase(),
    }
}

/// Split `host[:port]`, understanding `[v6]` and `[v6]:port`; an unbracketed
/// text with several colons is all host. `None` when the port is malformed.
pub(crate) fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(port.parse().ok()?))),
        _ => Some((text, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_however_written() {
        assert_eq!(canonical_host("[::ffff:10.0.0.1]"), "10.0.0.1");
        assert_eq!(canonical_host("0:0::1"), "::1");
        assert_eq!(canonical_host("DB.Internal."), "db.internal");
    }

    #[test]
    fn ports_split_off_only_where_they_can_be() {
        assert_eq!(split_host_port("db:5432"), Some(("db", Some(5432))));
        assert_eq!(split_host_port("db"), Some(("db", None)));
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", Some(80))));
        assert_eq!(split_host_port("[::1]"), Some(("::1", None)));
        assert_eq!(split_host_port("::1:80"), Some(("::1:80", None)));
        assert_eq!(split_host_port("db:99999"), None);
        assert_eq!(split_host_port("[::1]x"), None);
    }
}
