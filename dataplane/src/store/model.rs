//! What the store keeps: events, their raw payloads, deliveries and delivery attempts.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The earlier of two optional times (`None` is no time, not the earliest).
pub fn earliest(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The node (data-plane pod) this process is: bits 64..80 of every id it creates, the top of
/// a ULID's random part. Any pod can tell from an id alone which pod created it.
static NODE: AtomicU16 = AtomicU16::new(0);

/// Set once at start, before any id is generated.
pub fn set_node(node: u16) {
    NODE.store(node, Ordering::Relaxed);
}

pub fn this_node() -> u16 {
    NODE.load(Ordering::Relaxed)
}

/// The node that created an id.
pub fn node_of(id: Ulid) -> u16 {
    // Truncation keeps exactly bits 64..80.
    (id.0 >> 64) as u16
}

/// Last millisecond and low 64 bits handed out: ids taken in one millisecond count up from a
/// random start, so they still sort in creation order.
static LAST: Mutex<(u64, u64)> = Mutex::new((0, 0));

/// How many ids an event's id reserves: itself, then its first deliveries' (see
/// [`DeliveryId::initial`]). A power of two, so an event id's low byte is zero.
const EVENT_BLOCK: u64 = 256;

/// The next id, at the start of a block of `span` ids (a power of two) that no other id takes.
fn next_ulid(span: u64) -> Ulid {
    let now = now_ms().min((1 << 48) - 1);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let aligned = |low: u64| low.checked_add(span - 1).map(|l| l & !(span - 1));
    let (ms, low) = if now > last.0 {
        // Half the range: the count-up within a millisecond never wraps.
        (now, (rand::random::<u64>() >> 1) & !(span - 1))
    } else {
        // The same millisecond, or the clock stepped back: keep counting from the last id.
        match last.1.checked_add(1).and_then(aligned) {
            Some(low) if low.checked_add(span - 1).is_some() => (last.0, low),
            _ => (last.0 + 1, 0),
        }
    };
    *last = (ms, low + (span - 1));
    Ulid((u128::from(ms) << 80) | (u128::from(this_node()) << 64) | u128::from(low))
}

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal, $what:literal, $span:expr) => {
        #[doc = concat!("A ", $what, " id: `", $prefix, "` + a ULID (time-ordered).")]
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        pub struct $name(pub Ulid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(next_ulid($span))
            }

            /// Big-endian bytes: key order is time order.
            pub fn to_key(self) -> [u8; 16] {
                self.0 .0.to_be_bytes()
            }

            pub fn from_key(bytes: &[u8]) -> Option<Self> {
                let arr: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
                Some(Self(Ulid(u128::from_be_bytes(arr))))
            }

            pub fn timestamp_ms(self) -> Millis {
                self.0.timestamp_ms()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                let rest = s.strip_prefix($prefix).ok_or(InvalidId)?;
                Ulid::from_string(rest).map(Self).map_err(|_| InvalidId)
            }
        }
    };
}

prefixed_id!(EventId, "evt_", "event", EVENT_BLOCK);
prefixed_id!(DeliveryId, "dlv_", "delivery", 1);

impl DeliveryId {
    /// The id of `event`'s `n`th first delivery: one of the ids its id reserved, so the id
    /// alone says which event holds it (the store keeps such deliveries in the event's value
    /// until they change). `None` past the block, and for an event id that reserved none (one
    /// created before ids did).
    pub fn initial(event: EventId, n: usize) -> Option<Self> {
        let n = u128::try_from(n).ok()?.checked_add(1)?;
        let block = u128::from(EVENT_BLOCK);
        (event.0 .0.is_multiple_of(block) && n < block).then(|| Self(Ulid(event.0 .0 + n)))
    }

    /// The event whose block this id is in, if it may be one of that event's first
    /// deliveries (the event's value says whether it is).
    pub fn initial_of(self) -> Option<EventId> {
        let block = u128::from(EVENT_BLOCK);
        let offset = self.0 .0 % block;
        (offset != 0).then(|| EventId(Ulid(self.0 .0 - offset)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id")]
pub struct InvalidId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Pending,
    Delivered,
    Partial,
    Failed,
    DeadLetter,
    Unrouted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    InFlight,
    Success,
    Retrying,
    Failed,
    DeadLetter,
}

impl DeliveryStatus {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Success | Self::Failed | Self::DeadLetter)
    }
}

macro_rules! status_codes {
    ($t:ty { $($variant:ident = $code:literal, $text:literal;)* }) => {
        impl $t {
            pub const ALL: &'static [$t] = &[$(<$t>::$variant),*];

            /// One byte for index keys.
            pub fn code(self) -> u8 {
                match self { $(<$t>::$variant => $code),* }
            }

            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$variant => $text),* }
            }

