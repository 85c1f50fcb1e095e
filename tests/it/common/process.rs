//! The real binary as a child process, for tests and benches that watch it from outside:
//! resident memory, signals, exit codes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `dynamo-cache serve`.
pub struct Served {
    pub child: Child,
    /// Data listener, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Admin listener.
    pub admin_url: String,
}

impl Served {
    /// `binary serve` on free loopback ports in front of `upstream`, with an optional config
    /// file; returns once it has printed its listening line.
    pub fn start(binary: &str, upstream: &str, config: Option<&Path>) -> Served {
        let mut command = Command::new(binary);
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--region", "us-east-1", "--upstream", upstream])
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", "test-secret")
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command.spawn().unwrap();
        let line = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .next()
            .unwrap()
            .unwrap();
        let (url, admin_url) = banner_urls(&line);
        Served {
            child,
            url,
            admin_url,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits: whether it exited 0.
    pub fn terminate(mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap().success()
    }
}

/// The data and admin URLs of the binary's first line
/// (`dynamo-cache listening on http://A (admin http://B), upstream U`).
pub fn banner_urls(line: &str) -> (String, String) {
    let urls: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .collect();
    assert!(urls.len() >= 2, "no listening line: {line:?}");
    (urls[0].to_string(), urls[1].to_string())
}

/// Resident memory of process `pid`, in bytes (Linux).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
