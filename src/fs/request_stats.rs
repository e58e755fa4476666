//! What the mount has served, for its operator: for each kind of FUSE
//! request, how many came, how many failed and with which errno, and how
//! long they took (a histogram). Shown in the `requests` section of the
//! `stats` file and by `diskcachefs stats MOUNTPOINT` (docs/SEMANTICS.md,
//! "What the mount served"), and logged when the session ends.
//!
//! Recording is lock-free (relaxed atomics: a report read while requests
//! run may be a request or two behind, never torn within a counter), so
//! counting never makes a request wait for another.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value as Json, json};

macro_rules! operations {
    ($($variant:ident => $name:literal,)*) => {
        /// A kind of request, as the kernel names it (lower case).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Operation { $($variant,)* }

        impl Operation {
            pub const ALL: &'static [Operation] = &[$(Operation::$variant,)*];

            pub fn name(self) -> &'static str {
                match self { $(Operation::$variant => $name,)* }
            }
        }
    };
}

operations! {
    Lookup => "lookup",
    Forget => "forget",
    Getattr => "getattr",
    Setattr => "setattr",
    Mknod => "mknod",
    Mkdir => "mkdir",
    Unlink => "unlink",
    Rmdir => "rmdir",
    Symlink => "symlink",
    Readlink => "readlink",
    Rename => "rename",
    Link => "link",
    Open => "open",
    Read => "read",
    Write => "write",
    Flush => "flush",
    Release => "release",
    Fsync => "fsync",
    Opendir => "opendir",
    Readdir => "readdir",
    Readdirplus => "readdirplus",
    Statfs => "statfs",
    Setxattr => "setxattr",
    Getxattr => "getxattr",
    Listxattr => "listxattr",
    Removexattr => "removexattr",
    Create => "create",
    Ioctl => "ioctl",
    Fallocate => "fallocate",
    Lseek => "lseek",
    CopyFileRange => "copy_file_range",
}

/// Errnos up to this are counted one by one (Linux's largest is 133);
/// larger ones share the last slot.
const ERRNO_SLOTS: usize = 134;

/// Latency buckets in microseconds: 0, 1, 2 and 3 us exactly, then four
/// buckets per power of two (so a bucket's upper edge is at most 25% above
/// any latency in it), up to 2^35 us (9.5 hours); longer ones fall in the
/// last.
const SUB_BUCKETS: u32 = 4;
const BUCKETS: usize = 4 + 34 * SUB_BUCKETS as usize;

fn bucket_of(micros: u64) -> usize {
    if micros < 4 {
        return micros as usize;
    }
    let octave = 63 - micros.leading_zeros(); // >= 2
    let sub = (micros >> (octave - 2)) & (SUB_BUCKETS as u64 - 1);
    (4 + (octave as usize - 2) * SUB_BUCKETS as usize + sub as usize).min(BUCKETS - 1)
}

/// The largest latency, in microseconds, bucket `i` holds.
fn bucket_upper(i: usize) -> u64 {
    if i < 4 {
        return i as u64;
    }
    let octave = (i - 4) as u32 / SUB_BUCKETS + 2;
    let sub = (i - 4) as u64 % SUB_BUCKETS as u64;
    ((SUB_BUCKETS as u64 + sub + 1) << (octave - 2)) - 1
}

