//! Value encoding: one format byte, then postcard. A record written by a future format is
//! refused with an error instead of being misread.

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::Tree;

use super::errors::StoreError;

pub(crate) const FORMAT_V1: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    encode_as(FORMAT_V1, value)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => postcard::from_bytes(rest).map_err(postcard_error),
        Some((other, _)) => Err(StoreError::Codec(format!("unknown record format {other}"))),
        None => Err(StoreError::Codec("empty record".into())),
    }
}

pub(crate) fn postcard_error(e: postcard::Error) -> StoreError {
    StoreError::Codec(e.to_string())
}

/// `format`, then `value`: the first part of a value that may carry more bytes after it (an
/// event's payload, a delivery's latest attempt).
pub(crate) fn encode_as<T: Serialize>(format: u8, value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(value, vec![format]).map_err(postcard_error)
}

/// The first part of a value written by [`encode_as`] with `format`, and where the bytes after
/// it start; `None` for a value of another format.
pub(crate) fn decode_first<T: DeserializeOwned>(
    raw: &[u8],
    format: u8,
) -> Result<Option<(T, usize)>, StoreError> {
    match raw.split_first() {
        Some((&f, rest)) if f == format => {
            let (value, after) = postcard::take_from_bytes::<T>(rest).map_err(postcard_error)?;
            Ok(Some((value, raw.len() - after.len())))
        }
        _ => Ok(None),
    }
}

/// Read and decode one record.
pub(crate) fn get<T: DeserializeOwned>(tree: &Tree, key: &[u8]) -> Result<Option<T>, StoreError> {
    tree.get(key)?.map(|v| decode(&v)).transpose()
}

/// Encode and write one record.
pub(crate) fn put<T: Serialize>(tree: &Tree, key: &[u8], value: &T) -> Result<(), StoreError> {
    tree.insert(key, encode(value)?)?;
    Ok(())
}
