//! Running under a service manager: systemd's readiness protocol
//! (sd_notify(3)), spoken without libsystemd so that the binary links
//! nothing a wheel cannot carry.
//!
//! A process started with `$NOTIFY_SOCKET` (systemd's `Type=notify`, or
//! any program that wants to know when a mount is ready, such as the
//! Python helper `diskcachefs.mount`) is sent `READY=1` once the mount is
//! visible, or `STATUS=` with the reason it failed. The protocol is one
//! datagram of `KEY=VALUE` lines to a Unix socket whose path is the
//! variable's value; a value that starts with `@` names a socket in the
//! abstract namespace.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Where readiness goes: the socket `$NOTIFY_SOCKET` names.
#[derive(Debug, Clone)]
pub struct Notifier {
    address: String,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for, if it is set and not empty.
    pub fn from_env() -> Option<Notifier> {
        let address = std::env::var(NOTIFY_SOCKET).ok().filter(|a| !a.is_empty())?;
        Some(Notifier { address })
    }

    /// Sends one message of `KEY=VALUE` lines.
    pub fn notify(&self, message: &str) -> io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        let address = match self.address.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes())?
            }
            None => SocketAddr::from_pathname(&self.address)?,
        };
        socket.send_to_addr(message.as_bytes(), &address)?;
        Ok(())
    }

    /// The mount is ready: `READY=1` with a status line saying what is
    /// served where.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.notify(&format!("READY=1\nSTATUS={}\nMAINPID={}", one_line(status), std::process::id()))
    }

    /// The mount failed before it was ready; systemd shows the status
    /// line in `systemctl status`.
    pub fn failed(&self, reason: &str) -> io::Result<()> {
        self.notify(&format!("STATUS=failed: {}", one_line(reason)))
    }

    /// The daemon has begun to unmount.
    pub fn stopping(&self) -> io::Result<()> {
        self.notify("STOPPING=1")
    }
}

/// A status value is one line of the message.
fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

/// Starts a thread with every signal blocked, so that SIGINT and SIGTERM
/// reach the daemon's signal thread (or the default action) and never a
/// library thread that would die of them.
pub fn spawn_without_signals(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // SAFETY: sigset manipulation on local sets; pthread_sigmask changes
    // only this thread's mask, restored right after the spawn.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        let thread = std::thread::Builder::new().name(name.into()).spawn(f);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        thread
    }
}
