//! The interactive-query endpoints of the admin API:
//!
//! ```text
//! GET /v1/stores                               every store, its partitions and hosts
//! GET /v1/stores/{store}/metadata?key=K        the key's partition, active and standby hosts
//! GET /v1/stores/{store}/keys/{key}            the value (owner only; forwarded or redirected)
//! GET /v1/stores/{store}/range?from=&to=&prefix=&limit=&cursor=[&partition=N]
//! ```
//! Common parameters: `key_format=text|hex|base64`, `value_format=bytes|
//! utf8|u64|i64|json`, `stale=ok` (a standby may answer; its lag is in
//! `X-Weir-Lag`), `redirect=true` (307 to the owner instead of one
//! forwarded hop). A request another instance forwarded carries
//! `X-Weir-Forwarded` and is never forwarded again, so it cannot loop.
//! While a partition restores or moves the answer is 503 with
//! `Retry-After`, never a stale or wrong value.
//!
//! Must never write to a store or wait on a stream thread.

use std::ops::Bound;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{KeyFormat, Owner, QueryableStores, Role, ValueFormat};
use crate::metrics::{Metrics, add};
use crate::store::Entry;

/// Set on a request one instance forwards to another.
pub const FORWARDED: &str = "x-weir-forwarded";
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;

#[derive(Clone)]
pub(crate) struct QueryApi {
    pub stores: Arc<QueryableStores>,
    pub metrics: Arc<Metrics>,
    /// `admin.read.token`: when set, reads need it as a bearer token.
    pub read_token: Option<String>,
}

pub(crate) fn routes(api: QueryApi) -> Router {
    Router::new()
        .route("/v1/stores", get(list_stores))
        .route("/v1/stores/{store}/metadata", get(metadata))
        .route("/v1/stores/{store}/keys/{key}", get(get_key))
        .route("/v1/stores/{store}/range", get(range))
        .with_state(api)
}

#[derive(Debug, Default, Deserialize)]
struct Params {
    key: Option<String>,
    key_format: Option<String>,
    value_format: Option<String>,
    stale: Option<String>,
    redirect: Option<bool>,
    from: Option<String>,
    to: Option<String>,
    prefix: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
    partition: Option<i32>,
}

impl Params {
    fn stale(&self) -> bool {
        matches!(self.stale.as_deref(), Some("ok" | "true"))
    }

    fn formats(&self) -> QueryResult<(KeyFormat, ValueFormat)> {
        let key = KeyFormat::parse(self.key_format.as_deref()).map_err(bad_request)?;
        let value = ValueFormat::parse(self.value_format.as_deref()).map_err(bad_request)?;
        Ok((key, value))
    }
}

/// A refused or failed query: a status and a message naming the problem;
/// unavailable ones say when to retry.
#[derive(Debug)]
pub(crate) struct QueryError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let retry = self.status == StatusCode::SERVICE_UNAVAILABLE;
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

type QueryResult<T> = Result<T, QueryError>;

fn error(status: StatusCode, message: impl Into<String>) -> QueryError {
    QueryError {
        status,
        message: message.into(),
    }
}

fn bad_request(message: String) -> QueryError {
    error(StatusCode::BAD_REQUEST, message)
}

/// 503 with `Retry-After`: the answer exists but not here, not yet.
fn unavailable(message: impl Into<String>) -> QueryError {
    error(StatusCode::SERVICE_UNAVAILABLE, message)
}

