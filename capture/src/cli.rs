//! Command line: clap parses flags into [`Args`], [`Args::validate`] turns them
//! into a [`Config`] of checked values (ripgrep's two-phase shape), so the rest
//! of the program never sees a raw string.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Parser;

use crate::targets::k8s::api::Selection;
use formats::wire::{DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_CAP};

/// Record the TCP traffic (HTTP/1, HTTP/2, gRPC) of chosen processes with eBPF
/// into a Parquet capture file, for `analyze`.
///
/// Runs as root. Connections that are already open are captured from their next
/// syscall on; processes forked by a target become targets too.
#[derive(Debug, Parser)]
#[command(name = "capture", version, about, long_about = None)]
#[command(after_help = "Examples:\n  capture --ns wyw --duration 5m -o run.parquet\n  \
    capture --ns shop -l app=cart --container server -o run.parquet\n  \
    capture --pid 4242 --duration 30s -o run.parquet\n  \
    capture --cgroup /sys/fs/cgroup/unified/system.slice/nginx.service -o run.parquet\n  \
    capture --inspect /usr/local/bin/my-grpc-server\n\n\
    Exit codes: 0 ok, 1 capture failed, 2 bad usage.")]
pub struct Args {
    /// Pods of this namespace that run on this node (Kubernetes API).
    #[arg(short = 'n', long = "ns", value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Only this pod of --ns (repeatable).
    #[arg(long = "pod", value_name = "NAME")]
    pub pods: Vec<String>,

    /// Only pods of --ns with these labels (`app=web,tier!=db`).
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Only this container of the selected pods (repeatable).
    #[arg(long = "container", value_name = "NAME")]
    pub containers: Vec<String>,

    /// Kubeconfig file. Default: in-cluster configuration, then $KUBECONFIG,
    /// then ~/.kube/config.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The node whose pods are targeted. Default: $NODE_NAME, then the host
    /// name.
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    pub node: Option<String>,

    /// A local process to capture, with its children (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// All processes of a cgroup directory and its sub-cgroups (repeatable).
    #[arg(long = "cgroup", value_name = "PATH")]
    pub cgroups: Vec<PathBuf>,

    /// How long to capture (30s, 5m, 1h). Default: until Ctrl-C or SIGTERM.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// The capture file to write (Parquet).
    #[arg(short, long, value_name = "FILE", required_unless_present = "inspect")]
    pub output: Option<PathBuf>,

    /// Payload bytes kept per syscall event; `size` always holds the true length.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_PAYLOAD)]
    pub max_payload: u32,

    /// Size of the kernel ring buffer (a power of two, at least 4096). Larger
    /// absorbs longer bursts before events are lost.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub ring_buffer_size: u32,

    /// Mask the values of this header before anything is written, besides
    /// the default authorization, proxy-authorization, cookie and set-cookie
    /// (repeatable; any case). Values keep their length, so every offset
    /// and frame stays true.
    #[arg(long = "redact-header", value_name = "NAME", conflicts_with = "no_redact")]
    pub redact_headers: Vec<String>,

    /// Mask no header values, not even the default credentials.
    #[arg(long)]
    pub no_redact: bool,

    /// Keep no bodies: HTTP/1 head blocks, HTTP/2 frame headers and header
    /// blocks are kept (RED and headers still work), body bytes are
    /// recorded as lengths only.
    #[arg(long)]
    pub no_bodies: bool,

    /// Capture by syscalls only: attach no uprobes to target programs (the
    /// Go gRPC header probes are otherwise attached to grpc-go binaries).
    #[arg(long)]
    pub no_uprobes: bool,

    /// The grpc-go version to assume for stripped Go programs that do not
    /// name theirs (built without modules, or by Bazel): it picks the struct
    /// offsets from podtap's table. Programs that name a version, or carry
    /// DWARF, are not affected.
    #[arg(long, value_name = "VERSION")]
    pub grpc_go_version: Option<String>,

    /// No progress line and no summary; errors are still printed.
    #[arg(short, long)]
    pub quiet: bool,

    /// Capture nothing: print, one JSON line per executable, what capture
    /// would do with it (Go and grpc-go versions, where the header probes
    /// go, the offsets and registers they read and where those came from, or
    /// why it would not probe it), then exit. Needs no root.
    #[arg(long, value_name = "EXECUTABLE", num_args = 1.., conflicts_with_all = [
        "namespace", "pods", "selector", "containers", "pids", "cgroups", "duration", "output",
    ])]
    pub inspect: Vec<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (try 30s, 5m or 1h)"))?;
    if d.is_zero() {
        return Err("the duration must be longer than zero".into());
    }
    Ok(d)
}

