//! The membership thread: the join / sync / heartbeat state machine on its
//! own coordinator connection.
//!
//! ```text
//!   Joining ──JoinGroup + SyncGroup ok──▶ Stable ──heartbeat every interval──┐
//!     ▲  ▲ MEMBER_ID_REQUIRED: join again       │ ▲                         │
//!     │  └──with the given id                   │ └─────────── ok ──────────┘
//!     └── REBALANCE_IN_PROGRESS (Rebalancing) ◀─┤
//!     └── ILLEGAL_GENERATION (Lost) ◀───────────┤
//!     └── UNKNOWN_MEMBER_ID (Lost, new id) ◀────┤
//!     └── request_rejoin (Rebalancing) ◀────────┘
//!   NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, I/O: drop the connection,
//!     back off, find the coordinator again, retry the same step.
//!   FENCED_INSTANCE_ID or another fatal error: Fatal event, thread ends.
//!   close: LeaveGroup if asked, thread ends.
//! ```
//!
//! Owns the membership connection, the member id and generation, and
//! publishes the current generation in [`Shared`] for the offsets path.
//! Heartbeats depend only on this thread, never on the caller, so a caller
//! blocked for seconds (a long Wasm call, a restore) keeps its session.
//!
//! Must never panic or exit on a transient error (each is logged and
//! retried with backoff), never call the caller's code except the
//! subscription provider and the leader assignor (both guarded against
//! panics), and never block on the event receiver.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use kafka_protocol::messages::{HeartbeatRequest, LeaveGroupRequest};

use super::config::{Backoff, MembershipConfig};
use super::connection::Connection;
use super::coordinator::Discovery;
use super::error::{MembershipError, Recovery, codes, recovery_of_code};
use super::protocol::{self, MemberRef};
use super::types::{Generation, LeaderAssignor, MembershipEvent, SubscriptionProvider};

/// What the membership thread publishes for the handle and the offsets
/// path.
#[derive(Default)]
pub(crate) struct Shared {
    /// The generation and member id of the last `Assigned`, until it is
    /// lost or the thread ends.
    current: Mutex<Option<(Generation, String)>>,
    /// The socket of a JoinGroup or SyncGroup parked at the coordinator, so
    /// `close` can interrupt it.
    parked: Mutex<Option<TcpStream>>,
    closing: AtomicBool,
    stopped: AtomicBool,
}

