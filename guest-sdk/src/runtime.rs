//! Glue between the generated `Guest` exports and a [`Processor`]: keeps the
//! one processor value of this instance, turns errors into `processing-error`,
//! and reports panics to the host before the instance traps. At the end of
//! every call it writes the stores' buffered writes in one call per store
//! and returns the outputs, so a batch crosses the boundary a few times,
//! not a few times per record.
//!
//! Public only so that [`export_processor!`](crate::export_processor) can
//! reach it; not part of the SDK's API.

use std::cell::RefCell;
use std::sync::Mutex;
use std::sync::Once;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::Processor;
use crate::bindings::weir::streams::{context as wit_context, types as wit};
use crate::context::{Context, Record, ScheduleId};
use crate::contract;

/// The processor value of this instance. A component instance is entered by
/// one caller at a time, so the cell is never borrowed twice.
pub struct Slot<P>(RefCell<Option<P>>);

// SAFETY: WebAssembly component instances are single-threaded; the host never
// enters one instance from two threads, and `Slot` is not shared otherwise.
unsafe impl<P> Sync for Slot<P> {}

impl<P> Slot<P> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Slot(RefCell::new(None))
    }
}

/// Index in the current batch of the record being processed (-1: none), for
/// the panic hook to report.
static CURRENT: AtomicI64 = AtomicI64::new(-1);

/// The sinks and repartitions `describe()` declares, recorded at `init`
/// for [`Sink::open`](crate::Sink::open) to check names against.
static OUTPUTS: Mutex<Option<Vec<String>>> = Mutex::new(None);

pub(crate) fn declare_outputs(names: Vec<String>) {
    *OUTPUTS.lock().unwrap_or_else(|p| p.into_inner()) = Some(names);
}

/// The declared output at `index`.
#[cfg_attr(not(feature = "contract-0-2"), allow(dead_code))]
pub(crate) fn output_name(index: u32) -> Result<String, crate::Error> {
    let outputs = OUTPUTS.lock().unwrap_or_else(|p| p.into_inner());
    outputs
        .as_ref()
        .and_then(|declared| declared.get(index as usize).cloned())
        .ok_or_else(|| crate::Error::msg(format!("no output at index {index}")))
}

/// Where `name` is among the declared outputs (what the host is handed
/// for it); an error naming them if it is not one.
pub(crate) fn output_index(name: &str) -> Result<u32, crate::Error> {
    let outputs = OUTPUTS.lock().unwrap_or_else(|p| p.into_inner());
    let Some(declared) = outputs.as_ref() else {
        return Err(crate::Error::msg(format!(
            "output `{name}` used before init (outputs are known from init on)"
        )));
    };
    match declared.iter().position(|o| o == name) {
        Some(index) => Ok(index as u32),
        None => Err(crate::Error::msg(format!(
            "no sink or repartition `{name}` in describe() (declared: {})",
            declared.join(", ")
        ))),
    }
}

fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let index = CURRENT.load(Ordering::Relaxed);
            let index = u32::try_from(index).ok();
            wit_context::abort_reason(&format!("guest panicked: {info}"), index);
        }))
    });
}

/// A failed call's error. Nothing of the call stays behind in the guest:
/// the host drops its outputs, undoes its store writes and may run its
/// batch again without the failing record.
fn error(e: crate::Error, batch_index: Option<u32>) -> wit::ProcessingError {
    crate::store::discard_all();
    crate::cache::discard_call();
    wit::ProcessingError {
        message: e.message().to_string(),
        batch_index,
    }
}

fn uninitialised() -> wit::ProcessingError {
    wit::ProcessingError {
        message: "the host called the processor before init".to_string(),
        batch_index: None,
    }
}

/// What [`stateless!`](crate::stateless) processors run per record, with
/// their sink resolved at `init`.
pub fn forward_all<F, I>(
    ctx: &mut Context,
    sink: &crate::Sink<Vec<u8>, Vec<u8>>,
    record: Record,
    f: F,
) -> Result<(), crate::Error>
where
    F: FnOnce(Record) -> Result<I, crate::Error>,
    I: IntoIterator<Item = crate::Output>,
{
    for output in f(record)? {
        sink.send_output(ctx, output)?;
    }
    Ok(())
}

pub fn describe<P: Processor>() -> crate::topology::WitTopology {
    install_panic_hook();
    P::describe().into_wit()
}

/// What every handler call but `describe` and `close` returns.
pub type CallResult = Result<contract::Outputs, wit::ProcessingError>;

/// What a call hands back: its outputs once the record caches have let go
/// of what they no longer keep (everything, before a `commit`) and the
/// stores' buffered writes are written (a refused write fails the call).
fn finish(mut ctx: Context, commit: bool) -> CallResult {
    crate::cache::write_out_all(commit, &mut ctx.outputs).map_err(|e| error(e, None))?;
    crate::store::flush_all().map_err(|e| error(e.into(), None))?;
    contract::hand_over(ctx.outputs).map_err(|e| error(e, None))
}

pub fn init<P: Processor>(slot: &Slot<P>, task: wit::TaskInfo) -> CallResult {
    install_panic_hook();
    declare_outputs(P::describe().output_names());
    crate::store::set_closing(false);
    let mut ctx = Context::new(None);
    let processor = P::init(&task, &mut ctx).map_err(|e| error(e, None))?;
    *slot.0.borrow_mut() = Some(processor);
    finish(ctx, false)
}

pub fn process<P: Processor>(slot: &Slot<P>, batch: contract::Batch) -> CallResult {
    let mut guard = slot.0.borrow_mut();
    let processor = guard.as_mut().ok_or_else(uninitialised)?;
    let mut ctx = Context::new(None);
    for (i, record) in contract::records(batch).enumerate() {
        CURRENT.store(i as i64, Ordering::Relaxed);
        ctx.timestamp = Some(record.timestamp);
        ctx.headers.clone_from(&record.headers);
        processor
            .process(record, &mut ctx)
            .map_err(|e| error(e, Some(i as u32)))?;
    }
    CURRENT.store(-1, Ordering::Relaxed);
    finish(ctx, false)
}

pub fn punctuate<P: Processor>(
    slot: &Slot<P>,
    schedule: u32,
    kind: wit::PunctuationType,
    timestamp: i64,
) -> CallResult {
    let mut guard = slot.0.borrow_mut();
    let processor = guard.as_mut().ok_or_else(uninitialised)?;
    let mut ctx = Context::new(Some(timestamp));
    processor
        .punctuate(ScheduleId(schedule), kind, timestamp, &mut ctx)
        .map_err(|e| error(e, None))?;
    finish(ctx, false)
}

pub fn flush<P: Processor>(slot: &Slot<P>) -> CallResult {
    let mut guard = slot.0.borrow_mut();
    let processor = guard.as_mut().ok_or_else(uninitialised)?;
    let mut ctx = Context::new(None);
    processor.flush(&mut ctx).map_err(|e| error(e, None))?;
    finish(ctx, true)
}

pub fn close<P: Processor>(slot: &Slot<P>) {
    // Past the last commit: writes are refused as they are made.
    crate::store::set_closing(true);
    if let Some(mut processor) = slot.0.borrow_mut().take() {
        processor.close();
    }
}
