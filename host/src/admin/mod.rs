//! The admin HTTP API on `admin.listen`: deploy, list, roll back and delete
//! topologies, this instance's tasks, probes and metrics. Handlers are thin:
//! they check the token and the upload size, then call the [`Deployer`] on a
//! blocking thread.
//!
//! ```text
//! PUT    /v1/topologies/{name}[?allow_store_drop=true]   body: component bytes
//! GET    /v1/topologies            GET /v1/topologies/{name}
//! POST   /v1/topologies/{name}/rollback[?version=N]
//! DELETE /v1/topologies/{name}
//! GET    /v1/tasks                 GET /health/live   GET /health/ready   GET /metrics
//! GET    /v1/stores/...            interactive queries (see `query::http`)
//! ```
//! Mutating endpoints need `Authorization: Bearer <admin.token>`; with no
//! token configured they are refused. An upload over
//! `admin.max.component.bytes` is refused from its `Content-Length` before
//! any of it is read, and otherwise stopped as soon as it passes the limit.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

pub mod api;

use self::api::{
    DeployReply, ErrorReply, RollbackReply, TasksReply, TopologiesReply, TopologyReply,
};
use crate::app::HostContext;
use crate::deploy::{DeployError, DeployRequest, Deployer};

#[derive(Clone)]
struct Admin {
    ctx: Arc<HostContext>,
    deployer: Arc<Deployer>,
    token: Option<String>,
    max_component_bytes: usize,
}

/// An error answer: a status and a message naming the problem.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorReply { error: self.1 })).into_response()
    }
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        let status = match &e {
            DeployError::BadName(..) => StatusCode::BAD_REQUEST,
            DeployError::Invalid(_) | DeployError::Topics(_) => StatusCode::UNPROCESSABLE_ENTITY,
            DeployError::Incompatible { .. }
            | DeployError::OtherTopologyLive { .. }
            | DeployError::NothingToRollBackTo(_)
            | DeployError::Conflict { .. } => StatusCode::CONFLICT,
            DeployError::NotFound(_) | DeployError::NoSuchVersion { .. } => StatusCode::NOT_FOUND,
            DeployError::Log(_) => StatusCode::SERVICE_UNAVAILABLE,
            DeployError::Cache(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Starts the admin server on its own thread; returns the bound address
/// (useful with port 0).
pub fn serve(
    listen: SocketAddr,
    ctx: Arc<HostContext>,
    deployer: Arc<Deployer>,
    token: Option<String>,
    max_component_bytes: usize,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let query_api = crate::query::http::QueryApi {
        stores: ctx.queries.clone(),
        metrics: ctx.metrics.clone(),
        read_token: ctx.config.admin_read_token.clone(),
    };
    let admin = Admin {
        ctx,
        deployer,
        token,
        max_component_bytes,
    };
    let app = Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/tasks", get(tasks))
        .route("/v1/topologies", get(list))
        .route(
            "/v1/topologies/{name}",
            get(show).put(deploy).delete(undeploy),
        )
        .route("/v1/topologies/{name}/rollback", post(rollback))
        .with_state(admin)
        .merge(crate::query::http::routes(query_api));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("weir-admin")
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("weir-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        if let Err(e) = axum::serve(listener, app).await {
                            tracing::error!(error = %e, "admin API stopped");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "admin API cannot listen"),
                }
            })
        })?;
    tracing::info!(address = %bound, "admin API listening on {bound}");
    Ok(bound)
}

async fn live(State(a): State<Admin>) -> (StatusCode, String) {
    match a.ctx.lifecycle.liveness() {
        Ok(()) => (
            StatusCode::OK,
            format!("alive: {}\n", a.ctx.lifecycle.state()),
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not alive: {reason}\n"),
        ),
    }
}

async fn ready(State(a): State<Admin>) -> (StatusCode, String) {
    let state = a.ctx.lifecycle.state();
    if a.ctx.lifecycle.is_ready() {
        (StatusCode::OK, format!("ready: {state}\n"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {state}\n"),
        )
    }
}

async fn metrics(State(a): State<Admin>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        a.ctx.render_metrics(),
    )
}

async fn tasks(State(a): State<Admin>) -> Json<TasksReply> {
    Json(TasksReply {
        application_id: a.ctx.config.application_id.clone(),
        client_id: a.ctx.config.client_id.clone(),
        state: a.ctx.lifecycle.state(),
        tasks: a.ctx.tasks.snapshot(),
    })
}

async fn list(State(a): State<Admin>) -> Json<TopologiesReply> {
    let topologies = a.deployer.list().iter().map(TopologyReply::from).collect();
    Json(TopologiesReply { topologies })
}

async fn show(State(a): State<Admin>, Path(name): Path<String>) -> ApiResult<Json<TopologyReply>> {
    let record = a
        .deployer
        .get(&name)
        .ok_or_else(|| ApiError::from(DeployError::NotFound(name.clone())))?;
    let mut out = TopologyReply::from(&record);
    // One topology per application: this instance's tasks are the live one's.
    out.tasks = Some(if record.live.is_some() {
        a.ctx.tasks.snapshot()
    } else {
        Vec::new()
    });
    Ok(Json(out))
}

fn authorize(a: &Admin, headers: &HeaderMap) -> ApiResult<()> {
    let Some(token) = &a.token else {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "mutating endpoints are disabled: set admin.token or admin.token.file".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare in constant time: the token is a secret.
    let ok = given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token".into(),
        ))
    }
}

fn who(headers: &HeaderMap) -> String {
    headers
        .get("x-weir-deployed-by")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(200).collect())
        .unwrap_or_else(|| "unknown".into())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DeployError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
}

#[derive(Deserialize)]
struct DeployQuery {
    #[serde(default)]
    allow_store_drop: bool,
}

async fn deploy(
    State(a): State<Admin>,
    Path(name): Path<String>,
    Query(q): Query<DeployQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<DeployReply>)> {
    authorize(&a, &headers)?;
    let limit = a.max_component_bytes;
    let too_big = |size: String| {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("component is {size} bytes, over admin.max.component.bytes ({limit})"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > limit as u64
    {
        return Err(too_big(len.to_string()));
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_big("more than that many".into()))?;
    let request = DeployRequest {
        name,
        bytes: bytes.to_vec(),
        allow_store_drop: q.allow_store_drop,
        deployed_by: who(&headers),
    };
    let deployer = a.deployer.clone();
    let deployed = blocking(move || deployer.deploy(request)).await?;
    let status = if deployed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let v = deployed.version;
    Ok((
        status,
        Json(DeployReply {
            version: v.version,
            sha256: v.sha256,
            created: deployed.created,
            topology: v.topology,
        }),
    ))
}

#[derive(Deserialize)]
struct RollbackQuery {
    version: Option<u32>,
}

async fn rollback(
    State(a): State<Admin>,
    Path(name): Path<String>,
    Query(q): Query<RollbackQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<RollbackReply>> {
    authorize(&a, &headers)?;
    let (deployer, by) = (a.deployer.clone(), who(&headers));
    let v = blocking(move || deployer.rollback(&name, q.version, &by)).await?;
    Ok(Json(RollbackReply {
        version: v.version,
        sha256: v.sha256,
    }))
}

async fn undeploy(
    State(a): State<Admin>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<TopologyReply>> {
    authorize(&a, &headers)?;
    let (deployer, by) = (a.deployer.clone(), who(&headers));
    let record = blocking(move || deployer.delete(&name, &by)).await?;
    Ok(Json(TopologyReply::from(&record)))
}
