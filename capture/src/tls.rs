//! The TLS libraries a target process has mapped, and where OpenSSL's
//! plaintext functions are in them.
//!
//! Libraries are found in `/proc/PID/maps` and opened through
//! `/proc/PID/root`, so a container's own `libssl` is the one instrumented,
//! whatever mount namespace it lives in.

use std::{collections::BTreeMap, os::unix::fs::MetadataExt, path::PathBuf};

use object::{Object, ObjectSegment, ObjectSymbol};

/// A TLS library mapped by a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Library {
    /// Device and inode: one library file is looked at once.
    pub key: (u64, u64),
    /// The path as the process sees it.
    pub path: String,
    /// A path to it that works from any mount namespace.
    pub open_path: PathBuf,
    pub kind: Kind,
}

/// Which TLS library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    OpenSsl,
    /// Libraries whose plaintext podtap does not read; their traffic is
    /// recorded encrypted.
    GnuTls,
    Nss,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::OpenSsl => "OpenSSL",
            Kind::GnuTls => "GnuTLS",
            Kind::Nss => "NSS",
        }
    }

    fn of(file_name: &str) -> Option<Kind> {
        if file_name.starts_with("libssl.so") {
            Some(Kind::OpenSsl)
        } else if file_name.starts_with("libgnutls.so") {
            Some(Kind::GnuTls)
        } else if file_name.starts_with("libssl3.so") || file_name.starts_with("libnss3.so") {
            Some(Kind::Nss)
        } else {
            None
        }
    }
}

/// The TLS libraries `pid` has mapped (each once). A process that is gone
/// has none.
pub fn libraries(pid: u32) -> Vec<Library> {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    let mut found = BTreeMap::new();
    for line in maps.lines() {
        // address perms offset dev inode path
        let Some(path) = line.split_whitespace().nth(5) else { continue };
        if !path.starts_with('/') {
            continue;
        }
        let file_name = path.rsplit('/').next().unwrap_or(path);
        let Some(kind) = Kind::of(file_name) else { continue };
        let open_path = PathBuf::from(format!("/proc/{pid}/root{path}"));
        let Ok(meta) = std::fs::metadata(&open_path) else { continue };
        let key = (meta.dev(), meta.ino());
        found.entry(key).or_insert_with(|| Library {
            key,
            path: path.to_string(),
            open_path,
            kind,
        });
    }
    found.into_values().collect()
}

/// File offsets of OpenSSL's plaintext functions; `SSL_write_ex` and
/// `SSL_read_ex` exist from OpenSSL 1.1.1 on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct OpenSslFunctions {
    pub ssl_write: Option<u64>,
    pub ssl_read: Option<u64>,
    pub ssl_write_ex: Option<u64>,
    pub ssl_read_ex: Option<u64>,
    /// Forgets an `SSL *` whose address may be reused.
    pub ssl_free: Option<u64>,
}

/// Why a library cannot be instrumented.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is not an ELF file podtap can read: {reason}")]
    Elf { path: String, reason: String },
    #[error("{path} exports neither SSL_write nor SSL_read")]
    NoFunctions { path: String },
}

/// What an executable with OpenSSL (or BoringSSL) linked in says of it.
pub const BUILT_IN_OPENSSL: &str = "a statically linked OpenSSL or BoringSSL";

/// A TLS library built into the executable `data` (not Go's, which
/// [`crate::golang::has_function`] tells): OpenSSL or BoringSSL linked
/// statically (`SSL_write` among its symbols: the plaintext probes work on
/// it when it exports its functions), or rustls, whose plaintext podtap
/// does not read.
pub fn built_in(data: &[u8]) -> Option<&'static str> {
    let file = object::File::parse(data).ok()?;
    let mut rustls = false;
    for sym in file.symbols().chain(file.dynamic_symbols()) {
        let Ok(name) = sym.name() else { continue };
        if sym.is_definition() && (name == "SSL_write" || name == "SSL_read") {
            return Some(BUILT_IN_OPENSSL);
        }
        rustls |= name.contains("rustls");
    }
    rustls.then_some("rustls")
}

