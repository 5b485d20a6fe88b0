//! Ranges and whole-store scans (`GET /v1/stores/{store}/range`): one
//! partition from its owner (`partition=N`), or every partition gathered
//! from the owners, merged in key order and paged with a cursor (the last
//! key returned; the next page starts after it).
//!
//! Must never answer with part of the store: a partition nobody serves now
//! makes the whole answer a 503.

use std::ops::Bound;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::format::{from_json, to_json};
use super::http::{
    FORWARDED, Params, QueryApi, QueryResult, bad_request, elsewhere, error, forward, internal,
    unavailable,
};
use super::{KeyFormat, Owner, Role};
use crate::metrics::add;
use crate::store::Entry;
use crate::topology::DataFormat;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;

/// The bounds of a range request: `prefix`, or `from` (inclusive) and `to`
/// (inclusive), then after `cursor` (exclusive).
type KeyBounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

fn bounds(params: &Params, format: KeyFormat) -> QueryResult<KeyBounds> {
    let decode = |t: &Option<String>| {
        t.as_deref()
            .map(|t| format.decode(t))
            .transpose()
            .map_err(bad_request)
    };
    let (from, to, prefix, cursor) = (
        decode(&params.from)?,
        decode(&params.to)?,
        decode(&params.prefix)?,
        decode(&params.cursor)?,
    );
    let (mut start, end) = match prefix {
        Some(p) => {
            let end = prefix_end(&p).map_or(Bound::Unbounded, Bound::Excluded);
            (Bound::Included(p), end)
        }
        None => (
            from.map_or(Bound::Unbounded, Bound::Included),
            to.map_or(Bound::Unbounded, Bound::Included),
        ),
    };
    if let Some(c) = cursor {
        let after_start = match &start {
            Bound::Included(s) | Bound::Excluded(s) => c >= *s,
            Bound::Unbounded => true,
        };
        if after_start {
            start = Bound::Excluded(c);
        }
    }
    Ok((start, end))
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v),
        Bound::Excluded(v) => Bound::Excluded(v),
        Bound::Unbounded => Bound::Unbounded,
    }
}

pub(super) async fn range(
    State(api): State<QueryApi>,
    Path(store): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    uri: Uri,
) -> QueryResult<Response> {
    api.authorize(&headers)?;
    let spec = api.check_store(&store)?;
    let (key_format, value_format) = params.formats(&spec)?;
    let (start, end) = bounds(&params, key_format)?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    add(&api.metrics.queries, 1);
    let partitions: Vec<i32> = match params.partition {
        Some(p) if (0..api.stores.partitions()).contains(&p) => vec![p],
        Some(p) => return Err(bad_request(format!("no partition {p}"))),
        None => (0..api.stores.partitions()).collect(),
    };
    // Each partition's entries, from here or from its owner; a partition
    // nobody serves now fails the whole answer (never a partial scan).
    let mut merged: Vec<Entry> = Vec::new();
    let mut more = false;
    let mut lags = Vec::new();
    for partition in partitions.iter().copied() {
        let part = match api.stores.owner(&store, partition, params.stale()) {
            Owner::Local(Role::Restoring) | Owner::Unavailable => {
                return Err(unavailable(format!(
                    "partition {partition} of `{store}` is not served now"
                )));
            }
            Owner::Local(role) => {
                let (reader, _) = api.stores.local(&store, partition).ok_or_else(|| {
                    unavailable(format!("partition {partition} of `{store}` just moved"))
                })?;
                if let Role::Standby { lag } = role {
                    lags.push(lag);
                }
                let (s, e) = (start.clone(), end.clone());
                tokio::task::spawn_blocking(move || reader.scan(as_ref(&s), as_ref(&e), limit + 1))
                    .await
                    .map_err(internal)?
                    .map_err(internal)?
            }
            Owner::Remote(host) => {
                if params.partition.is_some() {
                    return elsewhere(&api, &host, partition, &params, &headers, &uri).await;
                }
                let (entries, part_more) = remote_part(
                    &api,
                    &host,
                    partition,
                    &uri,
                    &headers,
                    (key_format, value_format),
                )
                .await?;
                more |= part_more;
                entries
            }
        };
        more |= part.len() > limit;
        merged.extend(part.into_iter().take(limit));
    }
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    if merged.len() > limit {
        merged.truncate(limit);
        more = true;
    }
    let mut entries = Vec::with_capacity(merged.len());
    for (k, v) in &merged {
        let value = to_json(value_format, v).map_err(|e| {
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("key {}: {e}", key_format.encode(k)),
            )
        })?;
        entries.push(json!({ "key": key_format.encode(k), "value": value }));
    }
    let next_cursor = more
        .then(|| merged.last().map(|(k, _)| key_format.encode(k)))
        .flatten();
    let mut response = Json(json!({
        "store": store,
        "key_format": key_format.name(),
        "value_format": value_format.name(),
        "entries": entries,
        "next_cursor": next_cursor,
        "more": next_cursor.is_some(),
    }))
    .into_response();
    if let Some(lag) = lags.into_iter().max() {
        response
            .headers_mut()
            .insert("x-weir-lag", HeaderValue::from(lag));
    }
    Ok(response)
}

