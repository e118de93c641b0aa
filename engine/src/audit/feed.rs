//! The index writer thread. The sync thread hands it the rows of each
//! durable batch; it inserts them one transaction at a time. A slow index
//! must never delay fsync or grow memory without bound, so past
//! [`MAX_BACKLOG`] rows are shed and the thread catches up from the log
//! once it is idle (the log is the truth; the index is a cache).

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::{AuditError, Index, IndexRow};

/// Rows queued before new batches are shed (about 40 MB).
pub(crate) const MAX_BACKLOG: usize = 200_000;

/// The queue between the sync thread and the index thread.
#[derive(Debug)]
pub(crate) struct Feed {
    queue: Mutex<Queue>,
    ready: Condvar,
    max_backlog: usize,
}

#[derive(Debug, Default)]
struct Queue {
    rows: Vec<IndexRow>,
    /// Rows were shed or failed: catch up from the log when idle.
    behind: bool,
    closed: bool,
}

impl Feed {
    /// Starts the thread that owns `index`.
    pub(crate) fn start(
        index: Index,
        log: PathBuf,
        max_backlog: usize,
    ) -> Result<(Arc<Feed>, JoinHandle<()>), AuditError> {
        let feed = Arc::new(Feed { queue: Mutex::default(), ready: Condvar::new(), max_backlog });
        let worker = Arc::clone(&feed);
        let handle = std::thread::Builder::new()
            .name("audit-index".into())
            .spawn(move || worker.run(index, &log))
            .map_err(AuditError::io(PathBuf::new(), "start index thread"))?;
        Ok((feed, handle))
    }

    /// Queues the rows of records that are now durable.
    pub(crate) fn push(&self, mut rows: Vec<IndexRow>) {
        if rows.is_empty() {
            return;
        }
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.rows.len() + rows.len() > self.max_backlog {
            if !queue.behind {
                tracing::warn!(
                    backlog = queue.rows.len(),
                    "audit index is falling behind; it will catch up from the log"
                );
            }
            queue.behind = true;
            return;
        }
        queue.rows.append(&mut rows);
        self.ready.notify_one();
    }

    /// Lets the thread drain what is queued, then stop.
    pub(crate) fn close(&self) {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        self.ready.notify_one();
    }

    fn run(&self, mut index: Index, log: &std::path::Path) {
        loop {
            let (rows, behind, closed) = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                while queue.rows.is_empty() && !queue.closed && !queue.behind {
                    queue = self.ready.wait(queue).unwrap_or_else(PoisonError::into_inner);
                }
                let rows = std::mem::take(&mut queue.rows);
                let behind = std::mem::take(&mut queue.behind);
                (rows, behind, queue.closed)
            };
            let result = index.insert(&rows).and_then(|()| if behind { index.catch_up(log).map(drop) } else { Ok(()) });
            if let Err(error) = result {
                tracing::warn!(%error, rows = rows.len(), "audit index update failed; the next query catches up");
            }
            if closed && self.queue.lock().unwrap_or_else(PoisonError::into_inner).rows.is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::audit::fixtures::notice;
    use crate::audit::{AuditLog, AuditOptions, Query, Redactor, query};

    #[test]
    fn shed_rows_are_caught_up_from_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let options = AuditOptions { fsync_interval: Duration::from_millis(50), index: false, redact: Vec::new() };
        let log = AuditLog::open(&path, options).expect("open");
        for i in 0..50 {
            log.append(notice(&i.to_string())).expect("append");
        }
        drop(log);
        let (feed, thread) = Feed::start(Index::open(&path).expect("index"), path.clone(), 10).expect("start");
        let row = |seq| IndexRow { seq, ..IndexRow::for_entry(&notice("x"), Some(&Redactor::default())) };
        feed.push((0..5).map(row).collect());
        feed.push((5..25).map(row).collect());
        feed.close();
        thread.join().expect("join");
        let index = Index::open(&path).expect("index");
        let count: i64 = index.conn().query_row("SELECT count(*) FROM records", [], |r| r.get(0)).expect("count");
        assert_eq!(count, 50);
        assert_eq!(query(&path, &Query::default()).expect("query").len(), 50);
    }
}
