//! Standalone: registrations as files under
//! `<manifests>/managed/<namespace>/<kind>/<name>/manifest.yaml` (a directory per object: a
//! name may be 253 characters, and `<name>.yaml` would pass the 255 a file name may have),
//! written atomically (a temporary file in the same directory, then a rename), so the watcher
//! never compiles half a file. One registration at a time: each is checked against the
//! directory as it is, then written, then waited for.

use std::path::{Path, PathBuf};
use std::time::Instant;

use hookmesh_api::compile::{Kind, Problem};
use hookmesh_api::GatewayConfig;

use super::objects::{self, NewEndpoint, NewSubscription};
use super::{ManageError, LIVE_TIMEOUT};
use crate::config::{self, LiveConfig, Slice};

pub struct Files {
    dir: PathBuf,
    slice: Slice,
    live: LiveConfig,
    one_at_a_time: tokio::sync::Mutex<()>,
}

const ENDPOINT: &str = "endpoint";
const SUBSCRIPTION: &str = "subscription";

impl Files {
    pub fn new(dir: PathBuf, slice: Slice, live: LiveConfig) -> Self {
        Files {
            dir,
            slice,
            live,
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    fn path(&self, kind: &str, namespace: &str, name: &str) -> PathBuf {
        self.dir
            .join("managed")
            .join(namespace)
            .join(kind)
            .join(name)
            .join("manifest.yaml")
    }

    /// Register `e` with the signing secret `secret`; returns once it is live.
    pub async fn create_endpoint(&self, e: &NewEndpoint, secret: &str) -> Result<(), ManageError> {
        let _one = self.one_at_a_time.lock().await;
        let path = self.path(ENDPOINT, &e.namespace, &e.name);
        if self.live.load().endpoint(&e.namespace, &e.name).is_some() || path.exists() {
            return Err(ManageError::exists("endpoint", &e.namespace, &e.name));
        }
        let text = objects::to_yaml(&objects::endpoint_manifests(e, secret))
            .map_err(|err| ManageError::Io(err.to_string()))?;
        self.write_checked(&path, &text, Kind::Endpoint, &e.namespace, &e.name)
            .await?;
        self.wait_or_undo(&path, |c| endpoint_of(c, &e.namespace, &e.name))
            .await
    }

    /// Remove an endpoint registered through the API, with the subscriptions registered to it.
    pub async fn delete_endpoint(&self, namespace: &str, name: &str) -> Result<(), ManageError> {
        let _one = self.one_at_a_time.lock().await;
        let path = self.path(ENDPOINT, namespace, name);
        let live = self.live.load();
        if !path.exists() {
            let declared = live.endpoint(namespace, name).is_some();
            return Err(not_ours("endpoint", declared, namespace, name));
        }
        let targeting: Vec<&str> = live
            .config
            .subscriptions
            .iter()
            .filter(|s| s.namespace == namespace && s.endpoint == name)
            .map(|s| s.name.as_str())
            .collect();
        let declared: Vec<&str> = targeting
            .iter()
            .copied()
            .filter(|s| !self.path(SUBSCRIPTION, namespace, s).exists())
            .collect();
        if !declared.is_empty() {
            return Err(ManageError::InUse {
                namespace: namespace.into(),
                name: name.into(),
                subscriptions: declared.join(", "),
            });
        }
        // The subscriptions first: a moment with them but not their endpoint would not compile.
        for s in &targeting {
            remove(&self.path(SUBSCRIPTION, namespace, s))?;
        }
        remove(&path)?;
        self.wait(|c| !endpoint_of(c, namespace, name)).await
    }

    pub async fn create_subscription(&self, s: &NewSubscription) -> Result<(), ManageError> {
        let _one = self.one_at_a_time.lock().await;
        let path = self.path(SUBSCRIPTION, &s.namespace, &s.name);
        if subscription_of(&self.live.load().config, &s.namespace, &s.name) || path.exists() {
            return Err(ManageError::exists("subscription", &s.namespace, &s.name));
        }
        let text = objects::to_yaml(&[objects::subscription_manifest(s)])
            .map_err(|err| ManageError::Io(err.to_string()))?;
        self.write_checked(&path, &text, Kind::Subscription, &s.namespace, &s.name)
            .await?;
        self.wait_or_undo(&path, |c| subscription_of(c, &s.namespace, &s.name))
            .await
    }

    pub async fn delete_subscription(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(), ManageError> {
        let _one = self.one_at_a_time.lock().await;
        let path = self.path(SUBSCRIPTION, namespace, name);
        if !path.exists() {
            let declared = subscription_of(&self.live.load().config, namespace, name);
            return Err(not_ours("subscription", declared, namespace, name));
        }
        remove(&path)?;
        self.wait(|c| !subscription_of(c, namespace, name)).await
    }

    /// Compile the directory with `text` at `path`; write it only if the object compiles and
    /// nothing else in the directory stands in the way.
    async fn write_checked(
        &self,
        path: &Path,
        text: &str,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<(), ManageError> {
        let (dir, slice, p, t) = (
            self.dir.clone(),
            self.slice.clone(),
            path.to_path_buf(),
            text.to_string(),
        );
        let compiled = tokio::task::spawn_blocking(move || {
            config::compile_dir_with(&dir, &slice, Some((&p, &t)))
        })
        .await
        .map_err(|e| ManageError::Io(e.to_string()))?
        .map_err(|e| ManageError::ManifestsBroken(format!("{e:#}")))?;
        // This object, or the Secret written with it.
        let own = |p: &Problem| {
            p.namespace == namespace
                && (p.kind == kind && p.name == name
                    || p.kind == Kind::Secret && p.name == objects::signing_secret_name(name))
        };
        if let Some(p) = compiled.problems.iter().find(|p| own(p)) {
            return Err(ManageError::from(p));
        }
        if let Some(p) = compiled.problems.first() {
            return Err(ManageError::ManifestsBroken(p.to_string()));
        }
        write_atomically(path, text)
    }

    /// Wait for what `path` registers to go live; if it does not, take the file back, so that
    /// a registration the caller heard fail does not go live later.
    async fn wait_or_undo(
        &self,
        path: &Path,
        done: impl Fn(&GatewayConfig) -> bool,
    ) -> Result<(), ManageError> {
        let waited = self.wait(done).await;
        if waited.is_err() {
            remove(path)?;
        }
        waited
    }

    async fn wait(&self, done: impl Fn(&GatewayConfig) -> bool) -> Result<(), ManageError> {
        let deadline = Instant::now() + LIVE_TIMEOUT;
        loop {
            if done(&self.live.load().config) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ManageError::NotLive(LIVE_TIMEOUT));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Why an object without a managed file cannot be removed: it is declared, or it is not there.
fn not_ours(kind: &'static str, declared: bool, namespace: &str, name: &str) -> ManageError {
    if declared {
        ManageError::declared(kind, namespace, name)
    } else {
        ManageError::not_found(kind, namespace, name)
    }
}

fn endpoint_of(c: &GatewayConfig, namespace: &str, name: &str) -> bool {
    c.endpoint(namespace, name).is_some()
}

fn subscription_of(c: &GatewayConfig, namespace: &str, name: &str) -> bool {
    c.subscriptions
        .iter()
        .any(|s| s.namespace == namespace && s.name == name)
}

fn write_atomically(path: &Path, text: &str) -> Result<(), ManageError> {
    let io = |e: std::io::Error| ManageError::Io(format!("{}: {e}", path.display()));
    let dir = path
        .parent()
        .ok_or_else(|| ManageError::Io(format!("{} has no directory", path.display())))?;
    std::fs::create_dir_all(dir).map_err(io)?;
    // A dot-file: the loader skips it, so the watcher never reads it half-written.
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Remove an object's file, then its directory (empty once the file is gone).
fn remove(path: &Path) -> Result<(), ManageError> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ManageError::Io(format!("{}: {e}", path.display()))),
    }
    if let Some(dir) = path.parent() {
        // Best effort: a leftover empty directory holds no manifest.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}
