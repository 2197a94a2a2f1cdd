//! The command line's arguments, as clap reads them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

/// Run WebAssembly data connectors in a sandbox that grants only what you allow.
#[derive(Parser)]
#[command(name = "sluice", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where `describe`, `inspect` and `run` keep compiled connectors.
#[derive(Args)]
pub(crate) struct CacheArgs {
    /// Directory of compiled connectors, reused by later runs of the same
    /// `.wasm` (default: `$XDG_CACHE_HOME/sluice` or `~/.cache/sluice`).
    #[arg(long, global = true, value_name = "DIR", env = "SLUICE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile the connector every time; read and write no cache.
    #[arg(long, global = true)]
    pub no_cache: bool,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Print a connector's descriptor (name, version, config schema, capabilities) as JSON.
    Describe {
        /// The connector component (.wasm).
        wasm: PathBuf,
    },
    /// Check a .wasm against the `connector` world: exports, imports, size, sha256.
    Inspect {
        /// The connector component (.wasm).
        wasm: PathBuf,
    },
    /// Open a session with a config and grants, and run one operation.
    Run(Box<RunArgs>),
    /// Check a connector against the contract: describe, its config schema,
    /// open, health, discover, fetch with each advertised capability, stream
    /// checkpoints, typed errors. One line per check; fails when any does.
    TestConnector(Box<TestArgs>),
    /// Serve the multi-tenant HTTP API (tenants, connector uploads, instances, invocations).
    Serve(ServeArgs),
    /// Make a new connector project that builds with one command (`make`)
    /// and passes `sluice test-connector` as it is.
    New(NewArgs),
    /// Run a connector again against a recording (`sluice run --record`),
    /// with no network and no credentials: every HTTP exchange, sql result,
    /// file, clock reading and random byte comes from the recording. Prints
    /// what the run prints, then reports the first call that differs from
    /// the recorded one; exits non-zero when one does.
    Replay(ReplayArgs),
}

/// `sluice replay`.
#[derive(Args)]
pub(crate) struct ReplayArgs {
    /// The recording (`sluice run --record FILE`).
    pub recording: PathBuf,
    /// The connector component (.wasm): the recorded build or a new one.
    pub wasm: PathBuf,
}

/// `sluice new`.
#[derive(Args)]
pub(crate) struct NewArgs {
    /// The connector's name: lower-case letters, digits and `-`.
    pub name: String,
    /// The language it is written in.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
    /// Where the project goes (default: a new directory NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// A language `sluice new` makes projects in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    /// Rust, with the sluice SDK.
    Rust,
    /// Python (componentize-py).
    Python,
    /// JavaScript (componentize-js).
    Js,
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        })
    }
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Data directory (created if missing).
    #[arg(long, default_value = "sluice-data")]
    pub data_dir: PathBuf,
    /// Admin token (default: the stored one, or a new one printed once).
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Largest connector upload, in MiB (a Python or JavaScript connector
    /// is 16-19 MB: it carries its interpreter).
    #[arg(long, value_name = "MIB", default_value_t = 32)]
    pub max_upload_mib: usize,
    /// Directory of bundled `.wasm` connectors offered to every tenant.
    #[arg(long, value_name = "DIR")]
    pub connectors: Option<PathBuf>,
    /// Keep tenants, connectors and instances in PostgreSQL instead of the data
    /// directory, shared by every node given the same URL
    /// (`postgres://user@host/db`; tables go in the connection's search_path,
    /// e.g. `?options=-csearch_path%3Dsluice`). Compiled artifacts and tenant
    /// files stay in each node's data directory.
    #[arg(long, value_name = "URL", env = "SLUICE_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// How long compiling one uploaded connector may take, in milliseconds
    /// (a Python or JavaScript connector takes 5-6 s on two cores).
    #[arg(long, value_name = "MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub compile_timeout_ms: u64,
    /// Connector instances the pooling allocator keeps slots for (0 turns
    /// pooling off and allocates each instance on demand).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub pooling_instances: u32,
    /// Largest linear memory of one pooled instance, in MiB (tenant memory
    /// quotas above it are lowered to it).
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pub pooling_memory_mib: usize,
    /// Guest sessions an instance keeps open between invocations, so the next
    /// invocation skips instantiating and opening (0: a fresh session every
    /// time). A kept session serves only the same, unchanged instance; one
    /// that failed is never kept; idle ones close after 30 s.
    #[arg(long, value_name = "N", default_value_t = sluice_server::DEFAULT_WARM_SESSIONS)]
    pub warm_sessions: usize,
    /// Time a client has to send a request's headers, in milliseconds; also
    /// how long an idle connection stays open.
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,
    /// Client connections served at once; more wait until one closes.
    #[arg(long, value_name = "N", default_value_t = sluice_server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// A token that may read /metrics besides the admin token (give it to scrapers).
    #[arg(long, env = "SLUICE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
}

