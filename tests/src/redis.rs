//! The real Redis on 127.0.0.1:6379, driven with its own client, `redis-cli`.
//! Each test uses stream keys (and ACL users) of its own, removed on drop.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

/// Where the tests' Redis listens.
pub const ADDRESS: &str = "127.0.0.1:6379";

/// Run `redis-cli --json ARGS` and parse what it prints.
///
/// # Panics
///
/// When redis-cli is missing or Redis is unreachable, saying how to fix it.
pub fn cli(args: &[&str]) -> Value {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379", "--json"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("redis-cli cannot run ({e}): install it (Debian: apt-get install redis-tools)")
        });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("Could not connect"),
        "Redis is not reachable at {ADDRESS} ({}{}): these tests need a real server; install and \
         start it (Debian: apt-get install redis-server && service redis-server start)",
        text.trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("redis-cli {args:?}: {e}: {text}"))
}

/// A stream key of its own, deleted when dropped (with any ACL users made for it).
pub struct TestStream {
    /// The stream key.
    pub key: String,
    users: Vec<String>,
}

impl TestStream {
    /// A fresh key (nothing is created until something is added).
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let key = format!(
            "sluice-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        cli(&["DEL", &key]);
        Self {
            key,
            users: Vec::new(),
        }
    }

    /// XADD with redis-cli; the id the server assigned.
    pub fn add(&self, fields: &[(&str, &str)]) -> String {
        let mut args = vec!["XADD", self.key.as_str(), "*"];
        for (field, value) in fields {
            args.extend([*field, *value]);
        }
        cli(&args).as_str().expect("an entry id").to_string()
    }

    /// Every entry as `(id, {field: value})`, read with redis-cli XRANGE.
    pub fn entries(&self) -> Vec<(String, serde_json::Map<String, Value>)> {
        let reply = cli(&["XRANGE", &self.key, "-", "+"]);
        reply
            .as_array()
            .expect("XRANGE is an array")
            .iter()
            .map(|entry| {
                let id = entry[0].as_str().expect("id").to_string();
                let flat = entry[1].as_array().expect("fields");
                let fields = flat
                    .chunks(2)
                    .map(|pair| (pair[0].as_str().unwrap().to_string(), pair[1].clone()))
                    .collect();
                (id, fields)
            })
            .collect()
    }

    /// How many entries the group holds delivered but unacknowledged.
    pub fn pending(&self, group: &str) -> u64 {
        let summary = cli(&["XPENDING", &self.key, group]);
        summary[0].as_u64().expect("a pending count")
    }

    /// An ACL user allowed this key only, with `password`; deleted on drop.
    pub fn user(&mut self, password: &str) -> String {
        let name = format!("{}-user", self.key);
        let pattern = format!("~{}", self.key);
        let password = format!(">{password}");
        cli(&[
            "ACL", "SETUSER", &name, "reset", "on", &password, &pattern, "+@all",
        ]);
        self.users.push(name.clone());
        name
    }
}

impl Default for TestStream {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        cli(&["DEL", &self.key]);
        for user in &self.users {
            cli(&["ACL", "DELUSER", user]);
        }
    }
}
