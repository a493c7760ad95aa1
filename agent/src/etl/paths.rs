//! Agent-side paths a caller names (a CSV to ingest, where to write a synthetic data set):
//! confined to the agent's data sets directory and its import directory. `..` is refused
//! outright, symlinks are resolved and must stay inside, and a refusal never reads the file,
//! so nothing of a file outside can reach the caller.

use std::path::{Component, Path, PathBuf};

use super::runs::{EtlError, Result};

/// The directories callers may name files in. The first is where relative paths land.
#[derive(Clone, Debug)]
pub struct Roots {
    roots: Vec<PathBuf>,
}

fn refuse(given: &str, reason: impl Into<String>) -> EtlError {
    EtlError::Invalid {
        field: "path".into(),
        reason: format!("{given:?}: {}", reason.into()),
    }
}

impl Roots {
    /// `datasets` takes relative paths; `import` is where operators put files to ingest.
    pub fn new(datasets: &Path, import: &Path) -> Self {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        Self {
            roots: vec![absolute(datasets), absolute(import)],
        }
    }

    fn allowed(&self) -> String {
        self.roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// The path as given, made absolute, if it names a place under a root without `..`.
    fn lexical(&self, given: &str) -> Result<PathBuf> {
        if given.trim().is_empty() {
            return Err(refuse(given, "give a file name"));
        }
        if given.contains('\0') {
            return Err(refuse(given, "a path cannot hold a NUL byte"));
        }
        let path = Path::new(given);
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(refuse(given, "`..` is not allowed in agent-side paths"));
        }
        let path = if path.is_absolute() {
            path.to_owned()
        } else {
            self.roots[0].join(path)
        };
        if self.roots.iter().any(|r| path.starts_with(r) && path != *r) {
            Ok(path)
        } else {
            Err(refuse(
                given,
                format!(
                    "outside the directories the agent reads and writes ({})",
                    self.allowed()
                ),
            ))
        }
    }

    /// True when `real` (already resolved) lies under a root, itself resolved.
    fn inside(&self, real: &Path) -> bool {
        self.roots
            .iter()
            .filter_map(|r| r.canonicalize().ok())
            .any(|r| real.starts_with(&r) && real != r)
    }

    /// A regular file under a root, at most `max_bytes` long, to read.
    pub fn readable(&self, given: &str, max_bytes: u64) -> Result<PathBuf> {
        let path = self.lexical(given)?;
        let real = path
            .canonicalize()
            .map_err(|e| refuse(given, format!("cannot open it: {e}")))?;
        if !self.inside(&real) {
            return Err(refuse(
                given,
                format!("a symlink leads outside {}", self.allowed()),
            ));
        }
        let meta = std::fs::metadata(&real).map_err(|e| refuse(given, e.to_string()))?;
        if !meta.is_file() {
            return Err(refuse(given, "not a regular file"));
        }
        if meta.len() > max_bytes {
            return Err(EtlError::TooLarge {
                what: format!("{given:?} ({} bytes)", meta.len()),
                limit: "max_ingest_bytes",
                max: max_bytes,
            });
        }
        Ok(real)
    }

    /// A file name under a root to write; its directory is made if missing, and neither it
    /// nor any existing parent may lead outside through a symlink.
    pub fn writable(&self, given: &str) -> Result<PathBuf> {
        let path = self.lexical(given)?;
        // The root is the agent's own directory: made when missing, so the walk below stops
        // at it at the latest.
        if let Some(root) = self.roots.iter().find(|r| path.starts_with(r)) {
            std::fs::create_dir_all(root).map_err(EtlError::io(root))?;
        }
        let mut existing = path.parent().map(Path::to_owned);
        while let Some(dir) = &existing {
            if dir.exists() {
                break;
            }
            existing = dir.parent().map(Path::to_owned);
        }
        let Some(dir) = existing else {
            return Err(refuse(given, "it has no parent directory"));
        };
        let real = dir
            .canonicalize()
            .map_err(|e| refuse(given, format!("cannot resolve its directory: {e}")))?;
        let root_itself = self.roots.contains(&dir);
        if !root_itself && !self.inside(&real) {
            return Err(refuse(
                given,
                format!("a symlink leads outside {}", self.allowed()),
            ));
        }
        if let Ok(meta) = std::fs::symlink_metadata(&path)
            && !meta.is_file()
        {
            return Err(refuse(given, "it exists and is not a regular file"));
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        let datasets = dir.path().join("data/datasets");
        let import = dir.path().join("import");
        std::fs::create_dir_all(&datasets).unwrap();
        std::fs::create_dir_all(&import).unwrap();
        std::fs::write(import.join("ok.csv"), "a,b\n").unwrap();
        std::fs::write(dir.path().join("secret.csv"), "password,hunter2\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.csv"), import.join("link.csv")).unwrap();
        std::os::unix::fs::symlink(dir.path(), datasets.join("out")).unwrap();
        let roots = Roots::new(&datasets, &import);

        let ok = import.join("ok.csv");
        assert!(roots.readable(ok.to_str().unwrap(), 100).is_ok());
        assert!(matches!(
            roots.readable(ok.to_str().unwrap(), 2),
            Err(EtlError::TooLarge { .. })
        ));
        let secret = dir.path().join("secret.csv");
        for bad in [
            secret.to_str().unwrap().to_owned(),
            format!("{}/../secret.csv", import.display()),
            import.join("link.csv").display().to_string(),
            "out/secret.csv".to_owned(),
            "/etc/passwd".to_owned(),
            String::new(),
        ] {
            let err = roots.readable(&bad, 1 << 20).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(
                matches!(roots.readable(&bad, 1 << 20), Err(EtlError::Invalid { .. })),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            roots.writable("synthetic.csv").unwrap(),
            std::path::absolute(datasets.join("synthetic.csv")).unwrap()
        );
        assert!(roots.writable("new/dir/x.csv").is_ok());
        for bad in ["out/x.csv", "/tmp/x.csv", "../x.csv", "out/deeper/x.csv"] {
            assert!(roots.writable(bad).is_err(), "{bad}");
        }
    }
}
