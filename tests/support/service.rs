//! The `secure_service` example as a process, for the tests of its public contract.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// The `secure_service` example, started as users start it: a process configured by env.
pub struct SecureService {
    pub child: Child,
    pub addr: SocketAddr,
    /// What it wrote to stderr after it started listening.
    log: Arc<Mutex<String>>,
}

impl SecureService {
    pub fn binary() -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
        let binary = dir.join("examples").join("secure_service");
        assert!(
            binary.exists(),
            "{} is missing: `cargo test` builds it; with a filtered run, `cargo build --examples` first",
            binary.display()
        );
        binary
    }

    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::spawn(Command::new(Self::binary()), env)
    }

    /// Started with at most `files` open file descriptors (`ulimit -n`).
    pub fn start_with_open_file_limit(files: u32, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {files} && exec \"$0\""))
            .arg(Self::binary());
        Self::spawn(command, env)
    }

    fn spawn(mut command: Command, env: &[(&str, &str)]) -> Self {
        command
            .env_remove("ALLOWED_CALLERS")
            .env_remove("SERVICE_SECRET_PREVIOUS")
            .env("BIND", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("secure_service exited before listening")
                .unwrap();
            let addr = line
                .strip_prefix("listening on http://")
                .or_else(|| line.strip_prefix("listening on https://"));
            if let Some(addr) = addr {
                break addr.parse().unwrap();
            }
        };
        // Keep draining the log so the service never blocks on a full pipe; keep its last
        // 64 KiB for the tests that wait for a line.
        let log = Arc::new(Mutex::new(String::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut log = kept.lock().unwrap();
                if log.len() > 64 * 1024 {
                    log.clear();
                }
                log.push_str(&line);
                log.push('\n');
            }
        });
        Self { child, addr, log }
    }

    /// Waits (up to [`PATIENCE`](super::PATIENCE)) until the service has logged a line
    /// containing `text`.
    #[allow(dead_code)]
    pub fn wait_for_log(&self, text: &str) {
        let deadline = std::time::Instant::now() + super::PATIENCE;
        while !self.log.lock().unwrap().contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "secure_service never logged {text:?}:\n{}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Sends `SIGHUP`.
    #[allow(dead_code)]
    pub fn hang_up(&self) {
        self.signal("-HUP");
    }

    /// Sends `SIGTERM` and waits for a clean exit (every audit event written).
    #[allow(dead_code)]
    pub fn terminate(&mut self) {
        self.signal("-TERM");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn run_to_exit(env: &[(&str, &str)]) -> (Option<i32>, String) {
        let output = Command::new(Self::binary())
            .env_remove("SERVICE_SECRET")
            .env_remove("ALLOWED_CALLERS")
            .env("BIND", "127.0.0.1:0")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Drop for SecureService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
