use super::super::reads::{DeliveryFilter, EventFilter};
use super::super::testing::{ingest, keys, new_event, open, reopen};
use super::*;

fn attempt(n: u32) -> AttemptRecord {
    AttemptRecord {
        number: n,
        started_at: 0,
        duration_ms: 1,
        status_code: Some(200),
        response_body: vec![],
        error: None,
    }
}

#[test]
fn concurrent_finishes_of_one_event_roll_up_once() {
    let (_dir, store) = open();
    let new = new_event("github", 16, None, 10);
    let (event, ids) = (new.event.id, new.event.delivery_ids.clone());
    ingest(&store, new);
    std::thread::scope(|s| {
        for (i, id) in ids.iter().enumerate() {
            let store = store.clone();
            s.spawn(move || {
                store
                    .claim_attempt(10, *id, 1000 + i as u64)
                    .expect("claim")
                    .expect("due");
                store
                    .finish(*id, attempt(1), Finish::Success)
                    .expect("finish");
            });
        }
    });
    let e = store.event(event).expect("read").expect("stored");
    assert_eq!(e.status, EventStatus::Delivered);
    // Reported to the compactor once, by the finish that made it delivered.
    let reported = store.inner.compactor.reported(EventStatus::Delivered);
    assert_eq!(reported, vec![event.0 .0]);
    assert_eq!(store.queue_depth(), 0, "every due entry and lease is gone");
}

