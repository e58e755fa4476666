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

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
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
        Ok(Disk { directory: directory.to_path_buf(), root })
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The absolute path of a value file, for messages and `check`.
    pub fn full_path(&self, filename: &str) -> PathBuf {
        self.directory.join(filename)
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
                Ok(f) => return Ok(f),
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
            Ok(f) => Ok(Some(f)),
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
        let (dir, base) = filename.rsplit_once('/').unwrap_or(("", filename));
        let parent = if dir.is_empty() {
            None
        } else {
            match self.open_beneath(dir, libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC, 0) {
                Ok(f) => Some(f),
                Err(e) => {
                    if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EXDEV)) {
                        log::error!("not removing value file {filename:?}: a symbolic link is on its path");
                    }
                    return;
                }
            }
        };
        let dirfd = parent.as_ref().map_or(self.root.as_raw_fd(), |f| f.as_raw_fd());
        let Ok(cbase) = CString::new(base) else { return };
        // SAFETY: dirfd is open; cbase is a single path component.
        unsafe { libc::unlinkat(dirfd, cbase.as_ptr(), 0) };
        // os.removedirs: the leaf directory, then its parents, stopping at
        // the cache directory (which still holds cache.db).
        let mut d = dir;
        while !d.is_empty() {
            let Ok(cd) = CString::new(d) else { return };
            // SAFETY: root is open; cd is a relative path of plain names.
            if unsafe { libc::unlinkat(self.root.as_raw_fd(), cd.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
                return;
            }
            d = d.rsplit_once('/').map_or("", |(p, _)| p);
        }
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
                unsafe { libc::mkdirat(self.root.as_raw_fd(), c.as_ptr(), 0o777) };
            }
        }
    }

    /// openat2 beneath the cache directory, refusing any symbolic link.
    fn open_beneath(&self, rel: &str, flags: i32, mode: u32) -> io::Result<File> {
        let c = CString::new(rel).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = flags as u64;
        how.mode = if flags & libc::O_CREAT != 0 { mode as u64 } else { 0 };
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
