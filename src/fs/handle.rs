//! Open files. A reader holds a snapshot of the value as it was at open; a
//! writer holds a private staging copy that is committed as a whole.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use crate::cache::disk::Disk;
use crate::cache::{Key, Side};
pub use crate::fs::version::ReadView;

/// What a reader reads: the content at open time.
pub enum Snapshot {
    Inline(Vec<u8>),
    /// A value file, open (it stays readable after the entry changes).
    File(File),
}

impl Snapshot {
    pub fn read_at(&self, offset: u64, size: usize) -> io::Result<Vec<u8>> {
        match self {
            Snapshot::Inline(data) => {
                let start = (offset as usize).min(data.len());
                let end = start.saturating_add(size).min(data.len());
                Ok(data[start..end].to_vec())
            }
            Snapshot::File(file) => read_file_at(file, offset, size),
        }
    }

    /// The whole content (to seed a writer's staging copy, or to convert).
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        match self {
            Snapshot::Inline(data) => Ok(data.clone()),
            Snapshot::File(file) => {
                let len = file.metadata()?.len();
                read_file_at(file, 0, len as usize)
            }
        }
    }
}

fn read_file_at(file: &File, offset: u64, size: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    let mut done = 0;
    while done < size {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

/// A writer's private copy of the value. Small values stay in memory;
/// past the spill size they move to an unnamed file in the cache directory
/// (`O_TMPFILE`), which is linked in as the entry's value file on commit
/// (no copy). Unnamed, it is invisible to python's `check()` and leaves no
/// orphan if the daemon dies.
pub enum Staging {
    Memory(Vec<u8>),
    File {
        /// `None` while unnamed; the value-file name once linked (or from
        /// the start where the file system has no `O_TMPFILE`).
        filename: Option<String>,
        file: File,
        len: u64,
        /// The file now belongs to a committed row: the next change must
        /// copy it first, so readers of that row never see a mix.
        committed: bool,
    },
}

impl Staging {
    pub fn len(&self) -> u64 {
        match self {
            Staging::Memory(v) => v.len() as u64,
            Staging::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn read_at(&self, offset: u64, size: usize) -> io::Result<Vec<u8>> {
        match self {
            Staging::Memory(v) => {
                let start = (offset as usize).min(v.len());
                let end = start.saturating_add(size).min(v.len());
                Ok(v[start..end].to_vec())
            }
            Staging::File { file, len, .. } => {
                let size = size.min(len.saturating_sub(offset) as usize);
                read_file_at(file, offset, size)
            }
        }
    }

    /// Makes sure the next change (or commit) does not touch a file that
    /// belongs to a committed row, or that a failed commit removed (its
    /// descriptor still reads).
    pub fn detach(&mut self, disk: &Disk) -> io::Result<()> {
        if let Staging::File { file, len, committed: true, .. } = self {
            let (new_name, new_file) = new_staging_file(disk)?;
            // Positional copy: these files' cursors are never relied on.
            copy_at(file, &new_file, *len)?;
            *self = Staging::File { filename: new_name, file: new_file, len: *len, committed: false };
        }
        Ok(())
    }

    /// Writes at `offset` (zero-filling any gap), spilling to a value file
    /// once the copy reaches `spill` bytes.
    pub fn write_at(&mut self, disk: &Disk, offset: u64, data: &[u8], spill: u64) -> io::Result<()> {
        self.detach(disk)?;
        let end = offset + data.len() as u64;
        if let Staging::Memory(v) = self
            && end >= spill
        {
            let (filename, file) = new_staging_file(disk)?;
            file.write_all_at(v, 0)?;
            let len = v.len() as u64;
            *self = Staging::File { filename, file, len, committed: false };
        }
        match self {
            Staging::Memory(v) => {
                let end = end as usize;
                if v.len() < end {
                    v.resize(end, 0);
                }
                v[offset as usize..end].copy_from_slice(data);
            }
            Staging::File { file, len, .. } => {
                file.write_all_at(data, offset)?;
                *len = (*len).max(end);
            }
        }
        Ok(())
    }

    pub fn truncate(&mut self, disk: &Disk, size: u64, spill: u64) -> io::Result<()> {
        self.detach(disk)?;
        match self {
            Staging::Memory(v) if size < spill => v.resize(size as usize, 0),
            Staging::Memory(_) => {
                // Growing past the spill size: zero-fill through write_at.
                let len = self.len();
                if size > len {
                    self.write_at(disk, size - 1, &[0], spill)?;
                }
            }
            Staging::File { file, len, .. } => {
                file.set_len(size)?;
                *len = size;
            }
        }
        Ok(())
    }

    /// The value-file name for a commit, linking an unnamed file in first.
    pub fn link(&mut self, disk: &Disk) -> io::Result<String> {
        match self {
            Staging::File { filename: Some(name), .. } => Ok(name.clone()),
            Staging::File { filename, file, .. } => {
                let name = disk.link_anonymous(file)?;
                *filename = Some(name.clone());
                Ok(name)
            }
            Staging::Memory(_) => Err(io::Error::new(io::ErrorKind::InvalidInput, "an in-memory copy has no file")),
        }
    }

    /// Removes an uncommitted staging file (a writer closed without
    /// committing, or its commit was dropped).
    pub fn discard(self, disk: &Disk) {
        if let Staging::File { filename: Some(filename), committed: false, .. } = self {
            disk.remove(&filename);
        }
    }
}

/// Copies the first `len` bytes of `src` to `dst` with pread/pwrite, in
/// 1 MiB chunks (never touching either file's cursor).
fn copy_at(src: &File, dst: &File, len: u64) -> io::Result<()> {
    let mut offset = 0;
    while offset < len {
        let chunk = read_file_at(src, offset, (len - offset).min(1 << 20) as usize)?;
        if chunk.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "value file shorter than its size"));
        }
        dst.write_all_at(&chunk, offset)?;
        offset += chunk.len() as u64;
    }
    Ok(())
}

fn new_staging_file(disk: &Disk) -> io::Result<(Option<String>, File)> {
    if let Some(file) = disk.create_anonymous()? {
        return Ok((None, file));
    }
    let filename = Disk::new_filename();
    let file = disk.create_exclusive(&filename)?;
    Ok((Some(filename), file))
}

/// One open file.
pub enum Handle {
    Read {
        ino: u64,
        /// Shared so that a read copies it out of the tables and reads
        /// without holding their lock.
        snapshot: Arc<Snapshot>,
        /// For a key's value: the version it is a snapshot of, so `fstat`
        /// on this handle reports the snapshot's size after a peer changes
        /// the entry (else the kernel would cut reads at the new size).
        view: Option<ReadView>,
    },
    Write(WriterSlot),
    /// A new file in `queues/P/`: pushed on close (docs/SEMANTICS.md,
    /// "Queues").
    Push {
        ino: u64,
        queue: Option<String>,
        side: Side,
        data: Vec<u8>,
        /// Written since the last push.
        dirty: bool,
        /// Pushed at least once (a file closed unwritten pushes an empty
        /// item when it is released).
        pushed: bool,
    },
    /// `task/T/V/.resolve` or `.key`: written inputs, then read results.
    Resolve(ResolveHandle),
    /// A file in `ops/`: each write runs the operation; `output` is what
    /// reads return.
    Op {
        ino: u64,
        op: Op,
        output: Vec<u8>,
    },
    /// A setting's file opened for writing: the new text, applied with
    /// `reset` on close.
    Setting {
        ino: u64,
        name: String,
        text: Vec<u8>,
        dirty: bool,
    },
}

/// A Flyte resolver handle (see `views.rs`).
pub struct ResolveHandle {
    pub ino: u64,
    pub task: String,
    pub version: String,
    pub ignore: Vec<String>,
    /// The outputs, the key or an explanation.
    pub answer: crate::fs::grammar::ResolverAnswer,
    pub input: Vec<u8>,
    /// Computed at the first read: the outputs (or key), or the error.
    pub output: Option<Vec<u8>>,
    /// Where the next read continues: the result reads as a stream.
    pub cursor: usize,
}

/// An operation run through a file in `ops/`.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Expire,
    Cull,
    Clear,
    Check,
    Incr(Key),
    Decr(Key),
    /// `ops/remote`: read only, the remote tier's state.
    Remote,
}

