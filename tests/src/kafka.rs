//! A real Kafka-compatible broker for the kafka connector's tests: tansu
//! (crates.io; `make setup` installs it with in-memory storage), one
//! process per test on a free loopback port, killed when the test ends;
//! checked with Kafka's own Python client (kafka-python, `make pytools`).
//! Bytes cross to and from Python as base64, so comparisons are exact.

use serde_json::{json, Value};

use crate::Daemon;

/// The program the tests start (`make setup` installs it when missing).
pub const PROGRAM: &str = "tansu";

/// A tansu broker of this test's own.
pub struct Broker {
    daemon: Daemon,
}

impl Broker {
    /// Start one advertising the address it listens on.
    ///
    /// # Panics
    ///
    /// When tansu is not installed (saying how to install it) or does not listen.
    pub fn start() -> Self {
        Self::start_with(&[], None)
    }

    /// Start one with `extra` arguments, advertising `advertised`
    /// (`HOST:PORT`) instead of its own address when given.
    ///
    /// # Panics
    ///
    /// As [`Broker::start`].
    pub fn start_with(extra: &[&str], advertised: Option<&str>) -> Self {
        let installed = crate::installed(PROGRAM, "--help");
        assert!(
            installed,
            "the Kafka-compatible broker `tansu` is not installed: run `make setup` \
             (it runs `cargo install tansu --version 0.6.0 --no-default-features --features dynostore`, about 10 minutes)"
        );
        let advertised = advertised.map_or_else(
            || "tcp://127.0.0.1:{port}".to_string(),
            |a| format!("tcp://{a}"),
        );
        let mut args = vec![
            "broker",
            "--listener-url",
            "tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            &advertised,
            "--storage-engine",
            "memory://tansu/",
            "--silent",
        ];
        args.extend_from_slice(extra);
        Self {
            daemon: Daemon::start(PROGRAM, &args),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        &self.daemon.address
    }

    /// Run `main(bootstrap)` in kafka-python; what it returns, as JSON
    /// (`b64`/`unb64` convert bytes).
    ///
    /// # Panics
    ///
    /// When kafka-python is missing or the script fails.
    pub fn py(&self, body: &str, args: &Value) -> Value {
        let script = format!(
            "import base64, json, sys, time\nimport kafka\nARGS = json.loads(sys.stdin.read())\n\
             def b64(b):\n    return None if b is None else base64.b64encode(b).decode()\n\
             def unb64(s):\n    return None if s is None else base64.b64decode(s)\n\
             {body}\nprint(json.dumps(main({:?})))\n",
            self.address()
        );
        crate::broker_script(
            &script,
            args,
            "kafka",
            &format!("the broker at {} is not reachable", self.address()),
        )
    }

    /// Create `topic` with `partitions` partitions (kafka-python's admin client).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        self.py(
            "from kafka.admin import KafkaAdminClient, NewTopic\n\
             def main(bootstrap):\n    admin = KafkaAdminClient(bootstrap_servers=bootstrap)\n    \
             admin.create_topics([NewTopic(ARGS['topic'], ARGS['partitions'], 1)])\n    admin.close()\n    return True",
            &json!({ "topic": topic, "partitions": partitions }),
        );
    }

    /// Produce with kafka-python (acks=all, its default partitioner for
    /// records without a partition): each record `{key, value, headers:
    /// [[name, value]], partition}` with bytes as base64; each record's
    /// `[partition, offset]`.
    ///
    /// Each record is its own batch (sent once the one before is
    /// acknowledged): tansu 0.6.0 serves a Fetch from the batches that
    /// *start* at or after the offset asked for, so a fetch from inside a
    /// batch skips the rest of it, and it answers ListOffsets `latest` with
    /// the last batch's first offset + 1. Kafka returns the batch holding the
    /// offset (the connector's unit tests cover reading from inside one).
    pub fn produce(&self, topic: &str, records: &[Value]) -> Vec<(i32, i64)> {
        let placed = self.py(
            "def main(bootstrap):\n    p = kafka.KafkaProducer(bootstrap_servers=bootstrap, acks='all', linger_ms=0)\n    out = []\n    \
             for r in ARGS['records']:\n        m = p.send(ARGS['topic'], key=unb64(r.get('key')), value=unb64(r.get('value')), \
             headers=[(h[0], unb64(h[1])) for h in r.get('headers', [])], partition=r.get('partition')).get(timeout=10)\n        \
             out.append([m.partition, m.offset])\n    p.close()\n    return out",
            &json!({ "topic": topic, "records": records }),
        );
        serde_json::from_value(placed).expect("partition and offset pairs")
    }

    /// Every record of `topic` as kafka-python reads it: `{partition,
    /// offset, key, value, headers: [[name, value]], timestamp}`, bytes as
    /// base64, in partition then offset order.
    pub fn consume_all(&self, topic: &str) -> Vec<Value> {
        let records = self.py(
            "def main(bootstrap):\n    c = kafka.KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset='earliest', enable_auto_commit=False)\n    \
             parts = [kafka.TopicPartition(ARGS['topic'], p) for p in sorted(c.partitions_for_topic(ARGS['topic']))]\n    \
             c.assign(parts)\n    c.seek_to_beginning()\n    ends = c.end_offsets(parts)\n    out = []\n    deadline = time.time() + 20\n    \
             while any(c.position(tp) < ends[tp] for tp in parts) and time.time() < deadline:\n        \
             for tp, msgs in c.poll(timeout_ms=500).items():\n            \
             for m in msgs:\n                out.append({'partition': m.partition, 'offset': m.offset, 'key': b64(m.key), 'value': b64(m.value), \
             'headers': [[k, b64(v)] for k, v in m.headers], 'timestamp': m.timestamp})\n    \
             c.close()\n    out.sort(key=lambda r: (r['partition'], r['offset']))\n    return out",
            &json!({ "topic": topic }),
        );
        serde_json::from_value(records).expect("records")
    }

    /// The offsets `group` has committed for `topic`, per partition (kafka-python).
    pub fn committed(&self, group: &str, topic: &str) -> Value {
        self.py(
            "def main(bootstrap):\n    c = kafka.KafkaConsumer(bootstrap_servers=bootstrap, group_id=ARGS['group'], enable_auto_commit=False)\n    \
             out = {str(p): c.committed(kafka.TopicPartition(ARGS['topic'], p)) for p in sorted(c.partitions_for_topic(ARGS['topic']))}\n    \
             c.close()\n    return out",
            &json!({ "group": group, "topic": topic }),
        )
    }
}

/// Standard base64.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
