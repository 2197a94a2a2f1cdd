//! Records a connector forwards from a row stream (`row-stream.forward-records`)
//! straight to the caller of its `record-stream.next`: rendered by the host,
//! never copied into the guest and back. The session opens room for one call
//! (that call's `max`) and takes the records when the call returns.

use super::failure::{SqlFailure, SqlResult};
use crate::bindings::Record;

/// The records forwarded during the running `record-stream.next` call.
#[derive(Debug, Default)]
pub(crate) struct ForwardedRecords {
    /// Records the call may still forward; `None` outside a call.
    room: Option<usize>,
    records: Vec<Record>,
}

impl ForwardedRecords {
    /// A `record-stream.next` call of at most `max` records begins.
    pub(crate) fn open(&mut self, max: u32) {
        self.room = Some(max.max(1) as usize);
        self.records.clear();
    }

    /// The call ended: its forwarded records, in order.
    pub(crate) fn close(&mut self) -> Vec<Record> {
        self.room = None;
        std::mem::take(&mut self.records)
    }

    /// How many more records the running call may forward.
    ///
    /// # Errors
    ///
    /// [`SqlFailure::InvalidValue`] outside `record-stream.next`, or when
    /// the call's `max` is reached.
    pub(super) fn room(&self) -> SqlResult<usize> {
        match self.room {
            None => Err(SqlFailure::InvalidValue(
                "forward-records is only possible inside record-stream.next".into(),
            )),
            Some(room) if room <= self.records.len() => Err(SqlFailure::InvalidValue(
                "forward-records: this record-stream.next call's max is reached".into(),
            )),
            Some(room) => Ok(room - self.records.len()),
        }
    }

    /// Add records the running call forwards.
    pub(super) fn push(&mut self, records: Vec<Record>) {
        self.records.extend(records);
    }
}
