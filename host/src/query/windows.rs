//! `GET /v1/stores/{store}/windows/{key}?from=&to=&limit=`: a key's windows
//! in a window store, from the owner of the key's partition (forwarded or
//! redirected like a key lookup), in time order: `start`, `end` and the
//! value in the store's value format. Reads committed state, as every
//! query does; windows past retention are gone once their segment is
//! dropped at a commit.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::format::to_json;
use super::http::{
    KeyRoute, Params, QueryApi, QueryResult, answered, bad_request, error, internal, route_key,
};
use crate::metrics::add;
use crate::store::window::{Layout, WindowQuery};

const DEFAULT_LIMIT: usize = 1_000;
const MAX_LIMIT: usize = 10_000;

pub(super) async fn windows(
    State(api): State<QueryApi>,
    Path((store, key_text)): Path<(String, String)>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    uri: Uri,
) -> QueryResult<Response> {
    api.authorize(&headers)?;
    let spec = api.check_store(&store)?;
    let Some(window) = spec.window else {
        return Err(bad_request(format!(
            "store `{store}` is a key-value store; read it with /keys or /range"
        )));
    };
    let (key_format, value_format) = params.formats(&spec)?;
    let key = key_format.decode(&key_text).map_err(bad_request)?;
    let time = |t: &Option<String>, default: i64| -> QueryResult<i64> {
        t.as_deref().map_or(Ok(default), |t| {
            t.parse()
                .map_err(|_| bad_request(format!("`{t}` is not a time in milliseconds")))
        })
    };
    let (from, to) = (time(&params.from, 0)?, time(&params.to, i64::MAX)?);
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    add(&api.metrics.queries, 1);
    let (reader, role, partition) =
        match route_key(&api, &store, &key, &params, &headers, &uri).await? {
            KeyRoute::Here(reader, role, partition) => (reader, role, partition),
            KeyRoute::There(answer) => return Ok(answer),
        };
    let layout = Layout::new(&window);
    let found = tokio::task::spawn_blocking(move || {
        let query = WindowQuery::key(&key, from, to);
        let mut cursor = query.start(&layout, i64::MIN);
        query.next(&layout, i64::MIN, &mut cursor, limit, |s, e, n| {
            reader.scan(s, e, n)
        })
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    let mut windows = Vec::with_capacity(found.len());
    for w in found {
        let value = to_json(value_format, &w.value).map_err(|e| {
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("window {}: {e}", w.start),
            )
        })?;
        windows.push(json!({
            "start": w.start,
            "end": w.start.saturating_add(layout.size),
            "value": value,
        }));
    }
    let body = Json(json!({
        "store": store,
        "key": key_text,
        "partition": partition,
        "windows": windows,
    }));
    Ok(answered(body.into_response(), partition, role))
}