/// Races between writers of one event are too rare to catch by chance, so check the
/// mechanism itself: each writer waits for the event's lock.
#[test]
fn writers_of_one_event_wait_for_its_lock() {
    let (_dir, store) = open();
    let new = new_event("github", 3, None, 10);
    let (event, ids) = (new.event.id, new.event.delivery_ids.clone());
    ingest(&store, new);
    type Op = Box<dyn FnOnce(&Store) + Send>;
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    let ops: Vec<(&str, Op)> = vec![
        ("claim", Box::new(move |s| drop(s.claim_attempt(10, a, 99)))),
        (
            "finish",
            Box::new(move |s| drop(s.finish(b, attempt(1), Finish::Success))),
        ),
        ("requeue", Box::new(move |s| drop(s.requeue(c, 20)))),
        ("delete", Box::new(move |s| drop(s.delete_event(event)))),
    ];
    for (name, op) in ops {
        let held = store.lock(event).expect("writable");
        let (tx, rx) = std::sync::mpsc::channel();
        let s = store.clone();
        let worker = std::thread::spawn(move || {
            op(&s);
            let _ = tx.send(());
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "{name} ran while another writer held the event"
        );
        drop(held);
        assert!(
            rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok(),
            "{name} never ran"
        );
        worker.join().expect("no panic");
    }
    assert!(store.event(event).expect("read").is_none(), "deleted last");
}

#[test]
fn a_stale_due_entry_is_dropped_not_claimed() {
    let (_dir, store) = open();
    let new = new_event("github", 1, None, 10);
    let id = new.deliveries[0].id;
    ingest(&store, new);
    store.requeue(id, 50).expect("requeue").expect("exists");
    // As if a crash kept the old entry while the record moved on.
    store
        .trees()
        .due
        .insert(due_key(10, id), &[])
        .expect("insert");
    assert!(store.claim_attempt(10, id, 500).expect("claim").is_none());
    assert!(!store
        .trees()
        .due
        .contains_key(due_key(10, id))
        .expect("read"));
    let c = store
        .claim_attempt(50, id, 500)
        .expect("claim")
        .expect("due");
    assert_eq!(c.delivery.status, DeliveryStatus::InFlight);
    // The claim wrote nothing: the entry stays, hidden from the engine while the lease runs.
    assert_eq!(store.next_due().expect("read"), Some(50));
    assert!(store.due_after(499, None, 10).expect("due").is_empty());
    assert_eq!(store.due_after(500, None, 10).expect("due"), vec![(50, id)]);
}

#[test]
fn a_claim_holds_until_its_outcome_is_recorded() {
    let (_dir, store) = open();
    let new = new_event("github", 1, None, 10);
    let id = new.deliveries[0].id;
    ingest(&store, new);
    let far = u64::MAX / 2;
    store
        .claim_attempt(10, id, far)
        .expect("claim")
        .expect("due");
    assert!(
        store.claim_attempt(10, id, far).expect("claim").is_none(),
        "taken"
    );
    let seen = store.delivery(id).expect("read").expect("stored");
    assert_eq!(seen.status, DeliveryStatus::InFlight, "as the API shows it");
    assert!(store.due_after(now_ms(), None, 10).expect("due").is_empty());
    store
        .finish(id, attempt(1), Finish::Retry { at: 20 })
        .expect("finish");
    let seen = store.delivery(id).expect("read").expect("stored");
    assert_eq!(seen.status, DeliveryStatus::Retrying);
    assert_eq!(
        store.due_after(now_ms(), None, 10).expect("due"),
        vec![(20, id)]
    );
    store
        .claim_attempt(20, id, far)
        .expect("claim")
        .expect("due again");
}

#[test]
fn in_flight_deliveries_are_due_again_after_a_restart() {
    let (dir, store) = open();
    let new = new_event("github", 2, None, 10);
    let ids = new.event.delivery_ids.clone();
    ingest(&store, new);
    store
        .claim_attempt(10, ids[0], u64::MAX / 2)
        .expect("claim");
    drop(store);
    let store = reopen(&dir.path().join("sled"));
    let d = store.delivery(ids[0]).expect("read").expect("stored");
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert!(d.next_attempt_at.is_some_and(|at| at < u64::MAX / 2));
    assert_eq!(store.queue_depth(), 2);
}

/// Layout 1 wrote a claim to disk: the record marked in flight, its due entry moved to the
/// lease's end. A store opened from it has those due now, lease over or not.
#[test]
fn in_flight_records_of_a_layout_1_store_are_due_at_its_first_open() {
    let (dir, store) = open();
    let new = new_event("github", 1, None, 10);
    let id = new.deliveries[0].id;
    ingest(&store, new);
    let lease_end = now_ms() + 3_600_000;
    let t = store.trees();
    let mut d = store.delivery(id).expect("read").expect("stored");
    d.status = DeliveryStatus::InFlight;
    d.next_attempt_at = Some(lease_end);
    put(&t.deliveries, &id.to_key(), &d).expect("write");
    t.due.remove(due_key(10, id)).expect("write");
    t.due.insert(due_key(lease_end, id), &[]).expect("write");
    t.meta.remove(b"layout").expect("write");
    drop(store);
    let store = reopen(&dir.path().join("sled"));
    let d = store.delivery(id).expect("read").expect("stored");
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert!(d.next_attempt_at.is_some_and(|at| at < lease_end));
    assert_eq!(
        store.trees().meta.get(b"layout").expect("read").as_deref(),
        Some(&[super::super::LAYOUT][..])
    );
}

fn event_with(store: &Store, n: usize, endpoint: &str, at: Millis) -> Vec<DeliveryId> {
    let new = new_event("s", 0, None, at);
    let id = new.event.id;
    ingest(store, new);
    let deliveries: Vec<DeliveryRecord> = (0..n)
        .map(|_| DeliveryRecord::new(id, "default", endpoint, None, at))
        .collect();
    store.add_deliveries(id, &deliveries).expect("add");
    deliveries.iter().map(|d| d.id).collect()
}

#[test]
fn due_after_pages_through_in_order() {
    let (_dir, s) = open();
    let mut ids = event_with(&s, 3, "a", 10);
    ids.extend(event_with(&s, 2, "b", 20));
    ids.extend(event_with(&s, 1, "c", 99));
    let first = s.due_after(50, None, 2).expect("due");
    assert_eq!(first.len(), 2);
    let second = s.due_after(50, first.last().copied(), 10).expect("due");
    let all: Vec<DeliveryId> = first.iter().chain(&second).map(|(_, id)| *id).collect();
    assert_eq!(all, ids[..5].to_vec());
    assert_eq!(s.next_due_after(50).expect("next"), Some(99));
    assert_eq!(s.next_due_after(99).expect("next"), None);
}

#[test]
fn a_requeued_finished_delivery_starts_a_new_round() {
    let (_dir, s) = open();
    let id = event_with(&s, 1, "a", 10)[0];
    let c = s.claim_attempt(10, id, 1000).expect("claim").expect("due");
    assert_eq!(c.round_start, 0);
    s.finish(id, attempt(1), Finish::Retry { at: 20 })
        .expect("finish");
    let c = s.claim_attempt(20, id, 1000).expect("claim").expect("due");
    assert_eq!((c.delivery.attempts, c.round_start), (1, 0));
    s.finish(id, attempt(2), Finish::DeadLetter)
        .expect("finish");
    assert!(s.claim_attempt(1000, id, 2000).expect("claim").is_none());
    s.requeue(id, 30).expect("requeue");
    let c = s.claim_attempt(30, id, 1000).expect("claim").expect("due");
    assert_eq!((c.delivery.attempts, c.round_start), (2, 2));
    s.finish(id, attempt(3), Finish::Retry { at: 40 })
        .expect("finish");
    let c = s.claim_attempt(40, id, 1000).expect("claim").expect("due");
    assert_eq!((c.delivery.attempts, c.round_start), (3, 2));
}

#[test]
fn pull_forward_moves_only_waiting_deliveries() {
    let (_dir, s) = open();
    let ids = event_with(&s, 3, "a", 10);
    let other = event_with(&s, 1, "b", 10);
    s.requeue(ids[0], 5000).expect("requeue");
    s.requeue(ids[1], 6000).expect("requeue");
    s.requeue(other[0], 7000).expect("requeue");
    let c = s.claim_attempt(10, ids[2], 9000).expect("claim");
    assert!(c.is_some());
    assert_eq!(s.pull_forward("default", "a", 100).expect("pull"), 2);
    let due: Vec<DeliveryId> = s
        .due_after(100, None, 10)
        .expect("due")
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(due, vec![ids[0], ids[1]]);
}

/// Ingest holds fresh due entries in memory only; a process that stops (or crashes) loses
/// them, and the next open finds them again from the pending index and the records. What was
/// delivered, or is due later from the tree, is not made due again.
#[test]
fn due_entries_held_in_memory_are_found_again_at_the_next_open() {
    let (dir, store) = open();
    let waiting = new_event("github", 2, None, 10);
    let done = new_event("github", 1, None, 10);
    let (waiting_ids, done_id) = (waiting.event.delivery_ids.clone(), done.deliveries[0].id);
    ingest(&store, waiting);
    ingest(&store, done);
    assert!(
        keys(&store.trees().due).is_empty(),
        "fresh entries are not written"
    );
    assert_eq!(store.queue_depth(), 3);
    store
        .claim_attempt(10, done_id, 1_000)
        .expect("claim")
        .expect("due");
    store
        .finish(done_id, attempt(1), Finish::Success)
        .expect("finish");
    // One of the waiting two moves to the tree (a retry, due later).
    store
        .claim_attempt(10, waiting_ids[1], 1_000)
        .expect("claim")
        .expect("due");
    store
        .finish(waiting_ids[1], attempt(1), Finish::Retry { at: 500 })
        .expect("finish");
    assert_eq!(keys(&store.trees().due), vec![due_key(500, waiting_ids[1])]);
    drop(store);

    let store = reopen(&dir.path().join("sled"));
    assert_eq!(
        store.due_after(10, None, 10).expect("due"),
        vec![(10, waiting_ids[0])]
    );
    assert_eq!(
        store.due_after(1_000, None, 10).expect("due"),
        vec![(10, waiting_ids[0]), (500, waiting_ids[1])]
    );
    assert_eq!(store.queue_depth(), 2);
    assert_eq!(store.rebuild_fresh().expect("rebuild"), 0, "nothing twice");
}

/// Past the cap, ingest writes due entries to the tree as before.
#[test]
fn past_the_cap_due_entries_go_to_the_tree() {
    let (_dir, store) = open();
    let filler: Vec<(Millis, DeliveryId)> = (0..super::super::fresh::CAP as u128)
        .map(|n| (5, DeliveryId(ulid::Ulid(n + 1))))
        .collect();
    assert!(store.inner.fresh.add(filler).is_empty());
    let new = new_event("github", 1, None, 10);
    let id = new.deliveries[0].id;
    ingest(&store, new);
    assert_eq!(keys(&store.trees().due), vec![due_key(10, id)]);
}

/// Claim `id`, due at `at`, and record `a` as its attempt with the outcome `finish`.
fn attempt_once(s: &Store, at: Millis, id: DeliveryId, a: AttemptRecord, finish: Finish) {
    s.claim_attempt(at, id, 1000).expect("claim").expect("due");
    s.finish(id, a, finish).expect("finish");
}

#[test]
fn a_finish_writes_its_delivery_alone_and_the_event_reads_and_lists_as_finished() {
    let (_dir, store) = open();
    let new = new_event("github", 1, None, 10);
    let (event, id) = (new.event.id, new.event.delivery_ids[0]);
    ingest(&store, new);
    let t = store.trees();
    let before = |tree: &sled::Tree| tree.iter().collect::<Result<Vec<_>, _>>().expect("read");
    let (events, index) = (before(&t.events), before(&t.idx_status));
    attempt_once(&store, 10, id, attempt(1), Finish::Success);
    // The record and its payload stay as ingest wrote them, the index as its group left it
    // (until the compactor's pass); no attempt has a key of its own.
    assert_eq!(before(&t.events), events);
    assert_eq!(before(&t.idx_status), index);
    assert!(keys(&t.attempts).is_empty());
    assert_eq!(store.attempts(id).expect("attempts"), vec![attempt(1)]);
    let e = store.event(event).expect("read").expect("stored");
    assert_eq!(e.status, EventStatus::Delivered);
    let d = store.delivery(id).expect("read").expect("stored");
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Success, 1));
    let listed = |s: EventStatus| {
        let f = EventFilter {
            statuses: vec![s],
            ..Default::default()
        };
        let page = store.list_events(&f, None, 10, usize::MAX).expect("list");
        page.items.iter().map(|e| e.id).collect::<Vec<_>>()
    };
    assert_eq!(listed(EventStatus::Delivered), vec![event]);
    assert!(listed(EventStatus::Pending).is_empty());
}