/// One partition's part of a scatter-gather range, from its owner: the
/// same request with `partition=N`, its entries decoded back to bytes.
async fn remote_part(
    api: &QueryApi,
    host: &str,
    partition: i32,
    uri: &Uri,
    headers: &HeaderMap,
    (key_format, value_format): (KeyFormat, DataFormat),
) -> QueryResult<(Vec<Entry>, bool)> {
    if headers.contains_key(FORWARDED) {
        return Err(unavailable(format!(
            "partition {partition} moved to `{host}`"
        )));
    }
    // The formats this instance resolved, named, so the owner renders the
    // part in them whatever it would default to.
    let query: String = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| {
            !p.is_empty() && !p.starts_with("key_format=") && !p.starts_with("value_format=")
        })
        .map(|p| format!("{p}&"))
        .collect();
    let target = format!(
        "http://{host}{}?{query}key_format={}&value_format={}&partition={partition}",
        uri.path(),
        key_format.name(),
        value_format.name()
    );
    add(&api.metrics.queries_forwarded, 1);
    let auth = headers.get(header::AUTHORIZATION).cloned();
    let not_answered = |e: String| {
        unavailable(format!(
            "the owner `{host}` of partition {partition} did not answer: {e}"
        ))
    };
    let response = tokio::task::spawn_blocking(move || forward(&target, auth))
        .await
        .map_err(internal)?
        .map_err(not_answered)?;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .map_err(|e| not_answered(e.to_string()))?;
    if status != StatusCode::OK {
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("status {status}"));
        return Err(unavailable(format!(
            "partition {partition} on `{host}`: {message}"
        )));
    }
    let page: Value = serde_json::from_slice(&body).map_err(|e| not_answered(e.to_string()))?;
    let mut entries = Vec::new();
    for entry in page["entries"].as_array().into_iter().flatten() {
        let key = entry["key"]
            .as_str()
            .and_then(|k| key_format.decode(k).ok())
            .ok_or_else(|| not_answered("an unreadable key".into()))?;
        let value = from_json(value_format, &entry["value"]).map_err(not_answered)?;
        entries.push((key, value));
    }
    Ok((entries, page["more"].as_bool().unwrap_or(false)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        serde_urlencoded_like(&text.join("&"))
    }

    /// What axum's `Query` would make of a query string.
    fn serde_urlencoded_like(query: &str) -> Params {
        let uri: Uri = format!("http://h/x?{query}").parse().unwrap();
        Query::<Params>::try_from_uri(&uri).unwrap().0
    }

    #[test]
    fn ranges_bound_by_prefix_or_from_to_and_resume_after_the_cursor() {
        let (s, e) = bounds(&params(&[("prefix", "ab")]), KeyFormat::Text).unwrap();
        assert_eq!(
            (s, e),
            (
                Bound::Included(b"ab".to_vec()),
                Bound::Excluded(b"ac".to_vec())
            )
        );
        let (s, e) = bounds(
            &params(&[("from", "a"), ("to", "m"), ("cursor", "f")]),
            KeyFormat::Text,
        )
        .unwrap();
        assert_eq!(
            (s, e),
            (
                Bound::Excluded(b"f".to_vec()),
                Bound::Included(b"m".to_vec())
            )
        );
        assert_eq!(prefix_end(&[0x61, 0xff]), Some(vec![0x62]));
        assert_eq!(prefix_end(&[0xff]), None);
        assert!(bounds(&params(&[("from", "zz")]), KeyFormat::Hex).is_err());
    }
}
