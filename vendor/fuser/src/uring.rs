//! FUSE over io_uring (Linux 6.14+, `CONFIG_FUSE_IO_URING`, turned on by
//! root with `/sys/module/fuse/parameters/enable_uring`): a diskcachefs
//! patch on fuser 0.18 (vendor/fuser/PATCHES.md; upstream cberner/fuser#380).
//!
//! The kernel keeps one request queue per possible CPU and hands each
//! request to the queue of the CPU its caller runs on. A server registers
//! ring entries on every queue (`FUSE_IO_URING_CMD_REGISTER`, an
//! `IORING_OP_URING_CMD` on the `/dev/fuse` fd in an `IORING_SETUP_SQE128`
//! ring); a request arrives as a completion of one of them, split into the
//! entry's header buffer (`fuse_in_header`, the opcode's own header) and
//! its payload buffer (the other arguments); the reply goes back into the
//! same buffers, submitted with `FUSE_IO_URING_CMD_COMMIT_AND_FETCH`, which
//! also makes the entry wait for the next request. FORGET, INTERRUPT and
//! notifications stay on `/dev/fuse`, and so do passthrough's backing-file
//! ioctls.
//!
//! Here each queue gets `threads_per_queue` threads, each pinned to the
//! queue's CPU, each with a ring of its own holding one entry: an entry is
//! registered only while its thread is idle, so a request is never handed
//! to a thread busy with another (a slow request holds up only itself).
//! Requests are reassembled into the contiguous form fuser's parser reads
//! (`in_header | op header | payload`) and dispatched as `/dev/fuse`'s
//! are; the reply is written into the entry's buffers by a
//! [`RingReply`] the `ChannelSender` carries.
//!
//! Hazards the kernel sets (../shared/notes/fuse-roundtrips.md): once INIT
//! negotiates io_uring, requests wait until every queue has an entry, so
//! the rings are all made (and their buffers allocated) before INIT asks
//! for it, and it is asked for only if that succeeded; a REGISTER that
//! fails makes the kernel fall back to `/dev/fuse` by itself.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use io_uring::IoUring;
use io_uring::cqueue;
use io_uring::opcode;
use io_uring::squeue;
use io_uring::types;
use log::debug;
use log::warn;

use crate::dev_fuse::DevFuse;

const FUSE_IO_URING_CMD_REGISTER: u32 = 1;
const FUSE_IO_URING_CMD_COMMIT_AND_FETCH: u32 = 2;
/// `struct fuse_uring_req_header`: `in_out[128]`, `op_in[128]`,
/// `struct fuse_uring_ent_in_out` (flags, commit_id, payload_sz, ...).
const HEADER_SIZE: usize = 288;
const OP_IN: usize = 128;
const ENT_IN_OUT: usize = 256;
const IN_HEADER_SIZE: usize = 40;
const OUT_HEADER_SIZE: usize = 16;
/// `FUSE_MIN_READ_BUFFER`.
const MIN_PAYLOAD: usize = 8192;

/// What the io_uring transport was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UringOptions {
    /// Threads (each with one ring entry) in all, shared out over the
    /// queues (one per possible CPU), at least one per queue.
    pub threads: usize,
    /// For tests: make every REGISTER fail (the kernel then falls back to
    /// `/dev/fuse`), as a kernel that refuses it would.
    pub fail_registration: bool,
}

impl Default for UringOptions {
    fn default() -> Self {
        UringOptions { threads: 2, fail_registration: false }
    }
}

/// Which transport serves the session, for the file system to report.
#[derive(Debug, Default)]
pub struct UringStatus {
    /// io_uring was negotiated at INIT.
    negotiated: AtomicBool,
    queues: AtomicUsize,
    /// Entries registered, and REGISTERs that failed.
    registered: AtomicUsize,
    failed: AtomicUsize,
    /// Requests answered through the rings.
    served: AtomicUsize,
    /// Why io_uring is not in use, when it is not.
    why_not: Mutex<Option<String>>,
}

