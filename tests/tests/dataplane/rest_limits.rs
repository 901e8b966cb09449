//! Retention and per-key rate limiting, each on a gateway started with short settings.

use std::time::{Duration, Instant};

use hookmesh_tests::rest_harness::{self, READ_KEY, TEAM_B_KEY, WRITE_KEY};
use serde_json::json;

#[tokio::test]
async fn retention_expires_payloads_then_metadata() {
    let gw = rest_harness::start(&[
        "--retention",
        "1s",
        "--metadata-retention",
        "4s",
        "--retention-interval",
        "200ms",
    ])
    .await
    .expect("gateway starts");
    let evt = gw
        .ingest(
            "default",
            "orders",
            &json!({"type": "order.created", "secret_sauce": "xyz"}),
        )
        .await;
    let dlv = gw
        .get(&format!("/api/v1/events/{evt}/deliveries"), READ_KEY)
        .await
        .json()["data"][0]["id"]
        .as_str()
        .expect("delivery")
        .to_string();
    gw.get(&format!("/api/v1/events/{evt}/payload"), READ_KEY)
        .await
        .expect(200);

    // Payload first: 410, flagged, metadata still there.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = gw
            .get(&format!("/api/v1/events/{evt}/payload"), READ_KEY)
            .await;
        if r.status == 410 {
            r.expect_error(410, "PAYLOAD_EXPIRED");
            break;
        }
        assert!(Instant::now() < deadline, "payload never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = gw
        .get(&format!("/api/v1/events/{evt}?include=payload"), READ_KEY)
        .await;
    e.expect(200);
    let e = e.json();
    assert_eq!(e["payload_expired"], true);
    assert!(e.get("payload").is_none());
    gw.get(&format!("/api/v1/deliveries/{dlv}"), READ_KEY)
        .await
        .expect(200);
    assert!(gw
        .get("/api/v1/events?search=secret_sauce", READ_KEY)
        .await
        .json()["data"]
        .as_array()
        .is_some_and(Vec::is_empty));
    // Nothing left to deliver: replay and retry say so.
    gw.call(
        http::Method::POST,
        &format!("/api/v1/events/{evt}/replay"),
        WRITE_KEY,
        None,
    )
    .await
    .expect_error(410, "PAYLOAD_EXPIRED");
    gw.call(
        http::Method::POST,
        &format!("/api/v1/deliveries/{dlv}/retry"),
        WRITE_KEY,
        None,
    )
    .await
    .expect_error(410, "PAYLOAD_EXPIRED");

    // Then the metadata: the event and its deliveries are gone.
    loop {
        let r = gw.get(&format!("/api/v1/events/{evt}"), READ_KEY).await;
        if r.status == 404 {
            r.expect_error(404, "RESOURCE_NOT_FOUND");
            break;
        }
        assert!(Instant::now() < deadline, "metadata never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.get(&format!("/api/v1/deliveries/{dlv}"), READ_KEY)
        .await
        .expect_error(404, "RESOURCE_NOT_FOUND");
    let all = gw.get("/api/v1/deliveries", READ_KEY).await.json();
    assert_eq!(all["data"], json!([]));

    // Ingest keeps working throughout, and fresh events keep their payloads.
    let fresh = gw
        .ingest("default", "orders", &json!({"type": "order.created"}))
        .await;
    gw.get(&format!("/api/v1/events/{fresh}/payload"), READ_KEY)
        .await
        .expect(200);
}

#[tokio::test]
async fn rate_limit_is_per_key_with_retry_after() {
    // One request per second per key, bursts of two.
    let gw = rest_harness::start(&["--api-rate-limit", "1"])
        .await
        .expect("gateway starts");
    let mut limited = None;
    for _ in 0..5 {
        let r = gw.get("/api/v1/sources", READ_KEY).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        r.expect(200);
    }
    let r = limited.expect("the third request within a second is limited");
    let retry_after: u64 = r.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
    let j = r.json();
    assert_eq!(j["error"], "rate_limit_exceeded");
    assert_eq!(j["retry_after"], retry_after);
    assert_eq!(j["code"], "RATE_LIMIT_EXCEEDED");
    assert!(j["message"].is_string());
    // Another key has its own budget.
    gw.get("/api/v1/sources", TEAM_B_KEY).await.expect(200);
    // Ingest is not limited by API keys.
    for _ in 0..5 {
        gw.ingest("default", "orders", &json!({"type": "x"})).await;
    }
    // After waiting, the key works again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    gw.get("/api/v1/sources", READ_KEY).await.expect(200);
}
