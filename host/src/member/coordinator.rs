//! Finding the group coordinator and opening a connection to it.
//!
//! Owns FindCoordinator: asks the bootstrap servers in turn which broker
//! coordinates the group, then connects to that broker (ApiVersions
//! included). Both the membership thread and the offsets path use it, each
//! for its own connection.
//!
//! Must never retry or sleep: a failure is returned with its group and
//! broker context, and the caller decides on backoff.

use std::time::Duration;

use kafka_protocol::messages::FindCoordinatorRequest;

use super::connection::Connection;
use super::error::MembershipError;
use super::protocol;

/// Where to look and who is asking.
pub(crate) struct Discovery<'a> {
    pub bootstrap: &'a [String],
    pub group_id: &'a str,
    pub client_id: &'a str,
    pub request_timeout: Duration,
}

impl Discovery<'_> {
    /// The coordinator's `host:port`, from the first bootstrap server that
    /// knows it.
    pub(crate) fn find(&self) -> Result<String, MembershipError> {
        let mut failures = Vec::new();
        let mut last_broker_error = None;
        for server in self.bootstrap {
            match self.ask(server) {
                Ok(address) => return Ok(address),
                Err(e @ MembershipError::Broker { .. }) => {
                    failures.push(format!("{server}: {e}"));
                    last_broker_error = Some(e);
                }
                Err(e @ MembershipError::UnsupportedVersion { .. }) => return Err(e),
                Err(e) => failures.push(format!("{server}: {e}")),
            }
        }
        // A broker's own answer (COORDINATOR_NOT_AVAILABLE while the offsets
        // topic is created, an authorization error) says more than "none
        // answered".
        if let Some(e) = last_broker_error {
            return Err(e);
        }
        Err(MembershipError::NoCoordinator {
            group: self.group_id.to_string(),
            bootstrap: self.bootstrap.join(","),
            detail: if failures.is_empty() {
                "no bootstrap servers configured".to_string()
            } else {
                failures.join("; ")
            },
        })
    }

    fn ask(&self, server: &str) -> Result<String, MembershipError> {
        let api = "FindCoordinator";
        let mut conn = Connection::open(server, self.client_id, self.request_timeout)
            .map_err(|e| e.in_group(self.group_id, server, "ApiVersions"))?;
        let version = conn
            .version::<FindCoordinatorRequest>(0)
            .map_err(|e| e.in_group(self.group_id, server, api))?;
        let request = protocol::find_coordinator(self.group_id, version);
        let response = conn
            .call(&request, version, self.request_timeout)
            .map_err(|e| e.in_group(self.group_id, server, api))?;
        protocol::coordinator_of(&response, self.group_id, version).map_err(|(code, message)| {
            MembershipError::broker(self.group_id, server, api, code, message)
        })
    }

    /// Finds the coordinator and connects to it.
    pub(crate) fn connect(&self) -> Result<Connection, MembershipError> {
        let address = self.find()?;
        let conn = Connection::open(&address, self.client_id, self.request_timeout)
            .map_err(|e| e.in_group(self.group_id, &address, "ApiVersions"))?;
        tracing::debug!(group = self.group_id, coordinator = %address, "connected to the group coordinator");
        Ok(conn)
    }
}
