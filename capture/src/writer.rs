//! The writer thread: encodes and writes segments off the thread that drains
//! the ring buffer, so compression never delays reading events.

use std::{
    path::PathBuf,
    sync::mpsc::{sync_channel, SyncSender},
    thread::JoinHandle,
};

use anyhow::{anyhow, Context as _, Result};
use arrow_array::RecordBatch;
use parquet::file::metadata::KeyValue;

use crate::output::{merge::merge, segments::Segments};

enum Msg {
    Segment(RecordBatch, Vec<KeyValue>),
    Finish(Vec<KeyValue>),
}

/// Handle to the writer thread.
pub struct Writer {
    tx: SyncSender<Msg>,
    thread: JoinHandle<Result<Option<u64>>>,
}

impl Writer {
    /// Starts the thread; it writes segments into `segments` and, on
    /// [`Writer::finish`], merges them into `output`.
    pub fn spawn(segments: Segments, output: PathBuf) -> Result<Self> {
        // One batch of slack, so at most about two seconds are unwritten at
        // any time; beyond that the reader waits, the ring buffer fills up,
        // and the kernel counts what it drops.
        let (tx, rx) = sync_channel::<Msg>(1);
        let thread = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || -> Result<Option<u64>> {
                let mut segments = segments;
                while let Ok(msg) = rx.recv() {
                    match msg {
                        Msg::Segment(batch, meta) => segments.write(&batch, meta)?,
                        Msg::Finish(meta) => return merge(segments, &output, meta).map(Some),
                    }
                }
                Ok(None)
            })
            .context("failed to start the writer thread")?;
        Ok(Self { tx, thread })
    }

    /// Queues a segment. Fails if the writer stopped (its error is reported
    /// by [`Writer::finish`]).
    pub fn segment(&self, batch: RecordBatch, meta: Vec<KeyValue>) -> Result<()> {
        self.tx.send(Msg::Segment(batch, meta)).map_err(|_| anyhow!("the writer thread stopped"))
    }

    /// Whether the thread stopped early (a write failed).
    pub fn failed(&self) -> bool {
        self.thread.is_finished()
    }

    /// Merges the segments into the final file; returns its size.
    pub fn finish(self, meta: Vec<KeyValue>) -> Result<u64> {
        // If the thread already stopped, joining it reports why.
        let _ = self.tx.send(Msg::Finish(meta));
        drop(self.tx);
        match self.thread.join().map_err(|_| anyhow!("the writer thread panicked"))? {
            Ok(Some(size)) => Ok(size),
            Ok(None) => {
                Err(anyhow!("the writer thread stopped before the capture file was written"))
            }
            Err(e) => Err(e),
        }
    }

    /// The error that stopped the thread early.
    pub fn into_error(self) -> anyhow::Error {
        drop(self.tx);
        match self.thread.join() {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => anyhow!("the writer thread stopped"),
            Err(_) => anyhow!("the writer thread panicked"),
        }
    }
}
