//! The real NATS server with JetStream on 127.0.0.1:4222, checked with its
//! own Python client (nats-py, installed by `make pytools`). Each test uses a
//! stream (and subjects) of its own, deleted on drop.

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};

/// Where the tests' NATS listens.
pub const ADDRESS: &str = "127.0.0.1:4222";

/// What every script starts with: connect, JetStream context, the arguments.
const PRELUDE: &str = r#"
import asyncio, json, sys
import nats
ARGS = json.loads(sys.stdin.read())
async def connect():
    try:
        return await nats.connect("nats://127.0.0.1:4222", connect_timeout=5, max_reconnect_attempts=0)
    except Exception as e:
        print(json.dumps({"unreachable": str(e)}))
        sys.exit(3)
"#;

/// Run an async `main(nc, js)` in nats-py; what it returns, as JSON.
///
/// # Panics
///
/// When nats-py is missing or NATS is unreachable, saying how to fix it.
pub fn py(body: &str, args: &Value) -> Value {
    let script = format!(
        "{PRELUDE}\n{body}\nasync def run():\n    nc = await connect()\n    try:\n        print(json.dumps(await main(nc, nc.jetstream())))\n    finally:\n        await nc.close()\nasyncio.run(run())\n"
    );
    crate::broker_script(
        &script,
        args,
        "nats",
        &format!(
            "NATS is not reachable at {ADDRESS}: these tests need a real server with JetStream; \
             install and start it (Debian: apt-get install nats-server; nats-server -js)"
        ),
    )
}

/// A JetStream stream of its own, on subject `<name>.>`; deleted when dropped.
pub struct TestStream {
    /// The stream's name.
    pub name: String,
    /// A subject it stores.
    pub subject: String,
}

impl TestStream {
    /// Create it (file storage, limits retention).
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sluice_t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let subject = format!("{name}.in");
        py(
            "async def main(nc, js):\n    try:\n        await js.delete_stream(ARGS['name'])\n    except Exception:\n        pass\n    await js.add_stream(name=ARGS['name'], subjects=[ARGS['name'] + '.>'])\n    return True",
            &json!({ "name": name }),
        );
        Self { name, subject }
    }

    /// Publish JSON payloads with nats-py's JetStream publish; their sequences.
    pub fn publish(&self, payloads: &[Value]) -> Vec<u64> {
        let seqs = py(
            "async def main(nc, js):\n    out = []\n    for p in ARGS['payloads']:\n        ack = await js.publish(ARGS['subject'], json.dumps(p).encode())\n        out.append(ack.seq)\n    return out",
            &json!({ "subject": self.subject, "payloads": payloads }),
        );
        serde_json::from_value(seqs).unwrap()
    }

    /// Every stored message as `(seq, payload as JSON, headers)`, read by nats-py.
    pub fn messages(&self) -> Vec<(u64, Value, Value)> {
        let got = py(
            "async def main(nc, js):\n    info = await js.stream_info(ARGS['name'])\n    out = []\n    for seq in range(info.state.first_seq, info.state.last_seq + 1):\n        m = await js.get_msg(ARGS['name'], seq)\n        out.append([m.seq, json.loads(m.data), dict(m.headers or {})])\n    return out",
            &json!({ "name": self.name }),
        );
        serde_json::from_value(got).unwrap()
    }

    /// The durable consumer's acknowledgement state: `(ack pending, not yet delivered)`.
    pub fn consumer_state(&self, durable: &str) -> (u64, u64) {
        let got = py(
            "async def main(nc, js):\n    c = await js.consumer_info(ARGS['name'], ARGS['durable'])\n    return [c.num_ack_pending, c.num_pending]",
            &json!({ "name": self.name, "durable": durable }),
        );
        serde_json::from_value(got).unwrap()
    }
}

impl Default for TestStream {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        py(
            "async def main(nc, js):\n    await js.delete_stream(ARGS['name'])\n    return True",
            &json!({ "name": self.name }),
        );
    }
}
