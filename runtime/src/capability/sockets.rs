//! Sockets: a TCP (and, when asked, UDP) allow-list of `host:port` and `cidr:port`.
//!
//! Threat model: the guest picks every address it binds, connects or sends
//! to. An empty list denies all. Entries are resolved to IP networks once, when
//! the grant is parsed; checks only match. IPv4-mapped IPv6 addresses
//! (`::ffff:a.b.c.d`) are canonicalised to IPv4 on both sides, so they can
//! neither dodge a rule nor need one of their own. The implicit bind to
//! `0.0.0.0:0` (or `[::]:0`) that a TCP connect performs is allowed; any real
//! bind, and every listen, is denied. DNS lookup is off unless granted.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::WasiCtxBuilder;

use super::denial::{Capability, Denial, Denials};
use super::host::canonical_ip;
use crate::error::Error;

/// One allow-list entry: an IP network and its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AddrRule {
    net: IpNet,
    ports: Ports,
}

impl AddrRule {
    fn matches(&self, addr: &SocketAddr) -> bool {
        self.net.contains(&addr.ip()) && self.ports.contains(addr.port())
    }
}

/// The ports an entry allows: one, an inclusive range `LOW-HIGH` (an FTP
/// server's passive data ports, say), or any (`*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ports {
    low: u16,
    high: u16,
}

impl Ports {
    const ANY: Ports = Ports {
        low: 0,
        high: u16::MAX,
    };

    fn contains(self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }

    fn within(self, other: Ports) -> bool {
        other.low <= self.low && self.high <= other.high
    }
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.low, self.high) {
            _ if *self == Ports::ANY => f.write_str("*"),
            (low, high) if low == high => write!(f, "{low}"),
            (low, high) => write!(f, "{low}-{high}"),
        }
    }
}

/// The socket allow-lists of one session.
#[derive(Debug, Clone, Default)]
pub struct SocketsPolicy {
    tcp: Vec<AddrRule>,
    udp: Vec<AddrRule>,
    dns: bool,
}

/// The sockets a grant declares: `{"tcp": [...], "udp": [...], "dns": false}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct SocketsConfig {
    /// TCP connect targets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<SocketEntry>,
    /// UDP send and receive peers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub udp: Vec<SocketEntry>,
    /// Whether DNS lookups are allowed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dns: bool,
    /// Secrets the connector presents itself over these sockets (a broker
    /// login), by name: it reads them through the `secrets` interface. The
    /// values are the instance's `secrets` (CLI `--socket-secret`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

impl SocketsConfig {
    /// Whether it declares nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(addr.ip()), addr.port())
}

/// How a socket entry is written, for errors.
const ENTRY_FORMS: &str = "write `HOST:PORT` or `CIDR:PORT` (`LOW-HIGH` for a range of ports, `*` for any), e.g. `127.0.0.1:5432`, `10.0.0.0/8:443`, `[::1]:80`, `db.internal:5432`, `127.0.0.1:30000-30009`";

/// One socket allow-list entry as written — `HOST:PORT`, `CIDR:PORT` or
/// `[v6]:PORT`; `LOW-HIGH` for a range of ports, `*` for any — checked for
/// form when parsed. A host name is resolved only when a session's policy
/// is built from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketEntry {
    host: EntryHost,
    ports: Ports,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum EntryHost {
    /// An address or network, canonical (IPv4-mapped IPv6 as IPv4, host bits cleared).
    Net(IpNet),
    /// A host name, lower case.
    Name(String),
}