impl UringStatus {
    /// `io_uring` while the rings serve, else `/dev/fuse`.
    pub fn transport(&self) -> &'static str {
        if self.negotiated.load(Ordering::Relaxed)
            && self.failed.load(Ordering::Relaxed) == 0
            && self.registered.load(Ordering::Relaxed) > 0
        {
            "io_uring"
        } else {
            "/dev/fuse"
        }
    }

    /// Why the rings are not in use (`None` while they are, or before
    /// anything was tried).
    pub fn why_not(&self) -> Option<String> {
        if self.failed.load(Ordering::Relaxed) > 0 {
            return Some(format!(
                "the kernel refused {} ring registrations: fell back to /dev/fuse",
                self.failed.load(Ordering::Relaxed)
            ));
        }
        self.why_not.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Queues (possible CPUs) the rings cover.
    pub fn queues(&self) -> usize {
        self.queues.load(Ordering::Relaxed)
    }

    /// Requests answered through the rings so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }

    pub(crate) fn set_why_not(&self, why: String) {
        *self.why_not.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }
}

/// How many CPUs the kernel may have (`num_possible_cpus()`): it makes
/// that many queues, and requests wait until each has an entry.
pub(crate) fn possible_cpus() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut count = 0;
    for part in text.trim().split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.parse::<usize>(), hi.parse::<usize>()),
            None => (part.parse::<usize>(), part.parse::<usize>()),
        };
        match (lo, hi) {
            (Ok(lo), Ok(hi)) if hi >= lo => count += hi - lo + 1,
            _ => return Err(io::Error::other(format!("cannot read possible CPUs from {text:?}"))),
        }
    }
    Ok(count)
}

/// One ring entry's buffers. Boxed so that their addresses (given to the
/// kernel at REGISTER) never move.
struct Buffers {
    header: Box<[u8; HEADER_SIZE]>,
    payload: Box<[u8]>,
    iov: Box<[libc::iovec; 2]>,
}

/// A thread's ring and its entry, made before INIT.
pub(crate) struct RingWorker {
    qid: u16,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    buffers: Buffers,
    dev: Arc<DevFuse>,
}

// The raw pointers in `iov` point into the boxes beside them.
unsafe impl Send for RingWorker {}

impl std::fmt::Debug for RingWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RingWorker(queue {})", self.qid)
    }
}

impl RingWorker {
    pub(crate) fn new(qid: u16, payload_size: usize, dev: Arc<DevFuse>) -> io::Result<RingWorker> {
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder().build(4)?;
        let mut header = Box::new([0u8; HEADER_SIZE]);
        let mut payload = vec![0u8; payload_size.max(MIN_PAYLOAD)].into_boxed_slice();
        let iov = Box::new([
            libc::iovec { iov_base: header.as_mut_ptr().cast(), iov_len: HEADER_SIZE },
            libc::iovec { iov_base: payload.as_mut_ptr().cast(), iov_len: payload.len() },
        ]);
        Ok(RingWorker { qid, ring, buffers: Buffers { header, payload, iov }, dev })
    }

    fn cmd(&self, commit_id: u64) -> [u8; 80] {
        // struct fuse_uring_cmd_req { u64 flags; u64 commit_id; u16 qid; u8 pad[6]; }
        let mut cmd = [0u8; 80];
        cmd[8..16].copy_from_slice(&commit_id.to_ne_bytes());
        cmd[16..18].copy_from_slice(&self.qid.to_ne_bytes());
        cmd
    }

    fn push(&mut self, entry: squeue::Entry128) -> io::Result<()> {
        // SAFETY: the entry's buffers live as long as the ring (self).
        unsafe { self.ring.submission().push(&entry) }.map_err(|_| io::Error::other("io_uring submission queue full"))?;
        self.ring.submit()?;
        Ok(())
    }

    fn register(&mut self, fail: bool) -> io::Result<()> {
        let fd = types::Fd(self.dev.as_raw_fd());
        let entry = opcode::UringCmd80::new(fd, FUSE_IO_URING_CMD_REGISTER)
            .cmd(self.cmd(0))
            .addr(Some(self.buffers.iov.as_ptr() as u64))
            .build()
            .user_data(1);
        // The kernel wants sqe->len = 2 (the two iovecs), a field the
        // io-uring crate's UringCmd80 does not set: the 128-byte entry is
        // `struct io_uring_sqe` + 64 bytes, `len` at offset 24.
        // SAFETY: Entry128 is repr(C) over the raw 128-byte SQE.
        let mut raw: [u8; 128] = unsafe { std::mem::transmute(entry) };
        let len: u32 = if fail { 1 } else { 2 };
        raw[24..28].copy_from_slice(&len.to_ne_bytes());
        let entry: squeue::Entry128 = unsafe { std::mem::transmute(raw) };
        self.push(entry)
    }