/// What to capture: local processes and cgroups, and Kubernetes pods (which
/// resolve to cgroups).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetSpec {
    pub pids: Vec<u32>,
    pub cgroups: Vec<PathBuf>,
    pub pods: Option<Selection>,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub targets: TargetSpec,
    pub duration: Option<Duration>,
    pub output: PathBuf,
    pub max_payload: u32,
    pub ring_buffer_size: u32,
    pub uprobes: bool,
    pub grpc_go_version: Option<String>,
    /// Which headers are masked, and whether bodies are kept.
    pub redaction: redact::Policy,
    pub quiet: bool,
}

/// What the command line asks for.
#[derive(Clone, Debug)]
pub enum Command {
    /// A capture.
    Capture(Box<Config>),
    /// `--inspect`: executables to look at.
    Inspect { files: Vec<PathBuf>, grpc_go_version: Option<String> },
}

/// A usage error: the command line asks for something impossible (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl Args {
    /// Checks everything that can be checked without touching the kernel.
    pub fn validate(self) -> Result<Command, UsageError> {
        let usage = |msg: String| Err(UsageError(msg));
        if let Some(v) = &self.grpc_go_version {
            if crate::golang::GrpcVersion::parse(v).is_none() {
                return usage(format!("--grpc-go-version must look like 1.33.3, got `{v}`"));
            }
        }
        if !self.inspect.is_empty() {
            return Ok(Command::Inspect {
                files: self.inspect,
                grpc_go_version: self.grpc_go_version,
            });
        }
        let Some(output) = self.output else {
            return usage("--output FILE is required".into());
        };
        if self.namespace.is_none() {
            for (flag, given) in [
                ("--pod", !self.pods.is_empty()),
                ("--selector", self.selector.is_some()),
                ("--container", !self.containers.is_empty()),
            ] {
                if given {
                    return usage(format!("{flag} needs --ns NAMESPACE"));
                }
            }
        }
        if self.pids.is_empty() && self.cgroups.is_empty() && self.namespace.is_none() {
            return usage("no target given: use --ns NAMESPACE, --pid PID or --cgroup PATH".into());
        }
        if let Some(kubeconfig) = self.kubeconfig.as_ref().filter(|p| !p.is_file()) {
            return usage(format!("--kubeconfig: `{}` is not a file", kubeconfig.display()));
        }
        let pods = match self.namespace {
            Some(namespace) if namespace.is_empty() => {
                return usage("--ns needs a namespace name".into())
            }
            Some(namespace) => Some(Selection {
                namespace,
                pods: self.pods,
                selector: self.selector.filter(|s| !s.is_empty()),
                containers: self.containers,
                kubeconfig: self.kubeconfig,
                node: match self.node.filter(|n| !n.is_empty()) {
                    Some(node) => node,
                    None => nix::sys::utsname::uname()
                        .map(|u| u.nodename().to_string_lossy().into_owned())
                        .map_err(|e| {
                            UsageError(format!("--node not given and no host name: {e}"))
                        })?,
                },
            }),
            None => None,
        };
        if self.max_payload == 0 || self.max_payload > MAX_PAYLOAD_CAP {
            return usage(format!(
                "--max-payload must be between 1 and {MAX_PAYLOAD_CAP} bytes, got {}",
                self.max_payload
            ));
        }
        if !self.ring_buffer_size.is_power_of_two() || self.ring_buffer_size < 4096 {
            return usage(format!(
                "--ring-buffer-size must be a power of two of at least 4096 bytes, got {}",
                self.ring_buffer_size
            ));
        }
        let mut names = if self.no_redact { Vec::new() } else { redact::Policy::default_names() };
        for name in &self.redact_headers {
            let name = name.trim().to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return usage(format!("--redact-header needs a header name, got `{name}`"));
            }
            if !names.contains(&name) {
                names.push(name);
            }
        }
        check_output(&output)?;
        let mut pids = self.pids;
        pids.sort_unstable();
        pids.dedup();
        Ok(Command::Capture(Box::new(Config {
            targets: TargetSpec { pids, cgroups: self.cgroups, pods },
            duration: self.duration,
            output,
            max_payload: self.max_payload,
            ring_buffer_size: self.ring_buffer_size,
            uprobes: !self.no_uprobes,
            grpc_go_version: self.grpc_go_version,
            redaction: redact::Policy::new(names, self.no_bodies),
            quiet: self.quiet,
        })))
    }
}