impl Shared {
    pub(crate) fn current(&self) -> Option<(Generation, String)> {
        lock(&self.current).clone()
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Marks the membership closing and wakes a parked call.
    pub(crate) fn interrupt(&self) {
        self.closing.store(true, Ordering::SeqCst);
        if let Some(socket) = lock(&self.parked).as_ref() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    pub(super) fn set_current(&self, current: Option<(Generation, String)>) {
        *lock(&self.current) = current;
    }
}

/// A poisoned lock only means another thread panicked while holding it; the
/// data (an Option) is still consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Requests from the handle.
pub(crate) enum Command {
    Rejoin { reason: String },
    Close { leave: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Joining,
    Stable,
}

/// What a step asks the loop to do next.
pub(super) enum Flow {
    Continue,
    Close { leave: bool },
}

pub(crate) struct Worker {
    pub(super) config: Arc<MembershipConfig>,
    pub(super) subscription: Arc<dyn SubscriptionProvider>,
    pub(super) assignor: Arc<dyn LeaderAssignor>,
    pub(super) events: Sender<MembershipEvent>,
    pub(super) commands: Receiver<Command>,
    pub(super) shared: Arc<Shared>,
    pub(super) conn: Option<Connection>,
    pub(super) member_id: String,
    pub(super) generation: i32,
    pub(super) phase: Phase,
    /// An `Assigned` was sent and not lost since.
    pub(super) holds_assignment: bool,
    /// `Rebalancing` was sent for the round in progress.
    pub(super) announced: bool,
    pub(super) rejoin_reason: String,
    pub(super) next_heartbeat: Instant,
    pub(super) backoff: Backoff,
}

impl Worker {
    pub(crate) fn new(
        config: Arc<MembershipConfig>,
        subscription: Arc<dyn SubscriptionProvider>,
        assignor: Arc<dyn LeaderAssignor>,
        events: Sender<MembershipEvent>,
        commands: Receiver<Command>,
        shared: Arc<Shared>,
    ) -> Self {
        let backoff = Backoff::new(&config);
        Worker {
            config,
            subscription,
            assignor,
            events,
            commands,
            shared,
            conn: None,
            member_id: String::new(),
            generation: -1,
            phase: Phase::Joining,
            holds_assignment: false,
            announced: false,
            rejoin_reason: "initial join".to_string(),
            next_heartbeat: Instant::now(),
            backoff,
        }
    }

    pub(super) fn group(&self) -> &str {
        &self.config.group_id
    }

    /// The thread body: runs until close or a fatal error.
    pub(crate) fn run(mut self) {
        let leave = loop {
            if let Some(Flow::Close { leave }) = self.take_commands() {
                break leave;
            }
            let step = match self.phase {
                Phase::Joining => self.join(),
                Phase::Stable => self.heartbeat_when_due(),
            };
            match step {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close { leave }) => break leave,
                Err(error) => {
                    if self.shared.closing.load(Ordering::SeqCst) {
                        // A parked call interrupted by close: its socket is
                        // shut, a LeaveGroup needs a fresh one.
                        self.conn = None;
                        break self.close_request().unwrap_or(false);
                    }
                    if error.recovery() == Recovery::Fatal {
                        self.fail(error);
                        return;
                    }
                    if error.coordinator_lost() {
                        self.conn = None;
                    }
                    let wait = self.backoff.next_at();
                    tracing::warn!(group = %self.group(), member = %self.member_id,
                        generation = self.generation, phase = ?self.phase, %error,
                        "group membership call failed; retrying");
                    if let Some(Flow::Close { leave }) = self.wait_until(wait) {
                        break leave;
                    }
                }
            }
        };
        self.finish(leave);
    }

    // ---- commands and waiting -------------------------------------------------

    fn take_commands(&mut self) -> Option<Flow> {
        loop {
            match self.commands.try_recv() {
                Ok(command) => {
                    if let Some(flow) = self.on_command(command) {
                        return Some(flow);
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => return None,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    return Some(Flow::Close {
                        leave: self.config.group_instance_id.is_none(),
                    });
                }
            }
        }
    }

    /// Waits until `until` or a command; `Some` when the loop must stop, and
    /// returns early (with `None`) when a rejoin request ended the stable
    /// phase. A rejoin requested while joining (or backing off) changes
    /// nothing, so it does not cut a backoff short.
    fn wait_until(&mut self, until: Instant) -> Option<Flow> {
        loop {
            let now = Instant::now();
            if now >= until {
                return None;
            }
            match self.commands.recv_timeout(until - now) {
                Ok(command) => {
                    let before = self.phase;
                    if let Some(flow) = self.on_command(command) {
                        return Some(flow);
                    }
                    if self.phase != before {
                        return None;
                    }
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    return Some(Flow::Close {
                        leave: self.config.group_instance_id.is_none(),
                    });
                }
            }
        }
    }

    fn on_command(&mut self, command: Command) -> Option<Flow> {
        match command {
            Command::Close { leave } => Some(Flow::Close { leave }),
            Command::Rejoin { reason } => {
                if self.phase == Phase::Stable {
                    self.announce(&format!("rejoin requested: {reason}"));
                    self.rejoin_reason = reason;
                    self.phase = Phase::Joining;
                }
                None
            }
        }
    }

    /// The `leave` of a pending close command, if any.
    fn close_request(&mut self) -> Option<bool> {
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Close { leave } = command {
                return Some(leave);
            }
        }
        None
    }

    // ---- events -----------------------------------------------------------------

    pub(super) fn emit(&self, event: MembershipEvent) {
        // A dropped receiver only means nobody listens any more.
        let _ = self.events.send(event);
    }

    /// Sends `Rebalancing` once per round, while holding an assignment.
    pub(super) fn announce(&mut self, reason: &str) {
        tracing::info!(group = %self.group(), member = %self.member_id,
            generation = self.generation, reason, "rebalancing");
        if self.holds_assignment && !self.announced {
            self.announced = true;
            self.emit(MembershipEvent::Rebalancing {
                generation: Generation(self.generation),
                reason: reason.to_string(),
            });
        }
    }

    /// The assignment is no longer ours: sends `Lost` if one was held and
    /// forgets the generation.
    pub(super) fn lose(&mut self, reason: &str) {
        tracing::warn!(group = %self.group(), member = %self.member_id,
            generation = self.generation, reason, "assignment lost; rejoining");
        if self.holds_assignment {
            self.emit(MembershipEvent::Lost {
                generation: Generation(self.generation),
                reason: reason.to_string(),
            });
        }
        self.holds_assignment = false;
        self.announced = false;
        self.generation = -1;
        self.shared.set_current(None);
        self.rejoin_reason = reason.to_string();
        self.phase = Phase::Joining;
    }

    fn fail(&mut self, error: MembershipError) {
        tracing::error!(group = %self.group(), member = %self.member_id,
            generation = self.generation, %error, "group membership failed");
        self.shared.set_current(None);
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.emit(MembershipEvent::Fatal { error });
    }

    // ---- connection ---------------------------------------------------------------

    pub(super) fn connection(&mut self) -> Result<&mut Connection, MembershipError> {
        if self.conn.is_none() {
            let discovery = Discovery {
                bootstrap: &self.config.bootstrap_servers,
                group_id: &self.config.group_id,
                client_id: &self.config.client_id,
                request_timeout: self.config.request_timeout,
            };
            self.conn = Some(discovery.connect()?);
        }
        self.conn.as_mut().ok_or_else(|| MembershipError::Closed {
            group: self.config.group_id.clone(),
        })
    }

    pub(super) fn member(&self) -> MemberRef<'_> {
        MemberRef {
            group_id: &self.config.group_id,
            member_id: &self.member_id,
            group_instance_id: self.config.group_instance_id.as_deref(),
            generation: self.generation,
        }
    }

    /// Runs a JoinGroup or SyncGroup that the coordinator may park, with its
    /// socket published so `close` can interrupt it.
    pub(super) fn parked_call<A: super::connection::Api>(
        &mut self,
        request: &A,
        version: i16,
    ) -> Result<A::Response, MembershipError> {
        let timeout = self.config.rebalance_call_timeout();
        let (group, shared) = (self.config.group_id.clone(), self.shared.clone());
        let conn = self.connection()?;
        let broker = conn.broker().to_string();
        *lock(&shared.parked) = conn.interrupter();
        let result = if shared.closing.load(Ordering::SeqCst) {
            Err(super::error::CallError::Io(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "membership closing",
            )))
        } else {
            conn.call(request, version, timeout)
        };
        *lock(&shared.parked) = None;
        result.map_err(|e| e.in_group(&group, &broker, A::NAME))
    }