struct OperationStats {
    count: AtomicU64,
    errors: AtomicU64,
    by_errno: [AtomicU64; ERRNO_SLOTS],
    total_micros: AtomicU64,
    max_micros: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Default for OperationStats {
    fn default() -> OperationStats {
        OperationStats {
            count: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            by_errno: std::array::from_fn(|_| AtomicU64::new(0)),
            total_micros: AtomicU64::new(0),
            max_micros: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Every request the mount has served, by kind.
pub struct RequestStats {
    since: SystemTime,
    operations: Vec<OperationStats>,
    /// How requests reach the daemon (`/dev/fuse` or io_uring), as the
    /// adapter reports it once the session is made (fs/mount.rs).
    transport: std::sync::OnceLock<TransportReport>,
}

/// The `transport` section of `stats`, made when asked.
pub type TransportReport = Box<dyn Fn() -> Json + Send + Sync>;

impl Default for RequestStats {
    fn default() -> RequestStats {
        RequestStats {
            since: SystemTime::now(),
            operations: Operation::ALL.iter().map(|_| OperationStats::default()).collect(),
            transport: std::sync::OnceLock::new(),
        }
    }
}

/// One kind's numbers, read at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct OperationReport {
    pub operation: Operation,
    /// Requests come, answered or not.
    pub count: u64,
    pub errors: u64,
    /// (errno, how many), in errno order.
    pub errnos: Vec<(i32, u64)>,
    pub total_micros: u64,
    pub max_micros: u64,
    /// (largest latency in the bucket in microseconds, how many), the
    /// non-empty buckets in order: the requests answered.
    pub histogram: Vec<(u64, u64)>,
}

impl OperationReport {
    /// How many have been answered (`count` includes those in progress).
    pub fn finished(&self) -> u64 {
        self.histogram.iter().map(|(_, n)| n).sum()
    }

    /// The latency at or below which `fraction` of the requests finished,
    /// as a bucket's upper edge (at most 25% above the true value), never
    /// above the longest seen.
    pub fn percentile(&self, fraction: f64) -> u64 {
        let total: u64 = self.histogram.iter().map(|(_, n)| n).sum();
        let wanted = ((total as f64 * fraction).ceil() as u64).max(1);
        let mut seen = 0;
        for (upper, n) in &self.histogram {
            seen += n;
            if seen >= wanted {
                return (*upper).min(self.max_micros);
            }
        }
        self.max_micros
    }
}

impl RequestStats {
    /// A request of kind `op` has come. Counted before it is answered, so
    /// that whatever the kernel asks after the answer (the read of `stats`
    /// that follows a LOOKUP of it, say) sees it counted.
    pub fn started(&self, op: Operation) {
        self.operations[op as usize].count.fetch_add(1, Relaxed);
    }

    /// A request of kind `op` took `elapsed`, its reply included.
    pub fn finished(&self, op: Operation, elapsed: Duration) {
        let s = &self.operations[op as usize];
        let micros = elapsed.as_micros().min(u64::MAX as u128) as u64;
        s.total_micros.fetch_add(micros, Relaxed);
        s.max_micros.fetch_max(micros, Relaxed);
        s.latency[bucket_of(micros)].fetch_add(1, Relaxed);
    }

    /// A request of kind `op` answered with `errno`.
    pub fn failed(&self, op: Operation, errno: i32) {
        let s = &self.operations[op as usize];
        s.errors.fetch_add(1, Relaxed);
        s.by_errno[(errno.max(0) as usize).min(ERRNO_SLOTS - 1)].fetch_add(1, Relaxed);
    }

    /// Every request counted so far, of any kind.
    pub fn total(&self) -> u64 {
        self.operations.iter().map(|s| s.count.load(Relaxed)).sum()
    }

    /// The kinds seen at least once, in [`Operation::ALL`]'s order.
    pub fn report(&self) -> Vec<OperationReport> {
        Operation::ALL
            .iter()
            .zip(&self.operations)
            .filter_map(|(&operation, s)| {
                let count = s.count.load(Relaxed);
                (count > 0).then(|| OperationReport {
                    operation,
                    count,
                    errors: s.errors.load(Relaxed),
                    errnos: (0..ERRNO_SLOTS)
                        .filter_map(|e| {
                            let n = s.by_errno[e].load(Relaxed);
                            (n > 0).then_some((e as i32, n))
                        })
                        .collect(),
                    total_micros: s.total_micros.load(Relaxed),
                    max_micros: s.max_micros.load(Relaxed),
                    histogram: (0..BUCKETS)
                        .filter_map(|i| {
                            let n = s.latency[i].load(Relaxed);
                            (n > 0).then(|| (bucket_upper(i), n))
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// `lookup=12 getattr=3 ...`, the kinds seen at least once (the line
    /// logged at unmount).
    pub fn summary(&self) -> String {
        self.report().iter().map(|r| format!("{}={}", r.operation.name(), r.count)).collect::<Vec<_>>().join(" ")
    }

    /// Sets how `stats` tells the transport (once).
    pub fn set_transport(&self, report: TransportReport) {
        let _ = self.transport.set(report);
    }

    /// The `transport` section of `stats`, once set.
    pub fn transport_json(&self) -> Option<Json> {
        self.transport.get().map(|report| report())
    }

    /// The `requests` section of `stats` (its format is documented in
    /// docs/SEMANTICS.md, "What the mount served").
    pub fn to_json(&self) -> Json {
        let since = self.since.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let mut operations = Map::new();
        for r in self.report() {
            let errnos: Map<String, Json> =
                r.errnos.iter().map(|(e, n)| (crate::fs::error::errno_name(*e), json!(n))).collect();
            let histogram: Vec<Json> = r.histogram.iter().map(|(upper, n)| json!([upper, n])).collect();
            operations.insert(
                r.operation.name().to_string(),
                json!({
                    "count": r.count,
                    "errors": r.errors,
                    "errnos": errnos,
                    "latency_us": {
                        "mean": (r.total_micros as f64 / r.finished().max(1) as f64 * 10.0).round() / 10.0,
                        "p50": r.percentile(0.50),
                        "p90": r.percentile(0.90),
                        "p99": r.percentile(0.99),
                        "max": r.max_micros,
                    },
                    "histogram_us": histogram,
                }),
            );
        }
        json!({ "since": since, "operations": operations })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_latency_falls_in_a_bucket_whose_upper_edge_is_within_a_quarter_above_it() {
        let mut samples: Vec<u64> = (0..5000).collect();
        samples.extend((0..64).flat_map(|s| [1u64 << s, (1u64 << s).saturating_sub(1), (1u64 << s) + 1]));
        for micros in samples {
            let i = bucket_of(micros);
            if i == BUCKETS - 1 {
                assert!(micros >= 1 << 35, "{micros} in the overflow bucket");
                continue;
            }
            let upper = bucket_upper(i);
            assert!(upper >= micros, "{micros} us in bucket {i} whose upper edge is {upper}");
            assert!(upper as f64 <= micros as f64 * 1.25 + 1.0, "{micros} us in bucket {i} up to {upper}");
            if i > 0 {
                assert!(bucket_upper(i - 1) < micros, "{micros} us belongs in an earlier bucket than {i}");
            }
        }
    }

    #[test]
    fn percentiles_come_from_the_histogram_and_errors_by_errno() {
        let stats = RequestStats::default();
        for micros in 1..=100u64 {
            stats.started(Operation::Read);
            stats.finished(Operation::Read, Duration::from_micros(micros));
        }
        stats.started(Operation::Lookup);
        stats.finished(Operation::Lookup, Duration::from_micros(40));
        stats.started(Operation::Lookup);
        stats.failed(Operation::Lookup, libc::ENOENT);
        let report = stats.report();
        assert_eq!(report.len(), 2);
        let lookup = &report[0];
        assert_eq!((lookup.operation, lookup.count, lookup.finished(), lookup.errors), (Operation::Lookup, 2, 1, 1));
        assert_eq!(lookup.errnos, vec![(libc::ENOENT, 1)]);
        let read = &report[1];
        assert_eq!((read.count, read.max_micros, read.total_micros), (100, 100, 5050));
        let p50 = read.percentile(0.5);
        assert!((50..=63).contains(&p50), "p50 {p50}");
        let p99 = read.percentile(0.99);
        assert!((99..=100).contains(&p99), "p99 {p99}");
        assert_eq!(read.percentile(1.0), 100, "never above the longest");
        assert_eq!(stats.summary(), "lookup=2 read=100");
        assert_eq!(stats.to_json()["operations"]["lookup"]["latency_us"]["mean"], 40.0, "over the answered ones");
        let json = stats.to_json();
        assert_eq!(json["operations"]["lookup"]["errnos"]["ENOENT"], 1);
        assert_eq!(json["operations"]["read"]["latency_us"]["mean"], 50.5);
        let buckets: u64 =
            json["operations"]["read"]["histogram_us"].as_array().unwrap().iter().map(|b| b[1].as_u64().unwrap()).sum();
        assert_eq!(buckets, 100);
    }
}
