//! One delivery attempt: load the payload, sign, POST, classify the answer, record it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hookmesh_api::config::EndpointConfig;
use tracing::Instrument as _;

use super::backoff;
use super::client::{Answer, HttpClient, SendError};
use super::sign::{build_request, Outgoing};
use crate::metrics::Metrics;
use crate::store::{now_ms, AttemptRecord, Claimed, Finish, Store};

pub(super) struct Job {
    pub claimed: Claimed,
    pub endpoint: EndpointConfig,
    /// The subscription's dead-letter endpoint, if it names one.
    pub dead_letter_to: Option<String>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub client: HttpClient,
}

/// What the attempt says about the endpoint's health, for its circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Health {
    /// It answered (2xx, or a 4xx that refuses this payload only).
    Up,
    /// Timeout, connection error, 5xx, 408, 429; with the `Retry-After` it asked for, if any.
    Down { retry_after: Option<Duration> },
    /// No request went out (payload gone, storage trouble).
    Unknown,
    /// 410 Gone: the receiver says this endpoint no longer exists; pause it.
    Gone,
}

/// How an attempt ended, as the scheduler needs it: the breaker's verdict and, when the
/// receiver did not take the delivery, why (the endpoint's last error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Outcome {
    pub health: Health,
    /// `None` for a 2xx, and for an attempt that sent nothing.
    pub error: Option<String>,
}

impl Outcome {
    pub(super) const NOT_SENT: Outcome = Outcome {
        health: Health::Unknown,
        error: None,
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Success,
    Retry,
    Reject,
    /// 410: not retried, and the endpoint is paused until someone resumes it (Standard
    /// Webhooks: treat it as "disable").
    Gone,
}

/// How the answer (or its absence) is judged: 2xx success; 408, 429, 5xx, timeouts and
/// connection errors are worth retrying; other 4xx are a refusal that will not change by
/// itself. 1xx and 3xx (redirects are not followed) are retried: the endpoint's config is more
/// likely to be fixed than the payload, and at-least-once prefers one attempt too many.
fn judge(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Success,
        408 | 429 => Verdict::Retry,
        410 => Verdict::Gone,
        400..=499 => Verdict::Reject,
        _ => Verdict::Retry,
    }
}

pub(super) async fn run(job: Job) -> Outcome {
    let d = &job.claimed.delivery;
    let number = d.attempts.saturating_add(1);
    let span = tracing::info_span!("attempt", event_id = %d.event_id, delivery_id = %d.id,
        endpoint = %format!("{}/{}", d.namespace, d.endpoint), attempt = number);
    attempt(&job, number).instrument(span).await
}

