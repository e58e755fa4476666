//! Where the log goes, decided once when the command starts (`main.rs`
//! calls [`init`]); `RUST_LOG` sets the level everywhere (default `warn`).
//!
//! | started | destination | form |
//! |---|---|---|
//! | in a terminal, a pipe, a file | standard error | env_logger's: `[time LEVEL target] message` |
//! | by systemd, standard error to the journal | standard error | `<N>message`: sd-daemon(3)'s priority prefix, no time (the journal adds it) |
//! | `--syslog[=SOCKET]` (`--daemon` without `--log-file` when `/dev/log` is there) | datagrams to SOCKET (`/dev/log`) | `<PRI>diskcachefs[pid]: message`, facility daemon |
//! | `--daemon --log-file F` | F, appended | env_logger's |
//! | `--daemon`, no `/dev/log` | [`default_log_file`] | env_logger's |
//!
//! The journal is told apart from any other stream as systemd.exec(5) says:
//! `$JOURNAL_STREAM` holds the device and inode of the stream systemd
//! connected, and standard error is the journal only if it is still that
//! one (a `--daemon`'s child inherits the variable, not the stream).
//!
//! A syslog message is one datagram in the form glibc's syslog(3) sends
//! to the local socket, without the time, which the receiver adds (journald,
//! rsyslog and busybox syslogd take it so). Each is sent on its own to
//! the socket's path, so a syslog daemon that restarts (a new socket) is
//! found again; a message sent while none listens is lost, as with
//! syslog(3).

use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The variable systemd sets when it connects standard output or error
/// to the journal: `DEVICE:INODE` of that stream, in decimal.
pub const JOURNAL_STREAM: &str = "JOURNAL_STREAM";

/// The local syslog socket.
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// The level when `RUST_LOG` is not set. fuser::session's one warning is
/// "Failed to umount filesystem" when the session ends after an external
/// `umount` (ours, umount(8), fusermount3 -u): the normal way to stop a
/// mount, not a problem.
pub const DEFAULT_FILTER: &str = "warn,fuser::session=error";

/// syslog's facility `daemon` (RFC 5424, 3).
const FACILITY_DAEMON: u8 = 3;

/// Where this process's log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Standard error in env_logger's form (a terminal, a pipe, a file).
    Stderr,
    /// Standard error, which is the journal: priority prefixes, no time.
    Journal,
    /// Datagrams to this syslog socket.
    Syslog(PathBuf),
}

impl Destination {
    /// Standard error: [`Destination::Journal`] if `$JOURNAL_STREAM`
    /// names it, else [`Destination::Stderr`].
    pub fn stderr() -> Destination {
        if stderr_is_journal() { Destination::Journal } else { Destination::Stderr }
    }
}

/// Whether standard error is the stream `$JOURNAL_STREAM` names.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os(JOURNAL_STREAM) else { return false };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    stream_id(io::stderr()) == Some((dev, ino))
}

/// A descriptor's device and inode, as `$JOURNAL_STREAM` writes them.
fn stream_id(stream: impl std::os::fd::AsFd) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::File::from(stream.as_fd().try_clone_to_owned().ok()?);
    let meta = file.metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The destination [`init`] set up.
static DESTINATION: OnceLock<Destination> = OnceLock::new();

/// Sets up the `log` crate's logger (env_logger, filtered by `RUST_LOG`)
/// for `destination`. Once per process; later calls do nothing.
pub fn init(destination: Destination) {
    if DESTINATION.set(destination.clone()).is_err() {
        return;
    }
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(DEFAULT_FILTER));
    match destination {
        Destination::Stderr => {}
        Destination::Journal => {
            builder.write_style(env_logger::WriteStyle::Never).format(|buf, record| {
                buf.write_all(journal_lines(severity(record.level()), &message(record)).as_bytes())
            });
        }
        Destination::Syslog(socket) => match Syslog::new(socket) {
            Ok(syslog) => {
                builder
                    .write_style(env_logger::WriteStyle::Never)
                    .target(env_logger::Target::Pipe(Box::new(syslog)))
                    .format(|buf, record| buf.write_all(&syslog_datagram(severity(record.level()), &message(record))));
                // A panic's message would go to standard error, which
                // leads nowhere in a daemon that logs to syslog.
                std::panic::set_hook(Box::new(|info| log::error!("{info}")));
            }
            Err(e) => eprintln!("diskcachefs: no syslog socket ({e}); logging to standard error"),
        },
    }
    builder.init();
}

/// The command's last word when it fails (main.rs then exits 2):
/// `diskcachefs: MESSAGE` on standard error, with the error priority when
/// that is the journal; sent to syslog too when the log goes there (a
/// daemon's standard error leads nowhere).
pub fn report_failure(message: &str) {
    let text = format!("diskcachefs: {message}");
    match DESTINATION.get() {
        Some(Destination::Journal) => eprint!("{}", journal_lines(3, &text)),
        Some(Destination::Syslog(socket)) => {
            if let Ok(mut syslog) = Syslog::new(socket.clone()) {
                let _ = syslog.write(&syslog_datagram(3, message));
            }
            eprintln!("{text}");
        }
        _ => eprintln!("{text}"),
    }
}

