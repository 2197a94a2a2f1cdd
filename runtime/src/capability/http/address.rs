//! Where a granted *name* may lead.
//!
//! Threat model: an origin grant names a host, but DNS decides where the
//! host connects, and whoever controls the name's DNS controls that answer
//! (including a different answer on every lookup: DNS rebinding). So a
//! granted name that resolves to a loopback, private, link-local (the cloud
//! metadata address among them), shared or unspecified address is denied
//! unless the grant opts in (`allow_private_addresses`). An address written
//! literally in a grant was granted on purpose and is not re-checked.
//!
//! The host connects to the very address it checked (an `http://` request
//! keeps its `Host` header; an `https://` handshake must still prove the
//! granted name), so a second, different answer cannot be slipped in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether `ip` is loopback, private, link-local, shared (CGNAT),
/// unspecified, multicast, or otherwise not a public unicast address.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private_v4(v4),
            None => is_private_v6(v6),
        },
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240 // reserved
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254 is a metadata address)
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0xdb8 // documentation
        || first == 0x64 && ip.segments()[1] == 0xff9b // NAT64 (may embed a private v4)
}

/// Resolve the host of `uri` when it is a name, and refuse private answers
/// unless `allow_private`. Returns the address to connect to for a name, or
/// `None` for a literal address.
///
/// # Errors
///
/// A message naming the host and the private address it resolved to, or the
/// failed lookup.
pub(crate) async fn resolve(
    uri: &http::Uri,
    allow_private: bool,
) -> Result<Option<SocketAddr>, String> {
    let host = uri
        .host()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.parse::<IpAddr>().is_ok() {
        return Ok(None);
    }
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("`{host}` does not resolve: {e}"))?
        .collect();
    if !allow_private {
        if let Some(private) = addresses.iter().find(|a| is_private(a.ip())) {
            return Err(format!(
                "`{host}` resolves to {}, a loopback, private or link-local address",
                private.ip()
            ));
        }
    }
    addresses
        .first()
        .copied()
        .map(Some)
        .ok_or_else(|| format!("`{host}` resolves to no address"))
}

/// Point a plain-`http` request at `address` (its `Host` header stays the
/// granted name), so the connection goes where the check looked.
pub(crate) fn pin<B>(request: &mut http::Request<B>, address: SocketAddr) {
    if request.uri().scheme_str() != Some("http") {
        return;
    }
    let mut parts = request.uri().clone().into_parts();
    if let Ok(authority) = address.to_string().parse() {
        parts.authority = Some(authority);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            if !request.headers().contains_key(http::header::HOST) {
                if let Some(host) = request.uri().authority().map(|a| a.to_string()) {
                    if let Ok(value) = http::HeaderValue::from_str(&host) {
                        request.headers_mut().insert(http::header::HOST, value);
                    }
                }
            }
            *request.uri_mut() = uri;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_private;

    #[test]
    fn private_ranges_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
