//! Host configuration: Kafka-Streams-style keys from a TOML file, then
//! `WEIR_*` environment overrides, validated into a typed [`Config`].
//!
//! Keys are the Kafka Streams names wherever the concept is the same
//! (`application.id`, `commit.interval.ms`, …). In TOML they may be written
//! dotted (`application.id = "x"`, which TOML reads as nested tables) or
//! quoted (`"application.id" = "x"`); both flatten to the same key. Every key
//! can be overridden by `WEIR_` + the key upper-cased with `.`/`-` as `_`
//! (`WEIR_BOOTSTRAP_SERVERS`). Unknown keys are an error naming the key, so a
//! typo never silently falls back to a default.
//!
//! Must never read configuration anywhere else: the rest of the host takes a
//! `Config`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod transactions;

/// What a bad configuration looks like, always naming the key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("unknown config key `{key}`{hint}")]
    UnknownKey { key: String, hint: String },
    #[error("config key `{key}` is required")]
    Missing { key: &'static str },
    #[error("config key `{key}` has invalid value {value}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

/// Delivery guarantee, as Kafka Streams' `processing.guarantee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingGuarantee {
    AtLeastOnce,
    ExactlyOnceV2,
}

/// The validated host configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `application.id`: consumer group, changelog topic prefix, state subdir.
    pub application_id: String,
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// `client.id`; default `<application.id>-<HOSTNAME>` so a StatefulSet
    /// pod keeps its identity across restarts.
    pub client_id: String,
    /// `group.instance.id` for static membership; default `client.id`.
    pub group_instance_id: String,
    /// `application.server`: `host:port` other instances route queries to.
    pub application_server: Option<String>,
    /// `num.stream.threads`.
    pub num_stream_threads: usize,
    /// `num.standby.replicas`: standby copies kept per stateful task, each
    /// on another process than the active and than each other.
    pub num_standby_replicas: u32,
    /// `acceptable.recovery.lag`: changelog records a process may be behind
    /// on a task and still count as caught up (take it over at once).
    pub acceptable_recovery_lag: i64,
    /// `max.warmup.replicas`: warm-up replicas placed in one assignment.
    pub max_warmup_replicas: u32,
    /// `probing.rebalance.interval.ms`: how soon after placing warm-ups the
    /// group rebalances again to move tasks whose warm-up caught up.
    pub probing_rebalance_interval: Duration,
    /// `processing.exception.handler`: `fail` (the task fails) or
    /// `continue` (the failing record is skipped, logged and counted).
    pub continue_on_processing_error: bool,
    /// `deploy.auto.rollback`: roll a new version back by itself when every
    /// task of it here fails within its first `deploy.canary.records`.
    pub deploy_auto_rollback: bool,
    /// `deploy.canary.records`: records a new version must process on an
    /// instance before it is trusted there.
    pub deploy_canary_records: u64,
    /// `errors.dead.letter.queue.topic.name`: where skipped records go,
    /// with headers naming the failure (KIP-1034).
    pub dead_letter_queue: Option<String>,
    /// `rack.aware.assignment.tags`: client tag keys whose values a task's
    /// standbys should differ on (comma-separated).
    pub rack_aware_assignment_tags: Vec<String>,
    /// `client.tag.<key>`: this process's tags (zone, rack, …).
    pub client_tags: BTreeMap<String, String>,
    /// `state.dir`; stores live under `<state.dir>/<application.id>/`.
    pub state_dir: PathBuf,
    /// `commit.interval.ms` (30000, or 100 under exactly-once).
    pub commit_interval: Duration,
    /// `processing.guarantee`: `at_least_once` or `exactly_once_v2`.
    pub processing_guarantee: ProcessingGuarantee,
    /// `replication.factor` for topics the host creates (-1: broker default).
    pub replication_factor: i32,
    /// `max.poll.records`: most records handed to tasks per poll loop.
    pub max_poll_records: usize,
    /// `max.task.idle.ms`: how long a task with several inputs waits for
    /// an empty one before processing the others in timestamp order
    /// (`None`: -1, never waits).
    pub max_task_idle: Option<Duration>,
    /// `statestore.cache.max.bytes`: uncommitted store writes buffered per
    /// stream thread before a commit is forced; also divided among the
    /// thread's tasks for their processors' record caches.
    pub statestore_cache_max_bytes: usize,
    /// `state.cleanup.delay.ms`: unowned task directories older than this are
    /// deleted.
    pub state_cleanup_delay: Duration,
    /// `shutdown.timeout.ms`: the grace period for the ordered shutdown.
    pub shutdown_timeout: Duration,
    /// `rocksdb.block.cache.bytes`: one block cache for every store.
    pub rocksdb_block_cache_bytes: usize,
    /// `rocksdb.write.buffer.bytes`: one memtable budget for every store.
    pub rocksdb_write_buffer_bytes: usize,
    /// `wasm.max.memory.bytes`: linear memory cap per processor instance.
    pub wasm_max_memory_bytes: usize,
    /// `wasm.max.call.ms`: CPU deadline for one call into a processor.
    pub wasm_max_call: Duration,
    /// `wasm.max.call.bytes`: host-side bytes (store writes and outputs)
    /// one call into a processor may buffer.
    pub wasm_max_call_bytes: usize,
    /// `wasm.max.handles`: store and iterator handles an instance may hold.
    pub wasm_max_handles: usize,
    /// `wasm.max.schedules`: live punctuation schedules per task.
    pub wasm_max_schedules: usize,
    /// The producer's `transaction.timeout.ms` under exactly-once: derived
    /// from the commit interval and the call deadline unless given as
    /// `kafka.transaction.timeout.ms` (see [`transaction_timeout`]).
    pub transaction_timeout: Duration,
    /// `topics.<name>`: renames a topic the component declares.
    pub topics: BTreeMap<String, String>,
    /// `kafka.<property>`: passed to the Kafka clients as is.
    pub kafka: BTreeMap<String, String>,
    /// `admin.listen`: address of the admin HTTP API (none: no API).
    pub admin_listen: Option<std::net::SocketAddr>,
    /// `admin.token` or the contents of `admin.token.file`: the bearer token
    /// mutating admin endpoints require (none: they are refused).
    pub admin_token: Option<String>,
    /// `admin.max.component.bytes`: largest component upload.
    pub admin_max_component_bytes: usize,
    /// `admin.read.token`: when set, interactive queries need it as a
    /// bearer token (none: reads are open).
    pub admin_read_token: Option<String>,
}