/// What a session may touch: a grants file and the flags that add to it.
#[derive(Args)]
pub(crate) struct GrantArgs {
    /// Grants file (JSON: files, sockets, http); flags below add to it.
    #[arg(long)]
    pub grants: Option<PathBuf>,
    /// Allow HTTP requests to an origin, `scheme://host[:port]` (`*.suffix` hosts allowed). Repeatable.
    #[arg(long = "allow-http", value_name = "ORIGIN")]
    pub allow_http: Vec<String>,
    /// Let granted HTTP host names resolve to loopback, private or link-local
    /// addresses (denied by default; addresses written in a grant always pass).
    #[arg(long = "allow-http-private")]
    pub allow_http_private: bool,
    /// Allow an `http://` origin and speak HTTP/2 to it with prior knowledge
    /// (h2c), as a gRPC server without TLS expects. Repeatable.
    #[arg(long = "allow-http-h2c", value_name = "ORIGIN")]
    pub allow_http_h2c: Vec<String>,
    /// Mount a host directory, `HOST:GUEST[:ro|rw]` (read-only by default). Repeatable.
    #[arg(long, value_name = "HOST:GUEST[:ro|rw]")]
    pub mount: Vec<String>,
    /// Allow TCP connections to `HOST:PORT` or `CIDR:PORT` (`LOW-HIGH` = a port range, `*` = any port). Repeatable.
    #[arg(long = "allow-tcp", value_name = "HOST:PORT")]
    pub allow_tcp: Vec<String>,
    /// Grant a PostgreSQL database read-only as `NAME=URL` (prefer --grants: URLs hold passwords). Repeatable.
    #[arg(long = "allow-sql", value_name = "NAME=URL")]
    pub allow_sql: Vec<String>,
    /// Grant a PostgreSQL database read-write as `NAME=URL`. Repeatable.
    #[arg(long = "allow-sql-write", value_name = "NAME=URL")]
    pub allow_sql_write: Vec<String>,
    /// Grant an SSH server's files (SFTP) read-only as `NAME=sftp://USER@HOST[:PORT]/DIR`;
    /// log in with --sftp-key or --sftp-password, its host key pinned by
    /// --sftp-known-hosts. Repeatable.
    #[arg(long = "allow-sftp", value_name = "NAME=URL")]
    pub allow_sftp: Vec<String>,
    /// Grant an SSH server's files (SFTP) read-write as `NAME=URL`. Repeatable.
    #[arg(long = "allow-sftp-write", value_name = "NAME=URL")]
    pub allow_sftp_write: Vec<String>,
    /// The private key (OpenSSH or PEM text, unencrypted) sftp grant NAME logs
    /// in with, written like --secret; the connector never sees it. Repeatable.
    #[arg(long = "sftp-key", value_name = "NAME=VALUE|@FILE|env:VAR")]
    pub sftp_keys: Vec<String>,
    /// The password sftp grant NAME logs in with, written like --secret. Repeatable.
    #[arg(long = "sftp-password", value_name = "NAME=VALUE|@FILE|env:VAR")]
    pub sftp_passwords: Vec<String>,
    /// The known_hosts file pinning the sftp grants' host keys (plain
    /// `[HOST]:PORT KEYTYPE KEY` lines, as `ssh-keyscan -p PORT HOST` prints
    /// them); a server with no line there is refused. Default: ~/.ssh/known_hosts.
    #[arg(long = "sftp-known-hosts", value_name = "FILE")]
    pub sftp_known_hosts: Option<PathBuf>,
    /// Provide a secret for http `auth` entries and sql `password_secret`s of
    /// the grants file (the connector never sees it): `NAME=VALUE`,
    /// `NAME=@FILE` (the file's contents, one trailing newline dropped) or
    /// `NAME=env:VAR` (an environment variable), so values stay out of the
    /// process list. Repeatable.
    #[arg(long = "secret", value_name = "NAME=VALUE|@FILE|env:VAR")]
    pub secrets: Vec<String>,
    /// Provide a secret the connector presents itself over its sockets (a
    /// broker login: AMQP, NATS, Redis, MQTT) and let it read the secret by
    /// name; written like --secret. Its value is removed from the
    /// connector's log events and errors. Repeatable.
    #[arg(long = "socket-secret", value_name = "NAME=VALUE|@FILE|env:VAR")]
    pub socket_secrets: Vec<String>,
}

