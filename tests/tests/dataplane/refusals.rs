//! Refusals that say what happened. Every route of `/openapi.json` refuses a query parameter it
//! does not declare (the table comes from the document, so a new route cannot escape it); the
//! refusals hyper makes by itself (431, 414, malformed requests) and body limits answer with
//! the JSON error shape; a store that cannot write takes the pod out of service and nothing
//! acknowledged is lost.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ::http::Method;
use bytes::Bytes;
use hookmesh_tests::gateway::{Gateway, GatewayOptions};
use hookmesh_tests::rest_harness::{self, MANIFESTS, READ_KEY, WRITE_KEY};
use hookmesh_tests::wait::wait_until;
use serde_json::{json, Value};

/// A path of the document with its parameters filled in with well-formed values.
fn concrete(path: &str) -> String {
    let id = if path.starts_with("/api/v1/deliveries/") {
        "dlv_01HZX5B1Y0M4S1T3C6E8R9K2QW"
    } else {
        "evt_01HZX5B1Y0M4S1T3C6E8R9K2QW"
    };
    path.replace("{namespace}", "default")
        .replace("{source}", "orders")
        .replace("{id}", id)
}

#[tokio::test]
async fn every_route_in_the_document_refuses_a_parameter_it_does_not_declare() {
    let gw = rest_harness::start(&[]).await.expect("gateway");
    let doc = gw.fetch("/openapi.json").await.expect("document").json();
    let paths = doc["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (path, item) in paths {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_none() {
                continue;
            }
            let m: Method = method.to_uppercase().parse().expect("method");
            let url = format!("{}?hookmesh_unknown=1", concrete(path));
            let r = gw.call(m.clone(), &url, WRITE_KEY, Some(json!({}))).await;
            assert_eq!(r.status, 400, "{method} {path}: {}", r.text());
            assert_eq!(r.code(), "INVALID_PARAMETER", "{method} {path}");
            assert!(
                r.json()["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("hookmesh_unknown"),
                "{method} {path}: the message names the parameter: {}",
                r.text()
            );
            checked += 1;
        }
    }
    assert!(checked >= 18, "only {checked} routes in the document");
    // Declared parameters still pass the rule, and their values are still checked.
    gw.get("/api/v1/events?limit=1", READ_KEY).await.expect(200);
    gw.get("/api/v1/events?limit=0", READ_KEY)
        .await
        .expect_error(400, "INVALID_PARAMETER");
}

#[tokio::test]
async fn a_delete_with_an_unknown_parameter_deletes_nothing_and_deliveries_filter_by_status() {
    let gw = rest_harness::start(&[]).await.expect("gateway");
    let id = gw
        .ingest("default", "orders", &json!({"type": "order.created"}))
        .await;
    gw.call(
        Method::DELETE,
        &format!("/api/v1/events/{id}?dry_run=true"),
        WRITE_KEY,
        None,
    )
    .await
    .expect_error(400, "INVALID_PARAMETER");
    gw.get(&format!("/api/v1/events/{id}"), READ_KEY)
        .await
        .expect(200);

    // The fixture's endpoints are disabled: the one delivery stays pending.
    let path = format!("/api/v1/events/{id}/deliveries");
    let all = gw.get(&path, READ_KEY).await.json()["data"].clone();
    assert_eq!(all.as_array().map(Vec::len), Some(1));
    let status = all[0]["status"].as_str().expect("status").to_string();
    let same = gw.get(&format!("{path}?status={status}"), READ_KEY).await;
    assert_eq!(same.json()["data"], all);
    let none = gw
        .get(&format!("{path}?status=dead_letter,success"), READ_KEY)
        .await;
    assert_eq!(none.json()["data"], json!([]));
    gw.get(&format!("{path}?status=lost"), READ_KEY)
        .await
        .expect_error(400, "INVALID_PARAMETER");
}

/// Write raw bytes, read the whole answer (the server closes after these refusals).
fn raw(gw: &Gateway, request: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let body: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{body}"
    );
    (status, body)
}

