//! Method descriptions from the server itself, by gRPC server reflection
//! (`grpc.reflection.v1`, or `v1alpha` for servers that predate it), or
//! from a `FileDescriptorSet` given in config.
//!
//! Reflection is a bidirectional stream; every request of one round goes
//! out in one body and the server answers each in turn. Round one lists the
//! services, round two asks for the file defining each, and further rounds
//! ask by name for any file those import that has not arrived yet.

use std::collections::{BTreeSet, HashSet};

use base64::Engine;
use prost::Message;
use prost_reflect::DescriptorPool;
use prost_types::FileDescriptorProto;
use sluice_sdk::{ConnectorError, Result};

use crate::call::{self, CallOptions};

/// The reflection service's two versions, newest first.
const SERVICES: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Rounds of import-following before giving up (a server that keeps
/// naming files it cannot serve).
const MAX_ROUNDS: usize = 16;

#[derive(Clone, PartialEq, Message)]
struct ReflectionRequest {
    #[prost(string, tag = "1")]
    host: String,
    #[prost(oneof = "Ask", tags = "3, 4, 7")]
    ask: Option<Ask>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Ask {
    #[prost(string, tag = "3")]
    FileByFilename(String),
    #[prost(string, tag = "4")]
    FileContainingSymbol(String),
    #[prost(string, tag = "7")]
    ListServices(String),
}

#[derive(Clone, PartialEq, Message)]
struct ReflectionResponse {
    #[prost(oneof = "Answer", tags = "4, 6, 7")]
    answer: Option<Answer>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Answer {
    #[prost(message, tag = "4")]
    Files(FileDescriptorResponse),
    #[prost(message, tag = "6")]
    Services(ListServiceResponse),
    #[prost(message, tag = "7")]
    Error(ErrorResponse),
}

#[derive(Clone, PartialEq, Message)]
struct FileDescriptorResponse {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file_descriptor_proto: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct ListServiceResponse {
    #[prost(message, repeated, tag = "1")]
    service: Vec<ServiceName>,
}

#[derive(Clone, PartialEq, Message)]
struct ServiceName {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct ErrorResponse {
    #[prost(int32, tag = "1")]
    error_code: i32,
    #[prost(string, tag = "2")]
    error_message: String,
}

/// The descriptors of a `FileDescriptorSet` in base64, with the well-known
/// types beside them.
///
/// # Errors
///
/// `invalid-config` naming `descriptor_set` when it is not base64 or not a
/// complete, valid set.
pub fn from_descriptor_set(base64: &str) -> Result<DescriptorPool> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64.trim())
        .map_err(|e| {
            ConnectorError::InvalidConfig(format!("field `descriptor_set`: not base64 ({e})"))
        })?;
    let mut pool = DescriptorPool::global();
    pool.decode_file_descriptor_set(bytes.as_slice())
        .map_err(|e| {
            ConnectorError::InvalidConfig(format!(
                "field `descriptor_set`: not a usable FileDescriptorSet ({e}); build one with `protoc --include_imports --descriptor_set_out=FILE`"
            ))
        })?;
    Ok(pool)
}

/// The descriptors of every service the server at `endpoint` reports, by reflection.
///
/// # Errors
///
/// `unsupported` when the server offers no reflection service (configure
/// `descriptor_set` instead); the call's typed errors; `unavailable` for
/// an answer that is not a valid description.
pub fn from_server(endpoint: &str, options: &CallOptions) -> Result<DescriptorPool> {
    let mut last = None;
    for service in SERVICES {
        match discover(endpoint, service, options) {
            Err(ConnectorError::Unsupported(why)) => last = Some(why),
            other => return other,
        }
    }
    Err(ConnectorError::Unsupported(format!(
        "{endpoint} offers no gRPC server reflection ({}); give the services' descriptors as `descriptor_set` (base64 of `protoc --include_imports --descriptor_set_out`)",
        last.unwrap_or_default()
    )))
}

fn discover(endpoint: &str, service: &str, options: &CallOptions) -> Result<DescriptorPool> {
    let method = format!("{service}/ServerReflectionInfo");
    let round = |asks: Vec<Ask>| -> Result<Vec<Answer>> {
        let messages: Vec<Vec<u8>> = asks
            .into_iter()
            .map(|ask| {
                ReflectionRequest {
                    host: String::new(),
                    ask: Some(ask),
                }
                .encode_to_vec()
            })
            .collect();
        let answer = call::start(endpoint, &method, &messages, options)?;
        answer
            .collect()?
            .into_iter()
            .map(|bytes| {
                let response = ReflectionResponse::decode(bytes.as_slice()).map_err(|e| {
                    ConnectorError::Unavailable(format!("{method}: an undecodable answer ({e})"))
                })?;
                response.answer.ok_or_else(|| {
                    ConnectorError::Unavailable(format!("{method}: an empty answer"))
                })
            })
            .collect()
    };
    let mut services = Vec::new();
    for answer in round(vec![Ask::ListServices(String::new())])? {
        match answer {
            Answer::Services(list) => services.extend(list.service.into_iter().map(|s| s.name)),
            Answer::Error(e) => return Err(reflection_error(&method, &e)),
            Answer::Files(_) => {}
        }
    }
    let mut pool = DescriptorPool::global();
    let mut files: Vec<FileDescriptorProto> = Vec::new();
    let mut seen: HashSet<String> = pool.files().map(|f| f.name().to_string()).collect();
    let mut asks: Vec<Ask> = services
        .iter()
        .filter(|s| !SERVICES.contains(&s.as_str()))
        .map(|s| Ask::FileContainingSymbol(s.clone()))
        .collect();
    let mut rounds = 0;
    while !asks.is_empty() {
        rounds += 1;
        if rounds > MAX_ROUNDS {
            return Err(ConnectorError::Unavailable(format!(
                "{method}: the server's files import more than {MAX_ROUNDS} levels deep"
            )));
        }
        for answer in round(std::mem::take(&mut asks))? {
            match answer {
                Answer::Files(response) => {
                    for bytes in response.file_descriptor_proto {
                        let file = FileDescriptorProto::decode(bytes.as_slice()).map_err(|e| {
                            ConnectorError::Unavailable(format!(
                                "{method}: an undecodable file descriptor ({e})"
                            ))
                        })?;
                        if seen.insert(file.name().to_string()) {
                            files.push(file);
                        }
                    }
                }
                Answer::Error(e) => return Err(reflection_error(&method, &e)),
                Answer::Services(_) => {}
            }
        }
        let missing: BTreeSet<String> = files
            .iter()
            .flat_map(|f| f.dependency.iter())
            .filter(|name| !seen.contains(name.as_str()))
            .cloned()
            .collect();
        asks = missing.into_iter().map(Ask::FileByFilename).collect();
    }
    pool.add_file_descriptor_protos(files).map_err(|e| {
        ConnectorError::Unavailable(format!(
            "{method}: the server's descriptors do not fit together ({e})"
        ))
    })?;
    Ok(pool)
}

fn reflection_error(method: &str, error: &ErrorResponse) -> ConnectorError {
    let code = u32::try_from(error.error_code).unwrap_or(2);
    call::status_error(code, &error.error_message, method)
}
