//! Message throughput through the `nats`, `rabbitmq` and `kafka` connectors
//! against the same brokers driven natively from Rust in the same run
//! (async-nats, lapin, rskafka): publish N messages of 1 KiB with broker
//! confirmation, then consume them with an ack per batch. Built with `--features bench-brokers`
//! (`make bench` does), so `make test` does not compile the native clients.

use std::time::{Duration, Instant};

use serde_json::json;
use sluice::{ExecuteRequest, FetchRequest, Grants, Limits, Record, Session};

use crate::report::{Report, Row, Target};
use crate::Scale;

/// Records per `execute` call and per stream batch, both sides.
const BATCH: usize = 1000;

fn payload(n: usize) -> serde_json::Value {
    // ~1 KiB of JSON per message.
    json!({ "n": n, "body": "x".repeat(1000) })
}

fn limits() -> Limits {
    Limits {
        wall_clock_per_call: Duration::from_secs(600),
        ..Limits::default()
    }
}

/// Publish `count` messages through `session` in batches; how long it took.
async fn sluice_publish(session: &mut Session, resource: &str, count: usize) -> Duration {
    let began = Instant::now();
    for start in (0..count).step_by(BATCH) {
        let records: Vec<Record> = (start..(start + BATCH).min(count))
            .map(|n| Record::from_json(&payload(n)))
            .collect();
        let out = session
            .execute(&ExecuteRequest::new(resource, "publish", records))
            .await
            .expect("publish");
        assert_eq!(out.affected as usize, (count - start).min(BATCH));
    }
    began.elapsed()
}

/// Consume `count` messages through `session`, acking each batch once read.
async fn sluice_consume(session: &mut Session, resource: &str, count: usize) -> Duration {
    let began = Instant::now();
    let mut stream = session
        .stream(
            &FetchRequest::new(resource).options(&json!({ "end_when_idle": true })),
            None,
        )
        .await
        .expect("stream");
    let mut seen = 0;
    while seen < count {
        let batch = stream
            .next(BATCH as u32)
            .await
            .expect("batch")
            .expect("more");
        seen += batch.records.len();
        stream.ack_records(&batch.records).await.expect("ack");
    }
    let took = began.elapsed();
    stream.close().await.unwrap();
    assert_eq!(seen, count);
    took
}

fn rows(
    report: &mut Report,
    broker: &str,
    count: usize,
    publish: (Duration, Duration),
    consume: (Duration, Duration),
    native: &str,
) {
    let rate = |took: Duration| count as f64 / took.as_secs_f64();
    report.add(Row {
        metric: format!("{broker}: publish {count} x 1 KiB, confirmed"),
        unit: "msgs/s",
        sluice: rate(publish.0),
        baseline: rate(publish.1),
        target: Target::RatioAtLeast(0.5),
        note: format!("{BATCH} records per execute; native: {native}"),
    });
    report.add(Row {
        metric: format!("{broker}: consume {count} x 1 KiB, acked per batch"),
        unit: "msgs/s",
        sluice: rate(consume.0),
        baseline: rate(consume.1),
        target: Target::RatioAtLeast(0.5),
        note: format!("batches of {BATCH}; native: {native}"),
    });
}

pub async fn run(scale: Scale, report: &mut Report) {
    let count: usize = scale.pick(20_000, 4_000);
    nats(count, report).await;
    rabbitmq(count, report).await;
    kafka(scale.pick(100_000, 20_000), report).await;
}