impl SocketEntry {
    /// Parse one entry.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] saying what to write instead.
    pub fn parse(entry: &str) -> Result<Self, Error> {
        let bad = |why: &str| {
            Error::InvalidGrant(format!("socket entry `{entry}`: {why}; {ENTRY_FORMS}"))
        };
        let (host, port_text) = if let Some(rest) = entry.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            (
                host,
                after.strip_prefix(':').ok_or_else(|| bad("missing port"))?,
            )
        } else {
            let (host, port) = entry.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
            if host.contains(':') && !host.contains('/') {
                return Err(bad("an IPv6 address goes in brackets"));
            }
            (host, port)
        };
        let port = |text: &str| match text.parse::<u16>() {
            Ok(0) => Err(bad("port 0")),
            Ok(port) => Ok(port),
            Err(_) => Err(bad(&format!("bad port `{text}`"))),
        };
        let ports = match port_text {
            "*" => Ports::ANY,
            text => match text.split_once('-') {
                Some((low, high)) => {
                    let (low, high) = (port(low)?, port(high)?);
                    if low > high {
                        return Err(bad(&format!("the port range `{text}` runs backwards")));
                    }
                    Ports { low, high }
                }
                None => {
                    let port = port(text)?;
                    Ports {
                        low: port,
                        high: port,
                    }
                }
            },
        };
        let host = if host.contains('/') {
            let net: IpNet = host
                .parse()
                .map_err(|_| bad(&format!("bad CIDR `{host}`")))?;
            EntryHost::Net(canonical_net(net).ok_or_else(|| bad("bad CIDR"))?)
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            EntryHost::Net(IpNet::from(canonical_ip(ip)))
        } else if host.is_empty() || host.contains(['/', '@', ' ', '*', '[', ']']) {
            return Err(bad("empty or malformed host"));
        } else {
            EntryHost::Name(host.trim_end_matches('.').to_ascii_lowercase())
        };
        Ok(Self { host, ports })
    }

    /// Whether every address and port this entry allows, `other` allows too:
    /// a network inside `other`'s network (however either is written), or
    /// the same host name; ports among `other`'s. A name is
    /// never within a network: it is resolved later, and may resolve
    /// anywhere. How a tenant's ceiling bounds its instances' socket grants.
    pub fn within(&self, other: &SocketEntry) -> bool {
        let port = self.ports.within(other.ports);
        let host = match (&self.host, &other.host) {
            (EntryHost::Net(inner), EntryHost::Net(outer)) => outer.contains(inner),
            (EntryHost::Name(a), EntryHost::Name(b)) => a == b,
            _ => false,
        };
        port && host
    }

    /// The address rules this entry stands for, resolving a host name now.
    fn rules(&self) -> Result<Vec<AddrRule>, Error> {
        let name = match &self.host {
            EntryHost::Net(net) => {
                return Ok(vec![AddrRule {
                    net: *net,
                    ports: self.ports,
                }])
            }
            EntryHost::Name(name) => name,
        };
        let bad = |why: String| {
            Error::InvalidGrant(format!("socket entry `{self}`: {why}; {ENTRY_FORMS}"))
        };
        let resolved: Vec<AddrRule> = (name.as_str(), self.ports.low)
            .to_socket_addrs()
            .map_err(|e| bad(format!("cannot resolve `{name}`: {e}")))?
            .map(|addr| AddrRule {
                net: IpNet::from(canonical_ip(addr.ip())),
                ports: self.ports,
            })
            .collect();
        if resolved.is_empty() {
            return Err(bad(format!("`{name}` resolves to no address")));
        }
        Ok(resolved)
    }
}

/// A network in canonical form: an IPv4-mapped IPv6 network as IPv4, host bits cleared.
fn canonical_net(net: IpNet) -> Option<IpNet> {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96)
                .ok()
                .map(|n| n.trunc()),
            None => Some(net.trunc()),
        },
        other => Some(other.trunc()),
    }
}

impl fmt::Display for SocketEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            EntryHost::Net(net) if net.prefix_len() == net.max_prefix_len() => match net.addr() {
                IpAddr::V4(v4) => write!(f, "{v4}")?,
                IpAddr::V6(v6) => write!(f, "[{v6}]")?,
            },
            EntryHost::Net(net) => write!(f, "{net}")?,
            EntryHost::Name(name) => f.write_str(name)?,
        }
        write!(f, ":{}", self.ports)
    }
}

