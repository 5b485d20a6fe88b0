//! Talking to a host's admin API from tests, and running the CLI against it.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use weir::admin::api::{TaskStatus, TasksReply};

/// GET `url`; returns (status, JSON or the text as a JSON string).
pub fn get(url: &str) -> (u16, Value) {
    try_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// As [`get`], with a failure to connect as an error (for diagnostics
/// about a process that may have gone).
pub fn try_get(url: &str) -> Result<(u16, Value), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// PUT raw bytes with an optional token; returns (status, JSON).
pub fn put(url: &str, token: Option<&str>, body: &[u8]) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.put(url).header("expect", "100-continue");
    if let Some(t) = token {
        request = request.header("authorization", &format!("Bearer {t}"));
    }
    let mut response = request
        .send(body)
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Runs `weir <args>`; returns (success, stdout + stderr).
pub fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `weir deploy` of `component` as `name`.
pub fn deploy(
    admin: &str,
    token: &str,
    name: &str,
    component: &Path,
    extra: &[&str],
) -> (bool, String) {
    let mut args = vec!["deploy", "--admin", admin, "--token", token, "--name", name];
    args.extend_from_slice(extra);
    let path = component.display().to_string();
    args.push(&path);
    cli(&args)
}

/// This instance's tasks, from `GET /v1/tasks` (the server's own type).
pub fn tasks(admin: &str) -> Vec<TaskStatus> {
    let (status, body) = get(&format!("{admin}/v1/tasks"));
    assert_eq!(status, 200, "{body}");
    let reply: TasksReply = serde_json::from_value(body).expect("a TasksReply");
    reply.tasks
}

/// The versions this instance's tasks run, as reported by `/v1/tasks`.
pub fn task_versions(admin: &str) -> Vec<u64> {
    tasks(admin).iter().map(|t| u64::from(t.version)).collect()
}