/// A record's text: the message, after the module for other crates'
/// records (`fuser::session: ...`).
fn message(record: &log::Record) -> String {
    let target = record.target();
    if target == "diskcachefs" || target.starts_with("diskcachefs::") {
        record.args().to_string()
    } else {
        format!("{target}: {}", record.args())
    }
}

/// syslog's severity of a level, as sd-daemon(3)'s prefixes use it:
/// error 3, warn 4, info 6, debug and trace 7.
pub fn severity(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// `text` for the journal: every line with the priority prefix (the
/// journal reads each line of a stream as an entry of its own).
fn journal_lines(severity: u8, text: &str) -> String {
    let mut out = String::new();
    for line in text.split('\n') {
        out.push_str(&format!("<{severity}>{line}\n"));
    }
    out
}

/// One syslog message: `<PRI>diskcachefs[PID]: TEXT`, facility daemon.
fn syslog_datagram(severity: u8, text: &str) -> Vec<u8> {
    format!("<{}>diskcachefs[{}]: {text}", FACILITY_DAEMON * 8 + severity, std::process::id()).into_bytes()
}

/// env_logger's target for syslog: each write (env_logger writes a record
/// with one `write_all`) is one datagram to the socket's path.
struct Syslog {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Syslog {
    fn new(path: PathBuf) -> io::Result<Syslog> {
        Ok(Syslog { socket: UnixDatagram::unbound()?, path })
    }
}

impl Write for Syslog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.socket.send_to(buf, &self.path)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether `path` is a socket (what syslog listens on).
pub fn is_socket(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Where a `--daemon` logs: its `--log-file`, syslog, or the default log
/// file (when there is no syslog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonLog {
    File(PathBuf),
    Syslog(PathBuf),
}

impl fmt::Display for DaemonLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonLog::File(path) => write!(f, "{}", path.display()),
            DaemonLog::Syslog(socket) => write!(f, "syslog ({})", socket.display()),
        }
    }
}

impl DaemonLog {
    /// The choice for a `--daemon` of `mountpoint`: `log_file` if given;
    /// else syslog through `syslog` (`--syslog`) if given, which must be
    /// a socket; else syslog through `default_socket` (`/dev/log`) if it
    /// is a socket; else [`default_log_file`].
    pub fn choose(
        log_file: Option<&Path>,
        syslog: Option<&Path>,
        default_socket: &Path,
        mountpoint: &Path,
    ) -> Result<DaemonLog, String> {
        if let Some(path) = log_file {
            return Ok(DaemonLog::File(path.to_path_buf()));
        }
        if let Some(socket) = syslog {
            check_syslog_socket(socket)?;
            return Ok(DaemonLog::Syslog(socket.to_path_buf()));
        }
        if is_socket(default_socket) {
            return Ok(DaemonLog::Syslog(default_socket.to_path_buf()));
        }
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let state_home = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from);
        let home = std::env::var_os("HOME").map(PathBuf::from);
        default_log_file(mountpoint, root, state_home.as_deref(), home.as_deref())
            .map(DaemonLog::File)
            .ok_or_else(|| "no default log file: neither $XDG_STATE_HOME nor $HOME is set (give --log-file)".into())
    }

    /// The daemon's standard error: the log file, opened for appending
    /// (its directory made if needed), or nothing when it logs to syslog.
    pub fn stderr(&self) -> Result<std::process::Stdio, String> {
        match self {
            DaemonLog::Syslog(_) => Ok(std::process::Stdio::null()),
            DaemonLog::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| format!("log directory {}: {e}", dir.display()))?;
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("log file {}: {e}", path.display()))?;
                Ok(file.into())
            }
        }
    }
}

/// `--syslog SOCKET` must name a socket: a typo would lose every message.
pub fn check_syslog_socket(socket: &Path) -> Result<(), String> {
    if is_socket(socket) {
        Ok(())
    } else {
        Err(format!("--syslog={}: not a socket (no syslog daemon listens there)", socket.display()))
    }
}