    fn commit_and_fetch(&mut self, commit_id: u64) -> io::Result<()> {
        let fd = types::Fd(self.dev.as_raw_fd());
        let entry = opcode::UringCmd80::new(fd, FUSE_IO_URING_CMD_COMMIT_AND_FETCH)
            .cmd(self.cmd(commit_id))
            .build()
            .user_data(2);
        self.push(entry)
    }

    /// Pins the thread to the queue's CPU (best effort: an offline CPU's
    /// queue is served from wherever the thread runs).
    fn pin(&self) {
        // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(usize::from(self.qid), &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                debug!("io_uring queue {}: not pinned: {}", self.qid, io::Error::last_os_error());
            }
        }
    }

    /// Registers the entry, then serves requests until the connection ends
    /// or `stop` is set: `dispatch` gets each request (reassembled) and the
    /// reply that answers it.
    pub(crate) fn run(
        mut self,
        options: &UringOptions,
        status: &UringStatus,
        stop: &AtomicBool,
        mut dispatch: impl FnMut(&[u8], Arc<RingReply>),
    ) -> io::Result<()> {
        self.pin();
        self.register(options.fail_registration)?;
        status.registered.fetch_add(1, Ordering::Relaxed);
        // A REGISTER's own completion is its entry's first request, or its
        // error.
        let mut first = true;
        let mut request = Vec::with_capacity(self.buffers.payload.len() + OP_IN + IN_HEADER_SIZE);
        let timeout = types::Timespec::from(Duration::from_millis(200));
        loop {
            let args = types::SubmitArgs::new().timespec(&timeout);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(e),
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            // One entry: at most one completion at a time.
            loop {
                let next = self.ring.completion().next().map(|c| c.result());
                let Some(result) = next else { break };
                if result < 0 {
                    let err = io::Error::from_raw_os_error(-result);
                    if first {
                        // The kernel falls back to /dev/fuse by itself.
                        status.failed.fetch_add(1, Ordering::Relaxed);
                        warn!("io_uring queue {}: REGISTER failed ({err}): serving through /dev/fuse", self.qid);
                    } else {
                        debug!("io_uring queue {}: ring ended ({err})", self.qid);
                    }
                    return Ok(());
                }
                first = false;
                let commit_id = self.commit_id();
                let reply = Arc::new(RingReply::new(&mut self.buffers, commit_id));
                match self.reassemble(&mut request) {
                    Ok(()) => dispatch(&request, reply.clone()),
                    // Answered EIO rather than left unanswered, which would
                    // hang its caller and take this entry out of the queue.
                    Err(e) => warn!("io_uring queue {}: {e}", self.qid),
                }
                if !reply.close() {
                    // No answer was given (a request fuser does not reply
                    // to): the entry is still owed one.
                    reply.write_error(libc::EIO);
                }
                status.served.fetch_add(1, Ordering::Relaxed);
                self.commit_and_fetch(commit_id)?;
            }
        }
    }

    /// The id the entry's request is committed with.
    fn commit_id(&self) -> u64 {
        let h = &self.buffers.header;
        u64::from_ne_bytes(h[ENT_IN_OUT + 8..ENT_IN_OUT + 16].try_into().expect("8 bytes"))
    }

    /// The request in the entry's buffers as one contiguous message.
    fn reassemble(&self, out: &mut Vec<u8>) -> io::Result<()> {
        let h = &self.buffers.header;
        let u32_at = |at: usize| u32::from_ne_bytes(h[at..at + 4].try_into().expect("4 bytes"));
        let total = u32_at(0) as usize;
        let payload_len = u32_at(ENT_IN_OUT + 16) as usize;
        let op_len = total
            .checked_sub(IN_HEADER_SIZE + payload_len)
            .filter(|n| *n <= OP_IN && payload_len <= self.buffers.payload.len())
            .ok_or_else(|| io::Error::other(format!("io_uring: a request of {total} bytes, {payload_len} in the payload")))?;
        out.clear();
        out.extend_from_slice(&h[..IN_HEADER_SIZE]);
        out.extend_from_slice(&h[OP_IN..OP_IN + op_len]);
        out.extend_from_slice(&self.buffers.payload[..payload_len]);
        Ok(())
    }
}

/// The answer to one request taken from a ring: written into the entry's
/// buffers (the out header into `in_out`, the rest into the payload) while
/// the request is being dispatched; closed when its thread commits it, so
/// a reply sent later (none should be) fails instead of landing in the
/// next request's buffers.
pub(crate) struct RingReply {
    state: Mutex<ReplyState>,
}