/// Every plain key: name, default shown in docs, description.
#[rustfmt::skip]
pub const KEYS: &[(&str, &str, &str)] = &[
    ("application.id", "(required)", "consumer group, topic prefix and state subdirectory"),
    ("bootstrap.servers", "(required)", "Kafka brokers, host:port[,host:port]"),
    ("client.id", "<application.id>-$HOSTNAME", "stable identity of this process"),
    ("group.instance.id", "client.id", "static group membership id"),
    ("application.server", "(none)", "host:port other instances use to reach this one"),
    ("num.stream.threads", "1", "processing threads"),
    ("num.standby.replicas", "0", "standby replicas per stateful task"),
    ("acceptable.recovery.lag", "10000", "records behind that still count as caught up"),
    ("max.warmup.replicas", "2", "warm-up replicas placed at once"),
    ("probing.rebalance.interval.ms", "600000", "rebalance period while warm-ups catch up"),
    ("processing.exception.handler", "fail", "fail | continue: what a processor error does to its task"),
    ("deploy.auto.rollback", "true", "roll back a new version whose every task here fails within its canary"),
    ("deploy.canary.records", "1000", "records a new version must process on an instance before it is trusted"),
    ("errors.dead.letter.queue.topic.name", "(none)", "topic skipped records are written to, with error headers"),
    ("rack.aware.assignment.tags", "(none)", "client.tag.* keys standbys spread over, comma-separated"),
    ("state.dir", "/tmp/weir", "where stores live"),
    ("commit.interval.ms", "30000 (100 with exactly_once_v2)", "commit cycle period"),
    ("processing.guarantee", "at_least_once", "at_least_once | exactly_once_v2"),
    ("replication.factor", "-1", "replication of topics the host creates"),
    ("max.poll.records", "1000", "records per poll loop"),
    ("max.task.idle.ms", "0", "wait for an empty input of a task before processing the others by timestamp (-1: never)"),
    ("statestore.cache.max.bytes", "10485760", "per stream thread: shared among the thread's tasks for their processors' record caches (0: off); uncommitted store writes past it (at least 1 MiB) force a commit"),
    ("state.cleanup.delay.ms", "600000", "age before unowned task directories are deleted"),
    ("shutdown.timeout.ms", "30000", "grace period of the ordered shutdown"),
    ("rocksdb.block.cache.bytes", "67108864", "block cache shared by all stores"),
    ("rocksdb.write.buffer.bytes", "67108864", "memtable budget shared by all stores"),
    ("wasm.max.memory.bytes", "268435456", "memory cap per processor instance"),
    ("wasm.max.call.ms", "10000", "CPU deadline per call into a processor"),
    ("wasm.max.call.bytes", "67108864", "store writes and outputs one call may buffer in the host"),
    ("wasm.max.handles", "1024", "store and iterator handles one processor instance may hold open"),
    ("wasm.max.schedules", "1024", "live punctuation schedules per task"),
    ("admin.listen", "(none)", "ip:port of the admin HTTP API (deploy, probes, metrics)"),
    ("admin.token", "(none)", "bearer token for mutating admin endpoints"),
    ("admin.token.file", "(none)", "file holding admin.token (e.g. a mounted secret)"),
    ("admin.max.component.bytes", "67108864", "largest component upload"),
    ("admin.read.token", "(none)", "bearer token interactive queries need (none: open reads)"),
];

