//! The interactive-query endpoints of the admin API:
//!
//! ```text
//! GET /v1/stores                               every store, its partitions and hosts
//! GET /v1/stores/{store}/metadata?key=K        the key's partition, active and standby hosts
//! GET /v1/stores/{store}/keys/{key}            the value (owner only; forwarded or redirected)
//! GET /v1/stores/{store}/range?from=&to=&prefix=&limit=&cursor=[&partition=N]
//! GET /v1/stores/{store}/windows/{key}?from=&to=&limit=   a window store's windows of a key
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

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::format::{to_json, value_format};
use super::{KeyFormat, Owner, QueryableStores, Role};
use crate::metrics::{Metrics, add};
use crate::store::StoreReader;
use crate::topology::{DataFormat, StoreSpec};

/// Set on a request one instance forwards to another.
pub const FORWARDED: &str = "x-weir-forwarded";

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
        .route("/v1/stores/{store}/range", get(super::range::range))
        .route(
            "/v1/stores/{store}/windows/{key}",
            get(super::windows::windows),
        )
        .with_state(api)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Params {
    pub key: Option<String>,
    pub key_format: Option<String>,
    pub value_format: Option<String>,
    pub stale: Option<String>,
    pub redirect: Option<bool>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub prefix: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<usize>,
    pub partition: Option<i32>,
}

impl Params {
    pub(super) fn stale(&self) -> bool {
        matches!(self.stale.as_deref(), Some("ok" | "true"))
    }

    /// The key and value formats of this request: named, or as `store`
    /// declares them.
    pub(super) fn formats(&self, store: &StoreSpec) -> QueryResult<(KeyFormat, DataFormat)> {
        let key = KeyFormat::resolve(self.key_format.as_deref(), store.key_format)
            .map_err(bad_request)?;
        let value =
            value_format(self.value_format.as_deref(), store.value_format).map_err(bad_request)?;
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

pub(super) type QueryResult<T> = Result<T, QueryError>;

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> QueryError {
    QueryError {
        status,
        message: message.into(),
    }
}

pub(super) fn bad_request(message: String) -> QueryError {
    error(StatusCode::BAD_REQUEST, message)
}

/// 503 with `Retry-After`: the answer exists but not here, not yet.
pub(super) fn unavailable(message: impl Into<String>) -> QueryError {
    error(StatusCode::SERVICE_UNAVAILABLE, message)
}

pub(super) fn internal(e: impl std::fmt::Display) -> QueryError {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

impl QueryApi {
    pub(super) fn authorize(&self, headers: &HeaderMap) -> QueryResult<()> {
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

    /// The running version's declaration of `store`, or 404.
    pub(super) fn check_store(&self, store: &str) -> QueryResult<StoreSpec> {
        self.stores.store(store).ok_or_else(|| {
            let names: Vec<String> = self.stores.stores().into_iter().map(|s| s.name).collect();
            error(
                StatusCode::NOT_FOUND,
                format!(
                    "no store `{store}` in the running topology (stores: {})",
                    names.join(", ")
                ),
            )
        })
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
        .map(|spec| {
            json!({
                "name": spec.name,
                "key_format": spec.key_format.name(),
                "value_format": spec.value_format.name(),
                "partitions": partitions,
            })
        })
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
    let spec = api.check_store(&store)?;
    let (key_format, _) = params.formats(&spec)?;
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
    let spec = api.check_store(&store)?;
    let (key_format, value_format) = params.formats(&spec)?;
    let key = key_format.decode(&key_text).map_err(bad_request)?;
    add(&api.metrics.queries, 1);
    let (reader, role, partition) =
        match route_key(&api, &store, &key, &params, &headers, &uri).await? {
            KeyRoute::Here(reader, role, partition) => (reader, role, partition),
            KeyRoute::There(answer) => return Ok(answer),
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
        DataFormat::Bytes => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response()
        }
        format => match to_json(format, &value) {
            Ok(v) => Json(v).into_response(),
            Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e).into_response(),
        },
    };
    Ok(answered(response, partition, role))
}

/// Where a request about one key is answered.
pub(super) enum KeyRoute {
    /// Here: the reader of the key's partition, its role, the partition.
    Here(Arc<dyn StoreReader>, Role, i32),
    /// By the owner: its answer, forwarded one hop, or a redirect to it.
    There(Response),
}

/// Routes a request about `key` of `store` to the owner of its partition:
/// this instance (a standby only with `stale=ok`), or another one. While
/// the partition restores or moves, 503.
pub(super) async fn route_key(
    api: &QueryApi,
    store: &str,
    key: &[u8],
    params: &Params,
    headers: &HeaderMap,
    uri: &Uri,
) -> QueryResult<KeyRoute> {
    let partition = api.stores.partition_of(key);
    match api.stores.owner(store, partition, params.stale()) {
        Owner::Local(Role::Restoring) => Err(unavailable(format!(
            "partition {partition} of `{store}` is restoring here"
        ))),
        Owner::Local(_) => {
            let (reader, role) = api.stores.local(store, partition).ok_or_else(|| {
                unavailable(format!("partition {partition} of `{store}` just moved"))
            })?;
            Ok(KeyRoute::Here(reader, role, partition))
        }
        Owner::Remote(host) => Ok(KeyRoute::There(
            elsewhere(api, &host, partition, params, headers, uri).await?,
        )),
        Owner::Unavailable => Err(unavailable(format!(
            "no instance serves partition {partition} of `{store}` now (rebalancing?)"
        ))),
    }
}

/// Marks an answer with its partition and, from a standby, its lag.
pub(super) fn answered(mut response: Response, partition: i32, role: Role) -> Response {
    let headers = response.headers_mut();
    headers.insert("x-weir-partition", HeaderValue::from(partition));
    if let Role::Standby { lag } = role {
        headers.insert("x-weir-lag", HeaderValue::from(lag));
    }
    response
}

/// The owner is another instance: redirect to it, or forward one hop.
pub(super) async fn elsewhere(
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
pub(super) fn forward(url: &str, auth: Option<HeaderValue>) -> Result<Response, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
