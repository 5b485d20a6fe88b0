//! Tests of loading and validating the configuration.

use super::*;

fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut raw = parse_toml(text).unwrap();
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    apply_env(&mut raw, &env);
    Config::from_map(raw, env.get("HOSTNAME").map(String::as_str))
}

const MINIMAL: &str = "application.id = \"wc\"\nbootstrap.servers = \"127.0.0.1:9092\"\n";

#[test]
fn dotted_and_quoted_keys_mean_the_same() {
    let quoted = "\"application.id\" = \"wc\"\n\"bootstrap.servers\" = \"b:1\"\n\"commit.interval.ms\" = 500\n";
    let c = load(quoted, &[]).unwrap();
    assert_eq!(c.application_id, "wc");
    assert_eq!(c.commit_interval, Duration::from_millis(500));
    let c = load(&format!("{MINIMAL}commit.interval.ms = \"250\"\n"), &[]).unwrap();
    assert_eq!(c.commit_interval, Duration::from_millis(250));
}

#[test]
fn client_id_defaults_from_hostname_and_env_overrides_file() {
    let c = load(MINIMAL, &[("HOSTNAME", "wc-0")]).unwrap();
    assert_eq!(c.client_id, "wc-wc-0");
    assert_eq!(c.group_instance_id, "wc-wc-0");
    let c = load(
        MINIMAL,
        &[("HOSTNAME", "wc-0"), ("WEIR_BOOTSTRAP_SERVERS", "k:9")],
    )
    .unwrap();
    assert_eq!(c.bootstrap_servers, "k:9");
}

