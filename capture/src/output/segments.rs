//! Closed Parquet segments written while the capture runs, one about every
//! second, each readable on its own (SPEC §3 crash safety).
//!
//! A segment is written under a temporary name, synced, and renamed into
//! place, so `FILE.d/` only ever holds complete `part-NNNNNN.parquet` files.

use std::{
    fs,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use arrow_array::RecordBatch;
use formats::schema::col;
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::{
        metadata::KeyValue,
        properties::{EnabledStatistics, WriterProperties},
    },
    schema::types::ColumnPath,
};

use super::create_private;

/// Writer properties shared by segments and the merged file.
pub fn properties(metadata: Vec<KeyValue>) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_key_value_metadata(Some(metadata))
        .set_max_row_group_row_count(Some(1 << 20))
        // Bounds the memory a merge of a long capture needs.
        .set_max_row_group_bytes(Some(64 << 20))
        // Timestamps, offsets, sizes and payloads are nearly all distinct: a
        // dictionary would only cost CPU while capturing. Payload min/max
        // statistics mean nothing.
        .set_column_dictionary_enabled(ColumnPath::from(col::TS), false)
        .set_column_dictionary_enabled(ColumnPath::from(col::SEQ), false)
        .set_column_dictionary_enabled(ColumnPath::from(col::SIZE), false)
        .set_column_dictionary_enabled(ColumnPath::from(col::PAYLOAD), false)
        .set_column_statistics_enabled(ColumnPath::from(col::PAYLOAD), EnabledStatistics::None)
        .build()
}

/// The segment directory of a capture in progress.
pub struct Segments {
    dir: PathBuf,
    written: Vec<PathBuf>,
}

impl Segments {
    /// Creates `dir` (mode 0700).
    pub fn create(dir: &Path) -> Result<Self> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("failed to create segment directory `{}`", dir.display()))?;
        Ok(Self { dir: dir.to_path_buf(), written: Vec::new() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Segments written so far, in order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.written
    }

    /// Number the next segment will get (1-based).
    pub fn next_number(&self) -> u32 {
        self.written.len() as u32 + 1
    }

    /// Writes one closed segment.
    pub fn write(&mut self, batch: &RecordBatch, metadata: Vec<KeyValue>) -> Result<()> {
        let number = self.next_number();
        let path = self.dir.join(format!("part-{number:06}.parquet"));
        let tmp = self.dir.join(format!(".part-{number:06}.parquet.tmp"));
        let file = create_private(&tmp)
            .with_context(|| format!("failed to create `{}`", tmp.display()))?;
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(properties(metadata)))
            .context("failed to start a Parquet segment")?;
        writer.write(batch).context("failed to encode a Parquet segment")?;
        let file = writer.into_inner().context("failed to finish a Parquet segment")?;
        file.sync_all().with_context(|| format!("failed to sync `{}`", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("failed to rename `{}`", tmp.display()))?;
        sync_dir(&self.dir)?;
        self.written.push(path);
        Ok(())
    }
}

/// Makes a rename inside `dir` durable: without it a crash can lose the new
/// name even though the file's data was synced.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("failed to sync directory `{}`", dir.display()))
}
