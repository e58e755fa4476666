//! A value as file content, and file content as a value of a given type.
//! (docs/SEMANTICS.md, "Content".)

use crate::cache::pyrepr::python_float_repr;
use crate::cache::{EntryMeta, Scalar, Value, ValueType};
use crate::fs::pickle_check::check_pickle;

/// The bytes of an inline value: bytes and pickles as they are, str as
/// UTF-8, numbers as Python's `str()`.
pub fn inline_bytes(value: &Scalar) -> Vec<u8> {
    match value {
        Scalar::Bytes(b) => b.clone(),
        Scalar::Str(s) => s.as_bytes().to_vec(),
        Scalar::Int(i) => i.to_string().into_bytes(),
        Scalar::Float(f) => python_float_repr(*f).into_bytes(),
    }
}

/// A value's bytes as a file shows them (docs/SEMANTICS.md, "Content").
pub fn value_content(value: &Value) -> Vec<u8> {
    match value {
        Value::Bytes(b) | Value::Pickle(b) => b.clone(),
        Value::Str(s) => s.as_bytes().to_vec(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Float(f) => python_float_repr(*f).into_bytes(),
        Value::None => Vec::new(),
    }
}

/// The length of an entry's content, from its metadata alone.
pub fn content_len(meta: &EntryMeta) -> u64 {
    meta.content_len()
}

/// Content as a value of `to`, refusing what python-diskcache could not
/// read back as that type: `str` must be UTF-8; `int` and `float` parse the
/// text (surrounding white space allowed, as `int()`/`float()` allow), an
/// int beyond 64 bits is stored as Python stores it (pickled); a NaN float
/// is refused (SQLite stores NaN as NULL, which Python reads as `None`);
/// `pickle` must be a well-formed pickle; `none` must be empty.
pub fn convert(data: Vec<u8>, to: ValueType) -> Result<Value, String> {
    let text = |data: Vec<u8>| String::from_utf8(data).map_err(|_| "content is not UTF-8".to_string());
    Ok(match to {
        ValueType::Bytes => Value::Bytes(data),
        ValueType::Pickle => {
            check_pickle(&data)?;
            Value::Pickle(data)
        }
        ValueType::None if data.is_empty() => Value::None,
        ValueType::None => return Err("a none value has no content".into()),
        ValueType::Str => Value::Str(text(data)?),
        ValueType::Int => {
            let t = text(data)?;
            let t = t.trim();
            let digits = python_int_digits(t).ok_or_else(|| format!("{t:?} is not an integer"))?;
            match digits.parse::<i64>() {
                Ok(i) => Value::Int(i),
                // Beyond 64 bits python-diskcache pickles an int; so do we.
                Err(_) => Value::Pickle(pickle_big_int(&digits)),
            }
        }
        ValueType::Float => {
            let t = text(data)?;
            let t = t.trim().to_ascii_lowercase();
            let t = t.replace("infinity", "inf");
            let f: f64 = t.parse().map_err(|_| format!("{t:?} is not a float"))?;
            if f.is_nan() {
                return Err("NaN cannot be stored as a float: SQLite stores it as NULL, read back as None".into());
            }
            Value::Float(f)
        }
    })
}

/// The text of `int(text)` without its underscores, or `None` when Python's
/// `int()` would refuse it: an optional sign, decimal digits with single
/// underscores between them, at most 4300 digits (Python's default limit).
fn python_int_digits(text: &str) -> Option<String> {
    let (sign, body) = match text.as_bytes().first()? {
        b'-' => ("-", &text[1..]),
        b'+' => ("", &text[1..]),
        _ => ("", text),
    };
    let ok = !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        && !body.starts_with('_')
        && !body.ends_with('_')
        && !body.contains("__");
    let digits: String = body.chars().filter(|c| *c != '_').collect();
    (ok && digits.len() <= 4300).then(|| format!("{sign}{digits}"))
}

/// `pickle.dumps(n, protocol=5)` for an int `n` (given as decimal digits
/// with an optional `-`) outside the 64-bit range: PROTO 5, a FRAME, LONG1
/// or LONG4 with `n` in little-endian two's complement (the byte count
/// Python's `encode_long` picks), STOP.
pub fn pickle_big_int(decimal: &str) -> Vec<u8> {
    let (negative, digits) = match decimal.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, decimal),
    };
    // Magnitude, little-endian base 256.
    let mut magnitude: Vec<u8> = Vec::new();
    for d in digits.bytes() {
        let mut carry = u32::from(d - b'0');
        for byte in magnitude.iter_mut() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            magnitude.push(carry as u8);
            carry >>= 8;
        }
    }
    while magnitude.last() == Some(&0) {
        magnitude.pop();
    }
    // encode_long: nbytes = (x.bit_length() >> 3) + 1, signed little-endian.
    let bit_length = |m: &[u8]| m.last().map_or(0, |top| (m.len() - 1) * 8 + (8 - top.leading_zeros() as usize));
    let mut body = magnitude.clone();
    if negative {
        // Two's complement: invert and add one, over the full width.
        let nbytes = (bit_length(&magnitude) >> 3) + 1;
        body.resize(nbytes, 0);
        let mut carry = 1u16;
        for byte in body.iter_mut() {
            let v = u16::from(!*byte) + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        // Python sizes a negative x by x.bit_length() of |x|; when the top
        // byte then reads as 0xff with its sign bit redundant, Python
        // trims it (encode_long strips one 0xff when the next byte's top
        // bit is set).
        if body.len() > 1 && body[body.len() - 1] == 0xff && body[body.len() - 2] & 0x80 != 0 {
            body.pop();
        }
    } else {
        body.resize((bit_length(&magnitude) >> 3) + 1, 0);
    }
    let mut op = Vec::new();
    if body.len() < 256 {
        op.push(0x8a);
        op.push(body.len() as u8);
    } else {
        op.push(0x8b);
        op.extend_from_slice(&(body.len() as u32).to_le_bytes());
    }
    op.extend_from_slice(&body);
    op.push(b'.');
    let mut out = vec![0x80, 5, 0x95];
    out.extend_from_slice(&(op.len() as u64).to_le_bytes());
    out.extend_from_slice(&op);
    out
}

