//! What the host sends the task that owns a lent connection while a guest's
//! transaction or row stream is open, whatever the database.

use tokio::sync::{mpsc, oneshot};

use super::failure::{SqlFailure, SqlResult};
use crate::bindings::sluice::connector::sql::Column;

/// Where a task sends one answer.
pub(super) type Reply<T> = oneshot::Sender<SqlResult<T>>;

/// One batch of a row stream (JSON array rows); `None` at the end.
pub(super) type Batch = Option<Vec<String>>;

/// A guest's call on an open transaction.
pub(super) enum TxCommand {
    Query(String, Vec<String>, Reply<(Vec<Column>, Vec<String>)>),
    Execute(String, Vec<String>, Reply<u64>),
    /// Commit (`true`) or roll back.
    Finish(bool, Reply<()>),
}

/// A guest's call on an open row stream.
pub(super) enum StreamCommand {
    Next(Reply<Batch>),
}

/// Send a command to a task and wait for its reply.
pub(super) async fn ask<T, C>(
    commands: &mpsc::Sender<C>,
    command: impl FnOnce(Reply<T>) -> C,
) -> SqlResult<T> {
    let (reply, answer) = oneshot::channel();
    commands
        .send(command(reply))
        .await
        .map_err(|_| SqlFailure::Unavailable("the transaction or stream has ended".into()))?;
    answer
        .await
        .map_err(|_| SqlFailure::Unavailable("the transaction or stream has ended".into()))?
}
