//! Value files: names, layout, and every read, write and delete of them
//! (the file half of `core.py`'s `Disk`). No SQL here.
//!
//! Layout: a value file is `XX/YY/<28 hex>.val` under the cache directory,
//! the 32 hex digits of 16 random bytes split 2/2/28 (`Disk.filename`).
//!
//! Safety: the `filename` column is input we do not trust (a cache may be
//! crafted, or shared with other users). Every path is resolved with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` from a descriptor of the
//! cache directory, so no read, write or delete ever leaves it, whatever the
//! column says (absolute, `..`, or a symbolic link anywhere on the way).
//! `check`'s walk of the directory ([`Disk::walk`]) and its removals keep
//! the same rule: directories are opened from their parent's descriptor
//! with `O_NOFOLLOW`, and every unlink is an `unlinkat` in a parent
//! resolved beneath the root, so no symbolic link is ever followed.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Component;
use std::path::{Path, PathBuf};

/// Why a value file could not be read.
#[derive(Debug)]
pub enum FetchError {
    /// It is not there: a concurrent delete, or a damaged cache. diskcache
    /// treats this as a miss.
    Missing,
    /// The name leaves the cache directory; refused without touching it.
    Unsafe,
    /// Anything else the OS said.
    Io(io::Error),
}

/// The cache directory's value files.
#[derive(Debug)]
pub struct Disk {
    directory: PathBuf,
    /// An `O_PATH` descriptor of the directory: the root every value path is
    /// resolved beneath.
    root: OwnedFd,
    /// The cache directory's owner, when this process runs as root and the
    /// owner is someone else: every file and directory made here is given
    /// to them, so the owner's own Python can still write into the hash
    /// directories and read the value files root wrote.
    give_to: Option<(libc::uid_t, libc::gid_t)>,
}