/// Finished once, sent again, finished again: a key of its own under each status it moves to,
/// written before the delivery that moves it.
#[test]
fn an_event_sent_again_keeps_its_status_keys_of_its_own() {
    let (_dir, s) = open();
    let new = new_event("github", 1, None, 10);
    let (event, id) = (new.event.id, new.event.delivery_ids[0]);
    ingest(&s, new);
    attempt_once(&s, 10, id, attempt(1), Finish::Failed);
    s.requeue(id, 20).expect("requeue");
    let own = |st: EventStatus| {
        s.trees()
            .idx_status
            .contains_key(status_key(st, event))
            .expect("read")
    };
    assert!(own(EventStatus::Pending));
    assert_eq!(
        s.event(event).expect("read").expect("stored").status,
        EventStatus::Pending
    );
    attempt_once(&s, 20, id, attempt(2), Finish::Success);
    assert!(own(EventStatus::Delivered) && !own(EventStatus::Pending));
}

#[test]
fn earlier_attempts_move_to_the_tree_and_every_attempt_lists_once_in_order() {
    let (_dir, s) = open();
    let id = event_with(&s, 1, "a", 10)[0];
    let numbered = |id| {
        s.attempts(id)
            .expect("attempts")
            .iter()
            .map(|a| a.number)
            .collect::<Vec<_>>()
    };
    let in_tree = || keys(&s.trees().attempts).len();
    for (n, at) in [(1, 20), (2, 30)] {
        attempt_once(&s, at - 10, id, attempt(n), Finish::Retry { at });
    }
    assert_eq!((numbered(id), in_tree()), (vec![1, 2], 1));
    // A requeue rewrites the value and keeps its attempt.
    s.requeue(id, 40).expect("requeue");
    assert_eq!((numbered(id), in_tree()), (vec![1, 2], 1));
    attempt_once(&s, 40, id, attempt(3), Finish::Success);
    assert_eq!((numbered(id), in_tree()), (vec![1, 2, 3], 2));

    // A crash after an attempt moved to the tree, before the value took the next one: both
    // hold it, and it lists once.
    let copy = s.attempts(id).expect("attempts")[2].clone();
    put(&s.trees().attempts, &attempt_key(id, 3), &copy).expect("write");
    assert_eq!(numbered(id), vec![1, 2, 3]);
    // The same attempt number again (its first outcome was lost): it replaces the first.
    let mut again = attempt(3);
    again.status_code = Some(502);
    s.requeue(id, 50).expect("requeue");
    attempt_once(&s, 50, id, again, Finish::Failed);
    let listed = s.attempts(id).expect("attempts");
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2].status_code, Some(502));
}

