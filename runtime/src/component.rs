//! Loading a connector: is it wasm, is it a component, does it export
//! `connector-api`, can the host satisfy its imports. Compiled once; every
//! session instantiates from the same `InstancePre`.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::artifacts::ArtifactCache;
use crate::bindings::{ConnectorPre, Descriptor};
use crate::capability::grants::Grants;
use crate::engine::Runtime;
use crate::error::Error;
use crate::limits::Limits;
use crate::session::Session;
use crate::tape::Tape;

/// The export every connector must provide.
pub const CONNECTOR_EXPORT: &str = "sluice:connector/connector-api@0.1.0";

const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// wasmtime's precompiled artifacts are ELF files.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0, 1, 0];

/// Interface prefixes the host implements (the ceiling set by the `connector` world).
const HOST_INTERFACES: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "wasi:random/",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
    "sluice:connector/types",
    "sluice:connector/log",
    "sluice:connector/sql",
    "sluice:connector/sftp",
    "sluice:connector/secrets",
    "sluice:connector/json-lines",
];

/// Whether the host provides the import named `name`.
pub fn host_provides(name: &str) -> bool {
    HOST_INTERFACES
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// A validated, compiled connector. Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    inner: Arc<ConnectorInner>,
}

struct ConnectorInner {
    runtime: Runtime,
    pre: ConnectorPre<crate::state::HostState>,
    name: Arc<str>,
    sha256: String,
    size: usize,
    imports: Vec<String>,
    exports: Vec<String>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.inner.name)
            .field("sha256", &self.inner.sha256)
            .field("size", &self.inner.size)
            .finish_non_exhaustive()
    }
}

/// What kind of file some bytes are.
fn check_header(bytes: &[u8]) -> Result<(), Error> {
    if bytes.starts_with(ELF_MAGIC) {
        return Err(Error::PrecompiledArtifact);
    }
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        let what = if bytes.is_empty() {
            "the file is empty".to_string()
        } else {
            "it does not start with the `\\0asm` magic number".to_string()
        };
        return Err(Error::NotWasm(what));
    }
    match [bytes[4], bytes[5], bytes[6], bytes[7]] {
        CORE_MODULE_VERSION => Err(Error::CoreModule),
        COMPONENT_VERSION => Ok(()),
        other => Err(Error::InvalidComponent(format!(
            "unknown WebAssembly version/layer {other:02x?}"
        ))),
    }
}

