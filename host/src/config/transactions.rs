//! The exactly-once transaction timeout: derived from the commit interval
//! and the call deadline, and explicit settings that cannot hold refused at
//! start. Reads only a validated [`Config`]; never talks to Kafka.

use std::time::Duration;

use super::{Config, ConfigError, ProcessingGuarantee, invalid};

/// Slack on top of one commit interval and one processor call for the
/// commit itself (flush, offsets, EndTxn) and a restore or swap step.
const TRANSACTION_SLACK: Duration = Duration::from_secs(10);
/// Kafka's default; the broker refuses a longer transaction timeout
/// (`transaction.max.timeout.ms`) unless its operator raised it.
const BROKER_MAX_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(900);

/// `transaction.timeout.ms` for exactly-once. A transaction stays open for
/// a whole commit interval plus at most one processor call before the
/// commit; if the coordinator times it out first, it aborts it and fences
/// the producer. So the default is derived from `commit.interval.ms` and
/// `wasm.max.call.ms`, and an explicit `kafka.transaction.timeout.ms` (or
/// `kafka.message.timeout.ms`, which librdkafka requires to be no longer)
/// that cannot hold is refused here rather than failing after a while.
pub(super) fn transaction_timeout(config: &Config) -> Result<Duration, ConfigError> {
    let needed = config.commit_interval + config.wasm_max_call;
    let explicit = match config.kafka.get("transaction.timeout.ms") {
        None => None,
        Some(v) => Some(Duration::from_millis(v.trim().parse().map_err(|_| {
            invalid("kafka.transaction.timeout.ms", v, "expected a whole number")
        })?)),
    };
    if config.processing_guarantee != ProcessingGuarantee::ExactlyOnceV2 {
        return Ok(explicit.unwrap_or(Duration::from_secs(60)));
    }
    let timeout = match explicit {
        Some(t) if t <= needed => {
            return Err(invalid(
                "kafka.transaction.timeout.ms",
                &t.as_millis().to_string(),
                &format!(
                    "under exactly_once_v2 it must exceed commit.interval.ms ({}) + \
                     wasm.max.call.ms ({}), or the broker aborts open transactions and \
                     fences the producer; raise it or lower commit.interval.ms",
                    config.commit_interval.as_millis(),
                    config.wasm_max_call.as_millis()
                ),
            ));
        }
        Some(t) => t,
        None => {
            let derived = (needed + TRANSACTION_SLACK).max(Duration::from_secs(10));
            if derived > BROKER_MAX_TRANSACTION_TIMEOUT {
                return Err(invalid(
                    "commit.interval.ms",
                    &config.commit_interval.as_millis().to_string(),
                    &format!(
                        "under exactly_once_v2 a transaction must outlive commit.interval.ms + \
                         wasm.max.call.ms + 10 s = {} ms, above Kafka's default \
                         transaction.max.timeout.ms (900000); lower it, or set \
                         kafka.transaction.timeout.ms if your brokers allow longer",
                        derived.as_millis()
                    ),
                ));
            }
            derived
        }
    };
    if let Some(v) = config.kafka.get("message.timeout.ms") {
        let message_timeout = v
            .trim()
            .parse::<u64>()
            .map_err(|_| invalid("kafka.message.timeout.ms", v, "expected a whole number"))?;
        if Duration::from_millis(message_timeout) > timeout {
            return Err(invalid(
                "kafka.message.timeout.ms",
                v,
                &format!(
                    "under exactly_once_v2 it must not exceed the transaction timeout ({} ms)",
                    timeout.as_millis()
                ),
            ));
        }
    }
    Ok(timeout)
}
