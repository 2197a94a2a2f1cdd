//! The real Mosquitto on 127.0.0.1:1883, driven with its own clients,
//! `mosquitto_pub` and `mosquitto_sub`. Each test uses a topic and client ids
//! of its own; their persistent sessions and retained messages are cleared on drop.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the tests' broker listens.
pub const ADDRESS: &str = "127.0.0.1:1883";

fn run(tool: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(tool)
        .args(["-h", "127.0.0.1", "-p", "1883"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{tool} cannot run ({e}): install it (Debian: apt-get install mosquitto-clients)"
            )
        });
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("stdin written");
    }
    drop(input);
    let out = child.wait_with_output().expect("it ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Connection refused") && !stderr.contains("Unable to connect"),
        "Mosquitto is not reachable at {ADDRESS} ({stderr}): these tests need a real broker; \
         install and start it (Debian: apt-get install mosquitto && service mosquitto start)"
    );
    out
}

/// A topic and client ids of their own.
pub struct TestTopic {
    /// The topic.
    pub topic: String,
    /// The client id sluice consumes as.
    pub client_id: String,
    /// The client id `mosquitto_sub` keeps a persistent session as.
    pub sub_id: String,
}

impl TestTopic {
    /// Fresh names.
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("sluice-test-{}-{n}", std::process::id());
        Self {
            topic: format!("{base}/in"),
            client_id: base.clone(),
            sub_id: format!("{base}-sub"),
        }
    }

    /// Publish each payload at QoS 1 with `mosquitto_pub`.
    pub fn publish(&self, payloads: &[String]) {
        let lines = payloads.join("\n") + "\n";
        let out = run(
            "mosquitto_pub",
            &["-q", "1", "-t", &self.topic, "-l"],
            Some(&lines),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Give `mosquitto_sub` a persistent QoS 1 session on the topic, so it
    /// keeps what is published from now on.
    pub fn subscribe_later(&self) {
        let out = run(
            "mosquitto_sub",
            &["-i", &self.sub_id, "-c", "-q", "1", "-t", &self.topic, "-E"],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The `count` payloads the persistent `mosquitto_sub` session holds.
    pub fn received(&self, count: usize) -> Vec<String> {
        let count = count.to_string();
        let out = run(
            "mosquitto_sub",
            &[
                "-i",
                &self.sub_id,
                "-c",
                "-q",
                "1",
                "-t",
                &self.topic,
                "-C",
                &count,
                "-W",
                "10",
            ],
            None,
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// End a persistent session: connect with a clean session under its id.
    fn clear(&self, id: &str) {
        run("mosquitto_sub", &["-i", id, "-t", &self.topic, "-E"], None);
    }
}

impl Default for TestTopic {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestTopic {
    fn drop(&mut self) {
        self.clear(&self.client_id);
        self.clear(&self.sub_id);
        run("mosquitto_pub", &["-t", &self.topic, "-r", "-n"], None);
    }
}
