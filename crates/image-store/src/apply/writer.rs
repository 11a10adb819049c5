//! A second thread for file contents: the applier creates each small
//! file (so names, links and removals keep their order), then hands the
//! open file and its data here for the write, ownership, mode and times.
//! Filesystem work then runs on two cores.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::Mutex;
use std::sync::mpsc::Receiver;

use super::meta::Meta;
use crate::error::Error;

/// Files up to this size go to the writer thread; larger ones are
/// streamed by the applier itself, so memory stays bounded.
pub(super) const INLINE_MAX: u64 = 256 * 1024;
/// Jobs travel in batches of up to this many files or [`BATCH_BYTES`]:
/// one thread wake-up per batch rather than per file.
pub(super) const BATCH_FILES: usize = 64;
/// See [`BATCH_FILES`].
pub(super) const BATCH_BYTES: usize = 1 << 20;
/// Batches queued at most.
pub(super) const QUEUE: usize = 8;

pub(super) struct Job {
    pub(super) file: File,
    pub(super) data: Vec<u8>,
    pub(super) meta: Meta,
    pub(super) chown: bool,
    pub(super) chmod: bool,
    pub(super) entry: String,
}

/// Runs jobs until the sender goes away; the first failure is kept in
/// `failed` (later jobs are dropped) for the applier to report.
pub(super) fn run(rx: Receiver<Vec<Job>>, failed: &Mutex<Option<Error>>) {
    for mut job in rx.into_iter().flatten() {
        if failed.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            continue;
        }
        let res = job
            .file
            .write_all(&job.data)
            .and_then(|()| finish_file(&job.file, &job.meta, job.chown, job.chmod));
        if let Err(source) = res {
            let mut slot = failed.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(Error::Entry {
                entry: job.entry,
                op: "write file",
                source,
            });
        }
    }
}

/// Ownership, mode, xattrs and times of a file whose content is written.
pub(super) fn finish_file(file: &File, meta: &Meta, chown: bool, chmod: bool) -> io::Result<()> {
    if chown {
        rustix::fs::fchown(file, Some(meta.uid()), Some(meta.gid()))?;
    }
    // After chown, which clears setuid/setgid.
    if chmod {
        rustix::fs::fchmod(file, meta.mode())?;
    }
    meta.set_xattrs(file.as_fd())?;
    rustix::fs::futimens(file, &meta.times())?;
    Ok(())
}
