//! The operator and the data plane as local processes of the e2e suite (HTTP, waiting and the
//! builds come from `hookmesh_tests`, shared with every suite).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

pub struct Bins {
    pub operator: PathBuf,
    pub dataplane: PathBuf,
}

/// Both binaries, freshly built into the target dir the other suites use.
pub fn build_binaries() -> anyhow::Result<Bins> {
    Ok(Bins {
        operator: hookmesh_tests::gateway::built("hookmesh-operator", false)?,
        dataplane: hookmesh_tests::gateway::built("hookmesh-dataplane", false)?,
    })
}

/// Run a future on a fresh multi-threaded runtime (each test has its own).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

pub fn random_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:08x}", nanos ^ (std::process::id() << 16))
}

/// A child process with its output in a log file; killed on drop.
pub struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Start `bin` with `KUBECONFIG` and extra environment variables (e.g. `POD_NAME`).
    pub fn spawn(
        name: &str,
        bin: &Path,
        args: &[String],
        kubeconfig: &Path,
        logdir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Proc> {
        let log = logdir.join(format!("{name}.log"));
        let out = File::create(&log)?;
        let child = Command::new(bin)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("HOOKMESH_E2E_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        Ok(Proc { child, log })
    }

    /// Still running (it has not exited, crashed or been restarted by anyone).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no shutdown path runs (a crashed or evicted pod).
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// The lines of the process's output so far that contain `needle` (case-insensitive).
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        let needle = needle.to_lowercase();
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.to_lowercase().contains(&needle))
            .map(String::from)
            .collect()
    }

    /// The last lines of the process's output, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(60);
        format!(
            "--- {} (last lines) ---\n{}",
            self.log.display(),
            lines[from..].join("\n")
        )
    }

    /// SIGTERM, then wait up to `timeout` for a graceful exit (SIGKILL after that).
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(s) = self.child.try_wait()? {
            return Ok(s);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill()?;
        bail!(
            "did not exit within {timeout:?} of SIGTERM\n{}",
            self.log_tail()
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
