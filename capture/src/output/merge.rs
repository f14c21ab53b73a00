//! Merging the segments of a finished capture into the final file.

use std::{fs, path::Path};

use anyhow::{Context as _, Result};
use formats::schema::capture_schema;
use parquet::{
    arrow::{arrow_reader::ParquetRecordBatchReaderBuilder, ArrowWriter},
    file::metadata::KeyValue,
};

use crate::cli::{parent_dir, with_suffix};

use super::{
    create_private,
    segments::{properties, sync_dir, Segments},
};

/// Writes every segment, in order, into `output` with `metadata`, then removes
/// the segment directory. The file appears under its final name only when it
/// is complete (written to a temporary name, synced, renamed).
pub fn merge(segments: Segments, output: &Path, metadata: Vec<KeyValue>) -> Result<u64> {
    let tmp = temporary(output);
    let result = write(&segments, output, &tmp, metadata);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The name the merged file has until it is complete.
pub fn temporary(output: &Path) -> std::path::PathBuf {
    with_suffix(output, ".tmp")
}

fn write(segments: &Segments, output: &Path, tmp: &Path, metadata: Vec<KeyValue>) -> Result<u64> {
    let file =
        create_private(tmp).with_context(|| format!("failed to create `{}`", tmp.display()))?;
    let mut writer = ArrowWriter::try_new(file, capture_schema(), Some(properties(metadata)))
        .context("failed to start the capture file")?;
    for path in segments.paths() {
        let file = fs::File::open(path)
            .with_context(|| format!("failed to open segment `{}`", path.display()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(8192).build())
            .with_context(|| format!("failed to read segment `{}`", path.display()))?;
        for batch in reader {
            let batch =
                batch.with_context(|| format!("failed to decode segment `{}`", path.display()))?;
            writer.write(&batch).context("failed to write the capture file")?;
        }
    }
    let file = writer.into_inner().context("failed to finish the capture file")?;
    file.sync_all().with_context(|| format!("failed to sync `{}`", tmp.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    fs::rename(tmp, output).with_context(|| {
        format!("failed to rename `{}` to `{}`", tmp.display(), output.display())
    })?;
    // The new name must be on disk before the segments go away.
    sync_dir(parent_dir(output))?;
    fs::remove_dir_all(segments.dir()).with_context(|| {
        format!("failed to remove segment directory `{}`", segments.dir().display())
    })?;
    Ok(size)
}