/// An address as the CLI flag expects it (`[v6]:port` for IPv6).
fn hint_addr(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

impl SocketsPolicy {
    /// The policy a declared config opens: host names resolved now.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for a name that does not resolve.
    pub fn from_config(config: &SocketsConfig) -> Result<Self, Error> {
        let mut policy = Self {
            dns: config.dns,
            ..Self::default()
        };
        for entry in &config.tcp {
            policy.tcp.extend(entry.rules()?);
        }
        for entry in &config.udp {
            policy.udp.extend(entry.rules()?);
        }
        Ok(policy)
    }

    /// Allow TCP connections to `HOST:PORT` / `CIDR:PORT`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for a malformed or unresolvable entry.
    pub fn allow_tcp(&mut self, entry: &str) -> Result<(), Error> {
        self.tcp.extend(SocketEntry::parse(entry)?.rules()?);
        Ok(())
    }

    /// Allow UDP traffic to `HOST:PORT` / `CIDR:PORT`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGrant`] for a malformed or unresolvable entry.
    pub fn allow_udp(&mut self, entry: &str) -> Result<(), Error> {
        self.udp.extend(SocketEntry::parse(entry)?.rules()?);
        Ok(())
    }

    /// Allow or forbid DNS lookups.
    pub fn allow_dns(&mut self, allow: bool) {
        self.dns = allow;
    }

    /// Decide one socket operation.
    ///
    /// # Errors
    ///
    /// The [`Denial`] naming the operation and the grant that would allow it.
    pub fn check(&self, addr: SocketAddr, usage: SocketAddrUse) -> Result<(), Denial> {
        let addr = canonical(addr);
        let implicit_bind = addr.ip().is_unspecified() && addr.port() == 0;
        let (capability, verb, allowed, flag) = match usage {
            SocketAddrUse::TcpConnect => (
                Capability::Tcp,
                "connect to",
                self.tcp.iter().any(|r| r.matches(&addr)),
                "--allow-tcp",
            ),
            SocketAddrUse::TcpBind => (
                Capability::Tcp,
                "bind",
                implicit_bind,
                "(no grant: bind is not supported)",
            ),
            SocketAddrUse::TcpListen => (
                Capability::Tcp,
                "listen on",
                false,
                "(no grant: listen is not supported)",
            ),
            SocketAddrUse::TcpAccept => (
                Capability::Tcp,
                "accept from",
                false,
                "(no grant: accept is not supported)",
            ),
            SocketAddrUse::UdpBind => (
                Capability::Udp,
                "bind",
                implicit_bind && !self.udp.is_empty(),
                "sockets.udp",
            ),
            SocketAddrUse::UdpSend => (
                Capability::Udp,
                "send to",
                self.udp.iter().any(|r| r.matches(&addr)),
                "sockets.udp",
            ),
            SocketAddrUse::UdpReceive => (
                Capability::Udp,
                "receive from",
                self.udp.iter().any(|r| r.matches(&addr)),
                "sockets.udp",
            ),
        };
        if allowed {
            return Ok(());
        }
        let target = hint_addr(&addr);
        let (grant, api_grant) = if flag.starts_with('(') {
            (flag.to_string(), flag.to_string())
        } else {
            let field = if capability == Capability::Tcp {
                "tcp"
            } else {
                "udp"
            };
            (
                format!("{flag} {target}"),
                format!("`{target}` to the instance's `grants.sockets.{field}`"),
            )
        };
        Err(Denial {
            capability,
            attempted: format!("{verb} {target}"),
            grant,
            api_grant,
            connector_error: None,
        })
    }

    /// Install the checks into a WASI context, recording denials.
    pub(crate) fn apply(self: &Arc<Self>, wasi: &mut WasiCtxBuilder, denials: &Denials) {
        // Sockets are always available so that every attempt reaches the
        // address check below, which decides and records the denial.
        wasi.allow_tcp(true);
        wasi.allow_udp(true);
        wasi.allow_ip_name_lookup(self.dns);
        let policy = Arc::clone(self);
        let denials = denials.clone();
        wasi.socket_addr_check(move |addr, usage| {
            let verdict = policy.check(addr, usage);
            let allowed = match verdict {
                Ok(()) => true,
                Err(denial) => {
                    denials.record(denial);
                    false
                }
            };
            Box::pin(std::future::ready(allowed))
                as Pin<Box<dyn Future<Output = bool> + Send + Sync>>
        });
    }

    /// Whether nothing at all is granted.
    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.udp.is_empty() && !self.dns
    }
}