#[derive(Args)]
pub(crate) struct TestArgs {
    /// The connector component (.wasm).
    pub wasm: PathBuf,
    /// A config the connector should accept: a JSON object, or a file holding one.
    #[arg(long, short, default_value = "{}")]
    pub config: String,
    #[command(flatten)]
    pub grant: GrantArgs,
    /// The resource to fetch and stream (default: the first one `discover` lists).
    #[arg(long)]
    pub resource: Option<String>,
    /// Options every fetch and stream of the resource carries (a JSON object:
    /// the connector's own request parameters, e.g. a gRPC request message).
    #[arg(long, value_name = "JSON")]
    pub options: Option<String>,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    /// The connector component (.wasm).
    pub wasm: PathBuf,
    /// Connector config: a JSON object, or a file holding one.
    #[arg(long, short, default_value = "{}")]
    pub config: String,
    #[command(flatten)]
    pub grant: GrantArgs,
    /// Learn the grants this run needs (UNSAFE: it grants what the connector
    /// asks for): run it, grant each denied TCP address or HTTP origin, run
    /// it again from the start, until it succeeds; then print the grants file
    /// that was missing instead of the data. Reads only; nothing is
    /// acknowledged. Use it on connectors you trust; the server has no such mode.
    #[arg(long, conflicts_with = "record")]
    pub learn: bool,
    /// Write every host call and its answer (HTTP exchanges, sql results,
    /// files opened and listed, clock readings, random bytes) to FILE, with
    /// secrets redacted, for `sluice replay FILE connector.wasm`. Raw TCP
    /// and SFTP traffic is not recorded.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Memory limit of the connector, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pub memory_mib: usize,
    /// CPU time limit per call, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub cpu_ms: u64,
    /// Wall-clock limit per call (guest code plus host I/O), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    pub timeout_ms: u64,
    #[command(subcommand)]
    pub operation: Operation,
}

#[derive(Args, Clone, Default, Serialize, Deserialize)]
pub(crate) struct QueryArgs {
    /// Filter `field=op:value`; op is eq ne lt le gt ge in not-in like is-null is-not-null.
    /// The value is JSON when it parses as JSON, else a string. Repeatable (all must hold).
    #[arg(long, value_name = "FIELD=OP:VALUE")]
    pub filter: Vec<String>,
    /// Sort key `field[:asc|desc]`. Repeatable, most significant first.
    #[arg(long, value_name = "FIELD[:desc]")]
    pub sort: Vec<String>,
    /// Fields to keep, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub fields: Vec<String>,
    /// Connector-specific options (JSON object).
    #[arg(long, value_name = "JSON")]
    pub options: Option<String>,
}

#[derive(Subcommand, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Operation {
    /// Check the upstream is reachable.
    Health,
    /// List readable resources and their schemas.
    Discover,
    /// Read one page of a resource and print it as JSON.
    Fetch {
        /// The resource (a file path, table, endpoint, ...).
        resource: String,
        #[command(flatten)]
        query: QueryArgs,
        /// Page size (enables pagination).
        #[arg(long, value_name = "N")]
        page_size: Option<u32>,
        /// Records to skip (with --page-size).
        #[arg(long, value_name = "N")]
        offset: Option<u64>,
        /// Cursor from a previous page's `next_cursor` (with --page-size).
        #[arg(long, value_name = "C")]
        cursor: Option<String>,
    },
    /// Stream a resource as NDJSON, one record per line, flushed per batch.
    Stream {
        /// The resource.
        resource: String,
        #[command(flatten)]
        query: QueryArgs,
        /// Resume after this checkpoint.
        #[arg(long, value_name = "C")]
        checkpoint: Option<String>,
        /// Records per batch.
        #[arg(long, value_name = "N", default_value_t = 500)]
        batch_size: u32,
        /// Leave delivered records unacknowledged (a queue redelivers them).
        /// By default each batch is acknowledged once it is written and flushed.
        #[arg(long)]
        no_ack: bool,
        /// Stop after this many records.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        max: Option<u64>,
        /// Accepted for older scripts: `{"checkpoint": "..."}` lines are always written.
        #[arg(long, hide = true)]
        emit_checkpoints: bool,
    },
    /// Write records to a resource and print the result as JSON.
    Execute {
        /// The resource.
        resource: String,
        /// The operation (connector-defined, e.g. `append`, `write`).
        operation: String,
        /// Records: a JSON array, a file holding a JSON array or NDJSON, or `-`
        /// for NDJSON on stdin. Each is a bare data object or a stream line
        /// (`{"record": …}`; `{"checkpoint": …}` ends a batch; `{"error": …}`
        /// stops the write), so `sluice run … stream` can be piped in.
        #[arg(long, value_name = "JSON|FILE|-", default_value = "[]")]
        records: String,
        /// Records per `execute` call (a checkpoint line ends a batch sooner);
        /// each batch is its own call, so its own transaction where the
        /// connector has them.
        #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        batch_size: u32,
        /// Connector-specific options (JSON object).
        #[arg(long, value_name = "JSON")]
        options: Option<String>,
    },
}
