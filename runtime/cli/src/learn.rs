//! `sluice run --learn`: the grants a run needs, found by running it.
//!
//! Unsafe by design, so only on the command line (the server has no such
//! mode) and loud about it: each round runs the operation from the start
//! with the grants given plus everything learned so far; a host denial of a
//! TCP address, an HTTP origin or a private address adds that grant and
//! starts the next round. A denial that a grant alone cannot answer (a sql
//! or sftp grant, a secret, a mount) ends the search, saying what is needed.
//! Reads only, nothing acknowledged, nothing printed but the result.

use std::collections::BTreeSet;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use sluice::{Capability, Connector, Denial, Grants, Limits};

use crate::args::RunArgs;
use crate::grants::grants;
use crate::print_json;
use crate::run::operate_quietly;

/// Rounds before giving up: one denial is learned per round.
const MAX_ROUNDS: usize = 32;

/// What the rounds so far were denied and are now granted.
#[derive(Default)]
struct Learned {
    tcp: BTreeSet<String>,
    origins: BTreeSet<String>,
    /// `http://` origins a gRPC call needs in HTTP/2 (h2c).
    h2c: BTreeSet<String>,
    private_addresses: bool,
}

impl Learned {
    /// Take in what `denial` asks for; `false` when no grant learned here
    /// answers it, or it was granted already (no progress).
    fn take(&mut self, denial: &Denial) -> bool {
        match denial.capability {
            Capability::Tcp => denial
                .grant
                .strip_prefix("--allow-tcp ")
                .is_some_and(|entry| self.tcp.insert(entry.to_string())),
            Capability::Http if denial.grant.starts_with("`allow_private_addresses") => {
                !std::mem::replace(&mut self.private_addresses, true)
            }
            Capability::Http => match denial.grant.strip_prefix("--allow-http-h2c ") {
                // A gRPC call to an `http://` origin: granted, and spoken to in HTTP/2.
                Some(origin) => self.h2c.insert(origin.to_string()),
                None => denial
                    .grant
                    .strip_prefix("--allow-http ")
                    .is_some_and(|origin| self.origins.insert(origin.to_string())),
            },
            _ => false,
        }
    }

    /// `grants` with everything learned added.
    fn add_to(&self, mut grants: Grants) -> Result<Grants> {
        for entry in &self.tcp {
            grants = grants.allow_tcp(entry)?;
        }
        for origin in &self.origins {
            grants = grants.allow_http(origin)?;
        }
        for origin in &self.h2c {
            grants = grants.allow_http_h2c(origin)?;
        }
        grants.http.allow_private_addresses |= self.private_addresses;
        Ok(grants)
    }

    /// The grants file of what was learned (the grants given come on top).
    fn grants_file(&self) -> Value {
        let mut file = json!({});
        if !self.tcp.is_empty() {
            file["sockets"] = json!({ "tcp": self.tcp });
        }
        if !self.origins.is_empty() || !self.h2c.is_empty() || self.private_addresses {
            let origins: BTreeSet<&String> = self.origins.iter().chain(&self.h2c).collect();
            file["http"] = json!({ "origins": origins });
            if !self.h2c.is_empty() {
                file["http"]["h2c"] = json!(self.h2c);
            }
            if self.private_addresses {
                file["http"]["allow_private_addresses"] = json!(true);
            }
        }
        file
    }
}

/// Run `args`' operation until it needs nothing more, then print the grants
/// it needed beyond those given.
pub(crate) async fn learn(
    args: &RunArgs,
    connector: &Connector,
    config: &str,
    limits: &Limits,
) -> Result<()> {
    eprintln!(
        "sluice: --learn grants whatever the connector asks for (TCP addresses, HTTP origins) and runs it again: use it only on a connector you trust"
    );
    let mut learned = Learned::default();
    for round in 1..=MAX_ROUNDS {
        let grants = learned.add_to(grants(&args.grant)?)?;
        let outcome = async {
            let mut session = connector.open_with_limits(config, &grants, limits).await?;
            operate_quietly(&mut session, &args.operation).await?;
            session.close().await?;
            Ok::<_, anyhow::Error>(())
        }
        .await;
        let error = match outcome {
            Ok(()) => {
                eprintln!("sluice: the run succeeded in round {round}; the grants it needed beyond those given:");
                return print_json(&learned.grants_file());
            }
            Err(error) => error,
        };
        let denial = match error.downcast_ref::<sluice::Error>() {
            Some(sluice::Error::Denied(denial)) => denial.clone(),
            _ => {
                return Err(error.context(format!(
                    "the run failed for another reason than a denial, having learned {}",
                    learned.grants_file()
                )))
            }
        };
        if !learned.take(&denial) {
            bail!(
                "{denial}: --learn cannot grant this (it needs a grant with a name, a URL or a secret, or a mount); learned so far: {}",
                learned.grants_file()
            );
        }
        eprintln!("sluice: round {round}: granting `{}`", denial.grant);
    }
    Err(anyhow!(
        "still denied after {MAX_ROUNDS} rounds; learned so far: {}",
        learned.grants_file()
    ))
}
