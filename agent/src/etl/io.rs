//! Small I/O helpers the ETL modules share: CPU-bound work off the async threads, files
//! written whole or not at all, digests as hex. They live apart so `data`, `raw`, `fetch` and
//! the runner need not import each other for them.

use std::path::Path;

use super::runs::{EtlError, Result};

/// CPU-bound work off the async threads.
pub async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EtlError::Ml(format!("a worker thread failed: {e}")))?
}

/// Writes a file whole or not at all: a temporary file beside it, synced, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(EtlError::io(dir))?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(EtlError::io(dir))?;
    std::io::Write::write_all(&mut file, bytes).map_err(EtlError::io(path))?;
    file.as_file().sync_all().map_err(EtlError::io(path))?;
    file.persist(path).map_err(|e| EtlError::Io {
        path: path.to_owned(),
        source: e.error,
    })?;
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