/// Where a `--daemon` of `mountpoint` logs when there is neither
/// `--log-file` nor syslog: `/var/log/diskcachefs/NAME.log` for root,
/// else `$XDG_STATE_HOME/diskcachefs/NAME.log` (`$HOME/.local/state/...`
/// when `$XDG_STATE_HOME` is not set, or not absolute as the XDG spec
/// wants), NAME being the mount point as `systemd-escape --path` writes
/// it (`/mnt/cache`: `mnt-cache`; the instance name of its
/// `diskcachefs@.service` unit too). `None`: not root, and no home.
pub fn default_log_file(
    mountpoint: &Path,
    root: bool,
    state_home: Option<&Path>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    let name = format!("{}.log", escape_path(mountpoint));
    if root {
        return Some(Path::new("/var/log/diskcachefs").join(name));
    }
    let state = match state_home.filter(|p| p.is_absolute()) {
        Some(dir) => dir.to_path_buf(),
        None => home?.join(".local/state"),
    };
    Some(state.join("diskcachefs").join(name))
}

/// A path as `systemd-escape --path` writes it (systemd's
/// unit_name_path_escape): redundant and trailing `/` and `.` components
/// dropped, the leading `/` too, then `/` as `-`; `-`, `\` and every byte
/// but ASCII letters, digits, `:`, `_` and `.` as `\xNN`, a leading `.`
/// too; the root is `-`. (`..` is kept as is: the mount point given is
/// resolved first.)
pub fn escape_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let parts: Vec<&[u8]> =
        path.as_os_str().as_bytes().split(|&b| b == b'/').filter(|p| !p.is_empty() && *p != b".").collect();
    if parts.is_empty() {
        return "-".into();
    }
    let joined = parts.join(&b'/');
    let mut out = String::new();
    for (i, &b) in joined.iter().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b':' | b'_' | b'.' => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_escape_as_systemd_escape_path_does() {
        // The values `systemd-escape --path` prints (systemd 252);
        // tests/service.rs runs it on more.
        assert_eq!(escape_path(Path::new("/mnt/cache")), "mnt-cache");
        assert_eq!(escape_path(Path::new("/")), "-");
        assert_eq!(escape_path(Path::new("//mnt//my-cache/./")), "mnt-my\\x2dcache");
        assert_eq!(escape_path(Path::new("/.hidden/a b")), "\\x2ehidden-a\\x20b");
        assert_eq!(escape_path(Path::new("/srv/caché")), "srv-cach\\xc3\\xa9");
    }

    #[test]
    fn the_default_log_file_is_var_log_for_root_and_the_state_home_for_others() {
        let mnt = Path::new("/mnt/cache");
        let home = Some(Path::new("/home/u"));
        assert_eq!(default_log_file(mnt, true, None, home).unwrap(), Path::new("/var/log/diskcachefs/mnt-cache.log"));
        assert_eq!(
            default_log_file(mnt, true, Some(Path::new("/s")), None).unwrap(),
            Path::new("/var/log/diskcachefs/mnt-cache.log")
        );
        assert_eq!(
            default_log_file(mnt, false, Some(Path::new("/s")), home).unwrap(),
            Path::new("/s/diskcachefs/mnt-cache.log")
        );
        assert_eq!(
            default_log_file(mnt, false, None, home).unwrap(),
            Path::new("/home/u/.local/state/diskcachefs/mnt-cache.log")
        );
        // A relative XDG_STATE_HOME is ignored, as the XDG spec says.
        assert_eq!(
            default_log_file(mnt, false, Some(Path::new("rel")), home).unwrap(),
            Path::new("/home/u/.local/state/diskcachefs/mnt-cache.log")
        );
        assert_eq!(default_log_file(mnt, false, None, None), None);
    }

    #[test]
    fn a_daemon_logs_to_its_log_file_else_syslog_else_the_default_file() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("log");
        let mnt = dir.path().join("m");
        let file = dir.path().join("f.log");
        let absent = dir.path().join("absent");
        // No socket at the default path: the default log file.
        match DaemonLog::choose(None, None, &absent, &mnt) {
            Ok(DaemonLog::File(path)) => assert!(path.ends_with(format!("{}.log", escape_path(&mnt))), "{path:?}"),
            other => panic!("{other:?}"),
        }
        // --syslog naming no socket is refused.
        let refused = DaemonLog::choose(None, Some(&absent), &absent, &mnt).unwrap_err();
        assert!(refused.contains("not a socket"), "{refused}");
        let _listening = UnixDatagram::bind(&socket).unwrap();
        assert_eq!(DaemonLog::choose(None, None, &socket, &mnt), Ok(DaemonLog::Syslog(socket.clone())));
        assert_eq!(DaemonLog::choose(None, Some(&socket), &absent, &mnt), Ok(DaemonLog::Syslog(socket.clone())));
        assert_eq!(DaemonLog::choose(Some(&file), None, &socket, &mnt), Ok(DaemonLog::File(file.clone())));
    }

    #[test]
    fn journal_lines_carry_the_priority_on_every_line() {
        assert_eq!(journal_lines(3, "a\nb"), "<3>a\n<3>b\n");
        assert_eq!(severity(log::Level::Warn), 4);
        assert_eq!(syslog_datagram(6, "x"), format!("<30>diskcachefs[{}]: x", std::process::id()).into_bytes());
    }
}
