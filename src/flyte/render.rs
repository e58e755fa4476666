//! A serialized `LiteralMap` as readable JSON (`diskcachefs literals`, and
//! the mount's rendering of outputs): every literal is an object naming its
//! kind, values as a person reads them (datetimes in RFC 3339, durations in
//! seconds, bytes in base64), `hash` and `metadata` when present.

use base64::Engine;
use serde_json::{Map, Value as Json, json};

use super::idl;

pub fn literal_map_to_json(map: &idl::LiteralMap) -> Json {
    Json::Object(map.literals.iter().map(|(k, v)| (k.clone(), literal(v))).collect())
}

fn b64(data: &[u8]) -> Json {
    json!(base64::engine::general_purpose::STANDARD.encode(data))
}

fn literal(l: &idl::Literal) -> Json {
    use idl::literal::Value;
    let mut out = match &l.value {
        Some(Value::Scalar(s)) => scalar(s),
        Some(Value::Collection(c)) => json!({"collection": c.literals.iter().map(literal).collect::<Vec<_>>()}),
        Some(Value::Map(m)) => json!({"map": literal_map_to_json(m)}),
        Some(Value::OffloadedMetadata(o)) => json!({"offloaded": {
            "uri": o.uri, "size_bytes": o.size_bytes, "inferred_type": o.inferred_type.as_ref().map(literal_type)}}),
        None => json!({}),
    };
    if let Json::Object(obj) = &mut out {
        if !l.hash.is_empty() {
            obj.insert("hash".into(), json!(l.hash));
        }
        if !l.metadata.is_empty() {
            obj.insert("metadata".into(), json!(l.metadata));
        }
    }
    out
}

fn scalar(s: &idl::Scalar) -> Json {
    use idl::scalar::Value;
    match &s.value {
        None => json!({"scalar": null}),
        Some(Value::Primitive(p)) => primitive(p),
        Some(Value::Blob(b)) => {
            let t = b.metadata.as_ref().and_then(|m| m.r#type.clone()).unwrap_or_default();
            json!({"blob": {"uri": b.uri, "format": t.format,
                "dimensionality": if t.dimensionality == 1 { "MULTIPART" } else { "SINGLE" }}})
        }
        Some(Value::Binary(b)) => json!({"binary": {"value_base64": b64(&b.value), "tag": b.tag}}),
        Some(Value::Schema(sc)) => {
            json!({"schema": {"uri": sc.uri, "columns": sc.r#type.as_ref().map(|t| t.columns.iter()
            .map(|c| json!({"name": c.name, "type": c.r#type})).collect::<Vec<_>>())}})
        }
        Some(Value::NoneType(_)) => json!({"none": null}),
        Some(Value::Error(e)) => json!({"error": {"failed_node_id": e.failed_node_id, "message": e.message}}),
        Some(Value::Generic(st)) => json!({"generic": struct_json(st)}),
        Some(Value::StructuredDataset(sd)) => {
            let t = sd.metadata.as_ref().and_then(|m| m.structured_dataset_type.clone()).unwrap_or_default();
            json!({"structured_dataset": {"uri": sd.uri, "format": t.format,
                "columns": t.columns.iter().map(|c| json!({"name": c.name, "type": c.literal_type.as_ref().map(literal_type)})).collect::<Vec<_>>()}})
        }
        Some(Value::Union(u)) => {
            json!({"union": {"value": u.value.as_ref().map(literal), "type": u.r#type.as_ref().map(literal_type)}})
        }
    }
}

fn primitive(p: &idl::Primitive) -> Json {
    use idl::primitive::Value;
    match &p.value {
        None => json!({"primitive": null}),
        Some(Value::Integer(i)) => json!({"integer": i}),
        Some(Value::FloatValue(f)) if f.is_finite() => json!({"float": f}),
        Some(Value::FloatValue(f)) => json!({"float": f.to_string()}),
        Some(Value::StringValue(s)) => json!({"string": s}),
        Some(Value::Boolean(b)) => json!({"boolean": b}),
        Some(Value::Datetime(t)) => json!({"datetime": rfc3339(t.seconds, t.nanos)}),
        Some(Value::Duration(d)) => json!({"duration_seconds": d.seconds as f64 + f64::from(d.nanos) / 1e9}),
    }
}

fn literal_type(t: &idl::LiteralType) -> Json {
    use idl::literal_type::Type;
    const SIMPLE: [&str; 10] =
        ["NONE", "INTEGER", "FLOAT", "STRING", "BOOLEAN", "DATETIME", "DURATION", "BINARY", "ERROR", "STRUCT"];
    match &t.r#type {
        Some(Type::Simple(s)) => json!({"simple": SIMPLE.get(*s as usize).copied().unwrap_or("UNKNOWN")}),
        Some(Type::Schema(_)) => json!({"schema": {}}),
        Some(Type::CollectionType(c)) => json!({"collection_of": literal_type(c)}),
        Some(Type::MapValueType(m)) => json!({"map_of": literal_type(m)}),
        Some(Type::Blob(b)) => json!({"blob": {"format": b.format}}),
        Some(Type::EnumType(e)) => json!({"enum": e.values}),
        Some(Type::StructuredDatasetType(s)) => json!({"structured_dataset": {"format": s.format}}),
        Some(Type::UnionType(u)) => json!({"union_of": u.variants.iter().map(literal_type).collect::<Vec<_>>()}),
        None => json!({}),
    }
}

fn struct_json(s: &idl::Struct) -> Json {
    Json::Object(s.fields.iter().map(|(k, v)| (k.clone(), value_json(v))).collect::<Map<_, _>>())
}

fn value_json(v: &idl::StructValue) -> Json {
    use idl::struct_value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::NumberValue(f)) => json!(f),
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::BoolValue(b)) => json!(b),
        Some(Kind::StructValue(s)) => struct_json(s),
        Some(Kind::ListValue(l)) => Json::Array(l.values.iter().map(value_json).collect()),
    }
}

/// Seconds and nanoseconds since 1970 as RFC 3339 UTC.
pub fn rfc3339(seconds: i64, nanos: i32) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let frac = if nanos != 0 { format!(".{:09}", nanos.rem_euclid(1_000_000_000)) } else { String::new() };
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{frac}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000, 5), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(super::rfc3339(-1, 0), "1969-12-31T23:59:59Z");
        assert_eq!(super::rfc3339(253_402_300_799, 0), "9999-12-31T23:59:59Z");
    }
}
