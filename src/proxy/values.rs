//! Values as the service saw them: a Bind parameter or a DataRow column,
//! text or binary, turned into JSON by its type OID. The common types are
//! decoded (bool, int2/4/8, oid, float4/8, numeric, text, varchar, char,
//! name, uuid, date, timestamp, timestamptz, json, jsonb, bytea as `\x`
//! hex); text-format values of other types are kept as the server's text,
//! binary ones of other types as `\x` hex. Long values are cut.

use serde_json::Value;

/// Longest text kept of one value, in bytes (a cut value ends in `…`).
pub const MAX_VALUE_BYTES: usize = 256;

/// Type OIDs of the built-in types decoded here.
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// The type's name, for the record (`None`: not one decoded here).
pub fn type_name(t: u32) -> Option<&'static str> {
    Some(match t {
        oid::BOOL => "bool",
        oid::BYTEA => "bytea",
        oid::CHAR => "char",
        oid::NAME => "name",
        oid::INT8 => "int8",
        oid::INT2 => "int2",
        oid::INT4 => "int4",
        oid::TEXT => "text",
        oid::OID => "oid",
        oid::JSON => "json",
        oid::FLOAT4 => "float4",
        oid::FLOAT8 => "float8",
        oid::UNKNOWN => "unknown",
        oid::BPCHAR => "bpchar",
        oid::VARCHAR => "varchar",
        oid::DATE => "date",
        oid::TIMESTAMP => "timestamp",
        oid::TIMESTAMPTZ => "timestamptz",
        oid::NUMERIC => "numeric",
        oid::UUID => "uuid",
        oid::JSONB => "jsonb",
        _ => return None,
    })
}

/// One value as JSON: `null` for SQL NULL; numbers and booleans as such
/// (a float that JSON cannot hold, a numeric too long for a double: as
/// text); everything else as text.
pub fn decode(type_oid: u32, format: i16, raw: Option<&[u8]>) -> Value {
    let Some(raw) = raw else {
        return Value::Null;
    };
    let decoded = if format == 1 {
        binary(type_oid, raw)
    } else {
        text(type_oid, raw)
    };
    decoded.unwrap_or_else(|| Value::String(hex(raw)))
}

fn text(type_oid: u32, raw: &[u8]) -> Option<Value> {
    let s = std::str::from_utf8(raw).ok()?;
    Some(match type_oid {
        oid::BOOL => match s {
            "t" => Value::Bool(true),
            "f" => Value::Bool(false),
            _ => Value::String(cut(s)),
        },
        oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => s
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(cut(s))),
        oid::FLOAT4 | oid::FLOAT8 | oid::NUMERIC => number(s),
        _ => Value::String(cut(s)),
    })
}

fn binary(type_oid: u32, raw: &[u8]) -> Option<Value> {
    let be8 = |r: &[u8]| -> Option<[u8; 8]> { r.try_into().ok() };
    Some(match type_oid {
        oid::BOOL => Value::Bool(*raw.first()? != 0),
        oid::INT2 => Value::from(i16::from_be_bytes(raw.try_into().ok()?)),
        oid::INT4 => Value::from(i32::from_be_bytes(raw.try_into().ok()?)),
        oid::OID => Value::from(u32::from_be_bytes(raw.try_into().ok()?)),
        oid::INT8 => Value::from(i64::from_be_bytes(be8(raw)?)),
        oid::FLOAT4 => float(f64::from(f32::from_be_bytes(raw.try_into().ok()?))),
        oid::FLOAT8 => float(f64::from_be_bytes(be8(raw)?)),
        oid::TEXT
        | oid::VARCHAR
        | oid::BPCHAR
        | oid::NAME
        | oid::CHAR
        | oid::JSON
        | oid::UNKNOWN => Value::String(cut(std::str::from_utf8(raw).ok()?)),
        oid::JSONB => Value::String(cut(std::str::from_utf8(raw.strip_prefix(&[1])?).ok()?)),
        oid::BYTEA => Value::String(hex(raw)),
        oid::UUID => Value::String(uuid(raw.try_into().ok()?)),
        oid::NUMERIC => number(&numeric(raw)?),
        oid::TIMESTAMP => Value::String(timestamp(i64::from_be_bytes(be8(raw)?), false)),
        oid::TIMESTAMPTZ => Value::String(timestamp(i64::from_be_bytes(be8(raw)?), true)),
        oid::DATE => Value::String(date(i32::from_be_bytes(raw.try_into().ok()?))),
        _ => return None,
    })
}

