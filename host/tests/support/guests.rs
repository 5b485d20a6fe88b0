//! Guest components, compiled from this workspace's sources for
//! wasm32-wasip2 by `scripts/build-guests` (once per test binary).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let output = Command::new(repo().join("scripts/build-guests"))
            .output()
            .expect("running scripts/build-guests");
        assert!(
            output.status.success(),
            "building guest components failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
    })
}

/// The component built from the crate `name` (a `-` in it becomes `_` for
/// libraries, as cargo names them).
pub fn component(name: &str) -> PathBuf {
    let lib = dir().join(format!("{}.wasm", name.replace('-', "_")));
    if lib.exists() {
        return lib;
    }
    let bin = dir().join(format!("{name}.wasm"));
    assert!(
        bin.exists(),
        "no component for {name} in {}",
        dir().display()
    );
    bin
}

/// The results the probe sent under `key` since the last read (the offline
/// driver's `results` sink), in order.
pub fn probe_results(driver: &mut weir::testing::TestDriver, key: &str) -> Vec<String> {
    driver
        .read_output("results")
        .iter()
        .filter(|o| o.key_str() == Some(key))
        .map(|o| o.value_str().unwrap_or_default().to_string())
        .collect()
}
