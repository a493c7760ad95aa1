//! Bundles kept under the data dir by model name and version, so a restarted agent serves its
//! last model at once, even while tracking is down: `<dir>/<name>/<version>/` holds the files,
//! `<dir>/<name>/current.json` says which version served last and what the registry said of it.

use std::path::{Path, PathBuf};

use super::served::ServedMeta;

const CURRENT: &str = "current.json";

#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Where a version's files live once accepted. `name` has passed
    /// [`super::target::is_model_name`].
    pub fn version_dir(&self, name: &str, version: i64) -> PathBuf {
        self.root.join(name).join(version.to_string())
    }

    /// A fresh, empty directory to download a version into before it is checked.
    pub fn staging_dir(&self, name: &str, version: i64) -> std::io::Result<PathBuf> {
        let dir = self.root.join(name).join(format!(
            ".{version}.{}.partial",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Moves a checked download into place, replacing an older copy of the same version.
    pub fn accept(&self, staging: &Path, name: &str, version: i64) -> std::io::Result<PathBuf> {
        let dir = self.version_dir(name, version);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::rename(staging, &dir)?;
        Ok(dir)
    }

    /// Records the version serving now, atomically (write then rename).
    pub fn set_current(&self, meta: &ServedMeta) -> std::io::Result<()> {
        let dir = self.root.join(&meta.name);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{CURRENT}.tmp"));
        let json = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, dir.join(CURRENT))
    }

    /// The version that served last, and its directory, if both are still there.
    pub fn current(&self, name: &str) -> Option<(ServedMeta, PathBuf)> {
        let bytes = std::fs::read(self.root.join(name).join(CURRENT)).ok()?;
        let meta: ServedMeta = serde_json::from_slice(&bytes).ok()?;
        let dir = self.version_dir(name, meta.version);
        (meta.name == name && dir.is_dir()).then_some((meta, dir))
    }

    /// Removes downloads an earlier process left half done.
    pub fn clear_partial(&self, name: &str) {
        let Ok(entries) = std::fs::read_dir(self.root.join(name)) else {
            return;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            if file_name.starts_with('.') && file_name.ends_with(".partial") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}