/// A new event's first deliveries are written in its value alone; the first change of one
/// writes it under its own key, its sibling stays where it was, and every read finds each in
/// one place or the other.
#[test]
fn first_deliveries_live_in_their_events_value_until_they_change() {
    let (_dir, store) = open();
    let new = new_event("github", 2, None, 10);
    let (event, a, b) = (new.event.id, new.deliveries[0].id, new.deliveries[1].id);
    ingest(&store, new);
    let t = store.trees();
    assert!(
        keys(&t.deliveries).is_empty(),
        "ingest wrote no delivery key"
    );
    let status_of = |id| store.delivery(id).expect("read").expect("stored").status;
    assert_eq!(status_of(a), DeliveryStatus::Pending);

    attempt_once(&store, 10, a, attempt(1), Finish::Success);
    assert_eq!(keys(&t.deliveries), vec![a.to_key().to_vec()]);
    assert_eq!(
        (status_of(a), status_of(b)),
        (DeliveryStatus::Success, DeliveryStatus::Pending)
    );
    let event_status = || store.event(event).expect("read").expect("stored").status;
    assert_eq!(event_status(), EventStatus::Pending);

    attempt_once(&store, 10, b, attempt(1), Finish::Retry { at: 50 });
    let d = store.delivery(b).expect("read").expect("stored");
    assert_eq!(
        (d.status, d.next_attempt_at),
        (DeliveryStatus::Retrying, Some(50))
    );
    assert_eq!(keys(&t.deliveries).len(), 2);
    attempt_once(&store, 50, b, attempt(2), Finish::Success);
    assert_eq!(event_status(), EventStatus::Delivered);
    let statuses: Vec<DeliveryStatus> = store
        .deliveries_of(event)
        .expect("read")
        .iter()
        .map(|d| d.status)
        .collect();
    assert_eq!(statuses, vec![DeliveryStatus::Success; 2]);
    assert_eq!(store.attempts(b).expect("attempts").len(), 2);
}

