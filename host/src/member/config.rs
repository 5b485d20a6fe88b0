//! The membership client's settings, their Kafka defaults and validation,
//! and the retry backoff they define.
//!
//! Must never read the environment or files: the host's `config` module
//! maps its own settings onto [`MembershipConfig`].

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::error::MembershipError;

/// Settings of one membership (one process in one group).
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// `host:port` of brokers to ask for the coordinator.
    pub bootstrap_servers: Vec<String>,
    /// The group (Weir's `application.id`).
    pub group_id: String,
    /// Sent in every request header; shows in broker logs and tools.
    /// Default `weir`.
    pub client_id: String,
    /// `group.instance.id`: set for static membership (needs JoinGroup v5,
    /// Kafka 2.3+). Default none (dynamic).
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms`: the coordinator drops a member it has not
    /// heard from for this long. Default 45 s; the broker accepts
    /// `group.min.session.timeout.ms` (6 s) to
    /// `group.max.session.timeout.ms` (30 min).
    pub session_timeout: Duration,
    /// The rebalance timeout (`max.poll.interval.ms`): how long the
    /// coordinator waits for every member to rejoin. Default 300 s.
    pub rebalance_timeout: Duration,
    /// `heartbeat.interval.ms`. Default 3 s; must be below the session
    /// timeout (a third of it or less is usual).
    pub heartbeat_interval: Duration,
    /// `request.timeout.ms` for every call except JoinGroup and SyncGroup
    /// (which wait up to the rebalance timeout plus 5 s), and the budget
    /// within which commits and fetches retry transient errors. Default 30 s.
    pub request_timeout: Duration,
    /// `retry.backoff.ms`: first wait after a transient error. Default
    /// 100 ms; doubles per failure up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`. Default 1 s.
    pub retry_backoff_max: Duration,
    /// The group's protocol type. Default `consumer`, so Kafka's tools can
    /// describe the group.
    pub protocol_type: String,
    /// The one protocol this member offers. Default `weir-v1`.
    pub protocol_name: String,
}

impl MembershipConfig {
    /// Kafka's defaults for `group_id`, with `bootstrap_servers` a
    /// comma-separated list.
    pub fn new(bootstrap_servers: &str, group_id: &str) -> Self {
        MembershipConfig {
            bootstrap_servers: bootstrap_servers
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            group_id: group_id.to_string(),
            client_id: "weir".to_string(),
            group_instance_id: None,
            session_timeout: Duration::from_millis(45_000),
            rebalance_timeout: Duration::from_millis(300_000),
            heartbeat_interval: Duration::from_millis(3_000),
            request_timeout: Duration::from_millis(30_000),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1_000),
            protocol_type: "consumer".to_string(),
            protocol_name: "weir-v1".to_string(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), MembershipError> {
        let fail = |detail: String| {
            Err(MembershipError::Config {
                group: self.group_id.clone(),
                detail,
            })
        };
        if self.group_id.is_empty() {
            return fail("the group id is empty".to_string());
        }
        if self.bootstrap_servers.is_empty() {
            return fail("no bootstrap servers".to_string());
        }
        if self.group_instance_id.as_deref() == Some("") {
            return fail("group.instance.id is set but empty".to_string());
        }
        if self.protocol_type.is_empty() || self.protocol_name.is_empty() {
            return fail("protocol type and name must not be empty".to_string());
        }
        for (name, d) in [
            ("session timeout", self.session_timeout),
            ("rebalance timeout", self.rebalance_timeout),
            ("heartbeat interval", self.heartbeat_interval),
            ("request timeout", self.request_timeout),
        ] {
            if d.is_zero() || d.as_millis() > i32::MAX as u128 {
                return fail(format!("{name} {d:?} is out of range"));
            }
        }
        if self.heartbeat_interval >= self.session_timeout {
            return fail(format!(
                "heartbeat interval {:?} must be below the session timeout {:?}",
                self.heartbeat_interval, self.session_timeout
            ));
        }
        Ok(())
    }

    pub(crate) fn session_timeout_ms(&self) -> i32 {
        self.session_timeout.as_millis() as i32
    }

    pub(crate) fn rebalance_timeout_ms(&self) -> i32 {
        self.rebalance_timeout.as_millis() as i32
    }

    /// How long a JoinGroup or SyncGroup may be parked at the coordinator.
    pub(crate) fn rebalance_call_timeout(&self) -> Duration {
        self.rebalance_timeout.max(self.request_timeout) + Duration::from_secs(5)
    }
}

/// Exponential backoff with ±20 % jitter: `retry_backoff`, doubling up to
/// `retry_backoff_max`, reset after a success.
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
    seed: u64,
}

impl Backoff {
    pub(crate) fn new(config: &MembershipConfig) -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15)
            | 1;
        Backoff {
            base: config.retry_backoff,
            max: config.retry_backoff_max.max(config.retry_backoff),
            failures: 0,
            seed,
        }
    }

    /// The wait before the next attempt, counting one more failure.
    pub(crate) fn next(&mut self) -> Duration {
        let exp = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        let wait = self.base.saturating_mul(1 << exp).min(self.max);
        // xorshift64 for jitter: no dependency, no shared state.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let factor = 0.8 + (self.seed % 1000) as f64 / 2500.0;
        wait.mul_f64(factor)
    }

    /// The instant the next attempt may start.
    pub(crate) fn next_at(&mut self) -> Instant {
        Instant::now() + self.next()
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas_and_valid() {
        let c = MembershipConfig::new("a:1, b:2", "g");
        assert_eq!(c.bootstrap_servers, vec!["a:1", "b:2"]);
        assert_eq!(c.session_timeout_ms(), 45_000);
        assert_eq!(c.rebalance_timeout_ms(), 300_000);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(3));
        assert_eq!(
            (c.protocol_type.as_str(), c.protocol_name.as_str()),
            ("consumer", "weir-v1")
        );
        c.validate().unwrap();
    }

    #[test]
    fn a_heartbeat_slower_than_the_session_is_refused() {
        let mut c = MembershipConfig::new("a:1", "g");
        c.heartbeat_interval = c.session_timeout;
        assert!(c.validate().unwrap_err().to_string().contains("heartbeat"));
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_resets() {
        let mut c = MembershipConfig::new("a:1", "g");
        c.retry_backoff = Duration::from_millis(100);
        c.retry_backoff_max = Duration::from_millis(1000);
        let mut b = Backoff::new(&c);
        let waits: Vec<_> = (0..8).map(|_| b.next().as_millis()).collect();
        assert!((80..=120).contains(&waits[0]), "{waits:?}");
        assert!((160..=240).contains(&waits[1]), "{waits:?}");
        assert!(
            waits[5..].iter().all(|w| (800..=1200).contains(w)),
            "{waits:?}"
        );
        b.reset();
        assert!(b.next() <= Duration::from_millis(120));
    }
}
