//! Processors written in Rust, run by the same tasks, stores and commit
//! cycle as components through the same [`ProcessorFactory`] seam. They
//! exist for two reasons: `weir bench` (the `weir-bench` crate) runs the
//! same pipeline with and without the Wasm boundary, so its cost shows as
//! a ratio; and the task manager's and stream thread's unit tests need a
//! processor without a compiled component. Must not be offered as a way to
//! run user code: it has no limits and no isolation.

use std::sync::Arc;

use super::LoadedComponent;
use super::bindings::{IncomingRecord, PunctuationType, TaskInfo};
use super::instance::{Body, GuestError, ProcessorFactory};
use super::task_context::TaskContext;
use crate::topology::Topology;

/// A processor in Rust, working on its task's context as a component's
/// host calls do.
pub trait NativeProcessor: Send {
    fn init(&mut self, _ctx: &mut TaskContext) -> Result<(), String> {
        Ok(())
    }

    fn process(&mut self, ctx: &mut TaskContext, batch: &[IncomingRecord]) -> Result<(), String>;
}

/// Makes one processor per task.
pub type NativeFactory = Arc<dyn Fn() -> Box<dyn NativeProcessor> + Send + Sync>;

/// The [`ProcessorFactory`] of a [`LoadedComponent::native`].
pub(crate) struct Native(pub(crate) NativeFactory);

impl ProcessorFactory for Native {
    fn instantiate(
        &self,
        _component: &LoadedComponent,
        task: TaskContext,
    ) -> Result<Box<dyn Body>, GuestError> {
        Ok(Box::new(NativeBody {
            task,
            logic: (self.0)(),
        }))
    }
}

struct NativeBody {
    task: TaskContext,
    logic: Box<dyn NativeProcessor>,
}

fn failed(component: &str, call: &'static str) -> impl FnOnce(String) -> GuestError {
    move |message| GuestError::Failed {
        component: component.to_string(),
        call,
        message,
        batch_index: None,
    }
}

impl Body for NativeBody {
    fn task(&self) -> &TaskContext {
        &self.task
    }

    fn task_mut(&mut self) -> &mut TaskContext {
        &mut self.task
    }

    fn describe(&mut self, component: &str) -> Result<Topology, GuestError> {
        Err(failed(component, "describe")(
            "native processors are described by the host".into(),
        ))
    }

    fn init(&mut self, component: &str, _info: &TaskInfo) -> Result<(), GuestError> {
        self.logic
            .init(&mut self.task)
            .map_err(failed(component, "init"))
    }

    fn process(&mut self, component: &str, batch: &[IncomingRecord]) -> Result<(), GuestError> {
        self.logic
            .process(&mut self.task, batch)
            .map_err(failed(component, "process"))
    }

    fn punctuate(&mut self, _: &str, _: u32, _: PunctuationType, _: i64) -> Result<(), GuestError> {
        Ok(())
    }

    fn close(&mut self, _component: &str) -> Result<(), GuestError> {
        Ok(())
    }
}
