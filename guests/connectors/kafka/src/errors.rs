//! Kafka's error codes as typed errors, and which of them a retry after a
//! metadata refresh can cure (leadership moved, a coordinator is loading).

use std::fmt;

use kafka_protocol::ResponseError;
use sluice_sdk::{ConnectorError, Result};

/// An error code, shown by name and number (`NotLeaderOrFollower (6)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code(pub i16);

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match ResponseError::try_from_code(self.0) {
            Some(ResponseError::Unknown(_)) | None => write!(f, "error {}", self.0),
            Some(name) => write!(f, "{name:?} ({})", self.0),
        }
    }
}

pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const LEADER_NOT_AVAILABLE: i16 = 5;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const REPLICA_NOT_AVAILABLE: i16 = 9;
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const FENCED_LEADER_EPOCH: i16 = 74;
pub const UNKNOWN_LEADER_EPOCH: i16 = 75;

/// Whether the partition's leadership (or the group's coordinator) may have
/// moved: refresh the metadata and ask again. The request was not applied.
pub fn moved(code: i16) -> bool {
    matches!(
        code,
        UNKNOWN_TOPIC_OR_PARTITION
            | LEADER_NOT_AVAILABLE
            | NOT_LEADER_OR_FOLLOWER
            | REPLICA_NOT_AVAILABLE
            | COORDINATOR_LOAD_IN_PROGRESS
            | COORDINATOR_NOT_AVAILABLE
            | NOT_COORDINATOR
            | FENCED_LEADER_EPOCH
            | UNKNOWN_LEADER_EPOCH
    )
}

/// `Ok` for code 0, else the typed error for `code` met while doing `what`.
pub fn check(code: i16, what: impl FnOnce() -> String) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    let message = format!("{}: the broker answered {}", what(), Code(code));
    Err(match code {
        UNKNOWN_TOPIC_OR_PARTITION => ConnectorError::NotFound(message),
        REQUEST_TIMED_OUT => ConnectorError::Timeout,
        // Topic, group, cluster, transactional id authorization; SASL.
        29..=31 | 53 | 58 => ConnectorError::Denied(message),
        // Throttling quota exceeded.
        89 => ConnectorError::RateLimited(None),
        // Corrupt message, too large, invalid topic, record list too large,
        // invalid required acks, invalid record, invalid timestamp,
        // offset out of range.
        OFFSET_OUT_OF_RANGE | 2 | 10 | 17 | 18 | 21 | 32 | 87 => {
            ConnectorError::InvalidRequest(message)
        }
        _ => ConnectorError::Unavailable(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_errors_they_mean() {
        let unknown = check(3, || "Fetch of t/0".into()).unwrap_err();
        assert!(
            matches!(&unknown, ConnectorError::NotFound(m) if m == "Fetch of t/0: the broker answered UnknownTopicOrPartition (3)"),
            "{unknown:?}"
        );
        assert!(matches!(
            check(29, String::new),
            Err(ConnectorError::Denied(_))
        ));
        assert!(matches!(
            check(89, String::new),
            Err(ConnectorError::RateLimited(None))
        ));
        assert!(matches!(
            check(10, String::new),
            Err(ConnectorError::InvalidRequest(_))
        ));
        assert!(matches!(
            check(6, String::new),
            Err(ConnectorError::Unavailable(_))
        ));
        assert!(check(0, String::new).is_ok());
        assert!(moved(NOT_LEADER_OR_FOLLOWER) && !moved(OFFSET_OUT_OF_RANGE));
        assert_eq!(Code(4242).to_string(), "error 4242");
    }
}
