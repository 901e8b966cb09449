//! The console's HTTP side against the real binary: the page and its hardening headers, sign-in
//! and sign-out, the session cookie standing in for its key on the REST API (role, scope and
//! the CSRF token enforced), and a session on one pod seeing every pod. The browser suite
//! (`tests/console`) drives the page itself.

use ::http::Method;
use bytes::Bytes;
use hookmesh_tests::peer_set::{PeerSet, SetOptions};
use hookmesh_tests::rest_harness::{self, Gateway, Resp, READ_KEY, TEAM_B_KEY, WRITE_KEY};
use serde_json::{json, Value};

/// `POST /console/session` with `body`.
async fn post_session(gw: &Gateway, body: String) -> Resp {
    gw.request(
        Method::POST,
        "/console/session",
        &[("content-type", "application/json")],
        Bytes::from(body),
    )
    .await
    .expect("sign in")
}

/// The session cookie (`name=value`) a sign-in set, and the session it answered.
async fn sign_in(gw: &Gateway, key: &str) -> (String, Value) {
    let r = post_session(gw, json!({ "key": key }).to_string()).await;
    r.expect(200);
    let set = r.header("set-cookie").expect("a cookie").to_string();
    let pair = set.split(';').next().expect("name=value").to_string();
    (pair, r.json())
}

async fn with_cookie(
    gw: &Gateway,
    method: Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
) -> Resp {
    let mut headers = vec![("cookie", cookie)];
    if let Some(t) = csrf {
        headers.push(("x-csrf-token", t));
    }
    gw.request(method, path, &headers, Bytes::new())
        .await
        .expect("request")
}