fn internal(e: impl std::fmt::Display) -> QueryError {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

impl QueryApi {
    fn authorize(&self, headers: &HeaderMap) -> QueryResult<()> {
        let Some(token) = &self.read_token else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given == Some(token.as_str()) {
            Ok(())
        } else {
            Err(error(
                StatusCode::UNAUTHORIZED,
                "reads need `Authorization: Bearer <admin.read.token>`",
            ))
        }
    }

    fn check_store(&self, store: &str) -> QueryResult<()> {
        if self.stores.has_store(store) {
            Ok(())
        } else {
            Err(error(
                StatusCode::NOT_FOUND,
                format!(
                    "no store `{store}` in the running topology (stores: {})",
                    self.stores.stores().join(", ")
                ),
            ))
        }
    }
}

async fn list_stores(State(api): State<QueryApi>, headers: HeaderMap) -> QueryResult<Response> {
    api.authorize(&headers)?;
    let partitions: Vec<Value> = (0..api.stores.partitions())
        .map(|p| {
            json!({
                "partition": p,
                "active_host": api.stores.active_host(p),
                "standby_hosts": api.stores.standby_hosts(p),
            })
        })
        .collect();
    let stores: Vec<Value> = api
        .stores
        .stores()
        .into_iter()
        .map(|name| json!({ "name": name, "partitions": partitions }))
        .collect();
    Ok(Json(json!({ "stores": stores })).into_response())
}

async fn metadata(
    State(api): State<QueryApi>,
    Path(store): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> QueryResult<Response> {
    api.authorize(&headers)?;
    api.check_store(&store)?;
    let (key_format, _) = params.formats()?;
    let text = params
        .key
        .as_deref()
        .ok_or_else(|| bad_request("metadata needs ?key=".into()))?;
    let key = key_format.decode(text).map_err(bad_request)?;
    let partition = api.stores.partition_of(&key);
    Ok(Json(json!({
        "store": store,
        "key": text,
        "partition": partition,
        "active_host": api.stores.active_host(partition),
        "standby_hosts": api.stores.standby_hosts(partition),
    }))
    .into_response())
}

async fn get_key(
    State(api): State<QueryApi>,
    Path((store, key_text)): Path<(String, String)>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    uri: Uri,
) -> QueryResult<Response> {
    api.authorize(&headers)?;
    api.check_store(&store)?;
    let (key_format, value_format) = params.formats()?;
    let key = key_format.decode(&key_text).map_err(bad_request)?;
    add(&api.metrics.queries, 1);
    let partition = api.stores.partition_of(&key);
    let (reader, role) = match api.stores.owner(&store, partition, params.stale()) {
        Owner::Local(Role::Restoring) => {
            return Err(unavailable(format!(
                "partition {partition} of `{store}` is restoring here"
            )));
        }
        Owner::Local(_) => api
            .stores
            .local(&store, partition)
            .ok_or_else(|| unavailable(format!("partition {partition} of `{store}` just moved")))?,
        Owner::Remote(host) => {
            return elsewhere(&api, &host, partition, &params, &headers, &uri).await;
        }
        Owner::Unavailable => {
            return Err(unavailable(format!(
                "no instance serves partition {partition} of `{store}` now (rebalancing?)"
            )));
        }
    };
    let value = tokio::task::spawn_blocking(move || reader.get(&key))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let Some(value) = value else {
        let missing = error(
            StatusCode::NOT_FOUND,
            format!("no key `{key_text}` in `{store}`"),
        );
        return Ok(answered(missing.into_response(), partition, role));
    };
    let response = match value_format {
        ValueFormat::Bytes => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response()
        }
        format => match format.to_json(&value) {
            Ok(v) => Json(v).into_response(),
            Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e).into_response(),
        },
    };
    Ok(answered(response, partition, role))
}

/// Marks an answer with its partition and, from a standby, its lag.
fn answered(mut response: Response, partition: i32, role: Role) -> Response {
    let headers = response.headers_mut();
    headers.insert("x-weir-partition", HeaderValue::from(partition));
    if let Role::Standby { lag } = role {
        headers.insert("x-weir-lag", HeaderValue::from(lag));
    }
    response
}

/// The owner is another instance: redirect to it, or forward one hop.
async fn elsewhere(
    api: &QueryApi,
    host: &str,
    partition: i32,
    params: &Params,
    headers: &HeaderMap,
    uri: &Uri,
) -> QueryResult<Response> {
    if headers.contains_key(FORWARDED) {
        return Err(unavailable(format!(
            "forwarded here for partition {partition}, which `{host}` owns now (rebalancing?)"
        )));
    }
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let target = format!("http://{host}{path}");
    if params.redirect == Some(true) {
        return Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, target)
            .body(Body::empty())
            .map_err(internal);
    }
    add(&api.metrics.queries_forwarded, 1);
    let auth = headers.get(header::AUTHORIZATION).cloned();
    tokio::task::spawn_blocking(move || forward(&target, auth))
        .await
        .map_err(internal)?
        .map_err(|e| {
            unavailable(format!(
                "the owner `{host}` of partition {partition} did not answer: {e}"
            ))
        })
}

