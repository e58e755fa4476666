//! MessagePack read as data, for one question: are two encodings the same
//! content? flytekit 1.14+ serializes a dataclass or pydantic input as a
//! `Binary` literal tagged `msgpack`, and a dict's key order is whatever
//! order the producer iterated in, so equal inputs can have different bytes
//! and different cache keys (flyte#5837, #6517). [`canonical`] rewrites an
//! encoding with every map's entries ordered by their keys' encoded bytes;
//! everything else (numbers, strings, their widths) is copied as written.

/// Nesting deeper than this is refused (the rewrite recurses).
const MAX_DEPTH: usize = 100;

/// `data` (one whole MessagePack item) with every map's entries in key
/// order, or `None` when it is not one well-formed item.
pub fn canonical(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    let end = item(data, 0, 0, &mut out)?;
    (end == data.len()).then_some(out)
}

/// Rewrites the item at `at` into `out`; returns where it ends.
fn item(data: &[u8], at: usize, depth: usize, out: &mut Vec<u8>) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    let b = *data.get(at)?;
    let be = |n: usize| -> Option<usize> {
        let bytes = data.get(at + 1..at + 1 + n)?;
        Some(bytes.iter().fold(0usize, |v, b| (v << 8) | usize::from(*b)))
    };
    // (header length, then either a payload length or a count of items).
    let (header, payload, items, is_map) = match b {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (1, 0, 0, false),
        0x80..=0x8f => (1, 0, usize::from(b & 0x0f), true),
        0x90..=0x9f => (1, 0, usize::from(b & 0x0f), false),
        0xa0..=0xbf => (1, usize::from(b & 0x1f), 0, false),
        0xc4 | 0xd9 => (2, be(1)?, 0, false),
        0xc5 | 0xda => (3, be(2)?, 0, false),
        0xc6 | 0xdb => (5, be(4)?, 0, false),
        0xc7 => (3, be(1)?, 0, false),
        0xc8 => (4, be(2)?, 0, false),
        0xc9 => (6, be(4)?, 0, false),
        0xca => (1, 4, 0, false),
        0xcb => (1, 8, 0, false),
        0xcc | 0xd0 => (1, 1, 0, false),
        0xcd | 0xd1 => (1, 2, 0, false),
        0xce | 0xd2 => (1, 4, 0, false),
        0xcf | 0xd3 => (1, 8, 0, false),
        0xd4..=0xd8 => (2, 1 << (b - 0xd4), 0, false),
        0xdc => (3, 0, be(2)?, false),
        0xdd => (5, 0, be(4)?, false),
        0xde => (3, 0, be(2)?, true),
        0xdf => (5, 0, be(4)?, true),
        0xc1 => return None,
    };
    let body = at.checked_add(header)?;
    if items == 0 {
        let end = body.checked_add(payload)?;
        out.extend_from_slice(data.get(at..end)?);
        return Some(end);
    }
    out.extend_from_slice(data.get(at..body)?);
    let mut pos = body;
    if !is_map {
        for _ in 0..items {
            pos = item(data, pos, depth + 1, out)?;
        }
        return Some(pos);
    }
    // Each entry rewritten on its own, then written in key order.
    let mut entries = Vec::new();
    for _ in 0..items {
        let mut key = Vec::new();
        pos = item(data, pos, depth + 1, &mut key)?;
        let mut value = Vec::new();
        pos = item(data, pos, depth + 1, &mut value)?;
        entries.push((key, value));
    }
    entries.sort();
    for (key, value) in entries {
        out.extend_from_slice(&key);
        out.extend_from_slice(&value);
    }
    Some(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_in_key_order_at_every_depth() {
        // {"b": 1, "a": {"y": [1, 2], "x": nil}}
        let written = [0x82, 0xa1, b'b', 0x01, 0xa1, b'a', 0x82, 0xa1, b'y', 0x92, 0x01, 0x02, 0xa1, b'x', 0xc0];
        // {"a": {"x": nil, "y": [1, 2]}, "b": 1}
        let sorted = [0x82, 0xa1, b'a', 0x82, 0xa1, b'x', 0xc0, 0xa1, b'y', 0x92, 0x01, 0x02, 0xa1, b'b', 0x01];
        assert_eq!(canonical(&written).unwrap(), sorted);
        assert_eq!(canonical(&sorted).unwrap(), sorted);
    }

    #[test]
    fn scalars_are_copied_as_written() {
        for item in [
            &[0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0][..],
            &[0xd9, 3, b'a', b'b', b'c'],
            &[0xc4, 2, 0xff, 0x00],
            &[0xd6, 0xff, 1, 2, 3, 4],
            &[0xcd, 0x01, 0x00],
            &[0xdc, 0, 1, 0x07],
        ] {
            assert_eq!(canonical(item).as_deref(), Some(item), "{item:?}");
        }
    }

    #[test]
    fn malformed_is_none() {
        for bad in [&[0xc1][..], &[0x92, 0x01], &[0xa3, b'a'], &[0x01, 0x02], &[], &[0xdf, 0xff, 0xff, 0xff, 0xff]] {
            assert_eq!(canonical(bad), None, "{bad:?}");
        }
        let deep = vec![0x91; 1000];
        assert_eq!(canonical(&deep), None);
    }
}
