//! Finding and opening capture files.
//!
//! Arguments may name capture files, segment directories of a capture that
//! did not finish (`run.parquet.d/`), directories holding captures, or globs.
//! Each capture is checked before anything is decoded: a file that is not
//! Parquet, not a podtap capture, damaged, or written by a newer podtap gets a
//! clear error naming it.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use formats::schema::{self, meta};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

/// Why an input cannot be analysed.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("no such file or directory: `{path}`")]
    Missing { path: PathBuf },
    #[error("`{pattern}` matches no capture file")]
    NoMatch { pattern: String },
    #[error("invalid glob pattern `{pattern}`: {reason}")]
    BadGlob { pattern: String, reason: String },
    #[error("failed to read `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not a Parquet file, or it is truncated or damaged ({reason})")]
    NotParquet { path: PathBuf, reason: String },
    #[error("`{path}` is a Parquet file but not a podtap capture (no podtap metadata)")]
    NotACapture { path: PathBuf },
    #[error("`{path}` is a podtap {kind} file, not a capture")]
    WrongKind { path: PathBuf, kind: String },
    #[error(
        "`{path}` was written by a newer podtap (capture schema version {found}; this analyze reads up to {supported})"
    )]
    TooNew { path: PathBuf, found: String, supported: u32 },
    #[error("`{path}` lacks column `{column}` (or it has the wrong type): not a podtap capture")]
    BadColumn { path: PathBuf, column: String },
    #[error("failed to decode `{path}`: {reason}")]
    Decode { path: PathBuf, reason: String },
}

/// One capture: a finished file, or the segments of an unfinished one.
#[derive(Debug, Clone)]
pub struct Capture {
    /// What to call it in messages.
    pub name: String,
    /// Parquet files in order (one for a finished capture).
    pub parts: Vec<PathBuf>,
    /// File-level metadata of the first part.
    pub meta: HashMap<String, String>,
    /// Rows in all parts.
    pub rows: u64,
}

impl Capture {
    /// Total bytes of its files.
    pub fn bytes(&self) -> u64 {
        self.parts.iter().filter_map(|p| fs::metadata(p).ok()).map(|m| m.len()).sum()
    }

    /// Events lost in the kernel, from the metadata (the last segment's for
    /// an unfinished capture is read as the capture goes).
    pub fn lost_events(&self) -> Option<u64> {
        self.meta.get(meta::LOST_EVENTS).and_then(|v| v.parse().ok())
    }