/// A decimal in text as a JSON number when a double holds it exactly
/// enough to print back the same, else as text.
fn number(s: &str) -> Value {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && (f.to_string() == s || s.parse::<i64>().is_ok()) => {
            serde_json::Number::from_f64(f).map_or_else(|| Value::String(s.into()), Value::Number)
        }
        _ => Value::String(cut(s)),
    }
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
}

/// `\x` and the bytes in hex (at most `MAX_VALUE_BYTES` of them).
pub fn hex(raw: &[u8]) -> String {
    let shown = &raw[..raw.len().min(MAX_VALUE_BYTES)];
    let cut = if shown.len() < raw.len() { "…" } else { "" };
    format!("\\x{}{cut}", crate::hex::hex(shown))
}

/// At most `MAX_VALUE_BYTES` of a text, cut at a character boundary.
pub fn cut(s: &str) -> String {
    if s.len() <= MAX_VALUE_BYTES {
        return s.to_string();
    }
    let mut end = MAX_VALUE_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn uuid(b: [u8; 16]) -> String {
    let h = hex(&b);
    let h = &h[2..];
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The binary numeric: ndigits, weight, sign, dscale, then base-10000
/// digits; printed as PostgreSQL prints it.
fn numeric(raw: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<i16> {
        Some(i16::from_be_bytes(
            raw.get(i * 2..i * 2 + 2)?.try_into().ok()?,
        ))
    };
    let ndigits = usize::try_from(word(0)?).ok()?;
    let weight = i32::from(word(1)?);
    let sign = word(2)? as u16;
    let dscale = usize::try_from(word(3)?).ok()?;
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<i16> = (0..ndigits).map(|i| word(4 + i)).collect::<Option<_>>()?;
    let mut int = String::new();
    if weight < 0 {
        int.push('0');
    } else {
        for i in 0..=weight {
            let d = digits.get(i as usize).copied().unwrap_or(0);
            if i == 0 {
                int.push_str(&d.to_string());
            } else {
                int.push_str(&format!("{d:04}"));
            }
        }
    }
    let mut frac = String::new();
    let mut i = weight + 1;
    while frac.len() < dscale {
        let d = if i < 0 {
            0
        } else {
            digits.get(i as usize).copied().unwrap_or(0)
        };
        frac.push_str(&format!("{d:04}"));
        i += 1;
    }
    frac.truncate(dscale);
    let neg = if sign == 0x4000 { "-" } else { "" };
    Some(if dscale > 0 {
        format!("{neg}{int}.{frac}")
    } else {
        format!("{neg}{int}")
    })
}

/// Microseconds since 2000-01-01 00:00 as ISO 8601 (UTC for timestamptz,
/// as the binary value is).
fn timestamp(us: i64, tz: bool) -> String {
    const PG_EPOCH: i64 = 946_684_800;
    match us {
        i64::MAX => return "infinity".into(),
        i64::MIN => return "-infinity".into(),
        _ => {}
    }
    let secs = PG_EPOCH + us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return us.to_string();
    };
    let (d, h) = (t.date(), t.time());
    let mut s = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        d.year(),
        u8::from(d.month()),
        d.day(),
        h.hour(),
        h.minute(),
        h.second()
    );
    if micros != 0 {
        let f = format!("{micros:06}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    if tz {
        s.push_str("+00");
    }
    s
}

fn date(days: i32) -> String {
    match days {
        i32::MAX => return "infinity".into(),
        i32::MIN => return "-infinity".into(),
        _ => {}
    }
    let t = timestamp(i64::from(days) * 86_400 * 1_000_000, false);
    t[..t.find(' ').unwrap_or(t.len())].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binary_common_types() {
        assert_eq!(decode(oid::INT4, 1, Some(&7i32.to_be_bytes())), json!(7));
        assert_eq!(
            decode(oid::INT8, 1, Some(&(-3i64).to_be_bytes())),
            json!(-3)
        );
        assert_eq!(decode(oid::INT2, 1, Some(&2i16.to_be_bytes())), json!(2));
        assert_eq!(decode(oid::BOOL, 1, Some(&[1])), json!(true));
        assert_eq!(
            decode(oid::FLOAT8, 1, Some(&1.5f64.to_be_bytes())),
            json!(1.5)
        );
        assert_eq!(decode(oid::TEXT, 1, Some(b"abc")), json!("abc"));
        assert_eq!(decode(oid::BYTEA, 1, Some(&[0xde, 0xad])), json!("\\xdead"));
        assert_eq!(decode(oid::INT4, 1, None), Value::Null);
        let u = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ];
        assert_eq!(
            decode(oid::UUID, 1, Some(&u)),
            json!("12345678-9abc-def0-0123-456789abcdef")
        );
        // 2000-01-01 00:00:01.5 UTC.
        assert_eq!(
            decode(oid::TIMESTAMPTZ, 1, Some(&1_500_000i64.to_be_bytes())),
            json!("2000-01-01 00:00:01.5+00")
        );
        assert_eq!(
            decode(oid::DATE, 1, Some(&366i32.to_be_bytes())),
            json!("2001-01-01")
        );
        // An int of the wrong width is shown as bytes, not misread.
        assert_eq!(decode(oid::INT4, 1, Some(&[1, 2])), json!("\\x0102"));
        assert_eq!(decode(999_999, 1, Some(&[0xff])), json!("\\xff"));
    }

    fn num(ndigits: i16, weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [ndigits, weight, sign as i16, dscale] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn binary_numeric() {
        // 12345.678 = [1, 2345, 6780] weight 1, dscale 3.
        assert_eq!(
            numeric(&num(3, 1, 0, 3, &[1, 2345, 6780])).unwrap(),
            "12345.678"
        );
        assert_eq!(numeric(&num(1, 0, 0x4000, 0, &[42])).unwrap(), "-42");
        // 0.05 = [500] weight -1, dscale 2.
        assert_eq!(numeric(&num(1, -1, 0, 2, &[500])).unwrap(), "0.05");
        assert_eq!(numeric(&num(0, 0, 0, 0, &[])).unwrap(), "0");
        // 10000 = [1] weight 1.
        assert_eq!(numeric(&num(1, 1, 0, 0, &[1])).unwrap(), "10000");
        assert_eq!(numeric(&num(0, 0, 0xC000, 0, &[])).unwrap(), "NaN");
        assert_eq!(
            decode(oid::NUMERIC, 1, Some(&num(3, 1, 0, 3, &[1, 2345, 6780]))),
            json!(12345.678)
        );
    }

    #[test]
    fn text_values() {
        assert_eq!(decode(oid::INT4, 0, Some(b"12")), json!(12));
        assert_eq!(decode(oid::BOOL, 0, Some(b"f")), json!(false));
        // A numeric a double would print differently stays text.
        assert_eq!(decode(oid::NUMERIC, 0, Some(b"1.10")), json!("1.10"));
        assert_eq!(decode(oid::NUMERIC, 0, Some(b"2.5")), json!(2.5));
        assert_eq!(decode(0, 0, Some(b"hello")), json!("hello"));
        let long = "é".repeat(200);
        let v = decode(oid::TEXT, 0, Some(long.as_bytes()));
        assert!(v.as_str().unwrap().ends_with('…'));
        assert!(v.as_str().unwrap().len() <= MAX_VALUE_BYTES + 3);
    }
}
