//! Components on local disk, by content: `<dir>/<sha256>.wasm` as uploaded
//! and `<dir>/<sha256>.<engine tag>.cwasm` as compiled, so a restart or a
//! rollback never recompiles. `<dir>` is `<state.dir>/<application.id>/
//! .components`, which only this host writes. Files are written to a
//! temporary name and renamed, so a crash never leaves a half file under a
//! real name.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug)]
pub struct ComponentCache {
    dir: PathBuf,
}

fn valid_sha(sha: &str) -> bool {
    sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

impl ComponentCache {
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(ComponentCache {
            dir: dir.to_path_buf(),
        })
    }

    fn wasm_path(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.wasm"))
    }

    /// Where the compiled form of `sha` lives for an engine with `tag`.
    pub fn compiled_path(&self, sha: &str, tag: &str) -> PathBuf {
        self.dir.join(format!("{sha}.{tag}.cwasm"))
    }

    pub fn has(&self, sha: &str) -> bool {
        valid_sha(sha) && self.wasm_path(sha).exists()
    }

    /// Stores `bytes`; returns their sha256.
    pub fn store(&self, bytes: &[u8]) -> io::Result<String> {
        let sha = hex::encode(Sha256::digest(bytes));
        let path = self.wasm_path(&sha);
        if !path.exists() {
            // A name of this writer's own: two writers of the same
            // component (the bootstrap deploy and the rollout of this very
            // version, or two processes on one cache) must not rename each
            // other's file away.
            static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = path.with_extension(format!("{}-{n}.tmp", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(sha)
    }

    /// The bytes of `sha`, checked against it.
    pub fn read(&self, sha: &str) -> io::Result<Vec<u8>> {
        if !valid_sha(sha) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{sha}` is not a sha256"),
            ));
        }
        let bytes = std::fs::read(self.wasm_path(sha))?;
        if hex::encode(Sha256::digest(&bytes)) != sha {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("cached component {sha} does not match its hash"),
            ));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_stores_of_one_component_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = std::sync::Arc::new(ComponentCache::open(dir.path()).unwrap());
        let bytes = vec![7u8; 1 << 20];
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let (cache, bytes) = (cache.clone(), bytes.clone());
                std::thread::spawn(move || cache.store(&bytes))
            })
            .collect();
        for w in writers {
            let sha = w.join().unwrap().unwrap();
            assert_eq!(cache.read(&sha).unwrap(), bytes);
        }
    }

    #[test]
    fn stores_by_content_and_checks_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ComponentCache::open(dir.path()).unwrap();
        let sha = cache.store(b"component bytes").unwrap();
        assert!(cache.has(&sha));
        assert_eq!(cache.read(&sha).unwrap(), b"component bytes");
        std::fs::write(dir.path().join(format!("{sha}.wasm")), b"tampered").unwrap();
        assert_eq!(
            cache.read(&sha).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert!(!cache.has("../etc/passwd"));
        assert!(cache.read("../../x").is_err());
    }
}