    /// Header blocks from the Go probes that `capture` dropped as
    /// implausible (0 for captures that predate the count).
    pub fn rejected_header_blocks(&self) -> u64 {
        self.meta.get(meta::REJECTED_HEADER_BLOCKS).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// What capture masked before writing (`None` for captures that predate
    /// capture-time redaction).
    pub fn redaction(&self) -> Option<formats::schema::Redaction> {
        self.meta.get(meta::REDACTION).and_then(|v| serde_json::from_str(v).ok())
    }

    /// The machine it ran on.
    pub fn host(&self) -> Option<&str> {
        self.meta.get(meta::HOST).map(String::as_str).filter(|h| !h.is_empty())
    }

    /// When it started and ended (ns since the epoch); an unfinished capture
    /// has no end.
    pub fn span(&self) -> (Option<i64>, Option<i64>) {
        let at = |key: &str| {
            let text = self.meta.get(key)?;
            let t = humantime::parse_rfc3339(text).ok()?;
            let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
            i64::try_from(d.as_nanos()).ok()
        };
        (at(meta::START), at(meta::END))
    }

    /// Names of its target processes by pid (`podtap.targets`).
    pub fn process_names(&self) -> HashMap<u32, String> {
        let Some(text) = self.meta.get(meta::TARGETS) else { return HashMap::new() };
        let Ok(targets) = serde_json::from_str::<serde_json::Value>(text) else {
            return HashMap::new();
        };
        let Some(processes) = targets.get("processes").and_then(|p| p.as_array()) else {
            return HashMap::new();
        };
        processes
            .iter()
            .filter_map(|p| {
                let pid = u32::try_from(p.get("pid")?.as_u64()?).ok()?;
                let comm = p.get("comm")?.as_str()?;
                Some((pid, comm.to_string()))
            })
            .collect()
    }
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn is_segment(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("part-") && n.ends_with(".parquet"))
}

/// Resolves the command-line arguments to captures, checking each.
pub fn discover(args: &[String]) -> Result<Vec<Capture>, InputError> {
    let mut paths = Vec::new();
    for arg in args {
        let path = PathBuf::from(arg);
        if path.exists() {
            paths.push(path);
        } else if has_glob_chars(arg) {
            let matches = glob::glob(arg).map_err(|e| InputError::BadGlob {
                pattern: arg.clone(),
                reason: e.msg.to_string(),
            })?;
            let mut found: Vec<PathBuf> = matches.filter_map(Result::ok).collect();
            found.sort();
            if found.is_empty() {
                return Err(InputError::NoMatch { pattern: arg.clone() });
            }
            paths.extend(found);
        } else {
            return Err(InputError::Missing { path });
        }
    }
    let mut captures = Vec::new();
    for path in paths {
        if path.is_dir() {
            captures.extend(from_dir(&path)?);
        } else {
            captures.push(open(path.display().to_string(), vec![path])?);
        }
    }
    Ok(captures)
}

/// A segment directory is one capture; any other directory holds captures.
fn from_dir(dir: &Path) -> Result<Vec<Capture>, InputError> {
    let io = |source| InputError::Io { path: dir.to_path_buf(), source };
    let mut entries: Vec<PathBuf> =
        fs::read_dir(dir).map_err(io)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    let segments: Vec<PathBuf> = entries.iter().filter(|p| is_segment(p)).cloned().collect();
    if !segments.is_empty() {
        return Ok(vec![open(dir.display().to_string(), segments)?]);
    }
    let mut out = Vec::new();
    for entry in &entries {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if entry.is_file() && name.ends_with(".parquet") {
            out.push(open(entry.display().to_string(), vec![entry.clone()])?);
        } else if entry.is_dir() && name.ends_with(".parquet.d") {
            // An unfinished capture, unless its merged file exists too.
            let merged = entry.with_extension("");
            if !merged.exists() {
                out.extend(from_dir(entry)?);
            }
        }
    }
    if out.is_empty() {
        return Err(InputError::NoMatch { pattern: dir.display().to_string() });
    }
    Ok(out)
}

/// Opens and checks one capture.
fn open(name: String, parts: Vec<PathBuf>) -> Result<Capture, InputError> {
    let first =
        parts.first().cloned().ok_or_else(|| InputError::NoMatch { pattern: name.clone() })?;
    let (meta, mut rows) = check(&first)?;
    for part in &parts[1..] {
        rows += check(part)?.1;
    }
    Ok(Capture { name, parts, meta, rows })
}

/// The columns `analyze` reads, with the types it needs.
fn required_columns() -> Vec<(&'static str, DataType)> {
    use schema::col;
    vec![
        (col::TS, schema::ts_type()),
        (col::KIND, schema::kind_type()),
        (col::PID, DataType::UInt32),
        (col::COMM, DataType::Utf8),
        (col::CONN_ID, DataType::UInt64),
        (col::DIRECTION, DataType::Utf8),
        (col::SEQ, DataType::UInt64),
        (col::SIZE, DataType::UInt64),
        (col::PAYLOAD, DataType::Binary),
        (col::LOCAL_ADDR, DataType::Utf8),
        (col::REMOTE_ADDR, DataType::Utf8),
        (col::NAMESPACE, DataType::Utf8),
        (col::POD, DataType::Utf8),
        (col::POD_UID, DataType::Utf8),
        (col::CONTAINER, DataType::Utf8),
        (col::NODE, DataType::Utf8),
    ]
}

/// Checks that `path` is a capture this build can read; returns its metadata
/// and row count.
fn check(path: &Path) -> Result<(HashMap<String, String>, u64), InputError> {
    let builder = builder(path)?;
    let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let meta: HashMap<String, String> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter().map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default())).collect()
        })
        .unwrap_or_default();
    let path_buf = || path.to_path_buf();
    let Some(kind) = meta.get(meta::FILE_KIND) else {
        return Err(InputError::NotACapture { path: path_buf() });
    };
    if kind != schema::FILE_KIND_CAPTURE {
        return Err(InputError::WrongKind { path: path_buf(), kind: kind.clone() });
    }
    let version = meta.get(meta::SCHEMA_VERSION).cloned().unwrap_or_default();
    match version.parse::<u32>() {
        Ok(v) if v <= schema::SCHEMA_VERSION => {}
        _ => {
            return Err(InputError::TooNew {
                path: path_buf(),
                found: version,
                supported: schema::SCHEMA_VERSION,
            })
        }
    }
    let arrow = builder.schema();
    for (name, ty) in required_columns() {
        match arrow.field_with_name(name) {
            Ok(f) if f.data_type() == &ty => {}
            _ => return Err(InputError::BadColumn { path: path_buf(), column: name.into() }),
        }
    }
    Ok((meta, rows))
}

fn builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<fs::File>, InputError> {
    let file = fs::File::open(path)
        .map_err(|source| InputError::Io { path: path.to_path_buf(), source })?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| InputError::NotParquet { path: path.to_path_buf(), reason: e.to_string() })
}

/// Record batches of one capture file, only the columns `analyze` uses.
pub fn batches(
    path: &Path,
) -> Result<impl Iterator<Item = Result<RecordBatch, InputError>>, InputError> {
    let builder = builder(path)?;
    let mut names: Vec<&str> = required_columns().iter().map(|(n, _)| *n).collect();
    // Read where present: files of older captures lack them.
    names.extend([schema::col::FLAGS, schema::col::STREAM_ID, schema::col::HEADERS]);
    let mask =
        parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), names.iter().copied());
    let reader: ParquetRecordBatchReader = builder
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(|e| InputError::Decode { path: path.to_path_buf(), reason: e.to_string() })?;
    let path = path.to_path_buf();
    Ok(reader.map(move |b| {
        b.map_err(|e| InputError::Decode { path: path.clone(), reason: e.to_string() })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_path_and_an_empty_glob_are_named() {
        let e = discover(&["/nonexistent/run.parquet".into()]).unwrap_err();
        assert_eq!(e.to_string(), "no such file or directory: `/nonexistent/run.parquet`");
        let e = discover(&["/nonexistent/*.parquet".into()]).unwrap_err();
        assert_eq!(e.to_string(), "`/nonexistent/*.parquet` matches no capture file");
    }

    #[test]
    fn a_file_that_is_not_parquet_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.parquet");
        fs::write(&path, b"hello, not parquet").unwrap();
        let e = discover(&[path.display().to_string()]).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("`{}` is not a Parquet file", path.display())),
            "{e}"
        );
    }
}