/// The unfiltered delivery log reads first deliveries from their events and the rest from
/// their keys, each once (one that changed is in both places), newest first, page by page.
#[test]
fn the_delivery_log_lists_first_deliveries_and_keyed_ones_once_each_newest_first() {
    let (_dir, store) = open();
    let first = new_event("github", 3, None, 10);
    let mut all: Vec<DeliveryId> = first.event.delivery_ids.clone();
    let changed = first.deliveries[1].id;
    ingest(&store, first);
    all.extend(event_with(&store, 2, "again", 10));
    let second = new_event("github", 1, None, 10);
    all.extend(second.event.delivery_ids.clone());
    ingest(&store, second);
    attempt_once(&store, 10, changed, attempt(1), Finish::Success);
    all.sort_unstable_by(|a, b| b.cmp(a));

    let mut listed = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_deliveries(&DeliveryFilter::default(), before, 2, usize::MAX)
            .expect("list");
        listed.extend(page.items.iter().map(|d| d.id));
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, all);
    let statuses = DeliveryFilter {
        statuses: vec![DeliveryStatus::Success],
        ..Default::default()
    };
    let page = store
        .list_deliveries(&statuses, None, 10, usize::MAX)
        .expect("list");
    assert_eq!(
        page.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![changed]
    );
}

/// A delivery id made before events reserved theirs may fall in another event's block; its
/// own record says which event it belongs to, and that is the one locked and rolled up.
#[test]
fn a_delivery_whose_id_only_looks_like_a_first_one_is_found_by_its_record() {
    let (_dir, store) = open();
    let other = new_event("github", 1, None, 10);
    let other_id = other.event.id;
    ingest(&store, other);
    let owner = new_event("github", 0, None, 10);
    let owner_id = owner.event.id;
    ingest(&store, owner);
    let mut odd = DeliveryRecord::new(owner_id, "default", "ep", None, 10);
    odd.id = DeliveryId(ulid::Ulid(other_id.0 .0 + 200));
    assert_eq!(odd.id.initial_of(), Some(other_id));
    store.add_deliveries(owner_id, &[odd.clone()]).expect("add");

    attempt_once(&store, 10, odd.id, attempt(1), Finish::Success);
    let d = store.delivery(odd.id).expect("read").expect("stored");
    assert_eq!((d.event_id, d.status), (owner_id, DeliveryStatus::Success));
    let status = |e| store.event(e).expect("read").expect("stored").status;
    assert_eq!(status(owner_id), EventStatus::Delivered);
    assert_eq!(status(other_id), EventStatus::Pending);
}