            /// The value of [`code`](Self::code)'s byte, if it is one.
            pub fn from_code(code: u8) -> Option<Self> {
                match code { $($code => Some(<$t>::$variant),)* _ => None }
            }
        }

        impl FromStr for $t {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($text => Ok(<$t>::$variant),)* _ => Err(()) }
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_codes!(EventStatus {
    Pending = 1, "pending";
    Delivered = 2, "delivered";
    Partial = 3, "partial";
    Failed = 4, "failed";
    DeadLetter = 5, "dead_letter";
    Unrouted = 6, "unrouted";
});

status_codes!(DeliveryStatus {
    Pending = 1, "pending";
    InFlight = 2, "in_flight";
    Success = 3, "success";
    Retrying = 4, "retrying";
    Failed = 5, "failed";
    DeadLetter = 6, "dead_letter";
});

/// How an event entered the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `POST /e/{namespace}/{source}` from a provider.
    Webhook,
    /// `POST /api/v1/events` from an in-cluster publisher.
    Publish,
}

/// Event metadata. The payload is stored after it in the same value (see `event_value`), and
/// listings decode only this part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: EventId,
    pub namespace: String,
    pub source: String,
    pub event_type: Option<String>,
    pub origin: Origin,
    pub received_at: Millis,
    /// `None` when the source verifies nothing (scheme `none`, or published events).
    pub signature_valid: Option<bool>,
    /// Why the signature failed, in `audit` mode (an error code such as `SIGNATURE_INVALID`).
    pub signature_error: Option<String>,
    pub idempotency_key: Option<String>,
    pub content_type: Option<String>,
    pub body_len: u64,
    pub correlation_id: String,
    pub status: EventStatus,
    /// Set once retention removed the payload.
    pub payload_expired: bool,
    /// Config hash in force when the event was routed.
    pub config_hash: String,
    /// Its deliveries, in creation order (fan-out is small; replays append).
    pub delivery_ids: Vec<DeliveryId>,
}

/// The request exactly as received.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// Header names as received (lower-cased by HTTP/1 parsing), values as raw bytes, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// As bytes, not a sequence of numbers: the same postcard encoding, written in one copy.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// Stored in field order: `delivery_value` reads the fields up to `status` on their own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub namespace: String,
    pub endpoint: String,
    /// Subscription that routed it; `None` for a replay aimed at an endpoint directly.
    pub subscription: Option<String>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// When the next attempt is due (pending/retrying/in-flight lease).
    pub next_attempt_at: Option<Millis>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
}

impl DeliveryRecord {
    pub fn new(
        event_id: EventId,
        namespace: &str,
        endpoint: &str,
        subscription: Option<&str>,
        now: Millis,
    ) -> Self {
        Self::with_id(
            DeliveryId::generate(),
            event_id,
            namespace,
            endpoint,
            subscription,
            now,
        )
    }

    /// A new event's `n`th delivery, under one of the ids the event's id reserved (see
    /// [`DeliveryId::initial`]), or a fresh one past them.
    pub fn initial(
        event_id: EventId,
        n: usize,
        namespace: &str,
        endpoint: &str,
        subscription: Option<&str>,
        now: Millis,
    ) -> Self {
        let id = DeliveryId::initial(event_id, n).unwrap_or_else(DeliveryId::generate);
        Self::with_id(id, event_id, namespace, endpoint, subscription, now)
    }

    fn with_id(
        id: DeliveryId,
        event_id: EventId,
        namespace: &str,
        endpoint: &str,
        subscription: Option<&str>,
        now: Millis,
    ) -> Self {
        Self {
            id,
            event_id,
            namespace: namespace.to_string(),
            endpoint: endpoint.to_string(),
            subscription: subscription.map(str::to_string),
            status: DeliveryStatus::Pending,
            attempts: 0,
            // Listings filter `from`/`to` by id, so the creation time is the id's.
            created_at: id.timestamp_ms(),
            updated_at: now,
            next_attempt_at: Some(now),
            last_status_code: None,
            last_error: None,
        }
    }
}

/// Why a delivery to a dead-letter endpoint exists: the dead-lettered delivery and its last
/// attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterLink {
    pub of: DeliveryId,
    /// The endpoint that did not take it.
    pub endpoint: String,
    pub status_code: Option<u16>,
    pub attempts: u32,
    pub error: Option<String>,
}

/// One HTTP attempt of one delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub number: u32,
    pub started_at: Millis,
    pub duration_ms: u64,
    pub status_code: Option<u16>,
    /// First 4 KiB of the response body.
    #[serde(with = "serde_bytes")]
    pub response_body: Vec<u8>,
    pub error: Option<String>,
}