impl Handle {
    /// The length of what a reader of this handle reads, where fixed.
    pub fn content_len(&self) -> Option<u64> {
        match self {
            Handle::Read { snapshot, .. } => match &**snapshot {
                Snapshot::Inline(data) => Some(data.len() as u64),
                Snapshot::File(file) => file.metadata().ok().map(|m| m.len()),
            },
            Handle::Op { output, .. } => Some(output.len() as u64),
            _ => None,
        }
    }

    pub fn ino(&self) -> u64 {
        match self {
            Handle::Read { ino, .. }
            | Handle::Setting { ino, .. }
            | Handle::Push { ino, .. }
            | Handle::Op { ino, .. } => *ino,
            Handle::Write(w) => w.ino,
            Handle::Resolve(r) => r.ino,
        }
    }
}

/// A writer as the tables see it. Its staging copy is behind a lock of its
/// own (taken before the tables' lock, never while holding it), so that a
/// large write or a commit waiting for the cache's write lock holds up
/// nobody else; `dirty` and `staged_len` mirror it for `stat`.
pub struct WriterSlot {
    pub ino: u64,
    pub dirty: bool,
    /// The staging copy's length, once there is one.
    pub staged_len: Option<u64>,
    pub io: Arc<Mutex<WriteHandle>>,
}

impl WriterSlot {
    pub fn new(handle: WriteHandle) -> WriterSlot {
        WriterSlot {
            ino: handle.ino,
            dirty: handle.dirty,
            staged_len: handle.staging.as_ref().map(Staging::len),
            io: Arc::new(Mutex::new(handle)),
        }
    }

    /// Copies the writer's state into the mirror (both locks held).
    pub fn mirror(&mut self, handle: &WriteHandle) {
        self.dirty = handle.dirty;
        self.staged_len = handle.staging.as_ref().map(Staging::len);
    }
}

pub struct WriteHandle {
    pub ino: u64,
    /// The shard whose value-file directory holds the staging copy (the
    /// key's, as of the open; a commit under a key of another shard
    /// copies it there first).
    pub shard: usize,
    pub append: bool,
    /// The content at open, until the first change copies it to `staging`.
    pub base: Option<Snapshot>,
    pub staging: Option<Staging>,
    /// Changed since the last commit.
    pub dirty: bool,
}