/// A `tchar` of RFC 9110 §5.6.2: what header names are made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The segment directory written next to `output` while a capture runs.
pub fn segment_dir(output: &Path) -> PathBuf {
    with_suffix(output, ".d")
}

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The directory a path is in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn check_output(output: &Path) -> Result<(), UsageError> {
    let parent = parent_dir(output);
    if !parent.is_dir() {
        return Err(UsageError(format!("output directory `{}` does not exist", parent.display())));
    }
    if output.is_dir() {
        return Err(UsageError(format!("output `{}` is a directory", output.display())));
    }
    let segments = segment_dir(output);
    if segments.exists() {
        return Err(UsageError(format!(
            "`{}` holds segments of an earlier capture that did not finish; analyze it or move it away first",
            segments.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(args: &[&str]) -> Result<Command, String> {
        let args = Args::try_parse_from(std::iter::once("capture").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        args.validate().map_err(|e| e.to_string())
    }

    fn parse(args: &[&str]) -> Result<Config, String> {
        match command(args)? {
            Command::Capture(config) => Ok(*config),
            other => panic!("not a capture: {other:?}"),
        }
    }

    #[test]
    fn redaction_adds_names_to_the_defaults_or_turns_off() {
        let c = parse(&["--pid", "1", "-o", "/tmp/x"]).unwrap();
        assert_eq!(c.redaction.names(), redact::Policy::default_names());
        assert!(!c.redaction.no_bodies);
        let c =
            parse(&["--pid", "1", "-o", "/tmp/x", "--redact-header", "X-Api-Key", "--no-bodies"])
                .unwrap();
        assert!(c.redaction.redacts(b"x-api-key") && c.redaction.redacts(b"cookie"));
        assert!(c.redaction.no_bodies);
        let c = parse(&["--pid", "1", "-o", "/tmp/x", "--no-redact"]).unwrap();
        assert!(c.redaction.names().is_empty());
        let e = parse(&["--pid", "1", "-o", "/tmp/x", "--no-redact", "--redact-header", "a"]);
        assert!(e.unwrap_err().contains("--no-redact"));
        let e = parse(&["--pid", "1", "-o", "/tmp/x", "--redact-header", "bad name"]).unwrap_err();
        assert!(e.contains("--redact-header needs a header name"), "{e}");
    }

    #[test]
    fn inspect_needs_no_target_and_no_output() {
        let Command::Inspect { files, grpc_go_version } =
            command(&["--inspect", "/bin/a", "--inspect", "/bin/b", "--grpc-go-version", "1.60.1"])
                .unwrap()
        else {
            panic!("not inspect")
        };
        assert_eq!(files, [PathBuf::from("/bin/a"), PathBuf::from("/bin/b")]);
        assert_eq!(grpc_go_version.as_deref(), Some("1.60.1"));
        let e = command(&["--inspect", "/bin/a", "--pid", "1"]).unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
        let e = command(&["--inspect", "/bin/a", "--grpc-go-version", "x"]).unwrap_err();
        assert!(e.contains("--grpc-go-version must look like"), "{e}");
    }

    #[test]
    fn accepts_pids_cgroups_duration_and_payload() {
        let c = parse(&[
            "--pid",
            "7",
            "--pid",
            "3",
            "--pid",
            "7",
            "--cgroup",
            "/sys/fs/cgroup/x",
            "--duration",
            "5m",
            "-o",
            "/tmp/run.parquet",
            "--max-payload",
            "16384",
        ])
        .unwrap();
        assert_eq!(c.targets.pids, vec![3, 7]);
        assert_eq!(c.targets.cgroups, vec![PathBuf::from("/sys/fs/cgroup/x")]);
        assert_eq!(c.duration, Some(Duration::from_secs(300)));
        assert_eq!(c.max_payload, 16384);
        assert_eq!(c.ring_buffer_size, 16 << 20);
        assert!(!c.quiet);
        assert!(c.uprobes);
        let off = parse(&["--pid", "1", "--no-uprobes", "-o", "/tmp/run.parquet"]).unwrap();
        assert!(!off.uprobes);
        let assumed = ["--pid", "1", "--grpc-go-version", "v1.33.3", "-o", "/tmp/run.parquet"];
        assert_eq!(parse(&assumed).unwrap().grpc_go_version.as_deref(), Some("v1.33.3"));
        let bad = parse(&["--pid", "1", "--grpc-go-version", "latest", "-o", "/tmp/run.parquet"]);
        assert!(bad.unwrap_err().contains("--grpc-go-version must look like 1.33.3"));
    }

    #[test]
    fn kubernetes_flags_make_a_selection() {
        let c = parse(&[
            "-n",
            "wyw",
            "--pod",
            "a",
            "--pod",
            "b",
            "-l",
            "app=web",
            "--container",
            "http",
            "--node",
            "node-a",
            "-o",
            "/tmp/run.parquet",
        ])
        .unwrap();
        let s = c.targets.pods.unwrap();
        assert_eq!(s.namespace, "wyw");
        assert_eq!(s.pods, ["a", "b"]);
        assert_eq!(s.selector.as_deref(), Some("app=web"));
        assert_eq!(s.containers, ["http"]);
        assert_eq!(s.node, "node-a");
        assert_eq!(s.kubeconfig, None);
        // Without --node (and NODE_NAME), the host name.
        if std::env::var_os("NODE_NAME").is_none() {
            let c = parse(&["--ns", "wyw", "-o", "/tmp/run.parquet"]).unwrap();
            let host =
                nix::sys::utsname::uname().unwrap().nodename().to_string_lossy().into_owned();
            assert_eq!(c.targets.pods.unwrap().node, host);
        }
    }

    #[test]
    fn pod_flags_need_a_namespace_and_a_kubeconfig_must_exist() {
        for flags in [&["--pod", "a"][..], &["-l", "app=web"], &["--container", "c"]] {
            let mut args = flags.to_vec();
            args.extend(["--pid", "1", "-o", "/tmp/x.parquet"]);
            let err = parse(&args).unwrap_err();
            assert!(err.ends_with("needs --ns NAMESPACE"), "{err}");
        }
        let err = parse(&["--ns", "wyw", "--kubeconfig", "/nonexistent/config", "-o", "/tmp/x"])
            .unwrap_err();
        assert_eq!(err, "--kubeconfig: `/nonexistent/config` is not a file");
        let err = parse(&["-o", "/tmp/x.parquet"]).unwrap_err();
        assert!(err.contains("use --ns NAMESPACE, --pid PID or --cgroup PATH"), "{err}");
    }

    #[test]
    fn defaults_to_4096_payload_bytes_and_no_duration() {
        let c = parse(&["--pid", "1", "-o", "/tmp/x.parquet"]).unwrap();
        assert_eq!(c.max_payload, 4096);
        assert_eq!(c.duration, None);
    }

    #[test]
    fn requires_a_target_and_an_output() {
        assert!(parse(&["-o", "/tmp/x.parquet"]).unwrap_err().contains("no target given"));
        assert!(parse(&["--pid", "1"]).unwrap_err().contains("--output"));
    }

    #[test]
    fn rejects_bad_values_with_the_flag_named() {
        let e = parse(&["--pid", "1", "-o", "/tmp/x", "--max-payload", "0"]).unwrap_err();
        assert!(e.contains("--max-payload"), "{e}");
        let e = parse(&["--pid", "1", "-o", "/tmp/x", "--max-payload", "70000"]).unwrap_err();
        assert!(e.contains("65536"), "{e}");
        let e = parse(&["--pid", "1", "-o", "/tmp/x", "--duration", "soon"]).unwrap_err();
        assert!(e.contains("--duration"), "{e}");
        let e = parse(&["--pid", "1", "-o", "/tmp/x", "--duration", "0s"]).unwrap_err();
        assert!(e.contains("longer than zero"), "{e}");
        let e = parse(&["--pid", "1", "-o", "/tmp/x", "--ring-buffer-size", "5000"]).unwrap_err();
        assert!(e.contains("power of two"), "{e}");
        let e = parse(&["--pid", "x", "-o", "/tmp/x"]).unwrap_err();
        assert!(e.contains("--pid"), "{e}");
    }

    #[test]
    fn rejects_an_output_in_a_missing_directory() {
        let e = parse(&["--pid", "1", "-o", "/nonexistent/dir/run.parquet"]).unwrap_err();
        assert_eq!(e, "output directory `/nonexistent/dir` does not exist");
    }

    #[test]
    fn refuses_to_clobber_segments_of_an_unfinished_capture() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run.parquet");
        std::fs::create_dir(segment_dir(&out)).unwrap();
        let e = parse(&["--pid", "1", "-o", out.to_str().unwrap()]).unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
    }
}