/// Where OpenSSL's functions are in the library at `lib`.
pub fn openssl_functions(lib: &Library) -> Result<OpenSslFunctions, LibraryError> {
    let path = lib.path.clone();
    let data = std::fs::read(&lib.open_path)
        .map_err(|source| LibraryError::Io { path: path.clone(), source })?;
    functions_in(&data, path)
}

/// Where OpenSSL's functions are in the ELF file `data` (a library, or an
/// executable with OpenSSL built in, like Node's), named `path`.
pub fn functions_in(data: &[u8], path: String) -> Result<OpenSslFunctions, LibraryError> {
    let file = object::File::parse(data)
        .map_err(|e| LibraryError::Elf { path: path.clone(), reason: e.to_string() })?;
    // Virtual address to file offset, through the executable segment
    // holding it.
    let to_offset = |addr: u64| {
        file.segments().find_map(|s| {
            let (start, size) = s.file_range();
            let delta = addr.checked_sub(s.address())?;
            (delta < size).then_some(start + delta)
        })
    };
    let mut out = OpenSslFunctions::default();
    for sym in file.dynamic_symbols() {
        if !sym.is_definition() {
            continue;
        }
        let slot = match sym.name() {
            Ok("SSL_write") => &mut out.ssl_write,
            Ok("SSL_read") => &mut out.ssl_read,
            Ok("SSL_write_ex") => &mut out.ssl_write_ex,
            Ok("SSL_read_ex") => &mut out.ssl_read_ex,
            Ok("SSL_free") => &mut out.ssl_free,
            _ => continue,
        };
        *slot = to_offset(sym.address());
    }
    if out.ssl_write.is_none() && out.ssl_read.is_none() {
        return Err(LibraryError::NoFunctions { path });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_system_libssl_of_this_process_and_its_functions() {
        // The test binary itself maps no libssl; Python with its ssl module
        // does.
        let mut child = std::process::Command::new("python3")
            .args(["-c", "import ssl, sys; print('ready', flush=True); sys.stdin.read()"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let libs = libraries(child.id());
        let ssl = libs.iter().find(|l| l.kind == Kind::OpenSsl).expect("libssl mapped");
        assert!(ssl.path.contains("libssl.so"), "{ssl:?}");
        // Read through /proc/PID/root while the process lives.
        let f = openssl_functions(ssl);
        let data = std::fs::read(&ssl.open_path);
        let _ = child.kill();
        let _ = child.wait();
        let f = f.expect("functions");
        assert!(f.ssl_write.is_some() && f.ssl_read.is_some(), "{f:?}");
        assert!(f.ssl_write_ex.is_some() && f.ssl_read_ex.is_some(), "{f:?}");
        assert!(f.ssl_free.is_some(), "{f:?}");
        // Each is a file offset where the function's code is.
        let data = data.unwrap();
        let at = f.ssl_write.unwrap() as usize;
        assert!(at < data.len());
        assert!(libraries(u32::MAX).is_empty());
    }

    #[test]
    fn built_in_tls_libraries_are_named() {
        // This test binary talks to Kubernetes through rustls; ls has no
        // TLS; an object exporting SSL_write has OpenSSL in it.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(built_in(&me), Some("rustls"));
        assert_eq!(built_in(&std::fs::read("/bin/ls").unwrap()), None);
        let libssl = std::fs::read("/usr/lib/x86_64-linux-gnu/libssl.so.3").unwrap();
        assert_eq!(built_in(&libssl), Some("a statically linked OpenSSL or BoringSSL"));
        assert_eq!(built_in(b"not an ELF file"), None);
    }

    #[test]
    fn library_kinds_by_file_name() {
        assert_eq!(Kind::of("libssl.so.3"), Some(Kind::OpenSsl));
        assert_eq!(Kind::of("libssl.so.1.1"), Some(Kind::OpenSsl));
        assert_eq!(Kind::of("libgnutls.so.30"), Some(Kind::GnuTls));
        assert_eq!(Kind::of("libnss3.so"), Some(Kind::Nss));
        assert_eq!(Kind::of("libcrypto.so.3"), None);
    }
}
