//! The traits a connector implements, and the glue that exports them.

use std::cell::RefCell;
use std::marker::PhantomData;

use crate::bindings::exports::sluice::connector::connector_api::{
    self as api, GuestRecordStream, GuestSession,
};
use crate::{
    Batch, ConnectorError, Descriptor, ExecuteRequest, ExecuteResponse, FetchRequest,
    FetchResponse, ResourceInfo, Result,
};

/// A connector type: describes itself and opens sessions.
pub trait Connector: 'static {
    /// The session type `open` creates.
    type Session: Session;

    /// Static description; must not touch any capability.
    fn describe() -> Descriptor;

    /// Connect with the JSON config. Parse it with [`crate::config::parse`].
    fn open(config: &str) -> Result<Self::Session>;
}

/// A connected session. Every operation but `fetch` has a default that says
/// it is unsupported, so a connector implements only what it offers.
pub trait Session: 'static {
    /// Check that the upstream is reachable. Defaults to healthy.
    fn health_check(&self) -> Result<()> {
        Ok(())
    }

    /// List readable resources.
    fn discover(&self) -> Result<Vec<ResourceInfo>> {
        Err(ConnectorError::Unsupported("discover".into()))
    }

    /// Read one page of a resource.
    fn fetch(&self, req: FetchRequest) -> Result<FetchResponse>;

    /// Read a resource incrementally, resuming after `checkpoint`.
    fn stream(
        &self,
        req: FetchRequest,
        checkpoint: Option<String>,
    ) -> Result<Box<dyn RecordStream>> {
        let _ = (req, checkpoint);
        Err(ConnectorError::Unsupported("stream".into()))
    }

    /// Write to a resource.
    fn execute(&self, req: ExecuteRequest) -> Result<ExecuteResponse> {
        Err(ConnectorError::Unsupported(format!(
            "execute `{}` on `{}`",
            req.operation, req.resource
        )))
    }
}

/// An open stream of batches.
pub trait RecordStream: 'static {
    /// The next batch of at most `max` records, or `None` at the end.
    fn next(&mut self, max: u32) -> Result<Option<Batch>>;

    /// Acknowledge records by id. Defaults to a no-op (no delivery semantics).
    fn ack(&mut self, ids: Vec<String>) -> Result<()> {
        let _ = ids;
        Ok(())
    }

    /// Reject records by id. Defaults to unsupported.
    fn nack(&mut self, ids: Vec<String>) -> Result<()> {
        let _ = ids;
        Err(ConnectorError::Unsupported("nack".into()))
    }
}

/// Export glue for a connector's session (used by [`crate::export_connector!`]).
pub struct SessionExport<C: Connector> {
    session: C::Session,
    connector: PhantomData<C>,
}

impl<C: Connector> GuestSession for SessionExport<C> {
    fn open(config: String) -> Result<api::Session> {
        let session = C::open(&config)?;
        Ok(api::Session::new(SessionExport::<C> {
            session,
            connector: PhantomData,
        }))
    }

    fn health_check(&self) -> Result<()> {
        self.session.health_check()
    }

    fn discover(&self) -> Result<Vec<ResourceInfo>> {
        self.session.discover()
    }

    fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        self.session.fetch(req)
    }

    fn stream(&self, req: FetchRequest, checkpoint: Option<String>) -> Result<api::RecordStream> {
        let stream = self.session.stream(req, checkpoint)?;
        Ok(api::RecordStream::new(StreamExport(RefCell::new(stream))))
    }

    fn execute(&self, req: ExecuteRequest) -> Result<ExecuteResponse> {
        self.session.execute(req)
    }
}

/// Export glue for a record stream (used by [`crate::export_connector!`]).
pub struct StreamExport(RefCell<Box<dyn RecordStream>>);

impl GuestRecordStream for StreamExport {
    fn next(&self, max: u32) -> Result<Option<Batch>> {
        self.0.borrow_mut().next(max)
    }

    fn ack(&self, ids: Vec<String>) -> Result<()> {
        self.0.borrow_mut().ack(ids)
    }

    fn nack(&self, ids: Vec<String>) -> Result<()> {
        self.0.borrow_mut().nack(ids)
    }
}