struct ReplyState {
    open: bool,
    replied: bool,
    header: *mut u8,
    payload: *mut u8,
    payload_cap: usize,
    unique: u64,
}

// SAFETY: the pointers are used only under the mutex, and only while
// `open`, during which the entry's thread does not touch its buffers.
unsafe impl Send for ReplyState {}

impl std::fmt::Debug for RingReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RingReply")
    }
}

impl RingReply {
    fn new(buffers: &mut Buffers, unique: u64) -> RingReply {
        RingReply {
            state: Mutex::new(ReplyState {
                open: true,
                replied: false,
                header: buffers.header.as_mut_ptr(),
                payload: buffers.payload.as_mut_ptr(),
                payload_cap: buffers.payload.len(),
                unique,
            }),
        }
    }

    /// Writes a reply given as fuser's slices: `fuse_out_header` first.
    pub(crate) fn send(&self, data: &[io::IoSlice<'_>]) -> io::Result<()> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !s.open || s.replied {
            return Err(io::Error::other("io_uring: a reply after its request was answered"));
        }
        let total: usize = data.iter().map(|d| d.len()).sum();
        if total < OUT_HEADER_SIZE || total - OUT_HEADER_SIZE > s.payload_cap {
            return Err(io::Error::other(format!("io_uring: a reply of {total} bytes does not fit")));
        }
        // The stream of slices: its first 16 bytes into the header, the
        // rest into the payload, one copy per piece.
        let mut at = 0usize;
        for slice in data {
            let mut bytes: &[u8] = slice;
            if at < OUT_HEADER_SIZE {
                let n = bytes.len().min(OUT_HEADER_SIZE - at);
                // SAFETY: at + n <= 16, inside the 288-byte header.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), s.header.add(at), n) };
                at += n;
                bytes = &bytes[n..];
            }
            if !bytes.is_empty() {
                // SAFETY: at - 16 + len <= total - 16 <= payload_cap (checked above).
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), s.payload.add(at - OUT_HEADER_SIZE), bytes.len()) };
                at += bytes.len();
            }
        }
        Self::set_payload_len(&s, (total - OUT_HEADER_SIZE) as u32);
        s.replied = true;
        Ok(())
    }

    fn set_payload_len(s: &ReplyState, len: u32) {
        // SAFETY: ENT_IN_OUT + 16..20 is inside the 288-byte header.
        unsafe {
            std::ptr::copy_nonoverlapping(len.to_ne_bytes().as_ptr(), s.header.add(ENT_IN_OUT + 16), 4);
        }
    }

    /// Ends the reply's window; whether a reply was written.
    fn close(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.open = false;
        s.replied
    }

    fn write_error(&self, errno: i32) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut header = [0u8; OUT_HEADER_SIZE];
        header[0..4].copy_from_slice(&(OUT_HEADER_SIZE as u32).to_ne_bytes());
        header[4..8].copy_from_slice(&(-errno).to_ne_bytes());
        header[8..16].copy_from_slice(&s.unique.to_ne_bytes());
        // SAFETY: 16 bytes into the 288-byte header.
        unsafe { std::ptr::copy_nonoverlapping(header.as_ptr(), s.header, OUT_HEADER_SIZE) };
        Self::set_payload_len(&s, 0);
    }
}

/// Makes every ring (queues × threads per queue) for a session, before
/// INIT asks for io_uring: any failure means not asking.
pub(crate) fn make_workers(
    options: &UringOptions,
    payload_size: usize,
    dev: &Arc<DevFuse>,
) -> io::Result<Vec<RingWorker>> {
    let queues = possible_cpus()?;
    let per_queue = threads_per_queue(options, queues);
    let mut workers = Vec::with_capacity(queues * per_queue);
    for qid in 0..queues {
        for _ in 0..per_queue {
            let qid = u16::try_from(qid).map_err(|_| io::Error::other("too many CPUs"))?;
            workers.push(RingWorker::new(qid, payload_size, dev.clone())?);
        }
    }
    Ok(workers)
}

pub(crate) fn threads_per_queue(options: &UringOptions, queues: usize) -> usize {
    options.threads.div_ceil(queues.max(1)).max(1)
}

pub(crate) fn note_negotiated(status: &UringStatus, queues: usize) {
    status.negotiated.store(true, Ordering::Relaxed);
    status.queues.store(queues, Ordering::Relaxed);
}
