//! One connection to one Kafka broker: size-prefixed frames, correlation
//! ids, the API versions both sides speak (ApiVersions, asked once per
//! connection), and SASL/PLAIN when the config gives a login.
//!
//! Every response frame is bounded by `max_frame` before a byte of it is
//! read, a response that does not decode is `unavailable` naming the broker
//! and the API, and a correlation id out of step closes nothing silently: it
//! is an error, as the connection can no longer be trusted.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use sluice_sdk::net::{Connection, Deadlines};
use sluice_sdk::{ConnectorError, Result};

use crate::errors::{self, Code};

/// A SASL/PLAIN login.
#[derive(Clone)]
pub struct Plain {
    pub username: String,
    pub password: String,
}

/// What every connection is opened with.
#[derive(Clone)]
pub struct Dial {
    pub client_id: String,
    pub deadlines: Deadlines,
    /// The largest response frame accepted, in bytes.
    pub max_frame: usize,
    pub login: Option<Plain>,
}

/// A connection to one broker, ready for requests.
pub struct BrokerConn {
    conn: Connection,
    client_id: StrBytes,
    max_frame: usize,
    next_correlation: i32,
    /// API key → (min, max) version the broker speaks.
    versions: HashMap<i16, (i16, i16)>,
}

impl BrokerConn {
    /// Connect to `address`, learn the broker's API versions, and log in.
    pub fn open(address: &str, dial: &Dial) -> Result<Self> {
        let conn = Connection::open(address, dial.deadlines)?;
        let mut broker = Self {
            conn,
            client_id: StrBytes::from_string(dial.client_id.clone()),
            max_frame: dial.max_frame,
            next_correlation: 1,
            versions: HashMap::new(),
        };
        // v0: every broker answers it (a newer request version may get an
        // UNSUPPORTED_VERSION answer in the v0 shape anyway).
        let answer: ApiVersionsResponse = broker.call_at(&ApiVersionsRequest::default(), 0)?;
        errors::check(answer.error_code, || format!("ApiVersions from {address}"))?;
        broker.versions = answer
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        if let Some(login) = &dial.login {
            broker.login(login)?;
        }
        Ok(broker)
    }

    /// The broker's address.
    pub fn address(&self) -> &str {
        self.conn.address()
    }

    /// The highest version of `R` in `ours` that the broker speaks too.
    pub fn version<R: Request>(&self, ours: RangeInclusive<i16>) -> Result<i16> {
        let name = api_name(R::KEY);
        let (min, max) = self.versions.get(&R::KEY).copied().ok_or_else(|| {
            ConnectorError::Unsupported(format!(
                "the broker at {} does not offer the {name} API",
                self.address()
            ))
        })?;
        let version = max.min(*ours.end());
        if version < min || version < *ours.start() {
            return Err(ConnectorError::Unsupported(format!(
                "the broker at {} speaks {name} v{min}..v{max}; this connector speaks v{}..v{}",
                self.address(),
                ours.start(),
                ours.end()
            )));
        }
        Ok(version)
    }

    /// Send `request` at the highest version both speak within `ours`; its
    /// response and the version used.
    pub fn call<R: Request>(
        &mut self,
        request: &R,
        ours: RangeInclusive<i16>,
    ) -> Result<(R::Response, i16)> {
        let version = self.version::<R>(ours)?;
        Ok((self.call_at(request, version)?, version))
    }

    /// Send `request` at `version` and read its response.
    pub fn call_at<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(self.client_id.clone()));
        // The frame: its length (filled in below), the header, the request.
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        let encoded = header
            .encode(&mut frame, R::header_version(version))
            .and_then(|()| request.encode(&mut frame, version));
        encoded.map_err(|e| {
            ConnectorError::InvalidRequest(format!("{} v{version}: {e}", api_name(R::KEY)))
        })?;
        let length = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        self.conn.send(&frame)?;
        let mut response = self.read_frame(R::KEY)?;
        let garbled = |what: String| {
            ConnectorError::Unavailable(format!(
                "the broker at {} sent a {} v{version} response that does not decode: {what}",
                self.conn.address(),
                api_name(R::KEY)
            ))
        };
        let header = ResponseHeader::decode(&mut response, R::Response::header_version(version))
            .map_err(|e| garbled(e.to_string()))?;
        if header.correlation_id != correlation {
            return Err(garbled(format!(
                "it answers request {} where {correlation} was asked",
                header.correlation_id
            )));
        }
        let decoded =
            R::Response::decode(&mut response, version).map_err(|e| garbled(e.to_string()))?;
        Ok(decoded)
    }

    /// One response frame, its length checked against `max_frame` first.
    fn read_frame(&mut self, key: i16) -> Result<Bytes> {
        let size = self.conn.read_exact(4)?;
        let size = i32::from_be_bytes([size[0], size[1], size[2], size[3]]);
        if size < 0 || size as usize > self.max_frame {
            return Err(ConnectorError::Unavailable(format!(
                "the broker at {} announced a {} response of {size} bytes, over the limit of {} bytes (max_response_bytes)",
                self.conn.address(),
                api_name(key),
                self.max_frame
            )));
        }
        Ok(Bytes::from(self.conn.read_exact(size as usize)?))
    }

    /// SASL/PLAIN: the handshake names the mechanism, then one authenticate round.
    fn login(&mut self, login: &Plain) -> Result<()> {
        let address = self.address().to_string();
        let handshake =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        let (answer, _): (SaslHandshakeResponse, _) = self.call(&handshake, 1..=1)?;
        if answer.error_code != 0 {
            let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(ConnectorError::Denied(format!(
                "the broker at {address} does not accept SASL/PLAIN (it offers: {})",
                offered.join(", ")
            )));
        }
        let mut token = Vec::with_capacity(login.username.len() + login.password.len() + 2);
        token.push(0);
        token.extend_from_slice(login.username.as_bytes());
        token.push(0);
        token.extend_from_slice(login.password.as_bytes());
        let authenticate = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let (answer, _): (SaslAuthenticateResponse, _) = self.call(&authenticate, 0..=2)?;
        if answer.error_code != 0 {
            let said = answer
                .error_message
                .as_ref()
                .map(|m| m.as_str().replace(&login.password, "***"))
                .unwrap_or_default();
            return Err(ConnectorError::Denied(format!(
                "the broker at {address} refused the SASL/PLAIN login of `{}`: {} {said}",
                login.username,
                Code(answer.error_code)
            )));
        }
        Ok(())
    }
}

/// The name of an API key, for messages.
pub fn api_name(key: i16) -> String {
    use kafka_protocol::messages::ApiKey;
    ApiKey::try_from(key).map_or_else(|()| format!("API {key}"), |k| format!("{k:?}"))
}
