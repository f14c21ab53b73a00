//! Web peers for end-to-end tests: curl, nghttpd, a self-signed certificate,
//! and a look at every byte a capture file holds.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use arrow_array::{cast::AsArray, types::Int32Type, Array};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A self-signed certificate and key for `localhost`, made here.
pub fn certificate(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj"])
        .arg("/CN=localhost")
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    (cert.display().to_string(), key.display().to_string())
}

/// Runs curl; returns what it printed (bodies only).
pub fn curl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("curl").arg("-sSk").args(args).output().expect("curl runs");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

pub fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// nghttpd serving `www` on a free port, over TLS with `tls` (cert, key)
/// or in the clear (h2c, prior knowledge or upgrade).
pub struct Nghttpd {
    pub child: Child,
    pub port: u16,
}

impl Nghttpd {
    pub fn start(www: &Path, tls: Option<(&str, &str)>) -> Nghttpd {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new("nghttpd");
        cmd.arg("-d").arg(www);
        match tls {
            Some((cert, key)) => cmd.args([&port.to_string(), key, cert]),
            None => cmd.args(["--no-tls", &port.to_string()]),
        };
        let child = cmd
            .stdout(Stdio::null())
            .spawn()
            .expect("nghttpd runs (scripts/setup.sh installs nghttp2-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nghttpd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nghttpd { child, port }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// hypercorn serving `scripts/peers/asgi_app.py` in the clear (HTTP/1.1,
/// and HTTP/2 by upgrade or prior knowledge) on a free port.
pub struct Hypercorn {
    pub child: Child,
    pub port: u16,
}

impl Hypercorn {
    pub fn start() -> Hypercorn {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let venv = std::env::var("PODTAP_VENV").unwrap_or_else(|_| "/opt/podtap-venv".into());
        let child = Command::new(Path::new(&venv).join("bin/hypercorn"))
            .args(["--bind", &format!("127.0.0.1:{port}"), "asgi_app:app"])
            .current_dir(super::repo_root().join("scripts/peers"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("hypercorn runs (scripts/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "hypercorn did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Hypercorn { child, port }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Hypercorn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nghttpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strings_of(array: &dyn Array, out: &mut Vec<u8>) {
    match array.data_type() {
        DataType::Binary => {
            for v in array.as_binary::<i32>().iter().flatten() {
                out.extend_from_slice(v);
                out.push(0);
            }
        }
        DataType::Utf8 => {
            for v in array.as_string::<i32>().iter().flatten() {
                out.extend_from_slice(v.as_bytes());
                out.push(0);
            }
        }
        DataType::Dictionary(_, _) => strings_of(array.as_dictionary::<Int32Type>().values(), out),
        DataType::List(_) => strings_of(array.as_list::<i32>().values(), out),
        DataType::Struct(_) => {
            for column in array.as_struct().columns() {
                strings_of(column, out);
            }
        }
        _ => {}
    }
}

/// Every byte string a capture file (or segment) holds: the values of every
/// binary and text column, nested ones included, and the file's metadata.
pub fn every_string(path: &Path) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let mut out = Vec::new();
    for kv in builder.metadata().file_metadata().key_value_metadata().into_iter().flatten() {
        out.extend_from_slice(kv.key.as_bytes());
        out.extend_from_slice(kv.value.as_deref().unwrap_or_default().as_bytes());
    }
    for batch in builder.build().unwrap() {
        for column in batch.unwrap().columns() {
            strings_of(column, &mut out);
        }
    }
    out
}