#[cfg(test)]
mod tests {
    use super::pickle_big_int;

    #[test]
    fn big_ints_pickle_as_python_does() {
        // (str(n), pickle.dumps(n, protocol=5).hex()) from CPython 3.11.
        for (decimal, hex) in [
            ("9223372036854775808", "8005950c000000000000008a090000000000000080002e"),
            ("-9223372036854775809", "8005950c000000000000008a09ffffffffffffff7fff2e"),
            ("1180591620717411303424", "8005950c000000000000008a090000000000000000402e"),
            ("-1180591620717411303424", "8005950c000000000000008a090000000000000000c02e"),
            ("-18446744073709551616", "8005950c000000000000008a090000000000000000ff2e"),
            ("111111111111111111111111111111", "80059510000000000000008a0dc7711c071ac57eb2faf40467012e"),
            (
                "-129268024285244029202859506754679807841776410678861936128521381710098620555471563572788805646091653854754871843687592077976478236601963684380352609545793132482523509469203984367000791001558608427184230553536270273107168874570479024647352377353904681882326583408145220171550303566164263234430209596495721542087657333558673369682739899146258277979424704141305288232311222637324104770833841256601034371456708466903774414873847429430393404609206583617614790452933148924908502738843280838900628406907725293878714170322626791740183989073411994552862100665557749342174408541732918418581273914419808592774223414444238384910279",
                "80059507010000000000008b0101000039300000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000fc2e",
            ),
            ("-27670116110564327424", "8005950c000000000000008a090000000000000080fe2e"),
        ] {
            let got: String = pickle_big_int(decimal).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(got, hex, "{decimal}");
        }
    }
}