/// Key prefixes that take any suffix.
const PREFIXES: &[&str] = &["topics.", "kafka.", "client.tag."];

impl Config {
    /// Reads `path` (if given), applies `WEIR_*` overrides from `env`, and
    /// validates. `env` is the process environment in production.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut raw = BTreeMap::new();
        if let Some(path) = path {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            raw = parse_toml(&text).map_err(|message| ConfigError::Syntax {
                path: path.to_path_buf(),
                message,
            })?;
        }
        let env: BTreeMap<String, String> = env.into_iter().collect();
        apply_env(&mut raw, &env);
        Config::from_map(raw, env.get("HOSTNAME").map(String::as_str))
    }

    /// Validates flattened `key -> value` settings. `hostname` seeds the
    /// default `client.id`.
    pub fn from_map(
        mut raw: BTreeMap<String, String>,
        hostname: Option<&str>,
    ) -> Result<Config, ConfigError> {
        for key in raw.keys() {
            let known = KEYS.iter().any(|(k, _, _)| k == key)
                || PREFIXES
                    .iter()
                    .any(|p| key.starts_with(p) && key.len() > p.len());
            if !known {
                return Err(ConfigError::UnknownKey {
                    key: key.clone(),
                    hint: suggestion(key),
                });
            }
        }
        let mut take = |key: &str| raw.remove(key);

        let application_id = take("application.id").ok_or(ConfigError::Missing {
            key: "application.id",
        })?;
        check_name("application.id", &application_id)?;
        let bootstrap_servers = take("bootstrap.servers").ok_or(ConfigError::Missing {
            key: "bootstrap.servers",
        })?;
        if bootstrap_servers.trim().is_empty() {
            return Err(invalid(
                "bootstrap.servers",
                &bootstrap_servers,
                "must not be empty",
            ));
        }
        let host = hostname
            .map(str::to_string)
            .filter(|h| !h.is_empty())
            .unwrap_or_else(local_hostname);
        let client_id = take("client.id").unwrap_or_else(|| format!("{application_id}-{host}"));
        let group_instance_id = take("group.instance.id").unwrap_or_else(|| client_id.clone());
        let application_server = take("application.server");
        if let Some(server) = &application_server
            && server
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
        {
            return Err(invalid("application.server", server, "expected host:port"));
        }
        let num_stream_threads = number(take("num.stream.threads"), "num.stream.threads", 1..=64)?;
        let num_standby_replicas =
            number(take("num.standby.replicas"), "num.standby.replicas", 0..=8)?;
        let acceptable_recovery_lag = number(
            take("acceptable.recovery.lag"),
            "acceptable.recovery.lag",
            0..=i64::MAX,
        )?;
        let max_warmup_replicas = number(
            take("max.warmup.replicas"),
            "max.warmup.replicas",
            1..=1_000,
        )?;
        let processing_guarantee = match take("processing.guarantee").as_deref() {
            None | Some("at_least_once") => ProcessingGuarantee::AtLeastOnce,
            Some("exactly_once_v2") => ProcessingGuarantee::ExactlyOnceV2,
            Some(other) => {
                return Err(invalid(
                    "processing.guarantee",
                    other,
                    "expected at_least_once or exactly_once_v2",
                ));
            }
        };
        let default_commit = match processing_guarantee {
            ProcessingGuarantee::AtLeastOnce => 30_000,
            ProcessingGuarantee::ExactlyOnceV2 => 100,
        };
        let ms = |v: Option<String>, key: &str| -> Result<Duration, ConfigError> {
            number(v, key, 0..=u64::MAX / 2).map(Duration::from_millis)
        };
        let config = Config {
            // Its default depends on the guarantee, as in Kafka Streams.
            commit_interval: Duration::from_millis(number_or(
                take("commit.interval.ms"),
                "commit.interval.ms",
                default_commit,
                0..=u64::MAX / 2,
            )?),
            state_dir: PathBuf::from(
                take("state.dir").unwrap_or_else(|| documented_default("state.dir").into()),
            ),
            replication_factor: number(take("replication.factor"), "replication.factor", -1..=16)?,
            max_poll_records: number(take("max.poll.records"), "max.poll.records", 1..=1_000_000)?,
            max_task_idle: {
                let ms: i64 = number(
                    take("max.task.idle.ms"),
                    "max.task.idle.ms",
                    -1..=i64::MAX / 2,
                )?;
                u64::try_from(ms).ok().map(Duration::from_millis)
            },
            statestore_cache_max_bytes: number(
                take("statestore.cache.max.bytes"),
                "statestore.cache.max.bytes",
                0..=usize::MAX,
            )?,
            state_cleanup_delay: ms(take("state.cleanup.delay.ms"), "state.cleanup.delay.ms")?,
            shutdown_timeout: ms(take("shutdown.timeout.ms"), "shutdown.timeout.ms")?,
            rocksdb_block_cache_bytes: number(
                take("rocksdb.block.cache.bytes"),
                "rocksdb.block.cache.bytes",
                1 << 20..=usize::MAX,
            )?,
            rocksdb_write_buffer_bytes: number(
                take("rocksdb.write.buffer.bytes"),
                "rocksdb.write.buffer.bytes",
                1 << 20..=usize::MAX,
            )?,
            wasm_max_memory_bytes: number(
                take("wasm.max.memory.bytes"),
                "wasm.max.memory.bytes",
                1 << 20..=4 << 30,
            )?,
            wasm_max_call: ms(take("wasm.max.call.ms"), "wasm.max.call.ms")?,
            wasm_max_call_bytes: number(
                take("wasm.max.call.bytes"),
                "wasm.max.call.bytes",
                1 << 20..=4 << 30,
            )?,
            wasm_max_handles: number(take("wasm.max.handles"), "wasm.max.handles", 1..=1 << 20)?,
            wasm_max_schedules: number(
                take("wasm.max.schedules"),
                "wasm.max.schedules",
                1..=1 << 20,
            )?,
            probing_rebalance_interval: ms(
                take("probing.rebalance.interval.ms"),
                "probing.rebalance.interval.ms",
            )?,
            continue_on_processing_error: match take("processing.exception.handler")
                .as_deref()
                .unwrap_or(documented_default("processing.exception.handler"))
            {
                "fail" => false,
                "continue" => true,
                other => {
                    return Err(invalid(
                        "processing.exception.handler",
                        other,
                        "expected fail or continue",
                    ));
                }
            },
            deploy_auto_rollback: match take("deploy.auto.rollback")
                .as_deref()
                .unwrap_or(documented_default("deploy.auto.rollback"))
            {
                "true" => true,
                "false" => false,
                other => {
                    return Err(invalid(
                        "deploy.auto.rollback",
                        other,
                        "expected true or false",
                    ));
                }
            },
            deploy_canary_records: number(
                take("deploy.canary.records"),
                "deploy.canary.records",
                1..=u64::MAX,
            )?,
            dead_letter_queue: take("errors.dead.letter.queue.topic.name")
                .filter(|t| !t.is_empty()),
            rack_aware_assignment_tags: take("rack.aware.assignment.tags")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            client_tags: BTreeMap::new(),
            transaction_timeout: Duration::ZERO,
            admin_listen: match take("admin.listen") {
                None => None,
                Some(v) => Some(v.parse().map_err(|_| {
                    invalid("admin.listen", &v, "expected ip:port, e.g. 0.0.0.0:8080")
                })?),
            },
            admin_token: admin_token(take("admin.token"), take("admin.token.file"))?,
            admin_read_token: take("admin.read.token").filter(|t| !t.is_empty()),
            admin_max_component_bytes: number(
                take("admin.max.component.bytes"),
                "admin.max.component.bytes",
                1..=1 << 30,
            )?,
            application_id,
            bootstrap_servers,
            client_id,
            group_instance_id,
            application_server,
            num_stream_threads,
            num_standby_replicas,
            acceptable_recovery_lag,
            max_warmup_replicas,
            processing_guarantee,
            topics: BTreeMap::new(),
            kafka: BTreeMap::new(),
        };
        if config.probing_rebalance_interval < Duration::from_secs(1) {
            return Err(invalid(
                "probing.rebalance.interval.ms",
                &config.probing_rebalance_interval.as_millis().to_string(),
                "must be at least 1000",
            ));
        }
        if config.wasm_max_call < Duration::from_millis(10) {
            return Err(invalid(
                "wasm.max.call.ms",
                &config.wasm_max_call.as_millis().to_string(),
                "must be at least 10",
            ));
        }
        let mut config = config;
        for (key, value) in raw {
            if let Some(name) = key.strip_prefix("topics.") {
                config.topics.insert(name.to_string(), value);
            } else if let Some(property) = key.strip_prefix("kafka.") {
                config.kafka.insert(property.to_string(), value);
            } else if let Some(tag) = key.strip_prefix("client.tag.") {
                config.client_tags.insert(tag.to_string(), value);
            }
        }
        config.transaction_timeout = transactions::transaction_timeout(&config)?;
        Ok(config)
    }

    /// The topic a component-declared topic name maps to.
    pub fn topic<'a>(&'a self, declared: &'a str) -> &'a str {
        self.topics
            .get(declared)
            .map(String::as_str)
            .unwrap_or(declared)
    }

    /// `<state.dir>/<application.id>`.
    pub fn app_state_dir(&self) -> PathBuf {
        self.state_dir.join(&self.application_id)
    }
}

