//! What every queue connector (redis, nats, mqtt, rabbitmq, kafka) does at its
//! doors: an address outside the grants is denied naming the grant, and a
//! granted address where nothing listens is `unavailable` naming it.

use std::net::TcpListener;

use serde_json::{json, Value};
use sluice::{Capability, Connector, ConnectorError, Error, Grants};
use sluice_tests::{
    kafka_connector, mqtt_connector, nats_connector, rabbitmq_connector, redis_connector,
};

/// A queue connector, the broker address its tests use, and its config for an address.
type Case = (Connector, &'static str, fn(&str) -> Value);

/// Every queue connector.
fn connectors() -> [Case; 5] {
    [
        (
            redis_connector(),
            sluice_tests::redis::ADDRESS,
            |a| json!({ "address": a }),
        ),
        (
            nats_connector(),
            sluice_tests::nats::ADDRESS,
            |a| json!({ "address": a }),
        ),
        (
            mqtt_connector(),
            sluice_tests::mqtt::ADDRESS,
            |a| json!({ "address": a, "client_id": "doors" }),
        ),
        (
            rabbitmq_connector(),
            sluice_tests::rabbitmq::ADDRESS,
            |a| json!({ "address": a }),
        ),
        (
            kafka_connector(),
            // Kafka's usual port: the kafka tests start brokers on free ports.
            "127.0.0.1:9092",
            |a| json!({ "bootstrap": [a] }),
        ),
    ]
}

#[tokio::test]
async fn an_ungranted_broker_is_denied_naming_the_grant() {
    for (connector, address, config) in connectors() {
        let err = connector
            .open(&config(address).to_string(), &Grants::none())
            .await
            .unwrap_err();
        let Error::Denied(denial) = &err else {
            panic!("{}: {err:?}", connector.name())
        };
        assert_eq!(denial.capability, Capability::Tcp, "{}", connector.name());
        assert_eq!(
            denial.grant,
            format!("--allow-tcp {address}"),
            "{}",
            connector.name()
        );
    }
}

#[tokio::test]
async fn a_granted_broker_that_is_not_there_is_unavailable() {
    for (connector, _, config) in connectors() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let grants = Grants::none().allow_tcp(&address).unwrap();
        let err = connector
            .open(&config(&address).to_string(), &grants)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Connector(ConnectorError::Unavailable(m)) if m.contains(&address)),
            "{}: {err:?}",
            connector.name()
        );
    }
}
