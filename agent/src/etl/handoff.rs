//! Frames handed from one DAG step to the next within this process.
//!
//! Every hand-off is an Arrow IPC file in the run's directory: the durable copy a retried step
//! reads, and what an operator can open. Writing it costs the kernel's copy of tens of MiB, so
//! [`keep`] writes it behind, on a thread of its own, while the frame waits in memory for the
//! step that [`take`]s it: the next step starts at once and the write overlaps its work. A step
//! that finds no frame in memory (a retry: the first attempt took it) waits for the write still
//! under way, if any, and reads the file. [`forget`] drops what a finished run left behind.
//!
//! A run interrupted by a crash is failed, not resumed (see `EtlStore::fail_interrupted`), so a
//! frame never has to outlive the process that made it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::thread::JoinHandle;

use polars::prelude::DataFrame;
use readmit_ml::data::{DataError, read_ipc, write_ipc};

use super::runs::{EtlError, Result};

/// One hand-off: the frame until it is taken, the write until someone waits for it.
struct Entry {
    frame: Option<DataFrame>,
    write: Option<JoinHandle<std::result::Result<(), DataError>>>,
}

static ENTRIES: LazyLock<Mutex<HashMap<PathBuf, Entry>>> = LazyLock::new(Default::default);

fn entries() -> MutexGuard<'static, HashMap<PathBuf, Entry>> {
    ENTRIES.lock().unwrap_or_else(|p| p.into_inner())
}

/// Hands `frame` on as `path`: kept for [`take`], and written to `path` behind. Blocks only
/// while an earlier write of the same path finishes.
pub fn keep(path: PathBuf, frame: DataFrame) -> Result<()> {
    // A retried step hands the same path on again: its earlier write must not land last.
    let earlier = entries().remove(&path).and_then(|e| e.write);
    if let Some(earlier) = earlier {
        let _ = earlier.join();
    }
    let (target, mut copy) = (path.clone(), frame.clone());
    let write = std::thread::Builder::new()
        .name("handoff-write".into())
        .spawn(move || {
            write_ipc(&mut copy, &target).inspect_err(|e| {
                tracing::warn!(file = %target.display(), error = %e, "cannot write a hand-off");
            })
        })
        .map_err(EtlError::io(&path))?;
    entries().insert(
        path,
        Entry {
            frame: Some(frame),
            write: Some(write),
        },
    );
    Ok(())
}

/// The frame handed on as `path`: from memory if it is still there, else from its file once
/// any write of it is done.
pub fn take(path: &Path) -> Result<DataFrame> {
    let write = {
        let mut map = entries();
        match map.get_mut(path).map(|entry| entry.frame.take()) {
            // The write stays behind for a retry to wait on.
            Some(Some(frame)) => return Ok(frame),
            Some(None) => map.remove(path).and_then(|entry| entry.write),
            None => None,
        }
    };
    if let Some(write) = write {
        write
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    }
    Ok(read_ipc(path)?)
}

/// Drops the hand-offs of the run in `dir` still in memory; their writes finish on their own.
pub fn forget(dir: &Path) {
    entries().retain(|path, _| !path.starts_with(dir));
}

#[cfg(test)]
mod tests {
    use polars::prelude::{Column, DataFrame};

    use super::*;

    fn frame(values: &[i64]) -> DataFrame {
        DataFrame::new(values.len(), vec![Column::new("v".into(), values)]).unwrap()
    }

    #[test]
    fn a_taken_frame_is_read_again_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join("raw_train.arrow");
        keep(path.clone(), frame(&[1, 2, 3])).unwrap();
        assert_eq!(take(&path).unwrap(), frame(&[1, 2, 3]));
        // A retry: the first attempt took the frame; the file has it.
        assert_eq!(take(&path).unwrap(), frame(&[1, 2, 3]));
        assert!(path.exists());
    }

    #[test]
    fn forgotten_frames_are_only_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join("clean_test.arrow");
        keep(path.clone(), frame(&[7])).unwrap();
        forget(&dir.path().join("run"));
        assert!(!entries().contains_key(&path));
        // The write was left to finish on its own: wait for the file to appear.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !path.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(take(&path).unwrap(), frame(&[7]));
    }

    #[test]
    fn a_missing_hand_off_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("features_train.arrow");
        let error = take(&path).unwrap_err().to_string();
        assert!(error.contains("features_train.arrow"), "{error}");
    }
}