fn admin_token(token: Option<String>, file: Option<String>) -> Result<Option<String>, ConfigError> {
    let token = match (token, file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "admin.token.file",
                "",
                "give admin.token or admin.token.file, not both",
            ));
        }
        (Some(t), None) => t,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|e| invalid("admin.token.file", &path, &format!("cannot read it: {e}")))?
            .trim()
            .to_string(),
        (None, None) => return Ok(None),
    };
    if token.len() < 8 {
        return Err(invalid(
            "admin.token",
            "(hidden)",
            "use at least 8 characters",
        ));
    }
    Ok(Some(token))
}

/// TOML text to flattened `dotted.key -> value` strings.
pub fn parse_toml(text: &str) -> Result<BTreeMap<String, String>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    flatten("", &table, &mut out)?;
    Ok(out)
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let value = match v {
            toml::Value::Table(t) => {
                flatten(&key, t, out)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => return Err(format!("key `{key}`: unsupported value {other}")),
        };
        if out.insert(key.clone(), value).is_some() {
            return Err(format!("key `{key}` is given twice"));
        }
    }
    Ok(())
}

/// The environment variable that overrides `key`.
pub fn env_name(key: &str) -> String {
    let mut name = String::from("WEIR_");
    name.extend(key.chars().map(|c| match c {
        '.' | '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    name
}

fn apply_env(raw: &mut BTreeMap<String, String>, env: &BTreeMap<String, String>) {
    for (key, _, _) in KEYS {
        if let Some(v) = env.get(&env_name(key)) {
            raw.insert(key.to_string(), v.clone());
        }
    }
}

fn suggestion(key: &str) -> String {
    let lower = key.to_ascii_lowercase().replace('_', ".");
    let close = KEYS
        .iter()
        .map(|(k, _, _)| *k)
        .min_by_key(|k| edit_distance(k, &lower))
        .filter(|k| edit_distance(k, &lower) <= 3);
    match close {
        Some(k) => format!(" (did you mean `{k}`?)"),
        None => String::from(" (see `weir config-keys` for the list)"),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn invalid(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: format!("{value:?}"),
        reason: reason.to_string(),
    }
}

/// The default [`KEYS`] documents for `key`: the one table both the docs
/// and the parser read, so they cannot disagree. Keys without a plain
/// default ("(none)", "(required)") are not asked for.
fn documented_default(key: &str) -> &'static str {
    KEYS.iter()
        .find(|(k, _, _)| *k == key)
        .map_or("", |(_, default, _)| *default)
}

/// A whole number within `range`; where it is not set, the documented
/// default (see [`documented_default`]).
fn number<T>(
    value: Option<String>,
    key: &str,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let default = documented_default(key);
    let default = default.parse().map_err(|_| ConfigError::Invalid {
        key: key.to_string(),
        value: format!("{default:?}"),
        reason: "the documented default is not a number (a bug in Weir)".into(),
    })?;
    number_or(value, key, default, range)
}

/// A whole number within `range`, or `default` where it is not set.
fn number_or<T>(
    value: Option<String>,
    key: &str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(value) = value else {
        return Ok(default);
    };
    let parsed: T = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, &value, "expected a whole number"))?;
    if !range.contains(&parsed) {
        let reason = format!("must be between {} and {}", range.start(), range.end());
        return Err(invalid(key, &value, &reason));
    }
    Ok(parsed)
}

/// Names that become directory or topic name parts.
fn check_name(key: &str, value: &str) -> Result<(), ConfigError> {
    match crate::topology::name_problem(value) {
        None => Ok(()),
        Some(reason) => Err(invalid(key, value, reason)),
    }
}

fn local_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests;
