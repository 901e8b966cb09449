//! Three data-plane processes on loopback, static peers: one gateway across pods. Lists merge
//! and page through every pod while all three ingest; calls about one object reach the pod
//! that holds it; keys keep their role and scope on every pod; a dead or frozen pod makes
//! answers partial (never a 500) and calls about its objects 503; a drained pod hands every
//! unfinished event to the others and nothing acknowledged is lost.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use ::http::Method;
use bytes::Bytes;
use hookmesh_dataplane::store::{node_of, EventId};
use hookmesh_tests::peer_set::{PeerSet, SetOptions, PEER_TOKEN};
use hookmesh_tests::receiver::{Receiver, Reply};
use hookmesh_tests::rest_harness::{Gateway, READ_KEY, TEAM_B_KEY, WRITE_KEY};
use hookmesh_tests::wait::wait_until;
use serde_json::json;

/// Two namespaces; every event of each goes to the receiver.
fn manifests(receiver: &Receiver) -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: signing, namespace: default}}
stringData: {{secret: "whsec_c2lnbmluZy1rZXktZm9yLXRlc3RzLTAwMDAwMDAw"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: signing, namespace: team-b}}
stringData: {{secret: "whsec_c2lnbmluZy1rZXktZm9yLXRlc3RzLTAwMDAwMDAw"}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {{name: orders, namespace: default}}
spec:
  verification: {{scheme: none}}
  eventType: {{jsonPointer: /type}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {{name: shop, namespace: default}}
spec:
  url: {shop}
  secretRef: {{name: signing, key: secret}}
  retry: {{maxAttempts: 100, initialBackoff: 100ms, maxBackoff: 300ms}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {{name: all, namespace: default}}
spec:
  endpointRef: {{name: shop}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Source
metadata: {{name: orders, namespace: team-b}}
spec:
  verification: {{scheme: none}}
  eventType: {{jsonPointer: /type}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Endpoint
metadata: {{name: shop, namespace: team-b}}
spec:
  url: {team}
  secretRef: {{name: signing, key: secret}}
  retry: {{maxAttempts: 100, initialBackoff: 100ms, maxBackoff: 300ms}}
---
apiVersion: hookmesh.io/v1alpha1
kind: Subscription
metadata: {{name: all, namespace: team-b}}
spec:
  endpointRef: {{name: shop}}
---
apiVersion: v1
kind: Secret
metadata: {{name: write-key, namespace: default, labels: {{hookmesh.io/api-key: "true"}}}}
stringData: {{key: {WRITE_KEY}, role: write}}
---
apiVersion: v1
kind: Secret
metadata: {{name: read-key, namespace: default, labels: {{hookmesh.io/api-key: "true"}}}}
stringData: {{key: {READ_KEY}, role: read}}
---
apiVersion: v1
kind: Secret
metadata: {{name: team-b-key, namespace: team-b, labels: {{hookmesh.io/api-key: "true"}}}}
stringData: {{key: {TEAM_B_KEY}, role: write, namespace: team-b}}
"#,
        shop = receiver.url("/shop"),
        team = receiver.url("/team-b"),
    )
}

async fn three(receiver: &Receiver, extra: &[&str]) -> PeerSet {
    let mut args = vec![
        "--peer-timeout=1s".to_string(),
        "--breaker-threshold=1000".to_string(),
        "--breaker-cooldown=200ms".to_string(),
        "--api-rate-limit=0".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    PeerSet::start(SetOptions {
        pods: 3,
        manifests_yaml: manifests(receiver),
        args,
        env: Vec::new(),
        release: false,
    })
    .await
    .expect("three pods")
}

fn node(id: &str) -> u16 {
    node_of(id.parse::<EventId>().expect("an event id").0)
}

async fn ingest(gw: &Gateway, namespace: &str, n: usize, tag: &str) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(
            gw.ingest(
                namespace,
                "orders",
                &json!({"type": "order.created", "tag": tag, "i": i}),
            )
            .await,
        );
    }
    ids
}

/// Every page of `path` through one pod: ids in order, and whether any page was partial.
async fn pages(gw: &Gateway, path: &str, key: &str, limit: usize) -> (Vec<String>, bool) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let (mut ids, mut partial) = (Vec::new(), false);
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let r = gw.get(&url, key).await;
        r.expect(200);
        let j = r.json();
        let data = j["data"].as_array().cloned().unwrap_or_default();
        assert!(data.len() <= limit, "a page larger than its limit");
        ids.extend(
            data.iter()
                .filter_map(|e| e["id"].as_str().map(String::from)),
        );
        partial |= j["partial"] == true;
        match j["pagination"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return (ids, partial),
        }
    }
}

