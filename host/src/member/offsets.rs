//! Committing and fetching the group's offsets, on a connection of their
//! own to the coordinator.
//!
//! Owns the offsets connection (found and opened on first use, dropped on
//! any error) and the retry of transient failures within the request
//! timeout. A commit carries the generation and member id it is made for,
//! so the coordinator refuses it once the group has moved on: that refusal
//! comes back as a [`Recovery::Rejoin`] error, never retried here.
//!
//! Must never touch the membership connection or the member state: a
//! JoinGroup parked for minutes on that connection never delays a commit,
//! and a commit never changes the membership.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use kafka_protocol::messages::{OffsetCommitRequest, OffsetFetchRequest};

use super::config::{Backoff, MembershipConfig};
use super::connection::Connection;
use super::coordinator::Discovery;
use super::error::{MembershipError, Recovery, codes};
use super::protocol::{self, MemberRef};
use super::types::{Generation, OffsetAndMetadata};

pub(crate) struct Offsets {
    config: Arc<MembershipConfig>,
    conn: Mutex<Option<Connection>>,
}

impl Offsets {
    pub(crate) fn new(config: Arc<MembershipConfig>) -> Self {
        Offsets {
            config,
            conn: Mutex::new(None),
        }
    }

    /// OffsetCommit of `(topic, partition, next offset and metadata)` for
    /// `generation` and `member_id`.
    pub(crate) fn commit(
        &self,
        generation: Generation,
        member_id: &str,
        offsets: &[(String, i32, OffsetAndMetadata)],
    ) -> Result<(), MembershipError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let group = self.config.group_id.as_str();
        let member = MemberRef {
            group_id: group,
            member_id,
            group_instance_id: self.config.group_instance_id.as_deref(),
            generation: generation.0,
        };
        self.with_retries(|conn| {
            let broker = conn.broker().to_string();
            let version = conn
                .version::<OffsetCommitRequest>(member.needs(7))
                .map_err(|e| e.in_group(group, &broker, "OffsetCommit"))?;
            let request = protocol::offset_commit(member, offsets, version);
            let response = conn
                .call(&request, version, self.config.request_timeout)
                .map_err(|e| e.in_group(group, &broker, "OffsetCommit"))?;
            match protocol::offset_commit_error(&response) {
                None => Ok(()),
                Some((code, topic, partition)) => Err(MembershipError::broker(
                    group,
                    &broker,
                    "OffsetCommit",
                    code,
                    Some(format!("{topic}-{partition} at generation {generation}")),
                )),
            }
        })
    }

    /// OffsetFetch: the committed next offset of each partition, `None`
    /// where nothing is committed.
    pub(crate) fn fetch(
        &self,
        partitions: &[(String, i32)],
    ) -> Result<BTreeMap<(String, i32), Option<i64>>, MembershipError> {
        Ok(self
            .fetch_committed(partitions)?
            .into_iter()
            .map(|(tp, committed)| (tp, committed.map(|c| c.offset)))
            .collect())
    }

    /// OffsetFetch with the committed metadata.
    pub(crate) fn fetch_committed(
        &self,
        partitions: &[(String, i32)],
    ) -> Result<BTreeMap<(String, i32), Option<OffsetAndMetadata>>, MembershipError> {
        let mut out: BTreeMap<(String, i32), Option<OffsetAndMetadata>> = partitions
            .iter()
            .map(|(t, p)| ((t.clone(), *p), None))
            .collect();
        if partitions.is_empty() {
            return Ok(out);
        }
        let group = self.config.group_id.as_str();
        let fetched = self.with_retries(|conn| {
            let broker = conn.broker().to_string();
            let version = conn
                .version::<OffsetFetchRequest>(0)
                .map_err(|e| e.in_group(group, &broker, "OffsetFetch"))?;
            let request = protocol::offset_fetch(group, partitions, version);
            let response = conn
                .call(&request, version, self.config.request_timeout)
                .map_err(|e| e.in_group(group, &broker, "OffsetFetch"))?;
            let fetched = protocol::fetched_offsets(&response, version).map_err(|code| {
                MembershipError::broker(group, &broker, "OffsetFetch", code, None)
            })?;
            // UNSTABLE_OFFSET_COMMIT (a transaction still pending) and
            // partition-level errors fail the whole fetch, with the
            // partition named.
            if let Some(f) = fetched.iter().find(|f| f.error_code != codes::NONE) {
                return Err(MembershipError::broker(
                    group,
                    &broker,
                    "OffsetFetch",
                    f.error_code,
                    Some(format!("{}-{}", f.topic, f.partition)),
                ));
            }
            Ok(fetched)
        })?;
        for f in fetched {
            if let Some(slot) = out.get_mut(&(f.topic, f.partition)) {
                *slot = (f.offset >= 0).then_some(OffsetAndMetadata {
                    offset: f.offset,
                    metadata: f.metadata,
                });
            }
        }
        Ok(out)
    }

    /// Runs `call` on the offsets connection, finding the coordinator
    /// again and retrying with backoff while the error is transient and the
    /// request timeout allows.
    fn with_retries<T>(
        &self,
        mut call: impl FnMut(&mut Connection) -> Result<T, MembershipError>,
    ) -> Result<T, MembershipError> {
        let deadline = Instant::now() + self.config.request_timeout;
        let mut backoff = Backoff::new(&self.config);
        loop {
            let result = {
                let mut slot = self.lock();
                match self.connected(&mut slot) {
                    Ok(conn) => {
                        let result = call(conn);
                        if let Err(e) = &result
                            && e.coordinator_lost()
                        {
                            *slot = None;
                        }
                        result
                    }
                    Err(e) => Err(e),
                }
            };
            match result {
                Ok(value) => return Ok(value),
                Err(error) if error.recovery() == Recovery::Retry => {
                    let wait = backoff.next();
                    if Instant::now() + wait >= deadline {
                        return Err(error);
                    }
                    tracing::debug!(group = %self.config.group_id, %error, ?wait,
                        "offsets call failed; retrying");
                    std::thread::sleep(wait);
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn connected<'a>(
        &self,
        slot: &'a mut Option<Connection>,
    ) -> Result<&'a mut Connection, MembershipError> {
        if slot.is_none() {
            let discovery = Discovery {
                bootstrap: &self.config.bootstrap_servers,
                group_id: &self.config.group_id,
                client_id: &self.config.client_id,
                request_timeout: self.config.request_timeout,
            };
            *slot = Some(discovery.connect()?);
        }
        slot.as_mut().ok_or_else(|| MembershipError::Closed {
            group: self.config.group_id.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Connection>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}
