//! Pulled kernels in the cache, a folder of their own (`images/`):
//!
//! ```text
//! images/.lock                    held while pulling: one pull at a time, so
//!                                 runs that want the same image download it once
//! images/refs/<key>.json          what a reference resolved to for an
//!                                 architecture, and when it was last asked
//! images/kernels/<hex>/           a pulled kernel (boot/, lib/modules/…),
//!                                 named by its manifest's digest; complete
//!                                 once it has this name
//! images/kernels/<hex>.lock       held shared by each run that uses it: never
//!                                 evicted meanwhile (see crate::cache)
//! images/.pull-*/                 a pull under way (a run killed meanwhile
//!                                 leaves one; the next pull removes it)
//! ```

use crate::config::reference::Reference;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The kernels this process uses, locked shared until it exits.
static IN_USE: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// What a reference resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// The manifest's digest for the architecture.
    pub digest: String,
    /// When the registry was last asked.
    pub checked: SystemTime,
}

/// The images folder of a cache.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store in `cache`, made on demand.
    pub fn open(cache: &Path) -> std::io::Result<Store> {
        let dir = cache.join("images");
        std::fs::create_dir_all(dir.join("refs"))?;
        std::fs::create_dir_all(dir.join("kernels"))?;
        Ok(Store { dir })
    }

    /// The exclusive pull lock, waited for. Pulls left behind by runs
    /// killed meanwhile are removed under it.
    pub fn lock(&self) -> std::io::Result<File> {
        let lock = File::create(self.dir.join(".lock"))?;
        crate::cache::flock(&lock, libc::LOCK_EX)?;
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".pull-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(lock)
    }

    fn ref_path(&self, reference: &Reference, arch: &str) -> PathBuf {
        let key = hex(&Sha256::digest(format!("{reference}|{arch}")));
        self.dir.join("refs").join(format!("{key}.json"))
    }

    /// What `reference` resolved to for `arch` when last asked.
    pub fn known(&self, reference: &Reference, arch: &str) -> Option<Known> {
        let bytes = std::fs::read(self.ref_path(reference, arch)).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        Some(Known {
            digest: v.get("digest")?.as_str()?.to_string(),
            checked: UNIX_EPOCH + Duration::from_secs(v.get("checked")?.as_u64()?),
        })
    }

    /// Records that `reference` resolves to `digest` for `arch` now.
    pub fn remember(&self, reference: &Reference, arch: &str, digest: &str) -> std::io::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let text = serde_json::json!({
            "reference": reference.to_string(),
            "arch": arch,
            "digest": digest,
            "checked": now,
        })
        .to_string();
        let path = self.ref_path(reference, arch);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)
    }

    /// Where the kernel of manifest `digest` is, complete or not.
    pub fn kernel_dir(&self, digest: &str) -> PathBuf {
        self.dir
            .join("kernels")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// Whether the kernel of `digest` was pulled completely.
    pub fn complete(&self, digest: &str) -> bool {
        self.kernel_dir(digest).is_dir()
    }

    /// A directory to pull into, removed unless [`Store::install`]ed.
    pub fn staging(&self) -> std::io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(".pull-")
            .tempdir_in(&self.dir)
    }

    /// Makes the pulled `staging` the kernel of `digest`, at once.
    pub fn install(&self, staging: tempfile::TempDir, digest: &str) -> std::io::Result<()> {
        let path = staging.keep();
        std::fs::rename(&path, self.kernel_dir(digest)).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&path);
        })
    }

    /// The kernel of `digest`, marked used now and locked shared until this
    /// process exits, so that no run evicts it meanwhile.
    pub fn use_kernel(&self, digest: &str) -> std::io::Result<PathBuf> {
        let dir = self.kernel_dir(digest);
        let lock = File::create(dir.with_extension("lock"))?;
        crate::cache::flock(&lock, libc::LOCK_SH)?;
        // Evicted (see crate::cache) between finding it and locking it.
        if !dir.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "removed from the cache meanwhile: run again to pull it",
            ));
        }
        let _ = lock.set_times(std::fs::FileTimes::new().set_accessed(SystemTime::now()));
        IN_USE.lock().unwrap_or_else(|p| p.into_inner()).push(lock);
        Ok(dir)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_remembered_per_architecture() {
        let cache = tempfile::tempdir().unwrap();
        let store = Store::open(cache.path()).unwrap();
        let r = Reference::parse("127.0.0.1:5000/kernels:6.1").unwrap();
        assert_eq!(store.known(&r, "amd64"), None);
        store.remember(&r, "amd64", "sha256:ab").unwrap();
        let known = store.known(&r, "amd64").unwrap();
        assert_eq!(known.digest, "sha256:ab");
        assert!(known.checked.elapsed().unwrap() < Duration::from_secs(5));
        assert_eq!(store.known(&r, "arm64"), None);
        // A staging directory is complete only once installed.
        assert!(!store.complete("sha256:ab"));
        let staging = store.staging().unwrap();
        std::fs::write(staging.path().join("x"), b"x").unwrap();
        store.install(staging, "sha256:ab").unwrap();
        assert!(store.complete("sha256:ab"));
        let dir = store.use_kernel("sha256:ab").unwrap();
        assert_eq!(std::fs::read(dir.join("x")).unwrap(), b"x");
        // A pull left behind is gone once the next one locks.
        let left = store.staging().unwrap().keep();
        drop(store.lock().unwrap());
        assert!(!left.exists());
    }
}
