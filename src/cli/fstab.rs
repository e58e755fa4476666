//! The mount(8) form (`mount -t fuse.diskcachefs`, /etc/fstab), rewritten into `diskcachefs mount` arguments.

use std::ffi::OsString;

use clap::CommandFactory;

use super::args::Cli;

/// Whether `args` is the form mount.fuse3 runs, and only that:
/// `diskcachefs SOURCE MOUNTPOINT` followed by nothing but `-o OPTS`
/// pairs, SOURCE a path (it has a `/`, as an fstab's source has). Any other
/// first word goes to clap, which answers "unrecognized subcommand" (a
/// typo such as `diskcachefs mout ~/cache` used to mount a new empty cache
/// named `mout` over the user's cache).
fn is_mount_8_form(args: &[OsString]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let [_, source, _mountpoint, rest @ ..] = args else { return false };
    let source = source.as_bytes();
    if source.starts_with(b"-") || !source.contains(&b'/') {
        return false;
    }
    rest.len() % 2 == 0 && rest.chunks(2).all(|pair| pair[0] == "-o")
}

/// `mount -t fuse.diskcachefs CACHE_DIR MOUNTPOINT -o OPTS` (and /etc/fstab)
/// runs `diskcachefs CACHE_DIR MOUNTPOINT -o OPTS` through mount.fuse3.
/// That form becomes `mount CACHE_DIR MOUNTPOINT --daemon` plus every
/// option of `mount`, read from the subcommand's own definition so that a
/// new option is passable at once: `NAME` or `NAME=VALUE`, NAME spelled
/// with `_` or `-` (`max_inodes=500`, `threads=8`, `attr_timeout=5`,
/// `allow_other`, `log_file=/var/log/x`), and `ro` for `--read-only`; clap
/// then checks values as on the command line. Other options (rw, nodev,
/// nofail, _netdev, x-systemd.*, subtype, ...) concern mount(8) or the
/// kernel and are ignored.
pub(crate) fn fstab_arguments(args: Vec<OsString>) -> Vec<OsString> {
    if !is_mount_8_form(&args) {
        return args;
    }
    let cli = Cli::command();
    let mount = cli.find_subcommand("mount").expect("the mount subcommand");
    let mut out = vec![args[0].clone(), "mount".into(), args[1].clone(), args[2].clone(), "--daemon".into()];
    let mut rest = args[3..].iter();
    while let Some(arg) = rest.next() {
        if arg == "-o" {
            let Some(opts) = rest.next() else { break };
            for opt in opts.to_string_lossy().split(',') {
                let (name, value) = match opt.split_once('=') {
                    Some((name, value)) => (name, Some(value)),
                    None => (opt, None),
                };
                let long = if name == "ro" { "read-only".to_string() } else { name.replace('_', "-") };
                // --daemon is implied (mount(8) must not wait for the mount's
                // end); --help and --version would mount nothing.
                let known = !["daemon", "help", "version"].contains(&long.as_str())
                    && mount.get_arguments().any(|a| a.get_long() == Some(&long));
                match value {
                    _ if !known => {}
                    Some(value) => out.push(format!("--{long}={value}").into()),
                    None => out.push(format!("--{long}").into()),
                }
            }
        }
    }
    out
}