/// Kafka on a tansu broker of its own (one partition): produce in batches
/// of 1000 with acks=all, then consume everything.
async fn kafka(count: usize, report: &mut Report) {
    use rskafka::client::partition::{Compression, UnknownTopicHandling};
    use rskafka::client::ClientBuilder;

    let broker = sluice_tests::kafka::Broker::start();
    let client = ClientBuilder::new(vec![broker.address().to_string()])
        .build()
        .await
        .expect("rskafka connects to tansu");
    let controller = client.controller_client().expect("controller");
    for topic in ["sluice", "native"] {
        controller
            .create_topic(topic, 1, 1, 5_000)
            .await
            .expect("topic created");
    }

    let grants = Grants::none().allow_tcp(broker.address()).unwrap();
    // One batch of 1000 per request, as rskafka sends them (the default,
    // 1 MiB, is Kafka's own message.max.bytes and would cut each in two).
    let config =
        json!({ "bootstrap": [broker.address()], "block_ms": 500, "batch_max_bytes": 4 << 20 });
    let mut session = sluice_tests::kafka_connector()
        .open_with_limits(&config.to_string(), &grants, &limits())
        .await
        .expect("kafka connector opens");
    let began = Instant::now();
    for start in (0..count).step_by(BATCH) {
        let records: Vec<Record> = (start..(start + BATCH).min(count))
            .map(|n| Record::from_json(&json!({ "value": payload(n) })))
            .collect();
        let out = session
            .execute(&ExecuteRequest::new("sluice", "produce", records))
            .await
            .expect("produce");
        assert_eq!(out.affected as usize, (count - start).min(BATCH));
    }
    let sluice_produce = began.elapsed();
    let sluice_consume = sluice_consume(&mut session, "sluice", count).await;

    let partition = client
        .partition_client("native", 0, UnknownTopicHandling::Retry)
        .await
        .expect("partition client");
    let began = Instant::now();
    for start in (0..count).step_by(BATCH) {
        let records = (start..(start + BATCH).min(count))
            .map(|n| rskafka::record::Record {
                key: None,
                value: Some(serde_json::to_vec(&payload(n)).unwrap()),
                headers: Default::default(),
                timestamp: chrono::Utc::now(),
            })
            .collect();
        partition
            .produce(records, Compression::NoCompression)
            .await
            .expect("produce");
    }
    let native_produce = began.elapsed();
    let began = Instant::now();
    let mut offset = 0;
    let mut seen = 0;
    while seen < count {
        let (records, _) = partition
            .fetch_records(offset, 1..16 << 20, 500)
            .await
            .expect("fetch");
        for record in records {
            let value = record.record.value.expect("a value");
            let _: serde_json::Value = serde_json::from_slice(&value).unwrap();
            offset = record.offset + 1;
            seen += 1;
        }
    }
    let native_consume = began.elapsed();
    rows(
        report,
        "kafka",
        count,
        (sluice_produce, native_produce),
        (sluice_consume, native_consume),
        "rskafka (produce 1000 per request, acks=all; fetch up to 16 MiB, parse each value) on tansu, one partition",
    );
}

async fn nats(count: usize, report: &mut Report) {
    use async_nats::jetstream::{self, consumer::pull, stream};
    use futures_util::StreamExt as _;

    let client = async_nats::connect(sluice_tests::nats::ADDRESS)
        .await
        .expect("NATS is reachable on 127.0.0.1:4222");
    let js = jetstream::new(client);
    let name = "sluice_bench";
    let _ = js.delete_stream(name).await;
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec![format!("{name}.>")],
        ..Default::default()
    })
    .await
    .expect("stream created");
    let subject = format!("{name}.in");

    let grants = Grants::none()
        .allow_tcp(sluice_tests::nats::ADDRESS)
        .unwrap();
    let config =
        json!({ "address": sluice_tests::nats::ADDRESS, "durable": "sluice", "block_ms": 500 });
    let mut session = sluice_tests::nats_connector()
        .open_with_limits(&config.to_string(), &grants, &limits())
        .await
        .expect("nats connector opens");
    let sluice_pub = sluice_publish(&mut session, &subject, count).await;
    let sluice_sub = sluice_consume(&mut session, name, count).await;

    // Native: publish everything, then await every PubAck; pull in batches, ack each message.
    let began = Instant::now();
    let mut acks = Vec::with_capacity(BATCH);
    for n in 0..count {
        let body = serde_json::to_vec(&payload(n)).unwrap();
        acks.push(
            js.publish(subject.clone(), body.into())
                .await
                .expect("publish"),
        );
        if acks.len() == BATCH {
            for ack in acks.drain(..) {
                ack.await.expect("PubAck");
            }
        }
    }
    for ack in acks.drain(..) {
        ack.await.expect("PubAck");
    }
    let native_pub = began.elapsed();
    let consumer = js
        .get_stream(name)
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some("native".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let began = Instant::now();
    let mut seen = 0;
    while seen < count {
        let mut batch = consumer
            .fetch()
            .max_messages(BATCH)
            .messages()
            .await
            .expect("fetch");
        while let Some(message) = batch.next().await {
            let message = message.expect("message");
            let _: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
            message.ack().await.expect("ack");
            seen += 1;
        }
    }
    let native_sub = began.elapsed();
    let _ = js.delete_stream(name).await;
    rows(
        report,
        "nats",
        count,
        (sluice_pub, native_pub),
        (sluice_sub, native_sub),
        "async-nats (JetStream publish awaiting PubAcks per 1000; pull fetch of 1000, ack each)",
    );
}

