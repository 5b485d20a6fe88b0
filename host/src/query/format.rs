//! How keys arrive in a query URL and how values leave in its answer.
//!
//! By default both follow what the processor declared for the store
//! (`store-spec`'s `key-format` and `value-format`, which the guest SDK
//! fills from its codecs): an integer key is written as a decimal number,
//! any other key as UTF-8 text; values decode to JSON numbers, strings or
//! documents, and undeclared (`bytes`) values come back raw. `key_format=`
//! (`text`, `hex`, `base64` or an integer format) and `value_format=` (any
//! [`DataFormat`] name) override that per request. Must never guess: what
//! is declared or named is used, and bytes that do not fit it are an error.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::topology::DataFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyFormat {
    #[default]
    Text,
    Hex,
    Base64,
    /// A decimal number, stored as this integer format.
    Integer(DataFormat),
}

impl KeyFormat {
    /// `param` if given, else what the store declares.
    pub fn resolve(param: Option<&str>, declared: DataFormat) -> Result<Self, String> {
        match param {
            None if declared.integer().is_some() => Ok(KeyFormat::Integer(declared)),
            None | Some("text") | Some("utf8") => Ok(KeyFormat::Text),
            Some("hex") => Ok(KeyFormat::Hex),
            Some("base64") => Ok(KeyFormat::Base64),
            Some(other) => DataFormat::parse(other)
                .filter(|f| f.integer().is_some())
                .map(KeyFormat::Integer)
                .ok_or_else(|| {
                    format!(
                        "unknown key_format `{other}`: expected text, hex, base64 or an \
                         integer format (u8 … u64, i8 … i64)"
                    )
                }),
        }
    }

    /// The key bytes `text` stands for.
    pub fn decode(self, text: &str) -> Result<Vec<u8>, String> {
        match self {
            KeyFormat::Text => Ok(text.as_bytes().to_vec()),
            KeyFormat::Hex => hex::decode(text).map_err(|e| format!("key is not hex: {e}")),
            KeyFormat::Base64 => BASE64
                .decode(text)
                .map_err(|e| format!("key is not base64: {e}")),
            KeyFormat::Integer(f) => integer_bytes(f, text),
        }
    }

