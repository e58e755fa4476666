//! Whether bytes are a well-formed pickle, before they are stored as one.
//!
//! Content written through the mount becomes a pickled value only when a
//! user says so (`user.diskcache.type` = `pickle`); python-diskcache then
//! unpickles it on every read. Storing bytes that cannot be unpickled would
//! plant an entry that makes `cache[key]` raise, so they are refused.
//!
//! This walks the opcode stream as `pickletools.genops` does (every opcode
//! known, every argument complete) and tracks the stack depth and marks as
//! the unpickler would, ending in a `STOP` with one object on the stack
//! (bytes after it are ignored, as `pickle.loads` ignores them). It does not import anything: a pickle naming a
//! class Python cannot import passes here and fails in Python, as it would
//! had Python stored it.

/// How an opcode's argument is laid out.
enum Arg {
    None,
    /// A fixed number of bytes.
    Fixed(usize),
    /// A little-endian length of this many bytes, then that many bytes.
    Counted(usize),
    /// Text up to a newline, this many times.
    Lines(usize),
}

/// How an opcode changes the stack.
enum Effect {
    /// Pops `pops` objects (above the top mark), pushes `pushes`.
    Stack {
        pops: usize,
        pushes: usize,
    },
    /// Pushes a mark.
    Mark,
    /// Pops everything down to the top mark and the mark, then pops `pops`
    /// more below it and pushes `pushes`.
    ToMark {
        pops: usize,
        pushes: usize,
    },
    /// `POP`: an object, or the top mark when nothing is above it.
    Pop,
    Stop,
}

fn opcode(op: u8) -> Option<(Arg, Effect)> {
    use Arg::*;
    let push = |n| Effect::Stack { pops: 0, pushes: n };
    let swap = |pops, pushes| Effect::Stack { pops, pushes };
    Some(match op {
        b'(' => (None, Effect::Mark),
        b'.' => (None, Effect::Stop),
        b'0' => (None, Effect::Pop),
        b'1' => (None, Effect::ToMark { pops: 0, pushes: 0 }),
        b'2' => (None, swap(1, 2)),
        // Numbers, strings and constants: push one.
        b'F' | b'I' | b'L' | b'S' | b'V' | b'P' | b'g' => (Lines(1), push(1)),
        b'J' => (Fixed(4), push(1)),
        b'K' | b'h' => (Fixed(1), push(1)),
        b'M' => (Fixed(2), push(1)),
        b'G' => (Fixed(8), push(1)),
        b'j' => (Fixed(4), push(1)),
        b'N' | b'}' | b']' | b')' | 0x88 | 0x89 | 0x8f | 0x97 => (None, push(1)),
        b'T' | b'X' | b'B' => (Counted(4), push(1)),
        b'U' | b'C' | 0x8c | 0x8a => (Counted(1), push(1)),
        0x8b => (Counted(4), push(1)),
        0x8d | 0x8e | 0x96 => (Counted(8), push(1)),
        b'c' => (Lines(2), push(1)),
        0x82 => (Fixed(1), push(1)),
        0x83 => (Fixed(2), push(1)),
        0x84 => (Fixed(4), push(1)),
        // Memo and persistence: one in, one out.
        b'p' => (Lines(1), swap(1, 1)),
        b'q' => (Fixed(1), swap(1, 1)),
        b'r' => (Fixed(4), swap(1, 1)),
        0x94 | b'Q' | 0x98 | 0x85 => (None, swap(1, 1)),
        // Building objects.
        b'R' | b'a' | b'b' | 0x81 | 0x86 | 0x93 => (None, swap(2, 1)),
        b's' | 0x87 | 0x92 => (None, swap(3, 1)),
        b'e' | b'u' | 0x90 => (None, Effect::ToMark { pops: 1, pushes: 1 }),
        b'd' | b'l' | b't' | 0x91 => (None, Effect::ToMark { pops: 0, pushes: 1 }),
        b'i' => (Lines(2), Effect::ToMark { pops: 0, pushes: 1 }),
        b'o' => (None, Effect::ToMark { pops: 0, pushes: 1 }),
        0x80 => (Fixed(1), swap(0, 0)),
        0x95 => (Fixed(8), swap(0, 0)),
        _ => return Option::None,
    })
}