#[test]
fn exactly_once_changes_the_commit_default() {
    let c = load(
        &format!("{MINIMAL}processing.guarantee = \"exactly_once_v2\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(c.processing_guarantee, ProcessingGuarantee::ExactlyOnceV2);
    assert_eq!(c.commit_interval, Duration::from_millis(100));
    assert_eq!(
        load(MINIMAL, &[]).unwrap().commit_interval,
        Duration::from_secs(30)
    );
}

#[test]
fn transaction_timeout_outlives_a_commit_interval_and_a_call() {
    let eos = format!("{MINIMAL}processing.guarantee = \"exactly_once_v2\"\n");
    // Defaults: 100 ms interval + 10 s call + 10 s slack.
    let c = load(&eos, &[]).unwrap();
    assert_eq!(c.transaction_timeout, Duration::from_millis(20_100));
    // The README's 30 s interval no longer meets a 10 s timeout.
    let c = load(&format!("{eos}commit.interval.ms = 30000\n"), &[]).unwrap();
    assert_eq!(c.transaction_timeout, Duration::from_secs(50));
    let c = load(
        &format!("{eos}commit.interval.ms = 30000\nkafka.\"transaction.timeout.ms\" = 60000\n"),
        &[],
    )
    .unwrap();
    assert_eq!(c.transaction_timeout, Duration::from_secs(60));
}

#[test]
fn inconsistent_transaction_settings_are_refused_at_start() {
    let eos = format!("{MINIMAL}processing.guarantee = \"exactly_once_v2\"\n");
    let err = load(
        &format!("{eos}commit.interval.ms = 20000\nkafka.\"transaction.timeout.ms\" = 10000\n"),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("kafka.transaction.timeout.ms"), "{err}");
    assert!(err.contains("commit.interval.ms (20000)"), "{err}");
    let err = load(
        &format!("{eos}kafka.\"message.timeout.ms\" = 300000\n"),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("kafka.message.timeout.ms"), "{err}");
    assert!(err.contains("20100 ms"), "{err}");
    let err = load(&format!("{eos}commit.interval.ms = 1000000\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("transaction.max.timeout.ms"), "{err}");
    // At-least-once has no transactions: nothing to refuse.
    load(
        &format!("{MINIMAL}commit.interval.ms = 1000000\nkafka.\"transaction.timeout.ms\" = 1\n"),
        &[],
    )
    .unwrap();
}

#[test]
fn unknown_keys_are_named_with_a_suggestion() {
    let err = load(&format!("{MINIMAL}commit.intervall.ms = 5\n"), &[]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("`commit.intervall.ms`"), "{msg}");
    assert!(msg.contains("did you mean `commit.interval.ms`"), "{msg}");
}

#[test]
fn bad_values_name_key_and_reason() {
    let err = load(&format!("{MINIMAL}num.stream.threads = \"four\"\n"), &[]).unwrap_err();
    assert!(err.to_string().contains("`num.stream.threads`"), "{err}");
    let err = load(
        &format!("{MINIMAL}processing.guarantee = \"exactly_once\"\n"),
        &[],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("expected at_least_once or exactly_once_v2"),
        "{err}"
    );
    let err = load("bootstrap.servers = \"b:1\"\n", &[]).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Missing {
                key: "application.id"
            }
        ),
        "{err}"
    );
    let err = load(
        "application.id = \"../x\"\nbootstrap.servers = \"b:1\"\n",
        &[],
    )
    .unwrap_err();
    assert!(err.to_string().contains("application.id"), "{err}");
}

#[test]
fn topic_renames_and_client_properties_pass_through() {
    let text = format!(
        "{MINIMAL}[topics]\n\"text-lines\" = \"wc-in\"\n[kafka]\n\"fetch.min.bytes\" = 1\n"
    );
    let c = load(&text, &[]).unwrap();
    assert_eq!(c.topic("text-lines"), "wc-in");
    assert_eq!(c.topic("other"), "other");
    assert_eq!(
        c.kafka.get("fetch.min.bytes").map(String::as_str),
        Some("1")
    );
}

#[test]
fn env_names_follow_the_key() {
    assert_eq!(env_name("bootstrap.servers"), "WEIR_BOOTSTRAP_SERVERS");
    assert_eq!(env_name("wasm.max.call.ms"), "WEIR_WASM_MAX_CALL_MS");
}

#[test]
fn standby_and_warm_up_settings_follow_kafka_streams() {
    let c = load(MINIMAL, &[]).unwrap();
    assert_eq!(c.num_standby_replicas, 0);
    assert_eq!(c.acceptable_recovery_lag, 10_000);
    assert_eq!(c.max_warmup_replicas, 2);
    assert_eq!(c.probing_rebalance_interval, Duration::from_secs(600));
    let c = load(
        &format!("{MINIMAL}num.standby.replicas = 1\nacceptable.recovery.lag = 50\nprobing.rebalance.interval.ms = 5000\n"),
        &[],
    )
    .unwrap();
    assert_eq!(c.num_standby_replicas, 1);
    assert_eq!(c.acceptable_recovery_lag, 50);
    assert_eq!(c.probing_rebalance_interval, Duration::from_secs(5));
    let err = load(
        &format!("{MINIMAL}probing.rebalance.interval.ms = 10\n"),
        &[],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("`probing.rebalance.interval.ms`"),
        "{err}"
    );
    let c = load(
        &format!(
            "{MINIMAL}rack.aware.assignment.tags = \"zone, rack\"\nclient.tag.zone = \"eu-1a\"\n"
        ),
        &[],
    )
    .unwrap();
    assert_eq!(c.rack_aware_assignment_tags, ["zone", "rack"]);
    assert_eq!(c.client_tags["zone"], "eu-1a");
    let c = load(
        &format!("{MINIMAL}processing.exception.handler = \"continue\"\nerrors.dead.letter.queue.topic.name = \"dlq\"\n"),
        &[],
    )
    .unwrap();
    assert!(c.continue_on_processing_error);
    assert_eq!(c.dead_letter_queue.as_deref(), Some("dlq"));
    let err = load(
        &format!("{MINIMAL}processing.exception.handler = \"ignore\"\n"),
        &[],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("expected fail or continue"),
        "{err}"
    );
    let err = load(&format!("{MINIMAL}max.warmup.replicas = 0\n"), &[]).unwrap_err();
    assert!(err.to_string().contains("`max.warmup.replicas`"), "{err}");
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = load(MINIMAL, &[]).unwrap();
    // The runtime's own defaults (used by the offline driver) agree with
    // the table the docs and the parser read.
    assert_eq!(
        c.wasm_max_memory_bytes,
        crate::runtime::DEFAULT_MAX_MEMORY_BYTES
    );
    assert_eq!(c.wasm_max_call, crate::runtime::DEFAULT_MAX_CALL);
    assert_eq!(
        c.wasm_max_call_bytes,
        crate::runtime::DEFAULT_MAX_CALL_BYTES
    );
    assert_eq!(c.wasm_max_handles, crate::runtime::DEFAULT_MAX_HANDLES);
    assert_eq!(c.wasm_max_schedules, crate::runtime::DEFAULT_MAX_SCHEDULES);
    assert_eq!(c.state_dir, std::path::PathBuf::from("/tmp/weir"));
    assert_eq!(c.max_poll_records, 1000);
    assert_eq!(c.statestore_cache_max_bytes, 10 << 20);
    assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(c.probing_rebalance_interval, Duration::from_secs(600));
    assert_eq!(c.deploy_canary_records, 1000);
    assert!(c.deploy_auto_rollback);
    assert!(!c.continue_on_processing_error);
    assert_eq!(c.commit_interval, Duration::from_secs(30));
}