    /// `key` written back in this format (for cursors and listings). An
    /// integer key of the wrong length is shown as hex.
    pub fn encode(self, key: &[u8]) -> String {
        match self {
            KeyFormat::Text => String::from_utf8_lossy(key).into_owned(),
            KeyFormat::Hex => hex::encode(key),
            KeyFormat::Base64 => BASE64.encode(key),
            KeyFormat::Integer(f) => {
                integer_value(f, key).map_or_else(|_| hex::encode(key), |v| v.to_string())
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyFormat::Text => "text",
            KeyFormat::Hex => "hex",
            KeyFormat::Base64 => "base64",
            KeyFormat::Integer(f) => f.name(),
        }
    }
}

/// `param` if given, else what the store declares.
pub fn value_format(param: Option<&str>, declared: DataFormat) -> Result<DataFormat, String> {
    match param {
        None => Ok(declared),
        Some("text") => Ok(DataFormat::Utf8),
        Some(name) => DataFormat::parse(name).ok_or_else(|| {
            let names: Vec<&str> = DataFormat::ALL.iter().map(|f| f.name()).collect();
            format!(
                "unknown value_format `{name}`: expected one of {}",
                names.join(", ")
            )
        }),
    }
}

/// The value as JSON: decoded in `format`, or base64 text for raw bytes.
/// An undecodable value is an error naming the format.
pub fn to_json(format: DataFormat, value: &[u8]) -> Result<Value, String> {
    match format {
        DataFormat::Bytes => Ok(Value::String(BASE64.encode(value))),
        DataFormat::Utf8 => std::str::from_utf8(value)
            .map(|s| Value::String(s.to_string()))
            .map_err(|e| format!("value is not UTF-8: {e}")),
        DataFormat::Json => {
            serde_json::from_slice(value).map_err(|e| format!("value is not JSON: {e}"))
        }
        integer => integer_value(integer, value),
    }
}

/// The bytes a value rendered by [`to_json`] was read as (a remote page's
/// entries, merged with local ones).
pub fn from_json(format: DataFormat, value: &Value) -> Result<Vec<u8>, String> {
    match (format, value) {
        (DataFormat::Bytes, Value::String(s)) => {
            BASE64.decode(s).map_err(|e| format!("not base64: {e}"))
        }
        (DataFormat::Utf8, Value::String(s)) => Ok(s.as_bytes().to_vec()),
        (DataFormat::Json, v) => serde_json::to_vec(v).map_err(|e| e.to_string()),
        (f, v) if f.integer().is_some() => integer_bytes(f, &v.to_string()),
        (f, v) => Err(format!("`{v}` is not a {} value", f.name())),
    }
}

/// An integer of format `f` from its stored bytes: big-endian, signed ones
/// with the sign bit flipped (the guest SDK's codecs).
fn integer_value(f: DataFormat, bytes: &[u8]) -> Result<Value, String> {
    let Some((width, signed)) = f.integer() else {
        return Err(format!("{} is not an integer format", f.name()));
    };
    if bytes.len() != width {
        return Err(format!(
            "value has {} bytes, not the {width} of a {}",
            bytes.len(),
            f.name()
        ));
    }
    let raw = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    if !signed {
        return Ok(Value::from(raw));
    }
    let bits = 8 * width as u32;
    let flipped = raw ^ (1 << (bits - 1));
    // Sign-extend from the format's width.
    let shift = 64 - bits;
    Ok(Value::from(((flipped << shift) as i64) >> shift))
}

/// The stored bytes of the decimal `text` as an integer of format `f`.
fn integer_bytes(f: DataFormat, text: &str) -> Result<Vec<u8>, String> {
    let Some((width, signed)) = f.integer() else {
        return Err(format!("{} is not an integer format", f.name()));
    };
    let bits = 8 * width as u32;
    let out_of_range = || format!("`{text}` is not a {} number", f.name());
    let raw = if signed {
        let v: i64 = text.trim().parse().map_err(|_| out_of_range())?;
        let (min, max) = (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1);
        if !(min..=max).contains(&i128::from(v)) {
            return Err(out_of_range());
        }
        (v as u64) ^ (1 << (bits - 1))
    } else {
        let v: u64 = text.trim().parse().map_err(|_| out_of_range())?;
        if bits < 64 && v >> bits != 0 {
            return Err(out_of_range());
        }
        v
    };
    Ok(raw.to_be_bytes()[8 - width..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_declared_format_unless_named() {
        let declared_text = KeyFormat::resolve(None, DataFormat::Utf8).unwrap();
        assert_eq!(declared_text.decode("kafka").unwrap(), b"kafka");
        let declared_u64 = KeyFormat::resolve(None, DataFormat::U64).unwrap();
        assert_eq!(declared_u64.decode("42").unwrap(), 42u64.to_be_bytes());
        assert_eq!(declared_u64.encode(&42u64.to_be_bytes()), "42");
        assert_eq!(declared_u64.encode(b"abc"), "616263");
        let hex = KeyFormat::resolve(Some("hex"), DataFormat::U64).unwrap();
        assert_eq!(hex.decode("00ff").unwrap(), vec![0, 255]);
        assert_eq!(hex.encode(&[0, 255]), "00ff");
        assert!(hex.decode("zz").unwrap_err().contains("not hex"));
        let b64 = KeyFormat::resolve(Some("base64"), DataFormat::Bytes).unwrap();
        assert_eq!(b64.decode("AP8=").unwrap(), vec![0, 255]);
        let i16 = KeyFormat::resolve(Some("i16"), DataFormat::Bytes).unwrap();
        assert_eq!(i16.decode("-2").unwrap(), vec![0x7f, 0xfe]);
        assert!(i16.decode("40000").unwrap_err().contains("not a i16"));
        assert!(
            KeyFormat::resolve(Some("rot13"), DataFormat::Bytes)
                .unwrap_err()
                .contains("rot13")
        );
    }

    #[test]
    fn values_decode_as_the_sdk_encodes_them() {
        assert_eq!(
            to_json(DataFormat::U64, &42u64.to_be_bytes()).unwrap(),
            Value::from(42)
        );
        // The SDK's signed codec: big-endian with the sign bit flipped.
        let minus_two = ((-2i64 as u64) ^ (1 << 63)).to_be_bytes();
        assert_eq!(
            to_json(DataFormat::I64, &minus_two).unwrap(),
            Value::from(-2)
        );
        let minus_two_i8 = [((-2i8 as u8) ^ 0x80)];
        assert_eq!(
            to_json(DataFormat::I8, &minus_two_i8).unwrap(),
            Value::from(-2)
        );
        assert_eq!(to_json(DataFormat::U16, &[1, 0]).unwrap(), Value::from(256));
        assert!(
            to_json(DataFormat::U64, b"abc")
                .unwrap_err()
                .contains("3 bytes")
        );
        assert_eq!(to_json(DataFormat::Utf8, b"hi").unwrap(), Value::from("hi"));
        assert_eq!(to_json(DataFormat::Json, br#"{"a":1}"#).unwrap()["a"], 1);
        assert_eq!(
            to_json(DataFormat::Bytes, &[0, 255]).unwrap(),
            Value::from("AP8=")
        );
        assert_eq!(
            value_format(None, DataFormat::U64).unwrap(),
            DataFormat::U64
        );
        assert_eq!(
            value_format(Some("utf8"), DataFormat::U64).unwrap(),
            DataFormat::Utf8
        );
        assert!(value_format(Some("xml"), DataFormat::Bytes).is_err());
    }

    #[test]
    fn every_format_round_trips_through_json() {
        let samples: Vec<(DataFormat, Vec<u8>)> = vec![
            (DataFormat::Bytes, vec![0, 1, 255]),
            (DataFormat::Utf8, b"text".to_vec()),
            (DataFormat::Json, br#"{"a":[1,2]}"#.to_vec()),
            (DataFormat::U8, vec![200]),
            (DataFormat::U32, 7u32.to_be_bytes().to_vec()),
            (DataFormat::U64, u64::MAX.to_be_bytes().to_vec()),
            (
                DataFormat::I32,
                ((-5i32 as u32) ^ (1 << 31)).to_be_bytes().to_vec(),
            ),
            (
                DataFormat::I64,
                (i64::MIN as u64 ^ (1 << 63)).to_be_bytes().to_vec(),
            ),
        ];
        for (format, bytes) in samples {
            let json = to_json(format, &bytes).unwrap();
            assert_eq!(from_json(format, &json).unwrap(), bytes, "{format:?}");
        }
    }
}