/// Roll an event's status up from its deliveries.
pub fn rollup(statuses: &[DeliveryStatus]) -> EventStatus {
    if statuses.is_empty() {
        return EventStatus::Unrouted;
    }
    if statuses.iter().any(|s| !s.is_final()) {
        return EventStatus::Pending;
    }
    let ok = statuses
        .iter()
        .filter(|s| **s == DeliveryStatus::Success)
        .count();
    if ok == statuses.len() {
        EventStatus::Delivered
    } else if ok > 0 {
        EventStatus::Partial
    } else if statuses.iter().all(|s| *s == DeliveryStatus::DeadLetter) {
        EventStatus::DeadLetter
    } else {
        EventStatus::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryStatus::*;

    #[test]
    fn earliest_of_optional_times() {
        assert_eq!(earliest(None, None), None);
        assert_eq!(earliest(Some(3), None), Some(3));
        assert_eq!(earliest(None, Some(4)), Some(4));
        assert_eq!(earliest(Some(5), Some(4)), Some(4));
    }

    #[test]
    fn a_delivery_is_created_at_its_id_time() {
        // Listings filter `from`/`to` by id time, so the two must agree whatever `now` says.
        let d = DeliveryRecord::new(EventId::generate(), "ns", "ep", None, 1);
        assert_eq!(d.created_at, d.id.timestamp_ms());
        assert_eq!(d.updated_at, 1);
    }

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let a = EventId::generate();
        let b = EventId::generate();
        assert!(a < b);
        assert!(a.to_key() < b.to_key());
        let text = a.to_string();
        assert!(text.starts_with("evt_"));
        assert_eq!(text.parse::<EventId>(), Ok(a));
        assert_eq!(EventId::from_key(&a.to_key()), Some(a));
        assert!("dlv_01ARZ3NDEKTSV4RRFFQ69G5FAV".parse::<EventId>().is_err());
        assert!("evt_nope".parse::<EventId>().is_err());
    }

    #[test]
    fn ids_carry_the_node_that_made_them() {
        let before = this_node();
        set_node(0xBEEF);
        let a = EventId::generate();
        let b = DeliveryId::generate();
        set_node(before);
        assert_eq!(node_of(a.0), 0xBEEF);
        assert_eq!(node_of(b.0), 0xBEEF);
        assert!(a.0 < b.0, "still time-ordered across kinds and nodes");
        let ms = now_ms();
        assert!(a.timestamp_ms() <= ms && ms - a.timestamp_ms() < 5_000);
    }

    #[test]
    fn an_event_id_reserves_its_first_deliveries_ids() {
        let events: Vec<EventId> = (0..1000).map(|_| EventId::generate()).collect();
        let between = DeliveryId::generate();
        let last = EventId::generate();
        for pair in events.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[1].0 .0 - pair[0].0 .0 >= 256, "a whole block apart");
        }
        let e = events[999];
        let first = DeliveryId::initial(e, 0).expect("in the block");
        let top = DeliveryId::initial(e, 254).expect("in the block");
        assert!(e.0 < first.0 && top.0 < between.0 && between.0 < last.0);
        assert_eq!(DeliveryId::initial(e, 255), None, "past the block");
        assert_eq!(first.initial_of(), Some(e));
        assert_eq!(top.initial_of(), Some(e));
        assert_eq!(DeliveryId(e.0).initial_of(), None);
        // An id from before blocks (low byte not zero) reserved none.
        let old = EventId(Ulid(e.0 .0 + 7));
        assert_eq!(DeliveryId::initial(old, 0), None);
        // Past the block a new event's deliveries take fresh ids.
        let d = DeliveryRecord::initial(e, 300, "ns", "ep", None, 1);
        assert_ne!(d.id.initial_of(), Some(e));
        assert_eq!(d.event_id, e);
    }

    #[test]
    fn rollup_table() {
        assert_eq!(rollup(&[]), EventStatus::Unrouted);
        assert_eq!(rollup(&[Success, Success]), EventStatus::Delivered);
        assert_eq!(rollup(&[Success, Retrying]), EventStatus::Pending);
        assert_eq!(rollup(&[InFlight]), EventStatus::Pending);
        assert_eq!(rollup(&[Success, Failed]), EventStatus::Partial);
        assert_eq!(rollup(&[Success, DeadLetter]), EventStatus::Partial);
        assert_eq!(rollup(&[DeadLetter, DeadLetter]), EventStatus::DeadLetter);
        assert_eq!(rollup(&[Failed, DeadLetter]), EventStatus::Failed);
    }

    #[test]
    fn status_names_round_trip() {
        for s in EventStatus::ALL {
            assert_eq!(s.as_str().parse::<EventStatus>(), Ok(*s));
            assert_eq!(EventStatus::from_code(s.code()), Some(*s));
        }
        assert_eq!(EventStatus::from_code(0), None);
        for s in DeliveryStatus::ALL {
            assert_eq!(s.as_str().parse::<DeliveryStatus>(), Ok(*s));
        }
    }
}