/// `Ok` when `data` is one complete pickle and nothing else; otherwise
/// what is wrong, at which byte.
pub fn check_pickle(data: &[u8]) -> Result<(), String> {
    let mut pos = 0usize;
    // Objects on the stack, and the depth at each open mark.
    let mut depth = 0usize;
    let mut marks: Vec<usize> = Vec::new();
    let truncated = |at: usize| format!("not a pickle: truncated at byte {at}");
    while pos < data.len() {
        let at = pos;
        let op = data[pos];
        let (arg, effect) =
            opcode(op).ok_or_else(|| format!("not a pickle: unknown opcode 0x{op:02x} at byte {at}"))?;
        pos += 1;
        match arg {
            Arg::None => {}
            Arg::Fixed(n) => {
                pos = pos.checked_add(n).filter(|&p| p <= data.len()).ok_or_else(|| truncated(at))?;
            }
            Arg::Counted(width) => {
                let end = pos.checked_add(width).filter(|&p| p <= data.len()).ok_or_else(|| truncated(at))?;
                let mut len_bytes = [0u8; 8];
                len_bytes[..width].copy_from_slice(&data[pos..end]);
                let len = u64::from_le_bytes(len_bytes);
                // BINSTRING's length is signed; a negative one is an error.
                if (op == b'T' || op == 0x8b) && len >= 1 << 31 {
                    return Err(format!("not a pickle: negative length at byte {at}"));
                }
                pos = usize::try_from(len)
                    .ok()
                    .and_then(|l| end.checked_add(l))
                    .filter(|&p| p <= data.len())
                    .ok_or_else(|| truncated(at))?;
            }
            Arg::Lines(n) => {
                for _ in 0..n {
                    let nl = data[pos..].iter().position(|&b| b == b'\n').ok_or_else(|| truncated(at))?;
                    pos += nl + 1;
                }
            }
        }
        let fence = marks.last().copied().unwrap_or(0);
        let underflow = || format!("not a pickle: stack underflow at byte {at}");
        match effect {
            Effect::Stack { pops, pushes } => {
                if depth - fence < pops {
                    return Err(underflow());
                }
                depth = depth - pops + pushes;
            }
            Effect::Mark => marks.push(depth),
            Effect::ToMark { pops, pushes } => {
                let mark = marks.pop().ok_or_else(|| format!("not a pickle: no mark for the opcode at byte {at}"))?;
                let fence = marks.last().copied().unwrap_or(0);
                if mark - fence < pops {
                    return Err(underflow());
                }
                depth = mark - pops + pushes;
            }
            Effect::Pop => {
                if depth > fence {
                    depth -= 1;
                } else if marks.pop().is_none() {
                    return Err(underflow());
                }
            }
            Effect::Stop => {
                if depth != 1 || !marks.is_empty() {
                    return Err(format!("not a pickle: STOP at byte {at} with an unfinished stack"));
                }
                // Like pickle.loads, ignore anything after STOP.
                return Ok(());
            }
        }
    }
    Err(if data.is_empty() { "not a pickle: empty".to_string() } else { truncated(data.len()) })
}

#[cfg(test)]
mod tests {
    use super::check_pickle;

    #[test]
    fn python_pickles_pass() {
        // pickle.dumps(x, protocol=p) for a few x and p, made with CPython 3.11.
        for data in [
            &b"\x80\x05K\x07."[..],                                            // 7
            b"\x80\x05K\x07.x",                                               // 7, then ignored bytes
            b"\x80\x05\x95\t\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02e.", // [1, 2]
            b"\x80\x05\x95\n\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.", // {'a': 1}
            b"c__builtin__\nset\np0\n((lp1\nI1\natp2\nRp3\n.",               // {1}, protocol 0
            b"\x80\x02K\x01X\x01\x00\x00\x00xq\x00c_codecs\nencode\nq\x01X\x01\x00\x00\x00yq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05\x87q\x06.", // (1, 'x', b'y'), protocol 2
            b"\x80\x03G?\xf8\x00\x00\x00\x00\x00\x00.",                       // 1.5
            b"\x80\x05\x95\x0c\x00\x00\x00\x00\x00\x00\x00\x8a\t\x00\x00\x00\x00\x00\x00\x00\x00@.", // 2**70
            b"\x80\x04N.",                                                      // None
        ] {
            assert_eq!(check_pickle(data), Ok(()), "{data:?}");
        }
    }

    #[test]
    fn garbage_truncation_and_trailing_bytes_fail() {
        for data in [
            &b""[..],
            b"not a pickle",
            b"\x80\x05K",
            b"\x80\x05K\x07",
            b"\x80\x05.",
            b"\x80\x05K\x01K\x02.",
            b"\x80\x05X\xff\xff\x00\x00ab.",
            b"e.",
            b"0.",
        ] {
            assert!(check_pickle(data).is_err(), "{data:?}");
        }
    }
}