crate::text_form!(
    SocketEntry,
    "SocketEntry",
    "`HOST:PORT` or `CIDR:PORT` (`LOW-HIGH` for a range of ports, `*` for any), e.g. `127.0.0.1:5432`, `10.0.0.0/8:443`, `[::1]:80`, `127.0.0.1:30000-30009`."
);

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(entries: &[&str]) -> SocketsPolicy {
        let mut p = SocketsPolicy::default();
        for e in entries {
            p.allow_tcp(e).unwrap();
        }
        p
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn tcp_connect_is_allowed_only_to_listed_addresses() {
        let p = tcp(&["127.0.0.1:5432", "10.0.0.0/8:443"]);
        assert!(p
            .check(addr("127.0.0.1:5432"), SocketAddrUse::TcpConnect)
            .is_ok());
        assert!(p
            .check(addr("10.1.2.3:443"), SocketAddrUse::TcpConnect)
            .is_ok());
        let denial = p
            .check(addr("127.0.0.1:5433"), SocketAddrUse::TcpConnect)
            .unwrap_err();
        assert_eq!(denial.attempted, "connect to 127.0.0.1:5433");
        assert_eq!(denial.grant, "--allow-tcp 127.0.0.1:5433");
        assert!(p
            .check(addr("11.0.0.1:443"), SocketAddrUse::TcpConnect)
            .is_err());
    }

    #[test]
    fn ipv4_mapped_ipv6_is_treated_as_ipv4() {
        let p = tcp(&["127.0.0.1:80"]);
        assert!(p
            .check(addr("[::ffff:127.0.0.1]:80"), SocketAddrUse::TcpConnect)
            .is_ok());
        assert!(p
            .check(addr("[::ffff:127.0.0.2]:80"), SocketAddrUse::TcpConnect)
            .is_err());
        let mapped = tcp(&["[::ffff:10.0.0.1]:80"]);
        assert!(mapped
            .check(addr("10.0.0.1:80"), SocketAddrUse::TcpConnect)
            .is_ok());
    }

    #[test]
    fn implicit_bind_is_allowed_but_real_bind_and_listen_are_not() {
        let p = tcp(&["127.0.0.1:80"]);
        assert!(p.check(addr("0.0.0.0:0"), SocketAddrUse::TcpBind).is_ok());
        assert!(p.check(addr("[::]:0"), SocketAddrUse::TcpBind).is_ok());
        assert!(p
            .check(addr("127.0.0.1:8080"), SocketAddrUse::TcpBind)
            .is_err());
        assert!(p
            .check(addr("0.0.0.0:8080"), SocketAddrUse::TcpBind)
            .is_err());
        assert!(p
            .check(addr("0.0.0.0:0"), SocketAddrUse::TcpListen)
            .is_err());
    }

    #[test]
    fn any_port_wildcard_and_udp_need_their_own_grants() {
        let p = tcp(&["192.168.0.0/16:*"]);
        assert!(p
            .check(addr("192.168.9.9:1"), SocketAddrUse::TcpConnect)
            .is_ok());
        assert!(p
            .check(addr("192.168.9.9:53"), SocketAddrUse::UdpSend)
            .is_err());
        assert!(p.check(addr("0.0.0.0:0"), SocketAddrUse::UdpBind).is_err());
    }

    #[test]
    fn a_port_range_allows_its_ports_and_no_other() {
        let p = tcp(&["127.0.0.1:30000-30003"]);
        for port in 30000..=30003 {
            assert!(p
                .check(
                    addr(&format!("127.0.0.1:{port}")),
                    SocketAddrUse::TcpConnect
                )
                .is_ok());
        }
        for port in [29999, 30004] {
            let denial = p
                .check(
                    addr(&format!("127.0.0.1:{port}")),
                    SocketAddrUse::TcpConnect,
                )
                .unwrap_err();
            assert_eq!(denial.grant, format!("--allow-tcp 127.0.0.1:{port}"));
        }
        assert_eq!(
            SocketEntry::parse("127.0.0.1:30000-30003")
                .unwrap()
                .to_string(),
            "127.0.0.1:30000-30003"
        );
        assert_eq!(
            SocketEntry::parse("10.0.0.0/8:*").unwrap().to_string(),
            "10.0.0.0/8:*"
        );
    }

    #[test]
    fn malformed_entries_say_what_to_write() {
        for bad in [
            "127.0.0.1",
            "127.0.0.1:http",
            "10.0.0.0/33:80",
            ":80",
            "[::1:80",
            "127.0.0.1:30009-30000",
            "127.0.0.1:0-10",
            "127.0.0.1:1-",
        ] {
            let err = SocketsPolicy::default()
                .allow_tcp(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains("HOST:PORT"), "{bad}: {err}");
        }
    }
}