#[tokio::test]
async fn the_http_layers_own_refusals_are_json_with_a_code() {
    let gw = rest_harness::start(&["--publish-max-body=1000"])
        .await
        .expect("gateway");
    let mut many = String::from("GET /api/v1/events HTTP/1.1\r\nhost: x\r\n");
    for i in 0..101 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let (status, body) = raw(&gw, many.as_bytes());
    assert_eq!(
        (status, body["code"].as_str()),
        (431, Some("HEADERS_TOO_LARGE"))
    );

    let long = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70 * 1024));
    let (status, body) = raw(&gw, long.as_bytes());
    assert_eq!((status, body["code"].as_str()), (414, Some("URI_TOO_LONG")));

    let (status, body) = raw(&gw, b"THIS IS NOT HTTP\r\n\r\n");
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("MALFORMED_REQUEST"))
    );

    // A well-formed request still works on a fresh connection.
    gw.get("/api/v1/events", READ_KEY).await.expect(200);

    // Body limits: the REST API's 1 MiB, and publish's own, named truthfully.
    let big = json!({"ids": ["x".repeat(1024 * 1024)]});
    gw.call(
        Method::POST,
        "/api/v1/events/bulk/replay",
        WRITE_KEY,
        Some(big),
    )
    .await
    .expect_error(413, "PAYLOAD_TOO_LARGE");
    let publish =
        json!({"type": "order.created", "source": "orders", "payload": {"pad": "x".repeat(2000)}});
    let r = gw
        .call(Method::POST, "/api/v1/events", WRITE_KEY, Some(publish))
        .await;
    r.expect_error(413, "PAYLOAD_TOO_LARGE");
    let message = r.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(
        message.contains("publish")
            && message.contains("--publish-max-body")
            && message.contains("1000"),
        "{message}"
    );
    let small = json!({"type": "order.created", "source": "orders", "payload": {}});
    gw.call(Method::POST, "/api/v1/events", WRITE_KEY, Some(small))
        .await
        .expect(202);
}

/// A size-capped tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_takes_the_pod_out_of_service_and_loses_nothing_acknowledged() {
    let base = tempfile::tempdir().expect("tempdir");
    let mount = base.path().join("data");
    let Some(_tmpfs) = Tmpfs::mount(&mount, "48m") else {
        // CI runs as root and must be able to; elsewhere say so rather than pass silently.
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot mount a tmpfs in CI"
        );
        eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs this test)");
        return;
    };
    let data = mount.join("gw");
    let mut gw = Gateway::start_with(GatewayOptions {
        manifests_yaml: Some(MANIFESTS.to_string()),
        data_dir: Some(data.clone()),
        ..Default::default()
    })
    .await
    .expect("gateway");
    // Leave a few MiB free, held by a ballast file that is removed to give the space back.
    let ballast = mount.join("ballast");
    {
        let mut f = std::fs::File::create(&ballast).expect("ballast");
        let chunk = vec![0u8; 1024 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let len = f.metadata().expect("len").len();
        f.set_len(len.saturating_sub(6 * 1024 * 1024))
            .expect("truncate");
    }

    let pad = "x".repeat(60 * 1024);
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..2000 {
        let r = gw
            .request(
                Method::POST,
                "/e/default/orders",
                &[("content-type", "application/json")],
                Bytes::from(json!({"type": "order.created", "i": i, "pad": pad}).to_string()),
            )
            .await
            .expect("ingest answers");
        match r.status {
            202 => acknowledged.push(r.json()["id"].as_str().expect("id").to_string()),
            _ => {
                refused = Some(r);
                break;
            }
        }
    }
    let refused = refused.expect("the disk filled up");
    refused.expect_error(503, "STORAGE_UNAVAILABLE");
    assert!(refused.header("retry-after").is_some());
    assert!(acknowledged.len() > 10, "some events fit first");
    // Out of service: not ready (the Service stops sending here), not live (the kubelet
    // restarts it), and the metric says why.
    let ready = gw.fetch("/readyz").await.expect("readyz");
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["status"], "storage failed");
    assert!(ready.json()["reason"].is_string());
    assert_eq!(gw.fetch("/healthz").await.expect("healthz").status, 503);
    assert_eq!(
        gw.metric("hookmesh_store_writable").await.expect("metric"),
        0.0
    );
    gw.post(
        "/e/default/orders",
        &[("content-type", "application/json")],
        Bytes::from_static(b"{}"),
    )
    .await
    .expect("ingest")
    .expect_error(503, "STORAGE_UNAVAILABLE");

    // Space comes back; the kubelet restarts the pod, as its failing /healthz asks.
    std::fs::remove_file(&ballast).expect("remove ballast");
    gw.restart().await.expect("restarts on the same volume");
    wait_until("ready again", Duration::from_secs(30), async || {
        gw.fetch("/readyz").await.is_ok_and(|r| r.status == 200)
    })
    .await
    .expect("ready");
    assert_eq!(gw.fetch("/healthz").await.expect("healthz").status, 200);
    assert_eq!(
        gw.metric("hookmesh_store_writable").await.expect("metric"),
        1.0
    );
    for id in &acknowledged {
        gw.get(&format!("/api/v1/events/{id}"), READ_KEY)
            .await
            .expect(200);
        let p = gw
            .get(&format!("/api/v1/events/{id}/payload"), READ_KEY)
            .await;
        p.expect(200);
        assert!(p.body.len() > 60 * 1024, "{id}: the payload is whole");
    }
    gw.ingest("default", "orders", &json!({"type": "order.created"}))
        .await;
}
