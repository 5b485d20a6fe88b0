//! Glue between the generated `Guest` exports and a [`Processor`]: keeps the
//! one processor value of this instance, turns errors into `processing-error`,
//! and reports panics to the host before the instance traps.
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

/// An error naming the declared outputs if `name` is not one of them.
pub(crate) fn check_output(name: &str) -> Result<(), crate::Error> {
    let outputs = OUTPUTS.lock().unwrap_or_else(|p| p.into_inner());
    match outputs.as_ref() {
        Some(declared) if !declared.iter().any(|o| o == name) => Err(crate::Error::msg(format!(
            "no sink or repartition `{name}` in describe() (declared: {})",
            declared.join(", ")
        ))),
        _ => Ok(()),
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

fn error(e: crate::Error, batch_index: Option<u32>) -> wit::ProcessingError {
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

/// What [`stateless!`](crate::stateless) processors run per record.
pub fn forward_all<F, I>(
    ctx: &mut Context,
    sink: &str,
    record: Record,
    f: F,
) -> Result<(), crate::Error>
where
    F: FnOnce(Record) -> Result<I, crate::Error>,
    I: IntoIterator<Item = crate::Output>,
{
    for output in f(record)? {
        ctx.forward(sink, output)?;
    }
    Ok(())
}

pub fn describe<P: Processor>() -> wit::Topology {
    install_panic_hook();
    P::describe().into_wit()
}

pub fn init<P: Processor>(slot: &Slot<P>, task: wit::TaskInfo) -> Result<(), wit::ProcessingError> {
    install_panic_hook();
    declare_outputs(P::describe().output_names());
    let mut ctx = Context {
        timestamp: None,
        headers: Vec::new(),
    };
    let processor = P::init(&task, &mut ctx).map_err(|e| error(e, None))?;
    *slot.0.borrow_mut() = Some(processor);
    Ok(())
}

pub fn process<P: Processor>(
    slot: &Slot<P>,
    batch: Vec<wit::IncomingRecord>,
) -> Result<(), wit::ProcessingError> {
    let mut guard = slot.0.borrow_mut();
    let processor = guard.as_mut().ok_or_else(uninitialised)?;
    let mut ctx = Context {
        timestamp: None,
        headers: Vec::new(),
    };
    for (i, record) in batch.into_iter().enumerate() {
        CURRENT.store(i as i64, Ordering::Relaxed);
        let record = Record::from_wit(record);
        ctx.timestamp = Some(record.timestamp);
        ctx.headers.clone_from(&record.headers);
        processor
            .process(record, &mut ctx)
            .map_err(|e| error(e, Some(i as u32)))?;
    }
    CURRENT.store(-1, Ordering::Relaxed);
    Ok(())
}

pub fn punctuate<P: Processor>(
    slot: &Slot<P>,
    schedule: u32,
    kind: wit::PunctuationType,
    timestamp: i64,
) -> Result<(), wit::ProcessingError> {
    let mut guard = slot.0.borrow_mut();
    let processor = guard.as_mut().ok_or_else(uninitialised)?;
    let mut ctx = Context {
        timestamp: Some(timestamp),
        headers: Vec::new(),
    };
    processor
        .punctuate(ScheduleId(schedule), kind, timestamp, &mut ctx)
        .map_err(|e| error(e, None))
}

pub fn close<P: Processor>(slot: &Slot<P>) {
    if let Some(mut processor) = slot.0.borrow_mut().take() {
        processor.close();
    }
}
