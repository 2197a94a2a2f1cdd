//! The cluster as this connector sees it: the bootstrap brokers, the
//! brokers and partition leaders Metadata names, one connection per broker
//! (opened when first needed, dropped when it fails so the next call
//! reconnects), and the group coordinator FindCoordinator names.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{FindCoordinatorRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_sdk::{ConnectorError, Result};

use crate::errors::{self, Code};
use crate::wire::{BrokerConn, Dial};

/// A topic's partitions and their leaders (node ids; -1: none now).
#[derive(Debug, Clone, Default)]
pub struct Topic {
    pub leaders: BTreeMap<i32, i32>,
}

/// A name for the bootstrap connection in the connection map.
const BOOTSTRAP: i32 = i32::MIN;

/// Connections to a Kafka cluster.
pub struct Cluster {
    dial: Dial,
    bootstrap: Vec<String>,
    /// Node id → `HOST:PORT`, as Metadata advertises them.
    brokers: HashMap<i32, String>,
    conns: HashMap<i32, BrokerConn>,
    topics: HashMap<String, Topic>,
}

impl Cluster {
    /// Connect to the first bootstrap address that answers.
    pub fn connect(bootstrap: &[String], dial: Dial) -> Result<Self> {
        let mut cluster = Self {
            dial,
            bootstrap: bootstrap.to_vec(),
            brokers: HashMap::new(),
            conns: HashMap::new(),
            topics: HashMap::new(),
        };
        cluster.bootstrap_conn()?;
        Ok(cluster)
    }

    fn bootstrap_conn(&mut self) -> Result<&mut BrokerConn> {
        if !self.conns.contains_key(&BOOTSTRAP) {
            let mut last = None;
            for address in &self.bootstrap {
                match BrokerConn::open(address, &self.dial) {
                    Ok(conn) => {
                        self.conns.insert(BOOTSTRAP, conn);
                        break;
                    }
                    // A refused login or grant is the answer; another address would say the same.
                    Err(e @ ConnectorError::Denied(_)) => return Err(e),
                    Err(e) => last = Some(e),
                }
            }
            if let Some(e) = last.filter(|_| !self.conns.contains_key(&BOOTSTRAP)) {
                return Err(e);
            }
        }
        Ok(self.conns.get_mut(&BOOTSTRAP).expect("connected above"))
    }

    /// Run `call` on node `node`'s connection (opened when missing); a
    /// connection that failed is dropped so the next call reconnects.
    pub fn on_node<T>(
        &mut self,
        node: i32,
        call: impl FnOnce(&mut BrokerConn) -> Result<T>,
    ) -> Result<T> {
        let conn = if node == BOOTSTRAP {
            self.bootstrap_conn()?
        } else {
            if !self.conns.contains_key(&node) {
                let address = self.brokers.get(&node).cloned().ok_or_else(|| {
                    ConnectorError::Unavailable(format!(
                        "the cluster's metadata names no broker {node}"
                    ))
                })?;
                let conn = BrokerConn::open(&address, &self.dial)?;
                self.conns.insert(node, conn);
            }
            self.conns.get_mut(&node).expect("inserted above")
        };
        let result = call(conn);
        if matches!(
            result,
            Err(ConnectorError::Unavailable(_) | ConnectorError::Timeout)
        ) {
            self.conns.remove(&node);
        }
        result
    }

    /// Ask for the metadata of `topics` (all topics when `None`) and
    /// remember brokers and leaders; the topics' names and partition counts.
    pub fn refresh(&mut self, topics: Option<&[&str]>) -> Result<Vec<(String, usize, bool)>> {
        let request = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|name| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
                    })
                    .collect()
            }));
        let (answer, _) = self.on_node(BOOTSTRAP, |conn| conn.call(&request, 1..=12))?;
        for broker in &answer.brokers {
            self.brokers
                .insert(broker.node_id.0, address(broker.host.as_str(), broker.port));
        }
        let mut found = Vec::new();
        for topic in answer.topics {
            let Some(name) = topic.name.map(|n| n.0.to_string()) else {
                continue;
            };
            if topic.error_code == errors::UNKNOWN_TOPIC_OR_PARTITION {
                self.topics.remove(&name);
                continue;
            }
            errors::check(topic.error_code, || format!("metadata of topic `{name}`"))?;
            let leaders: BTreeMap<i32, i32> = topic
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect();
            found.push((name.clone(), leaders.len(), topic.is_internal));
            self.topics.insert(name, Topic { leaders });
        }
        Ok(found)
    }

    /// The partitions of `topic` and their leaders, from the metadata (asked
    /// for when this topic is not known yet).
    pub fn topic(&mut self, name: &str) -> Result<Topic> {
        if !self.topics.contains_key(name) {
            self.refresh(Some(&[name]))?;
        }
        self.topics.get(name).cloned().ok_or_else(|| {
            ConnectorError::NotFound(format!("topic `{name}` does not exist on the cluster"))
        })
    }

    /// Forget what the metadata said about `topic`: the next use asks again.
    pub fn forget(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    /// The leader of `topic`'s `partition`.
    pub fn leader(&mut self, topic: &str, partition: i32) -> Result<i32> {
        let leader = self
            .topic(topic)?
            .leaders
            .get(&partition)
            .copied()
            .ok_or_else(|| {
                ConnectorError::NotFound(format!("topic `{topic}` has no partition {partition}"))
            })?;
        if leader < 0 {
            self.forget(topic);
            return Err(ConnectorError::Unavailable(format!(
                "partition {partition} of `{topic}` has no leader now"
            )));
        }
        Ok(leader)
    }

    /// The node that coordinates consumer group `group`.
    pub fn coordinator(&mut self, group: &str) -> Result<i32> {
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_key_type(0);
        let (answer, _) = self.on_node(BOOTSTRAP, |conn| conn.call(&request, 0..=3))?;
        errors::check(answer.error_code, || {
            format!(
                "finding the coordinator of group `{group}` ({})",
                answer
                    .error_message
                    .as_ref()
                    .map_or_else(|| Code(answer.error_code).to_string(), |m| m.to_string())
            )
        })?;
        self.brokers
            .insert(answer.node_id.0, address(answer.host.as_str(), answer.port));
        Ok(answer.node_id.0)
    }
}

/// `HOST:PORT`, with an IPv6 host in brackets.
fn address(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
