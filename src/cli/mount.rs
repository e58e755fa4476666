//! The mount and umount subcommands: serving a cache in the foreground, or as a daemon that reports readiness.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use super::args::{Command, MountArgs, ServeArgs};
use super::exit::Failure;

/// Standard error (the journal's form when it is the journal), or syslog
/// for a mount given `--syslog`: in the foreground, or in the daemon a
/// `--daemon` parent starts (which logs to the terminal itself).
pub(crate) fn log_destination(command: &Command) -> diskcachefs::logging::Destination {
    match command {
        Command::Mount(MountArgs { syslog: Some(socket), daemon, .. })
            if !daemon || std::env::var_os(READY_FD).is_some() =>
        {
            diskcachefs::logging::Destination::Syslog(socket.clone())
        }
        _ => diskcachefs::logging::Destination::stderr(),
    }
}

pub(crate) fn mount(args: MountArgs, argv: &[OsString]) -> Result<ExitCode, Failure> {
    let mut config = diskcachefs::fs::mount::MountConfig {
        cache_dir: args.cache_dir.clone(),
        mountpoint: args.mountpoint.clone(),
        read_only: args.read_only,
        allow_other: args.allow_other,
        ttl: std::time::Duration::from_secs_f64(args.attr_timeout),
        // The watcher makes long times safe (a day; --attr-timeout 0 still
        // means no caching at all).
        watched_ttl: if args.attr_timeout == 0.0 || args.open_requests {
            std::time::Duration::from_secs_f64(args.attr_timeout)
        } else {
            std::time::Duration::from_secs(86_400)
        },
        open_requests: args.open_requests,
        stale_as_miss: args.stale_as_miss,
        // The default where the kernel offers it (docs/PERFORMANCE.md,
        // "FUSE over io_uring"); --io-uring says so explicitly.
        io_uring: !args.no_io_uring,
        passthrough: !args.no_passthrough,
        max_inodes: args.max_inodes,
        threads: args.threads,
        timeout: std::time::Duration::from_secs_f64(args.timeout),
        notifier: None,
        remote: args.remote.tier_config()?,
        create: args.create,
        log_file: args.log_file.clone(),
    };
    if let Some(socket) = &args.syslog {
        diskcachefs::logging::check_syslog_socket(socket)?;
    }
    if let Some(log) = &args.log_file {
        check_log_file(log)?;
    }
    // The child that `--daemon` starts has the very same command line (so
    // no option can be lost on the way) and reports readiness on this
    // descriptor, which also tells it that it is the daemon.
    let ready_fd = take_ready_fd();
    if args.daemon && ready_fd.is_none() {
        // The places (mount point, CACHE_DIR) are checked by the daemon in
        // `run`, which tells this parent, a service manager and its log
        // why it will not mount.
        return daemonize(&args, argv);
    }
    // A service manager (systemd's Type=notify, or the Python helper)
    // hears of readiness on $NOTIFY_SOCKET; the --daemon parent above left
    // it to this process, the one that serves.
    let notifier = diskcachefs::service::Notifier::from_env();
    // SAFETY: no thread of ours runs yet (the mount's come later).
    unsafe { std::env::remove_var(diskcachefs::service::NOTIFY_SOCKET) };
    config.notifier = notifier.clone();
    let ready = |result: Result<(), String>| {
        if let Some(notifier) = &notifier {
            let sent = match &result {
                Ok(()) => {
                    notifier.ready(&format!("serving {} at {}", args.cache_dir.display(), args.mountpoint.display()))
                }
                Err(e) => notifier.failed(e),
            };
            if let Err(e) = sent {
                log::warn!("could not tell ${} of the mount: {e}", diskcachefs::service::NOTIFY_SOCKET);
            }
        }
        if let Some(fd) = ready_fd {
            use std::os::fd::FromRawFd;
            // SAFETY: the parent passed us this pipe's write end.
            let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
            let _ = match result {
                Ok(()) => pipe.write_all(b"ready"),
                Err(e) => pipe.write_all(e.as_bytes()),
            };
        }
    };
    diskcachefs::fs::mount::run(&config, ready)?;
    Ok(ExitCode::SUCCESS)
}