#[tokio::test]
async fn the_page_is_served_whole_from_the_binary_with_a_strict_policy() {
    let gw = rest_harness::start(&[]).await.expect("gateway");
    for path in ["/console", "/console/"] {
        let r = gw.fetch(path).await.expect("page");
        r.expect(200);
        assert!(r
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/html")));
        let csp = r.header("content-security-policy").expect("a policy");
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{csp}");
        }
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        // Nothing from another origin.
        assert!(!r.text().contains("http://") && !r.text().contains("https://"));
    }
    let js = gw.fetch("/console/app.js").await.expect("script");
    js.expect(200);
    assert!(js
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/javascript")));
    assert!(
        !js.text().contains("innerHTML"),
        "the script never writes markup"
    );
    gw.fetch("/console/app.css")
        .await
        .expect("style")
        .expect(200);
}

#[tokio::test]
async fn a_session_stands_in_for_its_key_with_its_role_scope_and_csrf_token() {
    let gw = rest_harness::start(&[]).await.expect("gateway");
    let id = gw
        .ingest("default", "orders", &json!({"type": "order.created"}))
        .await;
    let replay = format!("/api/v1/events/{id}/replay");

    // Sign-in refusals, each with a code.
    for (body, status, code) in [
        (
            json!({"key": "not-a-key-0123456789"}).to_string(),
            401,
            "UNAUTHORIZED",
        ),
        (json!({}).to_string(), 400, "INVALID_BODY"),
        (
            json!({"key": WRITE_KEY, "extra": 1}).to_string(),
            400,
            "INVALID_BODY",
        ),
        ("key=abc".to_string(), 400, "INVALID_BODY"),
    ] {
        post_session(&gw, body).await.expect_error(status, code);
    }
    gw.fetch("/console/session")
        .await
        .expect("session")
        .expect_error(401, "SESSION_EXPIRED");

    let r = post_session(&gw, json!({ "key": WRITE_KEY }).to_string()).await;
    r.expect(200);
    let set = r.header("set-cookie").expect("a cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(
        !set.contains("Secure"),
        "plain HTTP (port-forward) cannot keep a Secure cookie"
    );
    assert!(
        !set.contains(WRITE_KEY) && !r.text().contains(WRITE_KEY),
        "the key is not echoed"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let (cookie, session) = sign_in(&gw, WRITE_KEY).await;
    assert_eq!(session["role"], "write");
    assert_eq!(session["key_id"], "default/write-key");
    let csrf = session["csrf_token"].as_str().expect("a token").to_string();

    // Reads need only the cookie; what changes state needs the token too.
    let page = with_cookie(&gw, Method::GET, "/api/v1/events", &cookie, None).await;
    page.expect(200);
    assert_eq!(page.json()["data"][0]["id"], id.as_str());
    with_cookie(&gw, Method::POST, &replay, &cookie, None)
        .await
        .expect_error(403, "CSRF_TOKEN_INVALID");
    with_cookie(&gw, Method::POST, &replay, &cookie, Some("forged"))
        .await
        .expect_error(403, "CSRF_TOKEN_INVALID");
    with_cookie(&gw, Method::POST, &replay, &cookie, Some(&csrf))
        .await
        .expect(202);
    // A token of another session does not do.
    let (_, other) = sign_in(&gw, WRITE_KEY).await;
    let other_token = other["csrf_token"].as_str().expect("a token");
    with_cookie(&gw, Method::POST, &replay, &cookie, Some(other_token))
        .await
        .expect_error(403, "CSRF_TOKEN_INVALID");
    // An altered cookie opens nothing.
    let tampered = format!("{}x", &cookie[..cookie.len() - 1]);
    with_cookie(&gw, Method::GET, "/api/v1/events", &tampered, None)
        .await
        .expect_error(401, "SESSION_EXPIRED");

    // A read key's session reads, and is refused what a read key is refused.
    let (read_cookie, read) = sign_in(&gw, READ_KEY).await;
    let read_csrf = read["csrf_token"].as_str().expect("a token");
    with_cookie(
        &gw,
        Method::GET,
        &format!("/api/v1/events/{id}"),
        &read_cookie,
        None,
    )
    .await
    .expect(200);
    with_cookie(&gw, Method::POST, &replay, &read_cookie, Some(read_csrf))
        .await
        .expect_error(403, "FORBIDDEN");
    // A key sent with the request is the one that counts, whatever cookie comes along.
    let bearer = format!("Bearer {READ_KEY}");
    gw.request(
        Method::POST,
        &replay,
        &[
            ("cookie", &cookie),
            ("x-csrf-token", &csrf),
            ("authorization", &bearer),
        ],
        Bytes::new(),
    )
    .await
    .expect("replay")
    .expect_error(403, "FORBIDDEN");
    // A namespaced key's session sees its namespace only.
    let (team_cookie, team) = sign_in(&gw, TEAM_B_KEY).await;
    assert_eq!(team["namespace"], "team-b");
    let listed = with_cookie(&gw, Method::GET, "/api/v1/events", &team_cookie, None).await;
    assert_eq!(listed.json()["data"].as_array().map(Vec::len), Some(0));
    with_cookie(
        &gw,
        Method::GET,
        &format!("/api/v1/events/{id}"),
        &team_cookie,
        None,
    )
    .await
    .expect_error(404, "RESOURCE_NOT_FOUND");

    // Sign-out needs the token, then clears the cookie.
    with_cookie(&gw, Method::DELETE, "/console/session", &cookie, None)
        .await
        .expect_error(403, "CSRF_TOKEN_INVALID");
    let out = with_cookie(
        &gw,
        Method::DELETE,
        "/console/session",
        &cookie,
        Some(&csrf),
    )
    .await;
    out.expect(204);
    let cleared = out.header("set-cookie").expect("a cookie");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    let logs = gw.logs();
    for key in [WRITE_KEY, READ_KEY, TEAM_B_KEY] {
        assert!(!logs.contains(key), "an API key in the logs");
    }
    assert!(
        logs.contains("console sign-in"),
        "sign-ins are logged, by key id"
    );
}

#[tokio::test]
async fn a_session_on_one_pod_sees_and_acts_on_every_pod() {
    let set = PeerSet::start(SetOptions {
        pods: 3,
        manifests_yaml: rest_harness::MANIFESTS.to_string(),
        args: vec!["--api-rate-limit=0".to_string()],
        env: Vec::new(),
        release: false,
    })
    .await
    .expect("three pods");
    set.wait_connected().await.expect("connected");
    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(
            set.pod(n)
                .ingest(
                    "default",
                    "orders",
                    &json!({"type": "order.created", "pod": n}),
                )
                .await,
        );
    }
    let (cookie, session) = sign_in(set.pod(1), WRITE_KEY).await;
    let csrf = session["csrf_token"].as_str().expect("a token");
    // The same cookie opens every pod, since every pod holds the same keys.
    for n in 1..=3 {
        let page = with_cookie(set.pod(n), Method::GET, "/api/v1/events", &cookie, None).await;
        page.expect(200);
        let mut listed: Vec<String> = page.json()["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_string))
            .collect();
        listed.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(listed, want, "pod {n} lists every pod's events");
    }
    // Acting on pod 3's event through pod 1.
    with_cookie(
        set.pod(1),
        Method::POST,
        &format!("/api/v1/events/{}/replay", ids[2]),
        &cookie,
        Some(csrf),
    )
    .await
    .expect(202);
}
