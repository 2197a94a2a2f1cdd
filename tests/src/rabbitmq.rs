//! The real RabbitMQ on 127.0.0.1:5672 (guest/guest), checked with the
//! client library most of its users reach for, pika (installed by `make
//! pytools`). Each test uses a queue of its own, deleted on drop.

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};

/// Where the tests' RabbitMQ listens.
pub const ADDRESS: &str = "127.0.0.1:5672";

const PRELUDE: &str = r#"
import json, sys
import pika
ARGS = json.loads(sys.stdin.read())
try:
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672, credentials=pika.PlainCredentials("guest", "guest")))
except Exception as e:
    print(json.dumps({"unreachable": str(e)}))
    sys.exit(3)
ch = conn.channel()
"#;

/// Run `body` with pika (`ch` is an open channel, `ARGS` the arguments); it
/// sets `OUT`, printed as JSON.
///
/// # Panics
///
/// When pika is missing or RabbitMQ is unreachable, saying how to fix it.
pub fn py(body: &str, args: &Value) -> Value {
    let script = format!("{PRELUDE}\nOUT = None\n{body}\nconn.close()\nprint(json.dumps(OUT))\n");
    crate::broker_script(
        &script,
        args,
        "pika",
        &format!(
            "RabbitMQ is not reachable at {ADDRESS}: these tests need a real broker with the \
             guest/guest login; install and start it (Debian: apt-get install rabbitmq-server && \
             service rabbitmq-server start)"
        ),
    )
}

/// A durable queue of its own; deleted when dropped.
pub struct TestQueue {
    /// Its name.
    pub name: String,
}

impl TestQueue {
    /// Declare it.
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sluice-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        py(
            "ch.queue_delete(ARGS['q'])\nch.queue_declare(ARGS['q'], durable=True)",
            &json!({ "q": name }),
        );
        Self { name }
    }

    /// Publish JSON payloads with pika, each with a header and a message id.
    pub fn publish(&self, payloads: &[Value]) {
        py(
            "ch.confirm_delivery()\nfor i, p in enumerate(ARGS['payloads']):\n    ch.basic_publish('', ARGS['q'], json.dumps(p).encode(), pika.BasicProperties(content_type='application/json', delivery_mode=2, message_id='m-%d' % i, headers={'source': 'pika', 'n': i}))",
            &json!({ "q": self.name, "payloads": payloads }),
        );
    }

    /// Take every message with pika (acking each): `(body as JSON, properties)`.
    pub fn take_all(&self) -> Vec<(Value, Value)> {
        py(
            "OUT = []\nwhile True:\n    m, props, body = ch.basic_get(ARGS['q'], auto_ack=False)\n    if m is None:\n        break\n    OUT.append([json.loads(body), {'content_type': props.content_type, 'headers': props.headers, 'message_id': props.message_id, 'delivery_mode': props.delivery_mode}])\n    ch.basic_ack(m.delivery_tag)",
            &json!({ "q": self.name }),
        )
        .as_array()
        .expect("a list")
        .iter()
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect()
    }

    /// `(ready, consumers)` of the queue.
    pub fn counts(&self) -> (u64, u64) {
        let out = py(
            "r = ch.queue_declare(ARGS['q'], passive=True)\nOUT = [r.method.message_count, r.method.consumer_count]",
            &json!({ "q": self.name }),
        );
        (out[0].as_u64().unwrap(), out[1].as_u64().unwrap())
    }
}

impl Default for TestQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        py("ch.queue_delete(ARGS['q'])", &json!({ "q": self.name }));
    }
}