async fn attempt(job: &Job, number: u32) -> Outcome {
    let d = &job.claimed.delivery;
    let ep = &job.endpoint;
    let started_at = now_ms();
    let clock = Instant::now();
    let (event, payload) = match job.store.event_with_payload(d.event_id) {
        Ok(Some((e, Some(p)))) => (e, p),
        Err(e) => {
            // The claim's lease brings the delivery back once storage works again.
            tracing::error!(error = %e, "cannot read the event to deliver");
            return Outcome::NOT_SENT;
        }
        _ => {
            give_up(
                job,
                number,
                started_at,
                "the event or its payload is no longer stored",
            );
            return Outcome::NOT_SENT;
        }
    };
    // A delivery to a dead-letter endpoint says where it comes from. Those are made with no
    // subscription, so a routed delivery needs no lookup on this path.
    let dead_letter = match d.subscription {
        Some(_) => None,
        None => match job.store.dead_letter_of(d.id) {
            Ok(link) => link,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the delivery's dead-letter link");
                return Outcome::NOT_SENT;
            }
        },
    };
    let req = build_request(&Outgoing {
        event: &event,
        payload: &payload,
        delivery: d,
        endpoint: ep,
        dead_letter: dead_letter.as_ref(),
        attempt: number,
        timestamp: (started_at / 1000) as i64,
        now_ms: started_at,
    });
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            give_up(job, number, started_at, &e.to_string());
            return Outcome::NOT_SENT;
        }
    };
    let sent = job
        .client
        .send(req, Duration::from_millis(ep.timeout_ms))
        .await;
    let duration_ms = clock.elapsed().as_millis() as u64;
    let (verdict, status_code, response_body, error, retry_after) = match sent {
        Ok(Answer {
            status,
            retry_after,
            body,
        }) => {
            let verdict = judge(status);
            let retry_after = match status {
                429 | 503 => retry_after
                    .as_deref()
                    .and_then(|v| backoff::parse_retry_after(v, SystemTime::now()))
                    .map(|ra| ra.min(backoff::retry_after_cap(&ep.retry))),
                _ => None,
            };
            let error = match verdict {
                Verdict::Success => None,
                _ if (300..400).contains(&status) => {
                    Some(format!("HTTP {status} (redirects are not followed)"))
                }
                _ => Some(format!("HTTP {status}")),
            };
            (verdict, Some(status), body, error, retry_after)
        }
        // The guard's refusal: a URL that points where deliveries may not go will not get
        // better by retrying, and it says nothing about the receiver's health.
        Err(SendError::Egress(r)) => {
            tracing::warn!(error = %r, "egress guard refused the endpoint's address");
            give_up(job, number, started_at, &format!("EGRESS_REFUSED: {r}"));
            return Outcome::NOT_SENT;
        }
        Err(e) => (Verdict::Retry, None, Vec::new(), Some(e.to_string()), None),
    };
    let in_round = number.saturating_sub(job.claimed.round_start);
    let mut out_of_time = false;
    let finish = match verdict {
        Verdict::Success => Finish::Success,
        Verdict::Reject | Verdict::Gone => Finish::Failed,
        Verdict::Retry if in_round >= ep.retry.max_attempts => Finish::DeadLetter,
        Verdict::Retry => {
            let wait = backoff::delay(&ep.retry, in_round, retry_after, &mut rand::rng());
            let at = now_ms().saturating_add(wait.as_millis() as u64);
            // retry.maxAge: the next attempt would come after the delivery's deadline.
            match ep.retry.max_age_ms {
                Some(max) if at > d.created_at.saturating_add(max) => {
                    out_of_time = true;
                    Finish::DeadLetter
                }
                _ => Finish::Retry { at },
            }
        }
    };
    let record = AttemptRecord {
        number,
        started_at,
        duration_ms,
        status_code,
        response_body,
        error: error.clone(),
    };
    let recorded = match (finish, &job.dead_letter_to) {
        (Finish::DeadLetter, Some(to)) => job
            .store
            .dead_letter_forward(d.id, record, to)
            .map(|new| {
                if let Some(new) = new {
                    tracing::info!(dead_letter_endpoint = %to, dead_letter_delivery_id = %new.id,
                        "dead-lettered delivery forwarded to the subscription's dead-letter endpoint");
                }
            }),
        _ => job.store.finish(d.id, record, finish).map(drop),
    };
    if let Err(e) = recorded {
        // Not recorded: the lease makes it due again, so the worst case is one more delivery.
        tracing::error!(error = %e, "cannot record the attempt");
    }
    let outcome = outcome_name(finish);
    job.metrics.attempt(&d.namespace, &d.endpoint, outcome);
    let shown = error.as_deref().unwrap_or_default();
    match finish {
        Finish::Success => {
            let after = now_ms().saturating_sub(event.received_at) as f64 / 1000.0;
            job.metrics.delivered_after(after);
            tracing::debug!(status = status_code, duration_ms, "delivered");
        }
        Finish::Retry { at } => tracing::info!(
            status = status_code,
            duration_ms,
            error = shown,
            retry_in_ms = at.saturating_sub(now_ms()),
            "attempt failed; will retry"
        ),
        Finish::Failed => tracing::warn!(
            status = status_code,
            duration_ms,
            error = shown,
            "refused by the endpoint; not retried"
        ),
        Finish::DeadLetter if out_of_time => tracing::warn!(
            status = status_code,
            duration_ms,
            error = shown,
            attempts = in_round,
            "past retry.maxAge; dead-lettered"
        ),
        Finish::DeadLetter => tracing::warn!(
            status = status_code,
            duration_ms,
            error = shown,
            attempts = in_round,
            "out of attempts; dead-lettered"
        ),
    }
    let health = match verdict {
        Verdict::Success | Verdict::Reject => Health::Up,
        Verdict::Gone => Health::Gone,
        Verdict::Retry => Health::Down { retry_after },
    };
    Outcome { health, error }
}

fn outcome_name(f: Finish) -> &'static str {
    match f {
        Finish::Success => "success",
        Finish::Retry { .. } => "retry",
        Finish::Failed => "failed",
        Finish::DeadLetter => "dead_letter",
    }
}

/// Record an attempt that could not even be sent and will not get better by retrying.
fn give_up(job: &Job, number: u32, started_at: u64, why: &str) {
    let d = &job.claimed.delivery;
    tracing::warn!(error = why, "delivery cannot be sent; marked failed");
    let record = AttemptRecord {
        number,
        started_at,
        duration_ms: 0,
        status_code: None,
        response_body: Vec::new(),
        error: Some(why.to_string()),
    };
    if let Err(e) = job.store.finish(d.id, record, Finish::Failed) {
        tracing::error!(error = %e, "cannot record the attempt");
    }
    job.metrics.attempt(&d.namespace, &d.endpoint, "failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        for (status, want) in [
            (200, Verdict::Success),
            (204, Verdict::Success),
            (299, Verdict::Success),
            (301, Verdict::Retry),
            (400, Verdict::Reject),
            (401, Verdict::Reject),
            (404, Verdict::Reject),
            (408, Verdict::Retry),
            (410, Verdict::Gone),
            (422, Verdict::Reject),
            (429, Verdict::Retry),
            (500, Verdict::Retry),
            (502, Verdict::Retry),
            (503, Verdict::Retry),
            (599, Verdict::Retry),
        ] {
            assert_eq!(judge(status), want, "status {status}");
        }
    }
}
