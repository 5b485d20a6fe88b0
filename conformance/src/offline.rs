//! The offline target: [`weir::testing::TestDriver`], in-process.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use weir::runtime::WasmLimits;
use weir::testing::{DriverError, DriverOptions, TestDriver, TestRecord};

use crate::target::{Cmd, Out, Setup, Target};

pub struct Offline {
    driver: TestDriver,
    seen: BTreeMap<String, Vec<Out>>,
    failure: Option<String>,
}

impl Offline {
    pub fn start(component: &Path, partitions: i32, setup: &Setup) -> Result<Self, String> {
        let options = DriverOptions {
            partitions,
            max_task_idle: Some(setup.max_task_idle),
            limits: WasmLimits {
                max_memory_bytes: 256 << 20,
                max_call: setup.max_call,
                ..WasmLimits::default()
            },
            ..Default::default()
        };
        let driver = TestDriver::new(component, options).map_err(|e| e.to_string())?;
        Ok(Offline {
            driver,
            seen: BTreeMap::new(),
            failure: None,
        })
    }

    fn note(&mut self, result: Result<(), DriverError>) -> Result<(), String> {
        match result {
            Ok(()) => Ok(()),
            Err(e @ (DriverError::Task(_) | DriverError::TaskFailed { .. })) => {
                self.failure.get_or_insert(e.to_string());
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Target for Offline {
    fn send(&mut self, cmds: &[Cmd]) -> Result<(), String> {
        for c in cmds {
            let mut record = TestRecord::new(c.key.as_bytes(), c.command.as_bytes())
                .at(c.timestamp)
                .on_partition(c.partition);
            for (k, v) in &c.headers {
                record = record.header(k, v.clone());
            }
            let result = self.driver.pipe(c.source, record);
            self.note(result)?;
        }
        Ok(())
    }

    fn outputs(
        &mut self,
        sink: &str,
        _at_least: usize,
        _timeout: Duration,
    ) -> Result<Vec<Out>, String> {
        let fresh = self.driver.read_output(sink).into_iter().map(|o| Out {
            key: o.key_str().unwrap_or_default().to_string(),
            value: o.value_str().unwrap_or_default().to_string(),
            headers: o.headers.clone(),
            timestamp: o.timestamp,
        });
        let seen = self.seen.entry(sink.to_string()).or_default();
        seen.extend(fresh);
        Ok(seen.clone())
    }

    fn advance_wall_clock(&mut self, by: Duration) -> Result<(), String> {
        let result = self.driver.advance_wall_clock(by);
        self.note(result)
    }

    /// Offline stores live in memory: every restart restores them from the
    /// changelog, as one on a wiped state directory does.
    fn restart(&mut self, _wipe_state: bool) -> Result<(), String> {
        let result = self.driver.restart();
        self.note(result)
    }

    fn redeploy(&mut self, component: &Path) -> Result<(), String> {
        let result = self.driver.swap(component);
        self.note(result)
    }

    fn other_tasks_continue(&self) -> bool {
        true
    }

    fn failure(&mut self, _timeout: Duration) -> Option<String> {
        self.failure.clone()
    }
}
