//! The REST API against the real binary over real HTTP with a real sled store.

use std::collections::HashSet;
use std::sync::Arc;

use hookmesh_tests::rest_harness::{self, Gateway, READ_KEY, TEAM_B_KEY, WRITE_KEY};
use http::Method;
use serde_json::{json, Value};

async fn gateway() -> Gateway {
    rest_harness::start(&[]).await.expect("gateway starts")
}

fn ids(j: &Value) -> Vec<String> {
    j["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Ids returned by `GET path` (one page, limit 100).
async fn list(gw: &Gateway, path: &str, key: &str) -> Vec<String> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = gw.get(&format!("{path}{sep}limit=100"), key).await;
    r.expect(200);
    ids(&r.json())
}

fn sorted_desc(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.reverse();
    v
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let gw = gateway().await;
    let r = gw
        .request(Method::GET, "/openapi.json", &[], bytes::Bytes::new())
        .await
        .expect("request");
    r.expect(200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = &doc["paths"];
    for (path, method) in [
        ("/e/{namespace}/{source}", "post"),
        ("/api/v1/events", "post"),
        ("/api/v1/events", "get"),
        ("/api/v1/events/{id}", "get"),
        ("/api/v1/events/{id}", "delete"),
        ("/api/v1/events/{id}/payload", "get"),
        ("/api/v1/events/{id}/deliveries", "get"),
        ("/api/v1/events/{id}/timeline", "get"),
        ("/api/v1/events/{id}/replay", "post"),
        ("/api/v1/events/bulk/replay", "post"),
        ("/api/v1/deliveries", "get"),
        ("/api/v1/deliveries/{id}", "get"),
        ("/api/v1/deliveries/{id}/retry", "post"),
        ("/api/v1/sources", "get"),
        ("/api/v1/endpoints", "get"),
        ("/api/v1/subscriptions", "get"),
        ("/openapi.json", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    let params: Vec<&str> = paths["/api/v1/events"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for p in [
        "source",
        "status",
        "event_type",
        "endpoint",
        "from",
        "to",
        "search",
        "signature_valid",
        "limit",
        "cursor",
    ] {
        assert!(params.contains(&p), "GET /events lacks parameter {p}");
    }
}

#[tokio::test]
async fn auth_roles_and_namespace_scope() {
    let gw = gateway().await;
    let evt = gw
        .ingest("default", "orders", &json!({"type": "order.created"}))
        .await;
    let b_evt = gw
        .ingest("team-b", "orders", &json!({"type": "order.created"}))
        .await;

    // 401 without a key, with an unknown key, with an empty bearer.
    let r = gw
        .request(Method::GET, "/api/v1/events", &[], bytes::Bytes::new())
        .await
        .expect("request");
    r.expect_error(401, "UNAUTHORIZED");
    gw.get("/api/v1/events", "not-a-real-key-000000000")
        .await
        .expect_error(401, "UNAUTHORIZED");
    let r = gw
        .request(
            Method::GET,
            "/api/v1/events",
            &[("authorization", "Bearer ")],
            bytes::Bytes::new(),
        )
        .await
        .expect("request");
    r.expect_error(401, "UNAUTHORIZED");
    // X-API-Key works as well as Bearer.
    let r = gw
        .request(
            Method::GET,
            "/api/v1/events",
            &[("x-api-key", READ_KEY)],
            bytes::Bytes::new(),
        )
        .await
        .expect("request");
    r.expect(200);

    // A read key reads but may not replay, retry, delete or bulk replay.
    gw.get(&format!("/api/v1/events/{evt}"), READ_KEY)
        .await
        .expect(200);
    gw.call(
        Method::POST,
        &format!("/api/v1/events/{evt}/replay"),
        READ_KEY,
        None,
    )
    .await
    .expect_error(403, "FORBIDDEN");
    gw.call(
        Method::DELETE,
        &format!("/api/v1/events/{evt}"),
        READ_KEY,
        None,
    )
    .await
    .expect_error(403, "FORBIDDEN");
    gw.call(
        Method::POST,
        "/api/v1/events/bulk/replay",
        READ_KEY,
        Some(json!({"ids": [evt]})),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    let dlv = gw
        .get(&format!("/api/v1/events/{evt}/deliveries"), READ_KEY)
        .await;
    let dlv = ids(&dlv.json());
    assert_eq!(dlv.len(), 1);
    gw.call(
        Method::POST,
        &format!("/api/v1/deliveries/{}/retry", dlv[0]),
        READ_KEY,
        None,
    )
    .await
    .expect_error(403, "FORBIDDEN");
    // The event is still there.
    gw.get(&format!("/api/v1/events/{evt}"), WRITE_KEY)
        .await
        .expect(200);

    // A namespaced key: listings silently narrowed, other namespaces' ids are 404, naming
    // another namespace is 403.
    assert_eq!(
        list(&gw, "/api/v1/events", TEAM_B_KEY).await,
        vec![b_evt.clone()]
    );
    assert_eq!(
        list(&gw, "/api/v1/events?source=orders", TEAM_B_KEY).await,
        vec![b_evt.clone()]
    );
    assert_eq!(list(&gw, "/api/v1/events", WRITE_KEY).await.len(), 2);
    gw.get(&format!("/api/v1/events/{evt}"), TEAM_B_KEY)
        .await
        .expect_error(404, "RESOURCE_NOT_FOUND");
    gw.get(&format!("/api/v1/events/{evt}/payload"), TEAM_B_KEY)
        .await
        .expect_error(404, "RESOURCE_NOT_FOUND");
    gw.get(&format!("/api/v1/deliveries/{}", dlv[0]), TEAM_B_KEY)
        .await
        .expect_error(404, "RESOURCE_NOT_FOUND");
    gw.call(
        Method::DELETE,
        &format!("/api/v1/events/{evt}"),
        TEAM_B_KEY,
        None,
    )
    .await
    .expect_error(404, "RESOURCE_NOT_FOUND");
    gw.get("/api/v1/events?namespace=default", TEAM_B_KEY)
        .await
        .expect_error(403, "FORBIDDEN");
    gw.get("/api/v1/events?source=default/orders", TEAM_B_KEY)
        .await
        .expect_error(403, "FORBIDDEN");
    gw.get("/api/v1/sources?namespace=default", TEAM_B_KEY)
        .await
        .expect_error(403, "FORBIDDEN");
    gw.get(&format!("/api/v1/events/{b_evt}"), TEAM_B_KEY)
        .await
        .expect(200);
    let deliveries = list(&gw, "/api/v1/deliveries", TEAM_B_KEY).await;
    assert_eq!(deliveries.len(), 1);
    let sources = gw.get("/api/v1/sources", TEAM_B_KEY).await.json();
    assert!(sources["data"]
        .as_array()
        .expect("data")
        .iter()
        .all(|s| s["namespace"] == "team-b"));
    // The scoped write key may replay in its own namespace.
    gw.call(
        Method::POST,
        &format!("/api/v1/events/{b_evt}/replay"),
        TEAM_B_KEY,
        None,
    )
    .await
    .expect(202);
}

/// A mixed set of events; returns their ids by name.
struct Fixture {
    created: Vec<String>,
    paid: String,
    invoice: String,
    misc: String,
    github_ok: String,
    github_bad: String,
    team_b: String,
}

async fn fixture(gw: &Gateway) -> Fixture {
    let mut created = Vec::new();
    for i in 0..3 {
        created.push(
            gw.ingest(
                "default",
                "orders",
                &json!({"type": "order.created", "n": i, "customer": "cus_alpha"}),
            )
            .await,
        );
    }
    let paid = gw
        .ingest(
            "default",
            "orders",
            &json!({"type": "order.paid", "customer": "cus_beta"}),
        )
        .await;
    let invoice = gw
        .ingest("default", "orders", &json!({"type": "invoice.created"}))
        .await;
    let misc = gw
        .ingest("default", "orders", &json!({"type": "misc.thing"}))
        .await;
    let r = gw
        .ingest_github("github", "push", r#"{"ref":"refs/heads/main"}"#, true)
        .await;
    r.expect(202);
    let github_ok = r.json()["id"].as_str().expect("id").to_string();
    // Enforce mode refuses a bad signature; audit mode stores it flagged.
    gw.ingest_github("github", "push", "{}", false)
        .await
        .expect_error(401, "SIGNATURE_INVALID");
    let r = gw
        .ingest_github("github-audit", "push", r#"{"x":1}"#, false)
        .await;
    r.expect(202);
    let github_bad = r.json()["id"].as_str().expect("id").to_string();
    let team_b = gw
        .ingest("team-b", "orders", &json!({"type": "order.created"}))
        .await;
    Fixture {
        created,
        paid,
        invoice,
        misc,
        github_ok,
        github_bad,
        team_b,
    }
}

#[tokio::test]
async fn list_events_filters() {
    let gw = gateway().await;
    let f = fixture(&gw).await;
    let all = list(&gw, "/api/v1/events", READ_KEY).await;
    assert_eq!(all.len(), 9);
    assert_eq!(all, sorted_desc(all.clone()), "newest first");
    assert_eq!(all[0], f.team_b);

    let q = |query: &'static str| {
        let gw = &gw;
        async move { list(gw, &format!("/api/v1/events?{query}"), READ_KEY).await }
    };
    let mut orders: Vec<String> = f.created.clone();
    orders.extend([f.paid.clone(), f.invoice.clone(), f.misc.clone()]);
    let mut orders_all = orders.clone();
    orders_all.push(f.team_b.clone());
    assert_eq!(q("source=orders").await, sorted_desc(orders_all));
    assert_eq!(
        q("source=default/orders").await,
        sorted_desc(orders.clone())
    );
    assert_eq!(
        q("source=orders&namespace=default").await,
        sorted_desc(orders.clone())
    );
    assert_eq!(q("namespace=team-b").await, vec![f.team_b.clone()]);
    assert_eq!(
        q("status=unrouted").await,
        sorted_desc(vec![
            f.misc.clone(),
            f.github_ok.clone(),
            f.github_bad.clone()
        ])
    );
    let mut pending = f.created.clone();
    pending.extend([f.paid.clone(), f.invoice.clone(), f.team_b.clone()]);
    assert_eq!(q("status=pending").await, sorted_desc(pending.clone()));
    assert_eq!(q("status=pending,unrouted").await.len(), 9);
    assert_eq!(q("status=delivered").await, Vec::<String>::new());
    let mut created_all = f.created.clone();
    created_all.push(f.team_b.clone());
    assert_eq!(
        q("event_type=order.created").await,
        sorted_desc(created_all)
    );
    let mut order_star = f.created.clone();
    order_star.extend([f.paid.clone(), f.team_b.clone()]);
    assert_eq!(q("event_type=order.*").await, sorted_desc(order_star));
    assert_eq!(q("event_type=*.paid").await, vec![f.paid.clone()]);
    assert_eq!(q("event_type=push").await.len(), 2);
    // Endpoint: events with a delivery to it.
    let mut to_fulfilment = f.created.clone();
    to_fulfilment.extend([f.paid.clone(), f.team_b.clone()]);
    assert_eq!(q("endpoint=fulfilment").await, sorted_desc(to_fulfilment));
    assert_eq!(q("endpoint=default/billing").await, vec![f.invoice.clone()]);
    assert_eq!(
        q("endpoint=team-b/fulfilment").await,
        vec![f.team_b.clone()]
    );
    // Signature validity.
    assert_eq!(q("signature_valid=true").await, vec![f.github_ok.clone()]);
    assert_eq!(q("signature_valid=false").await, vec![f.github_bad.clone()]);
    // Search: payload substring, id prefix.
    assert_eq!(q("search=cus_beta").await, vec![f.paid.clone()]);
    assert_eq!(q("search=cus_alpha").await, sorted_desc(f.created.clone()));
    assert_eq!(q("search=refs%2Fheads").await, vec![f.github_ok.clone()]);
    let full = list(&gw, &format!("/api/v1/events?search={}", f.paid), READ_KEY).await;
    assert_eq!(full, vec![f.paid.clone()]);
    let prefix = &f.paid[..14];
    let by_prefix = list(&gw, &format!("/api/v1/events?search={prefix}"), READ_KEY).await;
    assert!(by_prefix.contains(&f.paid));
    assert!(by_prefix.iter().all(|id| id.starts_with(prefix)));
    let lower = format!("evt_{}", f.paid[4..].to_lowercase());
    assert_eq!(
        list(&gw, &format!("/api/v1/events?search={lower}"), READ_KEY).await,
        vec![f.paid.clone()]
    );
    assert_eq!(q("search=evt_9").await, Vec::<String>::new());
    // Combinations.
    assert_eq!(
        q("source=orders&status=pending&event_type=order.*&endpoint=fulfilment&search=cus_beta")
            .await,
        vec![f.paid.clone()]
    );
    assert_eq!(
        q("source=github&signature_valid=false").await,
        Vec::<String>::new()
    );

    // Time window: RFC 3339 and Unix ms, inclusive.
    let ev = gw
        .get(&format!("/api/v1/events/{}", f.paid), READ_KEY)
        .await
        .json();
    let at = ev["received_at"].as_str().expect("received_at").to_string();
    let in_window = list(&gw, &format!("/api/v1/events?from={at}&to={at}"), READ_KEY).await;
    assert!(in_window.contains(&f.paid));
    let far_future = list(&gw, "/api/v1/events?from=4000000000000", READ_KEY).await;
    assert!(far_future.is_empty());
    let past = list(&gw, "/api/v1/events?to=2001-01-01T00:00:00Z", READ_KEY).await;
    assert!(past.is_empty());
    let everything = list(
        &gw,
        "/api/v1/events?from=1000&to=2999-01-01T00:00:00%2B02:00",
        READ_KEY,
    )
    .await;
    assert_eq!(everything.len(), 9);
}

#[tokio::test]
async fn pagination_has_no_duplicates_or_gaps_while_events_arrive() {
    let gw = Arc::new(gateway().await);
    let mut before = Vec::new();
    for i in 0..130 {
        before.push(
            gw.ingest(
                "default",
                "orders",
                &json!({"type": "order.created", "n": i}),
            )
            .await,
        );
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (gw, stop) = (gw.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                gw.ingest(
                    "default",
                    "orders",
                    &json!({"type": "order.created", "late": n}),
                )
                .await;
                n += 1;
            }
            n
        })
    };
    for (path, limit) in [
        ("/api/v1/events", 7),
        ("/api/v1/events?source=orders", 10),
        ("/api/v1/events?status=pending", 13),
        ("/api/v1/events?endpoint=fulfilment", 9),
        ("/api/v1/events?event_type=order.*", 100),
    ] {
        let got = gw.all_pages(path, READ_KEY, limit).await;
        let set: HashSet<&String> = got.iter().collect();
        assert_eq!(set.len(), got.len(), "{path}: duplicates across pages");
        assert_eq!(got, sorted_desc(got.clone()), "{path}: not newest first");
        for id in &before {
            assert!(set.contains(id), "{path}: {id} missing (a gap)");
        }
    }
    let deliveries = gw.all_pages("/api/v1/deliveries", READ_KEY, 11).await;
    let set: HashSet<&String> = deliveries.iter().collect();
    assert_eq!(set.len(), deliveries.len(), "deliveries: duplicates");
    assert!(deliveries.len() >= before.len());
    assert_eq!(deliveries, sorted_desc(deliveries.clone()));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let late = writer.await.expect("writer");
    assert!(late > 0, "events kept arriving during paging");

    // Default and maximum page sizes.
    let r = gw.get("/api/v1/events", READ_KEY).await.json();
    assert_eq!(r["pagination"]["limit"], 50);
    assert_eq!(r["data"].as_array().map(Vec::len), Some(50));
    assert_eq!(r["pagination"]["has_more"], true);
    let r = gw.get("/api/v1/events?limit=100", READ_KEY).await.json();
    assert_eq!(r["data"].as_array().map(Vec::len), Some(100));
}

#[tokio::test]
async fn malformed_parameters_are_400_invalid_parameter() {
    let gw = gateway().await;
    let evt = gw
        .ingest("default", "orders", &json!({"type": "order.created"}))
        .await;
    let page = gw.get("/api/v1/events?limit=1", READ_KEY).await.json();
    assert_eq!(page["pagination"]["has_more"], false);
    gw.ingest("default", "orders", &json!({"type": "order.created"}))
        .await;
    let page = gw.get("/api/v1/events?limit=1", READ_KEY).await.json();
    let cursor = page["pagination"]["next_cursor"]
        .as_str()
        .expect("a cursor")
        .to_string();
    for q in [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=ten",
        "limit=",
        "cursor=garbage",
        "cursor=",
        "cursor=AAAA",
        "from=yesterday",
        "from=2024-13-01T00:00:00Z",
        "to=99999999999999999999",
        "from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z",
        "status=bogus",
        "status=pending,",
        "signature_valid=maybe",
        "event_type=",
        "search=",
        "search=evt_%21%21",
        "search=evt_01ARZ3NDEKTSV4RRFFQ69G5FAVX",
        "source=Bad_Name",
        "source=a/b/c",
        "endpoint=%2F",
        "namespace=UPPER",
        "bogus=1",
        "limit=1&limit=2",
    ] {
        let r = gw.get(&format!("/api/v1/events?{q}"), READ_KEY).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        r.expect_error(400, "INVALID_PARAMETER");
    }
    // A cursor used with other filters.
    gw.get(
        &format!("/api/v1/events?limit=1&source=orders&cursor={cursor}"),
        READ_KEY,
    )
    .await
    .expect_error(400, "INVALID_PARAMETER");
    // An events cursor on the delivery log.
    gw.get(&format!("/api/v1/deliveries?cursor={cursor}"), READ_KEY)
        .await
        .expect_error(400, "INVALID_PARAMETER");
    // The same cursor with the same filters (and another limit) is fine.
    gw.get(&format!("/api/v1/events?limit=5&cursor={cursor}"), READ_KEY)
        .await
        .expect(200);
    for q in [
        "event_id=nope",
        "event_id=dlv_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "status=delivered",
        "from=x",
        "limit=1000",
        "endpoint=UP",
        "extra=1",
    ] {
        gw.get(&format!("/api/v1/deliveries?{q}"), READ_KEY)
            .await
            .expect_error(400, "INVALID_PARAMETER");
    }
    for path in [
        "/api/v1/events/nope".to_string(),
        "/api/v1/events/evt_".to_string(),
        "/api/v1/events/dlv_01ARZ3NDEKTSV4RRFFQ69G5FAV".to_string(),
        "/api/v1/events/evt_01ARZ3NDEKTSV4RRFFQ69G5FA%21/payload".to_string(),
        "/api/v1/events/x/deliveries".to_string(),
        "/api/v1/events/x/timeline".to_string(),
        "/api/v1/deliveries/evt_01ARZ3NDEKTSV4RRFFQ69G5FAV".to_string(),
        format!("/api/v1/events/{evt}?include=everything"),
        format!("/api/v1/events/{evt}?unknown=1"),
        "/api/v1/sources?namespace=Nope".to_string(),
        "/api/v1/endpoints?x=1".to_string(),
    ] {
        gw.get(&path, READ_KEY)
            .await
            .expect_error(400, "INVALID_PARAMETER");
    }
    for path in [
        "/api/v1/events/nope/replay",
        "/api/v1/deliveries/nope/retry",
    ] {
        gw.call(Method::POST, path, WRITE_KEY, None)
            .await
            .expect_error(400, "INVALID_PARAMETER");
    }
    gw.call(Method::DELETE, "/api/v1/events/nope", WRITE_KEY, None)
        .await
        .expect_error(400, "INVALID_PARAMETER");
    // Well-formed ids that do not exist are 404.
    gw.get("/api/v1/events/evt_01ARZ3NDEKTSV4RRFFQ69G5FAV", READ_KEY)
        .await
        .expect_error(404, "RESOURCE_NOT_FOUND");
    gw.get(
        "/api/v1/deliveries/dlv_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        READ_KEY,
    )
    .await
    .expect_error(404, "RESOURCE_NOT_FOUND");
    // Unknown routes and methods answer JSON too.
    gw.get("/api/v1/nothing", READ_KEY)
        .await
        .expect_error(404, "ROUTE_NOT_FOUND");
    gw.call(Method::PUT, "/api/v1/events", WRITE_KEY, None)
        .await
        .expect_error(405, "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn event_detail_payload_deliveries_and_timeline() {
    let gw = gateway().await;
    let body = r#"{"type":"order.created","total":42}"#;
    let r = gw
        .request(
            Method::POST,
            "/e/default/orders",
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("authorization", "Bearer some-upstream-credential"),
                ("x-request-id", "corr-123"),
            ],
            bytes::Bytes::from(body),
        )
        .await
        .expect("ingest");
    r.expect(202);
    let evt = r.json()["id"].as_str().expect("id").to_string();

    let plain = gw.get(&format!("/api/v1/events/{evt}"), READ_KEY).await;
    plain.expect(200);
    let j = plain.json();
    assert_eq!(j["id"], evt);
    assert_eq!(j["namespace"], "default");
    assert_eq!(j["source"], "orders");
    assert_eq!(j["event_type"], "order.created");
    assert_eq!(j["origin"], "webhook");
    assert_eq!(j["status"], "pending");
    assert_eq!(j["correlation_id"], "corr-123");
    assert_eq!(j["body_size"], body.len());
    assert_eq!(j["delivery_count"], 1);
    assert_eq!(j["payload_expired"], false);
    assert!(j["signature_valid"].is_null());
    assert!(j.get("payload").is_none() && j.get("deliveries").is_none());

    let full = gw
        .get(
            &format!("/api/v1/events/{evt}?include=payload,deliveries"),
            READ_KEY,
        )
        .await
        .json();
    assert_eq!(full["payload"]["encoding"], "utf8");
    assert_eq!(full["payload"]["body"], body);
    let headers = full["payload"]["headers"].as_array().expect("headers");
    let auth = headers
        .iter()
        .find(|h| h["name"] == "authorization")
        .expect("authorization kept, redacted");
    assert_eq!(auth["value"], "[redacted]");
    assert!(!full.to_string().contains("some-upstream-credential"));
    let deliveries = full["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["endpoint"], "fulfilment");
    assert_eq!(deliveries[0]["subscription"], "orders-to-fulfilment");
    assert_eq!(deliveries[0]["status"], "pending");
    assert_eq!(deliveries[0]["event_id"], evt);

    // Raw payload, original content type.
    let raw = gw
        .get(&format!("/api/v1/events/{evt}/payload"), READ_KEY)
        .await;
    raw.expect(200);
    assert_eq!(raw.text(), body);
    assert_eq!(
        raw.headers["content-type"],
        "application/json; charset=utf-8"
    );
    // A non-JSON, non-UTF-8 body comes back byte for byte.
    let bin: &[u8] = &[0xff, 0x00, 0xfe, b'x'];
    let r = gw
        .request(
            Method::POST,
            "/e/default/orders",
            &[("content-type", "application/x-thing")],
            bytes::Bytes::from_static(bin),
        )
        .await
        .expect("ingest");
    r.expect(202);
    let bin_evt = r.json()["id"].as_str().expect("id").to_string();
    let raw = gw
        .get(&format!("/api/v1/events/{bin_evt}/payload"), READ_KEY)
        .await;
    assert_eq!(&raw.body[..], bin);
    assert_eq!(raw.headers["content-type"], "application/x-thing");
    let j = gw
        .get(
            &format!("/api/v1/events/{bin_evt}?include=payload"),
            READ_KEY,
        )
        .await
        .json();
    assert_eq!(j["payload"]["encoding"], "base64");
    assert_eq!(j["status"], "unrouted");

    let dl = gw
        .get(&format!("/api/v1/events/{evt}/deliveries"), READ_KEY)
        .await
        .json();
    assert_eq!(dl["data"].as_array().map(Vec::len), Some(1));

    let tl = gw
        .get(&format!("/api/v1/events/{evt}/timeline"), READ_KEY)
        .await
        .json();
    assert_eq!(tl["event_id"], evt);
    let kinds: Vec<&str> = tl["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["received", "stored", "routed"]);
    let tl = gw
        .get(&format!("/api/v1/events/{bin_evt}/timeline"), READ_KEY)
        .await
        .json();
    let kinds: Vec<&str> = tl["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["received", "stored", "unrouted"]);
    let r = gw
        .ingest_github("github-audit", "push", "{}", false)
        .await
        .json();
    let audit = r["id"].as_str().expect("id");
    let tl = gw
        .get(&format!("/api/v1/events/{audit}/timeline"), READ_KEY)
        .await
        .json();
    assert_eq!(tl["data"][1]["kind"], "verification_failed");
    let ev = gw
        .get(&format!("/api/v1/events/{audit}"), READ_KEY)
        .await
        .json();
    assert_eq!(ev["signature_valid"], false);
    assert_eq!(ev["signature_error"], "SIGNATURE_INVALID");
}

#[tokio::test]
async fn replay_retry_and_bulk_replay_queue_new_deliveries() {
    let gw = gateway().await;
    let evt = gw
        .ingest("default", "orders", &json!({"type": "order.created"}))
        .await;
    let unrouted = gw
        .ingest("default", "orders", &json!({"type": "misc.thing"}))
        .await;

    // Replay to wherever the current routing sends it.
    let r = gw
        .call(
            Method::POST,
            &format!("/api/v1/events/{evt}/replay"),
            WRITE_KEY,
            None,
        )
        .await;
    r.expect(202);
    let j = r.json();
    assert_eq!(j["event_id"], evt);
    let new = j["deliveries"].as_array().expect("deliveries");
    assert_eq!(new.len(), 1);
    assert_eq!(new[0]["endpoint"], "fulfilment");
    assert_eq!(new[0]["status"], "pending");
    assert!(new[0]["next_attempt_at"].is_string(), "due now");
    // To listed endpoints (duplicates collapse), with an explicit JSON body.
    let r = gw
        .call(
            Method::POST,
            &format!("/api/v1/events/{evt}/replay"),
            WRITE_KEY,
            Some(json!({"endpoints": ["billing", "fulfilment", "billing"]})),
        )
        .await;
    r.expect(202);
    let replayed = r.json();
    let eps: Vec<&str> = replayed["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .filter_map(|d| d["endpoint"].as_str())
        .collect();
    assert_eq!(eps, ["billing", "fulfilment"]);
    let dl = gw
        .get(&format!("/api/v1/events/{evt}/deliveries"), READ_KEY)
        .await
        .json();
    assert_eq!(dl["data"].as_array().map(Vec::len), Some(4));
    let ev = gw
        .get(&format!("/api/v1/events/{evt}"), READ_KEY)
        .await
        .json();
    assert_eq!(ev["delivery_count"], 4);
    assert_eq!(ev["status"], "pending");
    // The delivery log's endpoint filter sees the replays.
    let billing = list(
        &gw,
        &format!("/api/v1/deliveries?endpoint=billing&event_id={evt}"),
        READ_KEY,
    )
    .await;
    assert_eq!(billing.len(), 1);
    assert_eq!(
        list(&gw, "/api/v1/events?endpoint=billing", READ_KEY).await,
        vec![evt.clone()]
    );

    // Errors: unknown endpoint, nothing routes, malformed body.
    gw.call(
        Method::POST,
        &format!("/api/v1/events/{evt}/replay"),
        WRITE_KEY,
        Some(json!({"endpoints": ["nope"]})),
    )
    .await
    .expect_error(404, "ENDPOINT_NOT_FOUND");
    gw.call(
        Method::POST,
        &format!("/api/v1/events/{unrouted}/replay"),
        WRITE_KEY,
        None,
    )
    .await
    .expect_error(422, "NO_ROUTE");
    gw.call(
        Method::POST,
        &format!("/api/v1/events/{unrouted}/replay"),
        WRITE_KEY,
        Some(json!({"endpoints": ["billing"]})),
    )
    .await
    .expect(202);
    for body in [
        json!({"endpoints": "billing"}),
        json!({"other": 1}),
        json!([1]),
    ] {
        gw.call(
            Method::POST,
            &format!("/api/v1/events/{evt}/replay"),
            WRITE_KEY,
            Some(body),
        )
        .await
        .expect_error(400, "INVALID_BODY");
    }
    gw.call(
        Method::POST,
        "/api/v1/events/evt_01ARZ3NDEKTSV4RRFFQ69G5FAV/replay",
        WRITE_KEY,
        None,
    )
    .await
    .expect_error(404, "RESOURCE_NOT_FOUND");

    // Retry one delivery: pending again, due now.
    let first = ids(&dl)[0].clone();
    let r = gw
        .call(
            Method::POST,
            &format!("/api/v1/deliveries/{first}/retry"),
            WRITE_KEY,
            None,
        )
        .await;
    r.expect(202);
    let d = r.json();
    assert_eq!(d["id"], first);
    assert_eq!(d["status"], "pending");
    assert!(d["next_attempt_at"].is_string());
    let detail = gw
        .get(&format!("/api/v1/deliveries/{first}"), READ_KEY)
        .await
        .json();
    assert_eq!(detail["id"], first);
    assert_eq!(detail["attempts"], json!([]));
    gw.call(
        Method::POST,
        "/api/v1/deliveries/dlv_01ARZ3NDEKTSV4RRFFQ69G5FAV/retry",
        WRITE_KEY,
        None,
    )
    .await
    .expect_error(404, "RESOURCE_NOT_FOUND");

    // Bulk replay by ids: per-event results and errors.
    let missing = "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let r = gw
        .call(
            Method::POST,
            "/api/v1/events/bulk/replay",
            WRITE_KEY,
            Some(json!({"ids": [evt, missing, evt]})),
        )
        .await;
    r.expect(202);
    let j = r.json();
    assert_eq!(j["replayed"], 1);
    assert_eq!(j["errors"][0]["event_id"], missing);
    assert_eq!(j["errors"][0]["code"], "RESOURCE_NOT_FOUND");
    assert_eq!(j["has_more"], false);
    // Bulk replay by filter, in bounded calls with a cursor.
    for i in 0..5 {
        gw.ingest("default", "orders", &json!({"type": "order.paid", "i": i}))
            .await;
    }
    let mut replayed = 0;
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut body =
            json!({"filter": {"event_type": "order.paid", "source": "orders"}, "limit": 2});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let r = gw
            .call(
                Method::POST,
                "/api/v1/events/bulk/replay",
                WRITE_KEY,
                Some(body),
            )
            .await;
        r.expect(202);
        let j = r.json();
        replayed += j["replayed"].as_u64().expect("replayed");
        assert!(j["replayed"].as_u64() <= Some(2));
        if j["has_more"] != true {
            break;
        }
        cursor = j["next_cursor"].as_str().map(String::from);
    }
    assert_eq!(replayed, 5);
    let paid = list(&gw, "/api/v1/events?event_type=order.paid", READ_KEY).await;
    for id in paid {
        let e = gw
            .get(&format!("/api/v1/events/{id}"), READ_KEY)
            .await
            .json();
        assert_eq!(e["delivery_count"], 2, "routed once, replayed once");
    }
    for body in [
        json!({}),
        json!({"ids": []}),
        json!({"ids": ["nope"]}),
        json!({"ids": [evt], "filter": {}}),
        json!({"ids": (0..101).map(|_| evt.clone()).collect::<Vec<_>>()}),
        json!({"filter": {}, "limit": 0}),
        json!({"filter": {}, "cursor": "junk"}),
        json!({"filter": {"unknown": 1}}),
    ] {
        let r = gw
            .call(
                Method::POST,
                "/api/v1/events/bulk/replay",
                WRITE_KEY,
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
    }
    gw.call(
        Method::POST,
        "/api/v1/events/bulk/replay",
        WRITE_KEY,
        Some(json!({"filter": {"status": "nope"}})),
    )
    .await
    .expect_error(400, "INVALID_PARAMETER");
}

#[tokio::test]
async fn delete_removes_the_event_and_everything_of_it() {
    let gw = gateway().await;
    let r = gw
        .request(
            Method::POST,
            "/e/default/orders",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "k-1"),
            ],
            bytes::Bytes::from(r#"{"type":"order.created"}"#),
        )
        .await
        .expect("ingest");
    r.expect(202);
    let evt = r.json()["id"].as_str().expect("id").to_string();
    let keep = gw
        .ingest("default", "orders", &json!({"type": "order.created"}))
        .await;
    gw.call(
        Method::POST,
        &format!("/api/v1/events/{evt}/replay"),
        WRITE_KEY,
        None,
    )
    .await
    .expect(202);
    let dlvs = ids(&gw
        .get(&format!("/api/v1/events/{evt}/deliveries"), READ_KEY)
        .await
        .json());
    assert_eq!(dlvs.len(), 2);

    let r = gw
        .call(
            Method::DELETE,
            &format!("/api/v1/events/{evt}"),
            WRITE_KEY,
            None,
        )
        .await;
    r.expect(204);
    assert!(r.body.is_empty());
    for path in [
        format!("/api/v1/events/{evt}"),
        format!("/api/v1/events/{evt}/payload"),
        format!("/api/v1/events/{evt}/deliveries"),
        format!("/api/v1/events/{evt}/timeline"),
    ] {
        gw.get(&path, READ_KEY)
            .await
            .expect_error(404, "RESOURCE_NOT_FOUND");
    }
    for d in &dlvs {
        gw.get(&format!("/api/v1/deliveries/{d}"), READ_KEY)
            .await
            .expect_error(404, "RESOURCE_NOT_FOUND");
    }
    // Gone from every index.
    for q in [
        "",
        "?source=orders",
        "?status=pending",
        "?endpoint=fulfilment",
        "?search=order.created",
    ] {
        assert_eq!(
            list(&gw, &format!("/api/v1/events{q}"), READ_KEY).await,
            vec![keep.clone()],
            "{q}"
        );
    }
    assert!(
        list(&gw, &format!("/api/v1/deliveries?event_id={evt}"), READ_KEY)
            .await
            .is_empty()
    );
    assert_eq!(list(&gw, "/api/v1/deliveries", READ_KEY).await.len(), 1);
    assert_eq!(
        list(&gw, "/api/v1/deliveries?endpoint=fulfilment", READ_KEY)
            .await
            .len(),
        1
    );
    gw.call(
        Method::DELETE,
        &format!("/api/v1/events/{evt}"),
        WRITE_KEY,
        None,
    )
    .await
    .expect_error(404, "RESOURCE_NOT_FOUND");
    // Its idempotency key is free again.
    let r = gw
        .request(
            Method::POST,
            "/e/default/orders",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "k-1"),
            ],
            bytes::Bytes::from(r#"{"type":"order.created"}"#),
        )
        .await
        .expect("ingest");
    r.expect(202);
    assert_ne!(r.json()["id"], evt);
}

#[tokio::test]
async fn delivery_log_filters() {
    let gw = gateway().await;
    let f = fixture(&gw).await;
    let all = list(&gw, "/api/v1/deliveries", READ_KEY).await;
    // 3 created + paid to fulfilment, invoice to billing, team-b's one.
    assert_eq!(all.len(), 6);
    assert_eq!(all, sorted_desc(all.clone()));
    let of_paid = gw
        .get(&format!("/api/v1/deliveries?event_id={}", f.paid), READ_KEY)
        .await
        .json();
    assert_eq!(of_paid["data"][0]["event_id"], f.paid);
    assert_eq!(of_paid["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        list(&gw, "/api/v1/deliveries?endpoint=fulfilment", READ_KEY)
            .await
            .len(),
        5
    );
    assert_eq!(
        list(
            &gw,
            "/api/v1/deliveries?endpoint=default/fulfilment",
            READ_KEY
        )
        .await
        .len(),
        4
    );
    assert_eq!(
        list(&gw, "/api/v1/deliveries?namespace=team-b", READ_KEY)
            .await
            .len(),
        1
    );
    assert_eq!(
        list(&gw, "/api/v1/deliveries?status=pending", READ_KEY)
            .await
            .len(),
        6
    );
    assert!(list(
        &gw,
        "/api/v1/deliveries?status=success,dead_letter",
        READ_KEY
    )
    .await
    .is_empty());
    assert!(list(&gw, "/api/v1/deliveries?to=1000", READ_KEY)
        .await
        .is_empty());
    assert_eq!(
        list(
            &gw,
            "/api/v1/deliveries?from=2020-01-01T00:00:00Z",
            READ_KEY
        )
        .await
        .len(),
        6
    );
    let paged = gw.all_pages("/api/v1/deliveries", READ_KEY, 4).await;
    assert_eq!(paged, all);
    let d = gw
        .get(&format!("/api/v1/deliveries/{}", all[0]), READ_KEY)
        .await
        .json();
    assert_eq!(d["attempts"], json!([]));
    assert_eq!(d["attempt_count"], 0);
    assert!(f.misc.starts_with("evt_") && f.github_ok.starts_with("evt_"));
    assert!(f.github_bad.starts_with("evt_") && f.invoice.starts_with("evt_"));
}

#[tokio::test]
async fn live_config_with_counters_and_no_secrets() {
    let gw = gateway().await;
    for _ in 0..3 {
        gw.ingest("default", "orders", &json!({"type": "order.created"}))
            .await;
    }
    let sources = gw.get("/api/v1/sources", READ_KEY).await;
    sources.expect(200);
    let s = sources.json();
    assert!(s["config_hash"]
        .as_str()
        .is_some_and(|h| h.starts_with("sha256:")));
    let orders = s["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|s| s["namespace"] == "default" && s["name"] == "orders")
        .expect("orders")
        .clone();
    assert_eq!(orders["counters"]["received"], 3);
    assert_eq!(orders["ingest_path"], "/e/default/orders");
    assert_eq!(orders["verification"], "none");
    let gh = s["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|s| s["name"] == "github-audit")
        .expect("github-audit")
        .clone();
    assert_eq!(gh["verification"], "github");
    assert_eq!(gh["mode"], "audit");
    assert_eq!(s["data"].as_array().map(Vec::len), Some(4));

    let endpoints = gw.get("/api/v1/endpoints", READ_KEY).await;
    endpoints.expect(200);
    let e = endpoints.json();
    let ful = e["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|e| e["namespace"] == "default" && e["name"] == "fulfilment")
        .expect("fulfilment")
        .clone();
    assert_eq!(ful["url"], "http://127.0.0.1:9/fulfilment");
    let names = ful["header_names"].as_array().expect("header_names");
    assert_eq!(names.len(), 1);
    assert!(names[0]
        .as_str()
        .is_some_and(|n| n.eq_ignore_ascii_case("x-internal-token")));
    assert_eq!(ful["subscription_count"], 1);
    // "unknown" until the delivery engine has tried the endpoint, then its breaker's state.
    assert!(
        ["unknown", "closed", "open", "half_open"].contains(&ful["circuit"].as_str().unwrap_or("")),
        "circuit: {}",
        ful["circuit"]
    );
    for k in ["delivered", "failed", "retried"] {
        assert!(ful["counters"][k].is_u64(), "{k}");
    }
    let subs = gw.get("/api/v1/subscriptions", READ_KEY).await;
    subs.expect(200);
    let sj = subs.json();
    let sub = sj["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|s| s["name"] == "orders-to-fulfilment")
        .expect("subscription")
        .clone();
    assert_eq!(sub["endpoint"], "fulfilment");
    assert_eq!(sub["sources"], json!(["orders"]));
    assert_eq!(sub["event_types"], json!(["order.*"]));
    assert_eq!(
        gw.get("/api/v1/endpoints?namespace=team-b", READ_KEY)
            .await
            .json()["data"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // No secret anywhere in what the API says.
    let mut everything = String::new();
    for path in [
        "/api/v1/sources",
        "/api/v1/endpoints",
        "/api/v1/subscriptions",
        "/openapi.json",
        "/readyz",
    ] {
        everything.push_str(&gw.get(path, READ_KEY).await.text());
    }
    for secret in [
        "github-test-secret",
        "do-not-show-this",
        "c2lnbmluZy1rZXktZm9yLXRlc3RzLTAwMDAwMDAw",
        hookmesh_tests::rest_harness::WRITE_KEY,
        READ_KEY,
        TEAM_B_KEY,
    ] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}
