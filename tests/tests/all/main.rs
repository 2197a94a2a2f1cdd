//! Integration tests, one binary: real guests on a real host.

mod api;
mod capabilities;
mod cli;
mod embedding;
mod file_connector;
mod graphql;
mod hostile;
mod http;
mod http_pool;
mod kafka;
mod loading;
mod mqtt;
mod mysql;
mod nats;
mod net;
mod postgres;
mod postgres_fidelity;
mod queues;
mod rabbitmq;
mod redis;
mod rest;
mod s3;
mod security;
mod server;
mod server_store;