/// `diskcachefs serve`: prints the URL once listening, serves until a
/// signal.
pub(crate) fn serve(args: ServeArgs) -> Result<ExitCode, Failure> {
    let ServeArgs { cache_dir, listen, token_file, max_body, read_only, timeout, remote } = args;
    let token = match token_file {
        None => None,
        Some(path) => {
            let text =
                std::fs::read_to_string(&path).map_err(|e| Failure(format!("--token-file {}: {e}", path.display())))?;
            let token = text.trim().to_string();
            if token.len() < 16 || token.contains(char::is_whitespace) {
                return Err(Failure(format!(
                    "--token-file {}: the token must be at least 16 characters, without white space inside",
                    path.display()
                )));
            }
            Some(token)
        }
    };
    let config = diskcachefs::fs::serve::ServeConfig {
        cache_dir,
        listen,
        read_only,
        timeout: std::time::Duration::from_secs_f64(timeout),
        token,
        max_body,
        remote: remote.tier_config()?,
    };
    diskcachefs::fs::serve::run(&config, |url| {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{url}");
        let _ = out.flush();
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn umount(mountpoint: &Path, if_mounted: bool) -> Result<ExitCode, Failure> {
    match diskcachefs::fs::mount::unmount(mountpoint, false) {
        Err(diskcachefs::fs::mount::MountError::NotMounted(_)) if if_mounted => Ok(ExitCode::SUCCESS),
        result => {
            result?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--log-file`: its directory must be there (a typo would otherwise
/// make directories nobody asked for, or lose every line), and the file
/// writable by this user.
fn check_log_file(log: &Path) -> Result<(), Failure> {
    let dir = match log.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Failure(format!("--log-file {}: no such directory {}", log.display(), dir.display())));
    }
    if log.is_dir() {
        return Err(Failure(format!("--log-file {}: a directory, not a file", log.display())));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Failure(format!("--log-file {}: {e}", log.display())))?;
    Ok(())
}

const READY_FD: &str = "DISKCACHEFS_READY_FD";

/// The ready pipe a `--daemon` parent passed us, taken out of the
/// environment so that nothing the daemon runs inherits it.
fn take_ready_fd() -> Option<i32> {
    let fd = std::env::var(READY_FD).ok().and_then(|v| v.parse().ok());
    // SAFETY: called before any thread of ours starts (the mount's come later).
    unsafe { std::env::remove_var(READY_FD) };
    fd
}

/// Starts the daemon as a child in its own session and returns once it
/// says the mount is ready (exit 0) or why it failed (exit 2). The child
/// runs `argv` unchanged, `--daemon` included: the ready pipe makes it
/// serve instead of starting another child, and every option reaches it
/// as given (the arguments used to be rebuilt by hand, and `--max-inodes`
/// was dropped).
fn daemonize(args: &MountArgs, argv: &[OsString]) -> Result<ExitCode, Failure> {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    use std::os::unix::process::CommandExt;

    // Where the daemon logs (logging.rs, DaemonLog): its standard error
    // is the log file, or nothing when it sends to syslog, which it is
    // told by a `--syslog=SOCKET` after the arguments it was given.
    let mountpoint = args.mountpoint.canonicalize().unwrap_or_else(|_| args.mountpoint.clone());
    let log = diskcachefs::logging::DaemonLog::choose(
        args.log_file.as_deref(),
        args.syslog.as_deref(),
        Path::new(diskcachefs::logging::SYSLOG_SOCKET),
        &std::path::absolute(&mountpoint).unwrap_or(mountpoint.clone()),
    )?;
    let stderr = log.stderr()?;
    let mut fds = [0i32; 2];
    // SAFETY: fds receives two new descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(Failure(format!("pipe: {}", io::Error::last_os_error())));
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(&argv[1..]);
    if let diskcachefs::logging::DaemonLog::Syslog(socket) = &log
        && args.syslog.is_none()
    {
        let mut arg = OsString::from("--syslog=");
        arg.push(socket);
        cmd.arg(arg);
    }
    cmd.env(READY_FD, write_fd.to_string());
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    cmd.stderr(stderr);
    // SAFETY: setsid and fcntl are async-signal-safe; the read end must not
    // leak into the child, and the child leaves our session.
    unsafe {
        cmd.pre_exec(move || {
            libc::close(read_fd);
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // SAFETY: our copy of the write end; closing it lets read() see EOF
    // if the child dies before reporting.
    unsafe { libc::close(write_fd) };
    let mut reader = unsafe { std::fs::File::from_raw_fd(read_fd) };
    let mut message = String::new();
    let _ = reader.read_to_string(&mut message);
    if message == "ready" {
        log::info!("daemon {} serving {}, logging to {log}", child.id(), args.mountpoint.display());
        return Ok(ExitCode::SUCCESS);
    }
    if message.is_empty() {
        message = "the daemon exited before the mount was ready".into();
    }
    Err(Failure(message))
}