/// One forwarded GET, its status, body and Weir headers relayed.
fn forward(url: &str, auth: Option<HeaderValue>) -> Result<Response, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let mut request = agent.get(url).header(FORWARDED, "1");
    if let Some(auth) = auth.as_ref().and_then(|a| a.to_str().ok()) {
        request = request.header("authorization", auth);
    }
    let mut response = request.call().map_err(|e| e.to_string())?;
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = Response::builder().status(status);
    for name in [
        "content-type",
        "retry-after",
        "x-weir-partition",
        "x-weir-lag",
    ] {
        if let Some(v) = response.headers().get(name) {
            out = out.header(name, v.as_bytes());
        }
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    out.header("x-weir-forwarded-from", url)
        .body(Body::from(body))
        .map_err(|e| e.to_string())
}

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

async fn range(
    State(api): State<QueryApi>,
    Path(store): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    uri: Uri,
) -> QueryResult<Response> {
    api.authorize(&headers)?;
    api.check_store(&store)?;
    let (key_format, value_format) = params.formats()?;
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
        let value = value_format.to_json(v).map_err(|e| {
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
    (key_format, value_format): (KeyFormat, ValueFormat),
) -> QueryResult<(Vec<Entry>, bool)> {
    if headers.contains_key(FORWARDED) {
        return Err(unavailable(format!(
            "partition {partition} moved to `{host}`"
        )));
    }
    let query = uri.query().map_or(String::new(), |q| format!("{q}&"));
    let target = format!("http://{host}{}?{query}partition={partition}", uri.path());
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
        entries.push((key, encode_back(&entry["value"], value_format)));
    }
    Ok((entries, page["more"].as_bool().unwrap_or(false)))
}

/// A value as it came in a remote page, back to the bytes it was read as
/// (so one merge and one rendering serve local and remote parts alike).
fn encode_back(value: &Value, format: ValueFormat) -> Vec<u8> {
    use base64::Engine as _;
    match (format, value) {
        (ValueFormat::Bytes, Value::String(s)) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .unwrap_or_default(),
        (ValueFormat::Utf8, Value::String(s)) => s.as_bytes().to_vec(),
        (ValueFormat::U64, v) => v.as_u64().unwrap_or(0).to_be_bytes().to_vec(),
        (ValueFormat::I64, v) => ((v.as_i64().unwrap_or(0) as u64) ^ (1 << 63))
            .to_be_bytes()
            .to_vec(),
        (_, v) => serde_json::to_vec(v).unwrap_or_default(),
    }
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

    #[test]
    fn remote_values_round_trip_to_the_bytes_they_were() {
        for (format, bytes) in [
            (ValueFormat::U64, 7u64.to_be_bytes().to_vec()),
            (ValueFormat::Bytes, vec![0, 1, 255]),
            (ValueFormat::Utf8, b"text".to_vec()),
            (
                ValueFormat::I64,
                ((-5i64 as u64) ^ (1 << 63)).to_be_bytes().to_vec(),
            ),
        ] {
            let json = format.to_json(&bytes).unwrap();
            assert_eq!(encode_back(&json, format), bytes, "{format:?}");
        }
    }

    #[test]
    fn a_forwarded_request_is_never_forwarded_again() {
        let api = QueryApi {
            stores: Arc::new(QueryableStores::new(Some("a:1".into()))),
            metrics: Arc::new(Metrics::default()),
            read_token: None,
        };
        let mut headers = HeaderMap::new();
        headers.insert(FORWARDED, HeaderValue::from_static("1"));
        let uri: Uri = "/v1/stores/counts/keys/k".parse().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let response = runtime
            .block_on(elsewhere(
                &api,
                "b:1",
                3,
                &Params::default(),
                &headers,
                &uri,
            ))
            .unwrap_err()
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        let redirect = Params {
            redirect: Some(true),
            ..Params::default()
        };
        let response = runtime
            .block_on(elsewhere(
                &api,
                "b:1",
                3,
                &redirect,
                &HeaderMap::new(),
                &uri,
            ))
            .unwrap();
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(
            response.headers()[header::LOCATION],
            "http://b:1/v1/stores/counts/keys/k"
        );
    }

    #[test]
    fn reads_need_the_read_token_when_one_is_set() {
        let api = QueryApi {
            stores: Arc::new(QueryableStores::new(None)),
            metrics: Arc::new(Metrics::default()),
            read_token: Some("s3cret".into()),
        };
        assert!(api.authorize(&HeaderMap::new()).is_err());
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(api.authorize(&headers).is_ok());
    }
}
