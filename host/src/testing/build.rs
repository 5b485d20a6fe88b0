//! Building a processor crate into a component for its own tests: the one
//! place the driver shells out (to `cargo build --target wasm32-wasip2`).

use std::path::Path;

use super::DriverError;

/// Builds the processor crate at `crate_dir` for wasm32-wasip2 (release)
/// and returns the component's path: what a processor's own `cargo test`
/// calls before driving it. Uses `$CARGO_TARGET_DIR/wasm-guests` (or
/// `<crate_dir>/target/wasm-guests`), a target directory of its own, so it
/// never waits on the running `cargo test`.
pub fn build_component(crate_dir: &Path) -> Result<std::path::PathBuf, DriverError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| DriverError::Read { path, source }
    };
    let manifest = crate_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(io(&manifest))?;
    let package = toml::from_str::<toml::Table>(&text)
        .ok()
        .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_string))
        .ok_or_else(|| DriverError::Read {
            path: manifest.display().to_string(),
            source: std::io::Error::other("no [package] name"),
        })?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate_dir.join("target"))
        .join("wasm-guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .output()
        .map_err(io(&manifest))?;
    if !output.status.success() {
        return Err(DriverError::Read {
            path: manifest.display().to_string(),
            source: std::io::Error::other(format!(
                "cargo build --target wasm32-wasip2 failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            )),
        });
    }
    Ok(target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", package.replace('-', "_"))))
}
