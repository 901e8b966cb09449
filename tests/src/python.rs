//! Independent signers and verifiers from PyPI: the `standardwebhooks` library (the Standard
//! Webhooks reference implementation for Python) checks outgoing signatures, so the gateway's
//! signer is judged by code that shares nothing with it; Slack's own `slack_sdk` signs requests
//! the way Slack does, for what the gateway verifies.
//!
//! The virtualenv is made on first use, once per machine, under `target/hookmesh-py/` (built in
//! a scratch directory and renamed into place, so concurrent test processes never see half of
//! one). It needs `python3` with `venv` and the PyPI registry; `.ci/run` has both.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use sha2::Digest as _;

use crate::gateway::workspace_root;

/// Exactly what is installed (neither package has dependencies of its own).
const REQUIREMENTS: &[&str] = &["standardwebhooks==1.1.0", "slack_sdk==3.47.0"];

static MADE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The virtualenv's python, made if needed.
pub fn python() -> anyhow::Result<PathBuf> {
    let mut made = MADE
        .lock()
        .map_err(|_| anyhow::anyhow!("python setup lock poisoned"))?;
    if let Some(p) = made.as_ref() {
        return Ok(p.clone());
    }
    let key = hex::encode(&sha2::Sha256::digest(REQUIREMENTS.join("\n").as_bytes())[..8]);
    let root = workspace_root().join("target").join("hookmesh-py");
    let venv = root.join(format!("venv-{key}"));
    let py = venv.join("bin").join("python");
    if !py.exists() {
        std::fs::create_dir_all(&root)?;
        let scratch = root.join(format!("tmp-{key}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&scratch)
            .status()
            .context("python3 -m venv (python3 with venv is needed for the verifier tests)")?;
        if !status.success() {
            bail!("python3 -m venv failed: {status}");
        }
        let status = Command::new(scratch.join("bin").join("pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
            ])
            .args(REQUIREMENTS)
            .status()
            .context("pip install")?;
        if !status.success() {
            bail!("pip install {REQUIREMENTS:?} failed: {status}");
        }
        // Someone else may have finished first: theirs is as good as ours.
        if std::fs::rename(&scratch, &venv).is_err() {
            let _ = std::fs::remove_dir_all(&scratch);
        }
    }
    *made = Some(py.clone());
    Ok(py)
}

const VERIFY: &str = r#"
import base64, json, sys
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
req = json.load(sys.stdin)
try:
    Webhook(req["secret"]).verify(base64.b64decode(req["body"]), req["headers"], json_parse=False)
    print("ok")
except WebhookVerificationError as e:
    print("refused: " + str(e))
"#;

/// `standardwebhooks.Webhook(secret).verify(body, headers)`: `Ok(Ok(()))` when it verifies,
/// `Ok(Err(reason))` when the library refuses it.
pub fn standard_webhooks_verify(
    secret: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Result<(), String>> {
    let req = serde_json::json!({
        "secret": secret,
        "headers": headers.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect::<serde_json::Map<_, _>>(),
        "body": base64::engine::general_purpose::STANDARD.encode(body),
    });
    let text = run(VERIFY, &req)?;
    Ok(match text.strip_prefix("refused: ") {
        None if text == "ok" => Ok(()),
        None => Err(format!("unexpected verifier output {text:?}")),
        Some(reason) => Err(reason.to_string()),
    })
}

const SLACK_SIGN: &str = r#"
import base64, json, sys
from slack_sdk.signature import SignatureVerifier
req = json.load(sys.stdin)
body = base64.b64decode(req["body"]).decode("utf-8")
print(SignatureVerifier(req["secret"]).generate_signature(timestamp=str(req["timestamp"]), body=body))
"#;

/// `slack_sdk.signature.SignatureVerifier(secret).generate_signature(timestamp, body)`: the
/// `X-Slack-Signature` value Slack would send.
pub fn slack_signature(secret: &str, timestamp: i64, body: &[u8]) -> anyhow::Result<String> {
    let req = serde_json::json!({
        "secret": secret,
        "timestamp": timestamp,
        "body": base64::engine::general_purpose::STANDARD.encode(body),
    });
    run(SLACK_SIGN, &req)
}

/// Run `script` with `req` as JSON on stdin; its trimmed stdout.
fn run(script: &str, req: &serde_json::Value) -> anyhow::Result<String> {
    let py = python()?;
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting Python")?;
    child
        .stdin
        .take()
        .context("python stdin")?
        .write_all(req.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "the Python script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