async fn rabbitmq(count: usize, report: &mut Report) {
    use futures_util::StreamExt as _;
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    };
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    let conn = Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ is reachable on 127.0.0.1:5672");
    let channel = conn.create_channel().await.unwrap();
    let queue = "sluice-bench";
    let _ = channel
        .queue_delete(queue, QueueDeleteOptions::default())
        .await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue, durable, FieldTable::default())
        .await
        .expect("queue declared");

    let grants = Grants::none()
        .allow_tcp(sluice_tests::rabbitmq::ADDRESS)
        .unwrap();
    let config = json!({ "address": sluice_tests::rabbitmq::ADDRESS, "block_ms": 500 });
    let mut session = sluice_tests::rabbitmq_connector()
        .open_with_limits(&config.to_string(), &grants, &limits())
        .await
        .expect("rabbitmq connector opens");
    let sluice_pub = sluice_publish(&mut session, queue, count).await;
    let sluice_sub = sluice_consume(&mut session, queue, count).await;
    drop(session);

    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2);
    let began = Instant::now();
    let mut confirms = Vec::with_capacity(BATCH);
    for n in 0..count {
        let body = serde_json::to_vec(&payload(n)).unwrap();
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        confirms.push(
            channel
                .basic_publish("", queue, options, &body, properties.clone())
                .await
                .expect("publish"),
        );
        if confirms.len() == BATCH {
            for confirm in confirms.drain(..) {
                assert!(confirm.await.expect("confirm").is_ack());
            }
        }
    }
    for confirm in confirms.drain(..) {
        assert!(confirm.await.expect("confirm").is_ack());
    }
    let native_pub = began.elapsed();
    let consumer_channel = conn.create_channel().await.unwrap();
    consumer_channel
        .basic_qos(BATCH as u16, BasicQosOptions::default())
        .await
        .unwrap();
    let began = Instant::now();
    let mut consumer = consumer_channel
        .basic_consume(
            queue,
            "native",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut seen = 0;
    while seen < count {
        let delivery = consumer
            .next()
            .await
            .expect("a delivery")
            .expect("delivered");
        let _: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap();
        seen += 1;
        if seen % BATCH == 0 || seen == count {
            // One ack for the batch (multiple), as the sluice side acks a batch.
            delivery
                .ack(BasicAckOptions { multiple: true })
                .await
                .expect("ack");
        }
    }
    let native_sub = began.elapsed();
    let _ = channel
        .queue_delete(queue, QueueDeleteOptions::default())
        .await;
    rows(
        report,
        "rabbitmq",
        count,
        (sluice_pub, native_pub),
        (sluice_sub, native_sub),
        "lapin (publish with confirms awaited per 1000; basic.consume with prefetch 1000, one multiple ack per batch)",
    );
}