    pub(super) fn coordinator(&self) -> String {
        self.conn
            .as_ref()
            .map(|c| c.broker().to_string())
            .unwrap_or_else(|| "(none)".to_string())
    }

    // ---- heartbeat ----------------------------------------------------------------

    fn heartbeat_when_due(&mut self) -> Result<Flow, MembershipError> {
        if let Some(flow) = self.wait_until(self.next_heartbeat) {
            return Ok(flow);
        }
        if self.phase != Phase::Stable || Instant::now() < self.next_heartbeat {
            return Ok(Flow::Continue);
        }
        let (group, timeout) = (self.config.group_id.clone(), self.config.request_timeout);
        let needed = self.member().needs(3);
        let conn = self.connection()?;
        let broker = conn.broker().to_string();
        let version = conn
            .version::<HeartbeatRequest>(needed)
            .map_err(|e| e.in_group(&group, &broker, "Heartbeat"))?;
        let request = protocol::heartbeat(self.member(), version);
        let sent = Instant::now();
        let conn = self.connection()?;
        let response = conn
            .call(&request, version, timeout)
            .map_err(|e| e.in_group(&group, &broker, "Heartbeat"))?;
        match response.error_code {
            codes::NONE => {
                self.next_heartbeat = sent + self.config.heartbeat_interval;
                self.backoff.reset();
            }
            codes::REBALANCE_IN_PROGRESS => {
                self.announce("the coordinator started a rebalance");
                self.rejoin_reason = "the coordinator started a rebalance".to_string();
                self.phase = Phase::Joining;
            }
            codes::ILLEGAL_GENERATION => {
                self.lose(
                    "ILLEGAL_GENERATION in Heartbeat: the group moved on without this member",
                );
            }
            codes::UNKNOWN_MEMBER_ID => {
                self.lose("UNKNOWN_MEMBER_ID in Heartbeat: the coordinator dropped this member");
                self.member_id.clear();
            }
            code => {
                if recovery_of_code(code) == Recovery::Rejoin {
                    self.phase = Phase::Joining;
                }
                return Err(MembershipError::broker(
                    &group,
                    &broker,
                    "Heartbeat",
                    code,
                    None,
                ));
            }
        }
        Ok(Flow::Continue)
    }

    // ---- close --------------------------------------------------------------------

    fn finish(mut self, leave: bool) {
        if leave
            && !self.member_id.is_empty()
            && let Err(error) = self.leave()
        {
            tracing::warn!(group = %self.group(), member = %self.member_id, %error,
                "LeaveGroup failed; the coordinator drops the member after its session timeout");
        }
        self.shared.set_current(None);
        self.shared.stopped.store(true, Ordering::SeqCst);
        tracing::info!(group = %self.group(), member = %self.member_id, leave, "membership closed");
    }

    fn leave(&mut self) -> Result<(), MembershipError> {
        let (group, timeout) = (self.config.group_id.clone(), self.config.request_timeout);
        let needed = self.member().needs(3);
        let conn = self.connection()?;
        let broker = conn.broker().to_string();
        let version = conn
            .version::<LeaveGroupRequest>(needed)
            .map_err(|e| e.in_group(&group, &broker, "LeaveGroup"))?;
        let request = protocol::leave_group(self.member(), "the member is closing", version);
        let conn = self.connection()?;
        let response = conn
            .call(&request, version, timeout)
            .map_err(|e| e.in_group(&group, &broker, "LeaveGroup"))?;
        match protocol::leave_group_error(&response) {
            codes::NONE => {
                tracing::info!(group = %group, member = %self.member_id, "left the group");
                Ok(())
            }
            // Already gone: nothing to leave.
            codes::UNKNOWN_MEMBER_ID => Ok(()),
            code => Err(MembershipError::broker(
                &group,
                &broker,
                "LeaveGroup",
                code,
                None,
            )),
        }
    }
}
