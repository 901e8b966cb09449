//! Reading a request body under a size limit.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use std::time::Duration;

use http_body_util::BodyExt as _;

use crate::error::ApiError;

/// Read the body, refusing more than `limit` bytes with 413 (early when Content-Length says so).
/// `whose` names the limit in the refusal: "this source's limit (spec.maxBodyBytes)".
pub(super) async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
    whose: &str,
) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("the body is larger than {whose} of {limit} bytes"),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = body;
    if declared.is_some_and(|n| n > limit) {
        discard(body, declared.unwrap_or(0)).await;
        return Err(too_large());
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut kept = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(
                "BODY_UNREADABLE",
                format!("could not read the request body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if kept.len() + data.len() > limit {
                discard(body, 0).await;
                return Err(too_large());
            }
            kept.extend_from_slice(&data);
        }
    }
    Ok(kept.freeze())
}

/// Most of a refused body read and thrown away, and for how long: a client still sending
/// then gets to read the 413 instead of a reset connection. Past these, the connection closes.
const DISCARD_BYTES: u64 = 8 * 1024 * 1024;
const DISCARD_TIME: Duration = Duration::from_secs(2);

async fn discard(mut body: Body, declared: u64) {
    if declared > DISCARD_BYTES {
        return;
    }
    let drain = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > DISCARD_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}