impl Connector {
    pub(crate) fn load(
        runtime: Runtime,
        bytes: &[u8],
        name: Option<String>,
        cache: Option<&ArtifactCache>,
    ) -> Result<Self, Error> {
        check_header(bytes)?;
        let started = std::time::Instant::now();
        let sha256 = hex::encode(Sha256::digest(bytes));
        let engine = runtime.engine();
        let (component, artifact) = match cache {
            Some(cache) => match cache.component(engine, &sha256, bytes)? {
                (component, true) => (component, "cached"),
                (component, false) => (component, "compiled and cached"),
            },
            None => (
                Component::new(engine, bytes)
                    .map_err(|e| Error::InvalidComponent(format!("{e:#}")))?,
                "compiled",
            ),
        };
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        if !exports.iter().any(|e| e == CONNECTOR_EXPORT) {
            return Err(Error::WrongWorld {
                expected: CONNECTOR_EXPORT,
                exports,
            });
        }
        let missing: Vec<&str> = imports
            .iter()
            .map(String::as_str)
            .filter(|i| !host_provides(i))
            .collect();
        if !missing.is_empty() {
            return Err(Error::UnsupportedImport(missing.join(", ")));
        }
        let instance_pre = runtime
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| Error::UnsupportedImport(format!("{e:#}")))?;
        let pre = ConnectorPre::new(instance_pre).map_err(|e| Error::WrongWorld {
            expected: CONNECTOR_EXPORT,
            exports: vec![format!("an incompatible `{CONNECTOR_EXPORT}` ({e:#})")],
        })?;
        let name: Arc<str> = name.unwrap_or_else(|| sha256[..12].to_string()).into();
        tracing::info!(
            connector = %name,
            sha256 = &sha256[..12],
            bytes = bytes.len(),
            ready_ms = started.elapsed().as_millis() as u64,
            artifact,
            "connector loaded"
        );
        Ok(Self {
            inner: Arc::new(ConnectorInner {
                runtime,
                pre,
                name,
                sha256,
                size: bytes.len(),
                imports,
                exports,
            }),
        })
    }

    /// The name used in logs (the file stem, or a digest prefix).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Lowercase hex SHA-256 of the component bytes.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// The component's imports (interface names with versions).
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }

    /// The component's exports.
    pub fn exports(&self) -> &[String] {
        &self.inner.exports
    }

    /// The runtime this connector was loaded into.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    pub(crate) fn pre(&self) -> &ConnectorPre<crate::state::HostState> {
        &self.inner.pre
    }

    pub(crate) fn name_arc(&self) -> Arc<str> {
        Arc::clone(&self.inner.name)
    }

    /// Call `describe` in a fresh instance with no grants.
    ///
    /// # Errors
    ///
    /// A limit or trap error if the connector misbehaves.
    pub async fn describe(&self) -> Result<Descriptor, Error> {
        self.describe_with_limits(&self.runtime().config().limits.clone())
            .await
    }

    /// Call `describe` in a fresh instance with no grants, under `limits`
    /// (a server describes a tenant's upload under the tenant's limits).
    ///
    /// # Errors
    ///
    /// As [`Connector::describe`], plus [`Error::InvalidConfig`] for unusable limits.
    pub async fn describe_with_limits(&self, limits: &Limits) -> Result<Descriptor, Error> {
        limits.validate()?;
        let mut session = Session::instantiate(self, &Grants::none(), limits, None).await?;
        session.describe().await
    }

    /// Open a session with `config` (JSON) and `grants`, under the runtime's default limits.
    ///
    /// # Errors
    ///
    /// [`Error::Connector`] when the connector rejects the config; limit and trap errors.
    pub async fn open(&self, config: &str, grants: &Grants) -> Result<Session, Error> {
        self.open_with_limits(config, grants, &self.runtime().config().limits.clone())
            .await
    }

    /// Open a session with explicit limits.
    ///
    /// # Errors
    ///
    /// As [`Connector::open`], plus [`Error::InvalidConfig`] for unusable limits.
    pub async fn open_with_limits(
        &self,
        config: &str,
        grants: &Grants,
        limits: &Limits,
    ) -> Result<Session, Error> {
        limits.validate()?;
        let mut session = Session::instantiate(self, grants, limits, None).await?;
        session.connect(config).await?;
        Ok(session)
    }

    /// Open a session whose host answers go through `tape`: written to a
    /// recording as they happen ([`Tape::Record`]), or taken from one with
    /// no network ([`Tape::Replay`], with [`Player::grants`](crate::tape::Player::grants)).
    /// See [`tape`](crate::tape).
    ///
    /// # Errors
    ///
    /// As [`Connector::open_with_limits`].
    pub async fn open_taped(
        &self,
        config: &str,
        grants: &Grants,
        limits: &Limits,
        tape: Tape,
    ) -> Result<Session, Error> {
        limits.validate()?;
        let mut session = Session::instantiate(self, grants, limits, Some(&tape)).await?;
        session.connect(config).await?;
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_classified() {
        assert!(matches!(check_header(b""), Err(Error::NotWasm(_))));
        assert!(matches!(
            check_header(b"hello world!"),
            Err(Error::NotWasm(_))
        ));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(Error::CoreModule)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(matches!(
            check_header(b"\x7fELF\x02\x01\x01\0"),
            Err(Error::PrecompiledArtifact)
        ));
        assert!(matches!(
            check_header(b"\0asm\x02\0\0\0"),
            Err(Error::InvalidComponent(_))
        ));
    }

    #[test]
    fn host_interfaces_cover_the_world() {
        assert!(host_provides("wasi:filesystem/preopens@0.2.6"));
        assert!(host_provides("sluice:connector/log@0.1.0"));
        assert!(!host_provides("wasi:keyvalue/store@0.2.0"));
        assert!(!host_provides("wasi:http/incoming-handler@0.2.0"));
    }
}