impl Disk {
    pub fn open(directory: &Path) -> io::Result<Disk> {
        let c =
            CString::new(directory.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: c is a valid NUL-terminated path; the result is checked.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let root = unsafe { OwnedFd::from_raw_fd(fd) };
        let give_to = owner_to_give_to(&root)?;
        Ok(Disk { directory: directory.to_path_buf(), root, give_to })
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// A second `Disk` on the same directory descriptor (a `dup`).
    pub fn try_clone(&self) -> io::Result<Disk> {
        Ok(Disk { directory: self.directory.clone(), root: self.root.try_clone()?, give_to: self.give_to })
    }

    /// The absolute path of a value file (or of any path relative to the
    /// directory, the directory itself for the empty path), for messages and
    /// `check`.
    pub fn full_path(&self, filename: impl AsRef<Path>) -> PathBuf {
        let rel = filename.as_ref();
        if rel.as_os_str().is_empty() { self.directory.clone() } else { self.directory.join(rel) }
    }

    /// A new random value file name (`Disk.filename`).
    pub fn new_filename() -> String {
        let mut bytes = [0u8; 16];
        fill_random(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}/{}/{}.val", &hex[..2], &hex[2..4], &hex[4..])
    }

    /// Creates a new value file and lets `write` fill it; returns its name
    /// and the byte count `write` reports. Like `Disk._write`, it creates
    /// the two directories and tries 10 times, since another process may
    /// remove an emptied directory between our mkdir and our open.
    pub fn write_new<F>(&self, mut write: F) -> io::Result<(String, u64)>
    where
        F: FnMut(&mut File) -> io::Result<u64>,
    {
        let filename = Self::new_filename();
        let file = self.create_exclusive(&filename)?;
        let mut file = file;
        match write(&mut file) {
            Ok(size) => Ok((filename, size)),
            Err(e) => {
                drop(file);
                self.remove(&filename);
                Err(e)
            }
        }
    }

    /// Creates `filename` (a fresh name from [`Disk::new_filename`]) with
    /// O_EXCL, making its directories. Returns the file open for reading
    /// and writing.
    pub fn create_exclusive(&self, filename: &str) -> io::Result<File> {
        let (dir, _) = filename.rsplit_once('/').unwrap_or(("", filename));
        let mut last = io::Error::from_raw_os_error(libc::ENOENT);
        for _ in 0..10 {
            if !dir.is_empty() {
                self.make_dirs(dir);
            }
            match self.open_beneath(filename, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC, 0o666) {
                Ok(f) => {
                    self.give_away(&f);
                    return Ok(f);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Creates an unnamed file in the cache directory (`O_TMPFILE`), for a
    /// value still being written: no other process can see it (python's
    /// `check(fix=True)` would delete a named one as unknown) and a crash
    /// leaves nothing behind. `None` when the file system cannot do this;
    /// the caller then falls back to a named file.
    pub fn create_anonymous(&self) -> io::Result<Option<File>> {
        match self.open_beneath(".", libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC, 0o666) {
            Ok(f) => {
                self.give_away(&f);
                Ok(Some(f))
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Gives a file from [`Disk::create_anonymous`] a fresh value-file name
    /// and returns that name. The directories are made (and retried) as in
    /// [`Disk::create_exclusive`]; the leaf directory is opened beneath the
    /// root, so the link cannot land outside it.
    pub fn link_anonymous(&self, file: &File) -> io::Result<String> {
        let filename = Self::new_filename();
        let (dir, base) = filename.rsplit_once('/').expect("value file names have directories");
        let proc_path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("no NUL");
        let cbase = CString::new(base).expect("no NUL");
        let mut last = io::Error::from_raw_os_error(libc::ENOENT);
        for _ in 0..10 {
            self.make_dirs(dir);
            let parent = match self.open_beneath(dir, libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC, 0) {
                Ok(p) => p,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    last = e;
                    continue;
                }
                Err(e) => return Err(e),
            };
            // linkat through /proc follows the descriptor to the unnamed
            // inode; unlike AT_EMPTY_PATH it needs no CAP_DAC_READ_SEARCH.
            // SAFETY: both paths are NUL-terminated; parent is open.
            let rc = unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    proc_path.as_ptr(),
                    parent.as_raw_fd(),
                    cbase.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            };
            if rc == 0 {
                return Ok(filename);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(e);
            }
            last = e;
        }
        Err(last)
    }

    /// Writes `data` to a new value file.
    pub fn write_bytes(&self, data: &[u8]) -> io::Result<String> {
        self.write_new(|f| {
            f.write_all(data)?;
            Ok(data.len() as u64)
        })
        .map(|(name, _)| name)
    }

    /// Opens a value file for reading.
    pub fn open_value(&self, filename: &str) -> Result<File, FetchError> {
        if !is_safe_relative(filename) {
            return Err(FetchError::Unsafe);
        }
        self.open_beneath(filename, libc::O_RDONLY | libc::O_CLOEXEC, 0).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => FetchError::Missing,
            Some(libc::ELOOP) | Some(libc::EXDEV) => FetchError::Unsafe,
            _ => FetchError::Io(e),
        })
    }

    /// Reads a whole value file.
    pub fn read_value(&self, filename: &str) -> Result<Vec<u8>, FetchError> {
        let mut file = self.open_value(filename)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(FetchError::Io)?;
        Ok(data)
    }

    /// The size of a value file (`os.path.getsize`), `None` if missing.
    pub fn file_size(&self, filename: &str) -> Result<Option<u64>, FetchError> {
        match self.open_value(filename) {
            Ok(f) => f.metadata().map(|m| Some(m.len())).map_err(FetchError::Io),
            Err(FetchError::Missing) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes a value file and then its directories if they became empty
    /// (`Disk.remove`). Errors are ignored, as in diskcache: two processes
    /// may remove the same file or directory at the same time. An unsafe
    /// name is logged and left alone.
    pub fn remove(&self, filename: &str) {
        if !is_safe_relative(filename) {
            log::error!("not removing value file {filename:?}: it points outside the cache directory");
            return;
        }
        let path = Path::new(filename);
        if let Err(e) = self.remove_entry(path)
            && matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EXDEV))
        {
            log::error!("not removing value file {filename:?}: a symbolic link is on its path");
            return;
        }
        self.remove_dirs(path.parent().unwrap_or(Path::new("")));
    }

    /// Removes one entry that is not a directory (a file, or a symbolic link
    /// itself, never what it points to), named relative to the cache
    /// directory: `unlinkat` in its parent, which is resolved beneath the
    /// root without following any symbolic link.
    pub fn remove_entry(&self, rel: &Path) -> io::Result<()> {
        self.unlink_beneath(rel, 0)
    }

    /// `os.removedirs` of a directory relative to the cache directory: the
    /// directory, then each parent it leaves empty, stopping at the cache
    /// directory (which still holds cache.db) or at the first one that is
    /// not empty. Returns whether `rel` itself was removed.
    pub fn remove_dirs(&self, rel: &Path) -> bool {
        let mut dir = rel;
        let mut first = true;
        let mut removed = false;
        while !dir.as_os_str().is_empty() {
            if self.unlink_beneath(dir, libc::AT_REMOVEDIR).is_err() {
                break;
            }
            removed |= first;
            first = false;
            dir = dir.parent().unwrap_or(Path::new(""));
        }
        removed
    }

    /// `unlinkat(parent, name, flags)` for a relative path of plain names,
    /// the parent opened beneath the root (`ELOOP`/`EXDEV` when a symbolic
    /// link is on the way). unlinkat itself never follows the last name.
    fn unlink_beneath(&self, rel: &Path, flags: i32) -> io::Result<()> {
        let einval = || io::Error::from_raw_os_error(libc::EINVAL);
        if !is_plain_relative(rel) {
            return Err(einval());
        }
        let base = rel.file_name().ok_or_else(einval)?;
        let cbase = CString::new(base.as_bytes()).map_err(|_| einval())?;
        let parent = match rel.parent() {
            Some(p) if !p.as_os_str().is_empty() => {
                Some(self.open_beneath(p, libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC, 0)?)
            }
            _ => None,
        };
        let dirfd = parent.as_ref().map_or(self.root.as_raw_fd(), |f| f.as_raw_fd());
        // SAFETY: dirfd is open; cbase is a single NUL-terminated name.
        if unsafe { libc::unlinkat(dirfd, cbase.as_ptr(), flags) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Every entry under the cache directory, for `check` (its `os.walk`),
    /// by directory descriptors: each subdirectory is opened from its
    /// parent's descriptor with `O_DIRECTORY | O_NOFOLLOW`, so a symbolic
    /// link is listed as an entry and never followed, and the walk cannot
    /// leave the directory even if names are swapped under it meanwhile.
    /// A directory that cannot be opened or read is skipped, as os.walk
    /// does; so is anything deeper than [`MAX_WALK_DEPTH`] (logged).
    pub fn walk(&self) -> Tree {
        let mut tree = Tree::default();
        match openat_dir(self.root.as_raw_fd(), c".") {
            Ok(fd) => self.walk_dir(fd, Path::new(""), 0, &mut tree),
            Err(e) => log::warn!("{}: cannot list the cache directory: {e}", self.directory.display()),
        }
        tree
    }

    fn walk_dir(&self, fd: OwnedFd, rel: &Path, depth: usize, tree: &mut Tree) {
        let Ok(stream) = DirStream::new(fd) else { return };
        let mut empty = true;
        let mut subdirs = Vec::new();
        for (name, d_type) in stream.entries() {
            empty = false;
            let path = rel.join(OsStr::from_bytes(name.as_bytes()));
            if is_directory(stream.fd(), &name, d_type) {
                subdirs.push((name, path));
            } else {
                tree.files.push(path);
            }
        }
        for (name, path) in subdirs {
            if depth + 1 > MAX_WALK_DEPTH {
                log::warn!(
                    "{}: not walking {}: deeper than {MAX_WALK_DEPTH}",
                    self.directory.display(),
                    path.display()
                );
                continue;
            }
            match openat_dir(stream.fd(), &name) {
                Ok(child) => self.walk_dir(child, &path, depth + 1, tree),
                // Replaced by a file or a symbolic link since it was listed.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) => tree.files.push(path),
                Err(_) => {}
            }
        }
        tree.dirs.push((rel.to_path_buf(), empty));
    }

    /// mkdir -p of a relative directory beneath the root; errors ignored
    /// (an existing directory is fine; anything worse shows at open).
    fn make_dirs(&self, dir: &str) {
        let mut prefix = String::new();
        for part in dir.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if let Ok(c) = CString::new(prefix.as_str()) {
                // SAFETY: root is open; c is relative and NUL-terminated.
                let made = unsafe { libc::mkdirat(self.root.as_raw_fd(), c.as_ptr(), 0o777) } == 0;
                if made && let Some((uid, gid)) = self.give_to {
                    // SAFETY: as above; AT_SYMLINK_NOFOLLOW: the name we just made
                    // is a directory, and a swapped-in link is never followed.
                    unsafe { libc::fchownat(self.root.as_raw_fd(), c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) };
                }
            }
        }
    }

    /// openat2 beneath the cache directory, refusing any symbolic link.
    fn open_beneath(&self, rel: impl AsRef<Path>, flags: i32, mode: u32) -> io::Result<File> {
        let c = CString::new(rel.as_ref().as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: open_how is a plain C struct; all zeroes is its "no flags" value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = flags as u64;
        // The mode counts for O_CREAT and for O_TMPFILE alike (an unnamed
        // file made without one is 0000, and stays so once linked).
        let creates = flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE;
        how.mode = if creates { mode as u64 } else { 0 };
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: arguments are valid for the openat2 syscall.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.root.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        Ok(unsafe { File::from_raw_fd(fd as i32) })
    }
}

impl Disk {
    /// The modification time of a file named in the cache directory itself
    /// (`cache.db`, `cache.db-wal`), by the directory's descriptor: never
    /// by path, which could lead through a mount.
    pub fn modified(&self, name: &str) -> Option<std::time::SystemTime> {
        let c = CString::new(name).ok()?;
        // SAFETY: stat is plain data; all zeroes is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: root is open, c NUL-terminated, st writable.
        if unsafe { libc::fstatat(self.root.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
            return None;
        }
        let since = std::time::Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec.clamp(0, 999_999_999) as u32);
        Some(std::time::UNIX_EPOCH + since)
    }

    /// The file system's sizes (`statvfs`) by the directory's descriptor.
    pub fn statvfs(&self) -> io::Result<libc::statvfs> {
        // SAFETY: statvfs is plain data; all zeroes is a valid value.
        let mut buf: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: root is open (fstatvfs takes an O_PATH descriptor); buf
        // is writable.
        if unsafe { libc::fstatvfs(self.root.as_raw_fd(), &mut buf) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(buf)
    }

    /// [`Disk::give_away`] of a file named in the cache directory itself
    /// (`cache.db`, which SQLite made by path).
    pub fn give_away_name(&self, name: &str) {
        let (Some((uid, gid)), Ok(c)) = (self.give_to, CString::new(name)) else { return };
        // SAFETY: root is open; c is a plain name; a link is never followed.
        if unsafe { libc::fchownat(self.root.as_raw_fd(), c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
            log::warn!(
                "{}/{name}: could not give it to uid {uid}: {}",
                self.directory.display(),
                io::Error::last_os_error()
            );
        }
    }

    /// Gives a file this process just made to the cache's owner (see
    /// `give_to`). Best effort: a file system without owners refuses, and
    /// the file is then as root made it.
    fn give_away(&self, file: &File) {
        if let Some((uid, gid)) = self.give_to {
            // SAFETY: the descriptor is open.
            if unsafe { libc::fchown(file.as_raw_fd(), uid, gid) } != 0 {
                log::warn!(
                    "{}: could not give a new value file to uid {uid}: {}",
                    self.directory.display(),
                    io::Error::last_os_error()
                );
            }
        }
    }
}

/// Whose a new file in the cache directory `root` should be: `None` unless
/// this process is root and the directory belongs to another user.
fn owner_to_give_to(root: &OwnedFd) -> io::Result<Option<(libc::uid_t, libc::gid_t)>> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    // SAFETY: stat is plain data; all zeroes is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open (fstat works on O_PATH); st is writable.
    if unsafe { libc::fstat(root.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.st_uid != 0).then_some((st.st_uid, st.st_gid)))
}

/// How deep [`Disk::walk`] goes below the cache directory. A cache made by
/// diskcache is two levels deep; the bound keeps a crafted tree from
/// exhausting descriptors (the walk holds one per level) or the stack.
pub const MAX_WALK_DEPTH: usize = 32;

/// What [`Disk::walk`] found, as paths relative to the cache directory.
#[derive(Debug, Default)]
pub struct Tree {
    /// Every entry that is not a directory: files, and symbolic links
    /// (whatever they point to; never followed).
    pub files: Vec<PathBuf>,
    /// Every directory, the cache directory itself as the empty path, with
    /// whether it was empty when listed; each comes after its contents.
    pub dirs: Vec<(PathBuf, bool)>,
}

/// `openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)`: a directory
/// to list, never through a symbolic link (`ELOOP`), never a file (`ENOTDIR`).
fn openat_dir(dirfd: i32, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: dirfd is open; name is NUL-terminated; the result is checked.
    let fd = unsafe {
        libc::openat(dirfd, name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether a listed entry is a directory itself (not a link to one): the
/// entry's `d_type`, or `fstatat(AT_SYMLINK_NOFOLLOW)` when the file system
/// does not fill it in.
fn is_directory(dirfd: i32, name: &CStr, d_type: u8) -> bool {
    match d_type {
        libc::DT_DIR => true,
        libc::DT_UNKNOWN => {
            // SAFETY: stat is a plain C struct, written by fstatat below.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: dirfd is open, name NUL-terminated, st writable.
            let rc = unsafe { libc::fstatat(dirfd, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
            rc == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR
        }
        _ => false,
    }
}

/// An open directory stream (`fdopendir`), closed on drop.
struct DirStream(*mut libc::DIR);

impl DirStream {
    fn new(fd: OwnedFd) -> io::Result<DirStream> {
        use std::os::fd::IntoRawFd;
        let raw = fd.into_raw_fd();
        // SAFETY: raw is an open directory descriptor; on success the
        // stream owns it, on failure we close it.
        let dir = unsafe { libc::fdopendir(raw) };
        if dir.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: raw is still ours when fdopendir fails.
            unsafe { libc::close(raw) };
            return Err(e);
        }
        Ok(DirStream(dir))
    }

    /// The stream's descriptor, to open and stat entries relative to it.
    fn fd(&self) -> i32 {
        // SAFETY: self.0 is an open stream.
        unsafe { libc::dirfd(self.0) }
    }

    /// Every entry but `.` and `..`, with its `d_type`.
    fn entries(&self) -> Vec<(CString, u8)> {
        let mut out = Vec::new();
        loop {
            // SAFETY: self.0 is an open stream; the entry is copied out
            // before the next readdir call may overwrite it.
            let ent = unsafe { libc::readdir(self.0) };
            if ent.is_null() {
                return out;
            }
            // SAFETY: ent points to a valid dirent with a NUL-terminated name.
            let (name, d_type) = unsafe { (CStr::from_ptr((*ent).d_name.as_ptr()), (*ent).d_type) };
            if name != c"." && name != c".." {
                out.push((name.to_owned(), d_type));
            }
        }
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: self.0 is an open stream, closed once here.
        unsafe { libc::closedir(self.0) };
    }
}

/// [`is_safe_relative`] for a path from [`Disk::walk`], which need not be
/// UTF-8: relative, plain names only.
fn is_plain_relative(rel: &Path) -> bool {
    !rel.as_os_str().is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)))
}

/// A lexical check before any syscall: relative, plain names only. (The
/// openat2 resolution is what actually guarantees we stay inside; this
/// turns the common crafted cases into a clear error early.)
pub fn is_safe_relative(filename: &str) -> bool {
    !filename.is_empty()
        && !filename.starts_with('/')
        && !filename.contains('\0')
        && filename.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Python's universal-newline read of a text file (`open(path, 'r')`):
/// `\r\n` and lone `\r` become `\n`. diskcache reads MODE_TEXT values this
/// way, so a str value read back from a file has no `\r`; we return what
/// Python returns.
pub fn universal_newlines(text: String) -> String {
    if !text.contains('\r') {
        return text;
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Fills `buf` from the kernel's random source (getrandom(2)).
pub fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of buf.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A cache directory holding `ab/cd/x.val`, an empty `ee/`, and `XX`, a
    /// symbolic link to an outside directory with a file and an empty
    /// directory in it. Returns (tempdir, cache dir, outside dir).
    fn linked_tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(dir.join("ab/cd")).unwrap();
        std::fs::create_dir_all(dir.join("ee")).unwrap();
        std::fs::write(dir.join("ab/cd/x.val"), b"x").unwrap();
        std::fs::create_dir_all(outside.join("empty")).unwrap();
        std::fs::write(outside.join("victim.val"), b"victim").unwrap();
        symlink(&outside, dir.join("XX")).unwrap();
        (root, dir, outside)
    }

    #[test]
    fn walk_lists_a_symlink_as_an_entry_and_never_follows_it() {
        let (_root, dir, _outside) = linked_tree();
        let disk = Disk::open(&dir).unwrap();
        let tree = disk.walk();
        let mut files = tree.files.clone();
        files.sort();
        assert_eq!(files, vec![PathBuf::from("XX"), PathBuf::from("ab/cd/x.val")]);
        let mut dirs = tree.dirs.clone();
        dirs.sort();
        let expect: Vec<(PathBuf, bool)> =
            [("", false), ("ab", false), ("ab/cd", false), ("ee", true)].map(|(p, e)| (PathBuf::from(p), e)).into();
        assert_eq!(dirs, expect);
        // Children come before their parents.
        let pos = |p: &str| tree.dirs.iter().position(|(d, _)| d == Path::new(p)).unwrap();
        assert!(pos("ab/cd") < pos("ab") && pos("ab") < pos(""));
    }

    #[test]
    fn removals_never_go_through_a_symlink() {
        let (_root, dir, outside) = linked_tree();
        let disk = Disk::open(&dir).unwrap();
        let err = disk.remove_entry(Path::new("XX/victim.val")).unwrap_err();
        assert!(matches!(err.raw_os_error(), Some(libc::ELOOP) | Some(libc::EXDEV)), "{err}");
        assert!(!disk.remove_dirs(Path::new("XX/empty")));
        disk.remove("XX/victim.val");
        assert_eq!(std::fs::read(outside.join("victim.val")).unwrap(), b"victim");
        assert!(outside.join("empty").is_dir());
        assert!(disk.remove_entry(Path::new("../outside/victim.val")).is_err());
        assert!(outside.join("victim.val").exists());
        // The link itself is an entry of the cache directory: removable.
        disk.remove_entry(Path::new("XX")).unwrap();
        assert!(std::fs::symlink_metadata(dir.join("XX")).is_err());
        assert!(outside.join("victim.val").exists());
        // remove() of a value file takes its emptied directories with it.
        disk.remove("ab/cd/x.val");
        assert!(!dir.join("ab").exists());
        assert!(dir.join("ee").is_dir(), "only the value file's own directories go");
        assert!(disk.remove_dirs(Path::new("ee")));
        assert!(dir.is_dir());
    }
}