fn assert_newest_first_once(ids: &[String]) {
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an id appeared twice");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "not newest first");
}

#[tokio::test]
async fn lists_merge_every_pod_and_page_without_gaps_or_duplicates_under_ingest() {
    let receiver = Receiver::start().await.expect("receiver");
    let set = three(&receiver, &[]).await;
    let mut before: Vec<String> = Vec::new();
    for n in 1..=3 {
        let ids = ingest(set.pod(n), "default", 12, "before").await;
        assert!(
            ids.iter().all(|id| node(id) == n as u16),
            "ids carry their pod's node"
        );
        before.extend(ids);
        before.extend(ingest(set.pod(n), "team-b", 3, "before").await);
    }

    // All three keep ingesting while one pod pages through the merged list.
    let stop = tokio::sync::watch::channel(false);
    let writers: Vec<_> = (1..=3)
        .map(|n| {
            let url = set.pod(n).url("/e/default/orders");
            let mut stop_rx = stop.1.clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                while !*stop_rx.borrow_and_update() {
                    let body =
                        Bytes::from(json!({"type": "order.created", "tag": "during"}).to_string());
                    if let Ok(r) = hookmesh_tests::http::post(
                        &url,
                        &[("content-type", "application/json")],
                        body,
                    )
                    .await
                    {
                        if r.status == 202 {
                            sent.push(r.json()["id"].as_str().unwrap_or_default().to_string());
                        }
                    }
                }
                sent
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (events, partial) = pages(set.pod(1), "/api/v1/events", WRITE_KEY, 7).await;
    let (deliveries, _) = pages(
        set.pod(2),
        "/api/v1/deliveries?status=success,pending,retrying,in_flight",
        WRITE_KEY,
        9,
    )
    .await;
    let _ = stop.0.send(true);
    let mut during = Vec::new();
    for w in writers {
        during.extend(w.await.expect("writer"));
    }
    assert!(!partial, "no pod was down");
    assert_newest_first_once(&events);
    assert_newest_first_once(&deliveries);
    let listed: BTreeSet<&String> = events.iter().collect();
    for id in &before {
        assert!(
            listed.contains(id),
            "{id} (pod {}) missing from the merged list",
            node(id)
        );
    }
    assert!(!during.is_empty(), "the writers ran");
    let nodes: BTreeSet<u16> = events.iter().map(|id| node(id)).collect();
    assert_eq!(nodes, BTreeSet::from([1, 2, 3]));
    assert!(
        deliveries.len() >= before.len(),
        "every event's delivery is listed"
    );

    // Once quiet, every pod gives the same answer, filters included.
    for path in [
        "/api/v1/events?namespace=team-b",
        "/api/v1/events?event_type=order.*&source=orders",
    ] {
        let (one, _) = pages(set.pod(1), path, WRITE_KEY, 5).await;
        let (three, _) = pages(set.pod(3), path, WRITE_KEY, 50).await;
        assert_eq!(
            one, three,
            "{path}: the same from pod 1 in pages of 5 and pod 3 in 50"
        );
        assert_newest_first_once(&one);
    }
    let (team, _) = pages(set.pod(2), "/api/v1/events?namespace=team-b", WRITE_KEY, 4).await;
    assert_eq!(team.len(), 9, "three team-b events from each pod");

    // A cursor is bound to its filters on every pod, as on one.
    let r = set.pod(1).get("/api/v1/events?limit=2", WRITE_KEY).await;
    let c = r.json()["pagination"]["next_cursor"]
        .as_str()
        .map(String::from)
        .expect("cursor");
    set.pod(2)
        .get(
            &format!("/api/v1/events?limit=2&namespace=team-b&cursor={c}"),
            WRITE_KEY,
        )
        .await
        .expect_error(400, "INVALID_PARAMETER");
}

#[tokio::test]
async fn calls_about_one_object_reach_the_pod_that_holds_it() {
    let receiver = Receiver::start().await.expect("receiver");
    let set = three(&receiver, &[]).await;
    let id = ingest(set.pod(3), "default", 1, "owned").await.remove(0);
    let other = ingest(set.pod(2), "default", 1, "owned").await.remove(0);
    receiver
        .wait_for(2, Duration::from_secs(30))
        .await
        .expect("both delivered");
    let via = set.pod(1);
    wait_until(
        "the delivery to be recorded",
        Duration::from_secs(10),
        async || {
            via.get(&format!("/api/v1/events/{id}"), READ_KEY)
                .await
                .json()["status"]
                == "delivered"
        },
    )
    .await
    .expect("delivered");

    let r = via
        .get(
            &format!("/api/v1/events/{id}?include=payload,deliveries"),
            READ_KEY,
        )
        .await;
    r.expect(200);
    let j = r.json();
    assert_eq!(j["id"], id.as_str());
    assert_eq!(j["deliveries"][0]["status"], "success");
    let dlv = j["deliveries"][0]["id"]
        .as_str()
        .expect("delivery id")
        .to_string();
    for path in [
        format!("/api/v1/events/{id}/payload"),
        format!("/api/v1/events/{id}/deliveries"),
        format!("/api/v1/events/{id}/timeline"),
        format!("/api/v1/deliveries/{dlv}"),
    ] {
        let here = via.get(&path, READ_KEY).await;
        let there = set.pod(3).get(&path, READ_KEY).await;
        here.expect(200);
        assert_eq!(
            here.json(),
            there.json(),
            "{path}: pod 1 answers as the owner does"
        );
    }
    // Actions, through pod 2 this time.
    let r = set
        .pod(2)
        .call(
            Method::POST,
            &format!("/api/v1/events/{id}/replay"),
            WRITE_KEY,
            None,
        )
        .await;
    r.expect(202);
    assert_eq!(r.json()["event_id"], id.as_str());
    let new_dlv = r.json()["deliveries"][0]["id"]
        .as_str()
        .expect("new delivery")
        .to_string();
    assert_eq!(
        node(&new_dlv.replacen("dlv_", "evt_", 1)),
        3,
        "the owner made the replay's delivery"
    );
    receiver
        .wait_for(3, Duration::from_secs(30))
        .await
        .expect("replayed");
    let r = via
        .call(
            Method::POST,
            &format!("/api/v1/deliveries/{dlv}/retry"),
            WRITE_KEY,
            None,
        )
        .await;
    r.expect(202);
    receiver
        .wait_for(4, Duration::from_secs(30))
        .await
        .expect("retried");

    // Bulk replay: by ids (two owners), and by filter across every pod with one cursor.
    let r = via
        .call(
            Method::POST,
            "/api/v1/events/bulk/replay",
            WRITE_KEY,
            Some(json!({"ids": [id, other]})),
        )
        .await;
    r.expect(202);
    assert_eq!(r.json()["replayed"], 2, "{}", r.text());
    let third = ingest(set.pod(1), "default", 1, "owned").await.remove(0);
    let mut replayed = BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut body = json!({"filter": {"namespace": "default"}, "limit": 1});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let r = via
            .call(
                Method::POST,
                "/api/v1/events/bulk/replay",
                WRITE_KEY,
                Some(body),
            )
            .await;
        r.expect(202);
        let j = r.json();
        for res in j["results"].as_array().cloned().unwrap_or_default() {
            assert!(
                replayed.insert(res["event_id"].as_str().unwrap_or_default().to_string()),
                "replayed twice"
            );
        }
        match j["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(
        replayed,
        BTreeSet::from([id.clone(), other.clone(), third]),
        "each pod's events once"
    );

    // Delete through pod 1; gone everywhere.
    via.call(
        Method::DELETE,
        &format!("/api/v1/events/{id}"),
        WRITE_KEY,
        None,
    )
    .await
    .expect(204);
    for n in 1..=3 {
        set.pod(n)
            .get(&format!("/api/v1/events/{id}"), READ_KEY)
            .await
            .expect_error(404, "RESOURCE_NOT_FOUND");
    }
    // A well-formed id nobody has: 404 from every pod.
    let nobody = "evt_01HZZZZZZZZZZZZZZZZZZZZZZZ";
    via.get(&format!("/api/v1/events/{nobody}"), READ_KEY)
        .await
        .expect_error(404, "RESOURCE_NOT_FOUND");
}

#[tokio::test]
async fn keys_keep_their_role_and_scope_on_every_pod() {
    let receiver = Receiver::start().await.expect("receiver");
    let set = three(&receiver, &[]).await;
    let mine = ingest(set.pod(3), "team-b", 2, "scoped").await;
    let theirs = ingest(set.pod(2), "default", 2, "scoped").await;
    receiver
        .wait_for(4, Duration::from_secs(30))
        .await
        .expect("delivered");

    let (seen, _) = pages(set.pod(1), "/api/v1/events", TEAM_B_KEY, 10).await;
    let seen: BTreeSet<String> = seen.into_iter().collect();
    assert_eq!(
        seen,
        mine.iter().cloned().collect(),
        "a team-b key sees team-b, from every pod"
    );
    set.pod(1)
        .get("/api/v1/events?namespace=default", TEAM_B_KEY)
        .await
        .expect_error(403, "FORBIDDEN");
    set.pod(1)
        .get(&format!("/api/v1/events/{}", theirs[0]), TEAM_B_KEY)
        .await
        .expect_error(404, "RESOURCE_NOT_FOUND");
    set.pod(1)
        .call(
            Method::POST,
            &format!("/api/v1/events/{}/replay", mine[0]),
            READ_KEY,
            None,
        )
        .await
        .expect_error(403, "FORBIDDEN");
    set.pod(1)
        .call(
            Method::POST,
            "/api/v1/events/bulk/replay",
            READ_KEY,
            Some(json!({"filter": {}})),
        )
        .await
        .expect_error(403, "FORBIDDEN");
    set.pod(1)
        .get("/api/v1/events", "not-a-key")
        .await
        .expect_error(401, "UNAUTHORIZED");
    // The hop marker only narrows: it is no way around the key.
    let hop = set
        .pod(2)
        .request(
            Method::GET,
            "/api/v1/events",
            &[("x-hookmesh-hop", "1")],
            Bytes::new(),
        )
        .await
        .expect("hop");
    hop.expect_error(401, "UNAUTHORIZED");
    // Internal routes take the peer token, and nothing else.
    for (auth, status) in [
        (format!("Bearer {WRITE_KEY}"), 401),
        ("Bearer wrong".to_string(), 401),
        (String::new(), 401),
    ] {
        let r = set
            .pod(2)
            .request(
                Method::POST,
                "/internal/v1/drain",
                &[("authorization", &auth)],
                Bytes::new(),
            )
            .await
            .expect("drain");
        assert_eq!(r.status, status, "{auth}: {}", r.text());
    }
    let r = set
        .pod(2)
        .request(
            Method::POST,
            "/internal/v1/handoff",
            &[
                ("authorization", &format!("Bearer {PEER_TOKEN}")),
                ("content-type", "application/json"),
            ],
            Bytes::from_static(b"{}"),
        )
        .await
        .expect("handoff");
    r.expect_error(415, "UNSUPPORTED_MEDIA_TYPE");

    // Config listings add every pod's counters up and show each pod's circuit.
    let r = set
        .pod(1)
        .get("/api/v1/endpoints?namespace=team-b", TEAM_B_KEY)
        .await;
    r.expect(200);
    let e = &r.json()["data"][0];
    assert_eq!(
        e["counters"]["delivered"], 2,
        "both deliveries, made on pod 3, counted from pod 1"
    );
    let pods: Vec<u64> = e["pods"]
        .as_array()
        .expect("pods")
        .iter()
        .filter_map(|p| p["node"].as_u64())
        .collect();
    assert_eq!(pods, vec![1, 2, 3]);
    let r = set.pod(1).get("/api/v1/sources", READ_KEY).await;
    let received: HashMap<String, u64> = r.json()["data"]
        .as_array()
        .expect("sources")
        .iter()
        .map(|s| {
            (
                s["namespace"].as_str().unwrap_or_default().to_string(),
                s["counters"]["received"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(received.get("team-b"), Some(&2));
    assert_eq!(received.get("default"), Some(&2));
}

#[tokio::test]
async fn a_dead_or_frozen_pod_makes_answers_partial_and_its_objects_unavailable() {
    let receiver = Receiver::start().await.expect("receiver");
    let mut set = three(&receiver, &[]).await;
    let on3 = ingest(set.pod(3), "default", 3, "down").await;
    let on1 = ingest(set.pod(1), "default", 3, "down").await;
    receiver
        .wait_for(6, Duration::from_secs(30))
        .await
        .expect("delivered");

    set.pod_mut(3).kill9().expect("kill -9 pod 3");
    let r = set.pod(1).get("/api/v1/events", READ_KEY).await;
    r.expect(200);
    let j = r.json();
    assert_eq!(j["partial"], true);
    let missing = j["missing_peers"].to_string();
    assert!(missing.contains("node 3"), "{missing}");
    let listed: BTreeSet<String> = j["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|e| e["id"].as_str().map(String::from))
        .collect();
    assert!(
        on1.iter().all(|id| listed.contains(id)),
        "the pods that answered are there"
    );
    set.pod(1)
        .get(&format!("/api/v1/events/{}", on3[0]), READ_KEY)
        .await
        .expect_error(503, "PEER_UNAVAILABLE");
    let r = set.pod(2).get("/api/v1/endpoints", READ_KEY).await;
    r.expect(200);
    assert_eq!(r.json()["partial"], true);
    let r = set
        .pod(2)
        .call(
            Method::POST,
            "/api/v1/events/bulk/replay",
            WRITE_KEY,
            Some(json!({"ids": [on3[0], on1[0]]})),
        )
        .await;
    r.expect(202);
    let j = r.json();
    assert_eq!(j["replayed"], 1);
    assert_eq!(j["errors"][0]["code"], "PEER_UNAVAILABLE");
    assert_eq!(j["partial"], true);

    // Frozen, not dead: the answer still comes, bounded by --peer-timeout.
    let pid = set.pod(2).pid().expect("pod 2 runs");
    let signal = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill")
    };
    signal("-STOP");
    let started = std::time::Instant::now();
    let r = set.pod(1).get("/api/v1/deliveries", READ_KEY).await;
    let took = started.elapsed();
    signal("-CONT");
    r.expect(200);
    assert_eq!(r.json()["partial"], true);
    assert!(
        took < Duration::from_secs(5),
        "bounded by the peer timeout, took {took:?}"
    );

    // Back on its volume: its events are there again, and answers are whole.
    set.pod_mut(3).start_again().await.expect("pod 3 again");
    set.wait_connected().await.expect("connected");
    let (all, partial) = pages(set.pod(1), "/api/v1/events", READ_KEY, 4).await;
    assert!(!partial);
    assert!(
        on3.iter().all(|id| all.contains(id)),
        "pod 3 resumed on its data"
    );
    set.pod(1)
        .get(&format!("/api/v1/events/{}", on3[0]), READ_KEY)
        .await
        .expect(200);
}

#[tokio::test]
async fn a_drained_pod_hands_its_queue_to_the_others_and_nothing_is_lost() {
    let receiver = Receiver::start().await.expect("receiver");
    // Nothing gets through at first: every event stays unfinished.
    receiver.set_default(Reply::Status(503));
    let mut set = three(&receiver, &["--drain-on-shutdown=true"]).await;
    let mut acknowledged: Vec<String> = Vec::new();
    for n in 1..=3 {
        acknowledged.extend(ingest(set.pod(n), "default", 15, "drain").await);
        acknowledged.extend(ingest(set.pod(n), "team-b", 5, "drain").await);
    }
    receiver
        .wait_for(10, Duration::from_secs(30))
        .await
        .expect("attempts are failing");

    let r = set
        .pod(3)
        .request(
            Method::POST,
            "/internal/v1/drain",
            &[("authorization", &format!("Bearer {PEER_TOKEN}"))],
            Bytes::new(),
        )
        .await
        .expect("drain");
    r.expect(200);
    let report = r.json();
    assert_eq!(report["handed_off"], 20, "{report}");
    assert_eq!(report["kept"], 0, "{report}");
    let r = set.pod(3).fetch("/readyz").await.expect("readyz");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "draining");
    let refused = set
        .pod(3)
        .post(
            "/e/default/orders",
            &[("content-type", "application/json")],
            Bytes::from_static(b"{}"),
        )
        .await
        .expect("ingest");
    refused.expect_error(503, "DRAINING");
    assert_eq!(
        set.pod(3)
            .metric("hookmesh_handoff_out_events_total")
            .await
            .expect("metric"),
        20.0
    );
    let taken = set
        .pod(1)
        .metric("hookmesh_handoff_in_events_total")
        .await
        .expect("metric")
        + set
            .pod(2)
            .metric("hookmesh_handoff_in_events_total")
            .await
            .expect("metric");
    assert_eq!(taken, 20.0);
    // The drained pod's events are still found, from any pod, on the pods that took them.
    let on3: Vec<&String> = acknowledged.iter().filter(|id| node(id) == 3).collect();
    for n in 1..=3 {
        set.pod(n)
            .get(&format!("/api/v1/events/{}", on3[0]), READ_KEY)
            .await
            .expect(200);
    }

    // Pod 2 goes by SIGTERM with --drain-on-shutdown: its queue (and what it took) moves to 1.
    set.pod_mut(2)
        .stop(Duration::from_secs(60))
        .await
        .expect("pod 2 stops after draining");
    assert!(
        set.pod(2)
            .logs()
            .contains("drained: every unfinished event is with a peer"),
        "{}",
        set.pod(2).logs()
    );

    // The receiver recovers: every acknowledged event arrives, at least once.
    receiver.set_default(Reply::Status(200));
    let want: BTreeSet<String> = acknowledged.iter().cloned().collect();
    wait_until(
        "every acknowledged event delivered",
        Duration::from_secs(60),
        async || {
            let got: BTreeSet<String> = receiver
                .received()
                .iter()
                .filter_map(|r| r.header("webhook-id").map(String::from))
                .collect();
            want.is_subset(&got)
        },
    )
    .await
    .expect("nothing lost");

    // The drained pod starts again and takes ingest.
    set.pod_mut(3).kill9().expect("stop pod 3");
    set.pod_mut(3).start_again().await.expect("pod 3 again");
    let again = set
        .pod(3)
        .ingest("default", "orders", &json!({"type": "order.created"}))
        .await;
    assert_eq!(node(&again), 3);
    let (list, partial) = pages(set.pod(1), "/api/v1/events", READ_KEY, 100).await;
    assert!(partial, "pod 2 is gone and still listed as a static peer");
    assert_eq!(list.len(), acknowledged.len() + 1, "every event once");
    let list: BTreeSet<String> = list.into_iter().collect();
    assert!(list.contains(&again));
    assert!(
        on3.iter().all(|id| list.contains(*id)),
        "handed-off events are listed once, from pod 1"
    );
}

#[tokio::test]
async fn pods_find_each_other_through_dns() {
    // One name, each pod's peers at the other's port: what a headless Service gives, on a
    // machine where the name has one address.
    let receiver = Receiver::start().await.expect("receiver");
    let ports = [
        hookmesh_tests::gateway::free_port().expect("port"),
        hookmesh_tests::gateway::free_port().expect("port"),
    ];
    let mut pods = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let other = ports[1 - i];
        pods.push(
            Gateway::start_with(hookmesh_tests::gateway::GatewayOptions {
                manifests_yaml: Some(manifests(&receiver)),
                port: Some(*port),
                args: vec![
                    format!("--node-id={}", i + 1),
                    format!("--peers-dns=localhost:{other}"),
                    format!("--peer-token={PEER_TOKEN}"),
                    "--peer-refresh=200ms".into(),
                ],
                ..Default::default()
            })
            .await
            .expect("pod"),
        );
    }
    for gw in &pods {
        wait_until(
            "the peer found by name",
            Duration::from_secs(30),
            async || gw.metric("hookmesh_peers_up").await.ok() == Some(1.0),
        )
        .await
        .expect("discovered");
    }
    let a = ingest(&pods[0], "default", 2, "dns").await;
    let b = ingest(&pods[1], "default", 2, "dns").await;
    let (listed, partial) = pages(&pods[0], "/api/v1/events", READ_KEY, 3).await;
    assert!(!partial);
    let listed: BTreeSet<String> = listed.into_iter().collect();
    assert!(a.iter().chain(&b).all(|id| listed.contains(id)));
    pods[0]
        .get(&format!("/api/v1/events/{}", b[0]), READ_KEY)
        .await
        .expect(200);
    // The other pod goes away (its name still resolves): down, not forgotten.
    pods[1].kill9().expect("kill");
    wait_until("the peer seen down", Duration::from_secs(30), async || {
        pods[0].metric("hookmesh_peers_up").await.ok() == Some(0.0)
    })
    .await
    .expect("down");
    assert_eq!(
        pods[0]
            .metric("hookmesh_peers_known")
            .await
            .expect("metric"),
        1.0
    );
    pods[0]
        .get(&format!("/api/v1/events/{}", b[0]), READ_KEY)
        .await
        .expect_error(503, "PEER_UNAVAILABLE");
}
