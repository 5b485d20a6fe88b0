//! Waiting for a producer's delivery reports: a commit's flush, and the
//! short wait of a producer whose queue is full. Owns no producer; it must
//! never poll one from a thread other than its owner's.
//!
//! rust-rdkafka's `BaseProducer::poll` runs its whole timeout, and one
//! under a millisecond becomes librdkafka's non-blocking poll, so waiting
//! with it spins: in a word-count profile the commit's flush spent 2% of
//! the process's CPU reading the clock, on cores the broker threads it
//! waits for also need. A flush here sleeps on a pipe that librdkafka
//! writes to when a report arrives on the empty report queue
//! (`rd_kafka_queue_io_event_enable`), and serves reports only then.

use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

/// How long one wait lasts in [`serve_delivery_reports`], and in [`flush`]
/// where no wake-up pipe could be made.
const SERVE_STEP: Duration = Duration::from_millis(1);

/// The longest sleep of [`flush`] between two looks at the record count,
/// should a wake-up never come (librdkafka writes one per empty-to-busy
/// change of the queue, and ignores a failed write).
const LONGEST_SLEEP_MS: i32 = 10;

/// Waits until every record `producer` sent is acknowledged and its
/// delivery report served, or `timeout` passes. Not rust-rdkafka's own
/// `flush`: that serves reports in 100 ms polls which always run their
/// full length, so every flush, and with it every commit, took at least
/// 100 ms (a processor swap paused processing ~104 ms, ~100 of them here).
///
/// librdkafka sends lingering records at once only while a call of its
/// `rd_kafka_flush` is under way, and with delivery reports as events (as
/// rust-rdkafka has them) that call only waits; serving the reports is
/// this thread's. So a helper thread holds one such call open for the
/// whole wait while this one serves the reports. With a zero-length call
/// per step instead, brokers woken after it returned waited out
/// `linger.ms` first: a commit's flush took 5–28 ms against 2–10 ms now
/// (a local broker under a steady input), most of a processor swap's
/// pause. The helper is a thread per flush, so once per commit.
pub fn flush<C: ProducerContext>(
    producer: &BaseProducer<C>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    if producer.in_flight_count() == 0 {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    let native = NativeProducer(producer.client().native_ptr());
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let wake = ReportWake::new(native.0);
    let done = wake.as_ref().map(|w| w.write);
    std::thread::scope(|s| {
        s.spawn(move || native.hold_flush(timeout_ms, done));
        while producer.in_flight_count() > 0 {
            if Instant::now() >= deadline {
                return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
            }
            match &wake {
                Some(wake) => {
                    wake.serve(producer);
                    if producer.in_flight_count() > 0 {
                        wake.sleep(deadline);
                    }
                }
                None => producer.poll(SERVE_STEP),
            }
        }
        // The helper's call returns as the count of records reaches zero.
        Ok(())
    })
}

/// Serves delivery reports for a moment: what a producer whose queue is
/// full waits on before sending again.
pub fn serve_delivery_reports<C: ProducerContext>(producer: &BaseProducer<C>) {
    producer.poll(SERVE_STEP);
}

/// A producer's librdkafka handle, for the helper thread of [`flush`].
struct NativeProducer(*mut rd::rd_kafka_t);

// SAFETY: librdkafka handles are thread-safe; `flush` keeps the producer
// alive until the helper thread using this has been joined.
unsafe impl Send for NativeProducer {}

impl NativeProducer {
    /// One `rd_kafka_flush` call: brokers send what lingers while it
    /// lasts; it returns when no record is left unreported, or at
    /// `timeout_ms`. Then it wakes the waiting thread through `done`: a
    /// producer that reports only failures enqueues nothing when its last
    /// record is acknowledged.
    fn hold_flush(self, timeout_ms: i32, done: Option<libc::c_int>) {
        // SAFETY: a live producer handle (see the `Send` impl); the call
        // only waits on the record count and wakes the broker threads.
        // `done` is the wake-up pipe, closed only after this thread is
        // joined.
        unsafe {
            rd::rd_kafka_flush(self.0, timeout_ms);
            if let Some(fd) = done {
                libc::write(fd, b"d".as_ptr().cast(), 1);
            }
        }
    }
}

/// A pipe librdkafka writes a byte to when a report arrives on the
/// producer's empty report queue, for as long as this lives, and the
/// flush's helper thread when its wait ends. Lives within one [`flush`],
/// so the producer outlives it.
struct ReportWake {
    queue: *mut rd::rd_kafka_queue_t,
    read: libc::c_int,
    write: libc::c_int,
}

impl ReportWake {
    /// `None` if the pipe cannot be made (out of file handles): the flush
    /// then polls as before.
    fn new(producer: *mut rd::rd_kafka_t) -> Option<Self> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills `fds` on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "no pipe for delivery-report wake-ups; the flush polls"
            );
            return None;
        }
        // SAFETY: a live producer handle; the queue reference returned is
        // released in `drop`. librdkafka copies the payload.
        let queue = unsafe {
            let queue = rd::rd_kafka_queue_get_main(producer);
            rd::rd_kafka_queue_io_event_enable(queue, fds[1], b"w".as_ptr().cast(), 1);
            queue
        };
        Some(ReportWake {
            queue,
            read: fds[0],
            write: fds[1],
        })
    }

    /// Serves every report waiting. Only a queue left empty is written to
    /// on its next report, so [`ReportWake::sleep`] must follow this.
    fn serve<C: ProducerContext>(&self, producer: &BaseProducer<C>) {
        let mut buf = [0u8; 64];
        // SAFETY: our own non-blocking pipe; reading only drains it.
        while unsafe { libc::read(self.read, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        // SAFETY: the queue reference taken in `new`, still held.
        while unsafe { rd::rd_kafka_queue_length(self.queue) } > 0 {
            producer.poll(Duration::ZERO);
        }
    }

    /// Sleeps until a report arrives, `deadline`, or at most
    /// [`LONGEST_SLEEP_MS`].
    fn sleep(&self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_millis() + 1)
            .unwrap_or(i32::MAX)
            .min(LONGEST_SLEEP_MS);
        let mut fd = libc::pollfd {
            fd: self.read,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for our own pipe.
        unsafe { libc::poll(&mut fd, 1, ms) };
    }
}

impl Drop for ReportWake {
    fn drop(&mut self) {
        // SAFETY: turning the event off before closing the pipe, so
        // librdkafka never writes to a closed (or reused) descriptor; the
        // queue reference is the one taken in `new`.
        unsafe {
            rd::rd_kafka_queue_io_event_enable(self.queue, -1, std::ptr::null(), 0);
            rd::rd_kafka_queue_destroy(self.queue);
            libc::close(self.read);
            libc::close(self.write);
        }
    }
}
