//! How keys arrive in a query URL and how values leave in its answer.
//!
//! Keys: UTF-8 text by default, or `key_format=hex|base64` for arbitrary
//! bytes. Values: raw bytes (`application/octet-stream`) by default, or
//! decoded as the guest SDK's codecs encode them: `utf8`, `u64` and `i64`
//! (8 bytes, big-endian; `i64` with the sign bit flipped so it sorts) and
//! `json`. Must never guess a format: what the caller names is used.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyFormat {
    #[default]
    Text,
    Hex,
    Base64,
}

impl KeyFormat {
    pub fn parse(name: Option<&str>) -> Result<Self, String> {
        match name {
            None | Some("text") | Some("utf8") => Ok(KeyFormat::Text),
            Some("hex") => Ok(KeyFormat::Hex),
            Some("base64") => Ok(KeyFormat::Base64),
            Some(other) => Err(format!(
                "unknown key_format `{other}`: expected text, hex or base64"
            )),
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
        }
    }

    /// `key` written back in this format (for cursors and listings).
    pub fn encode(self, key: &[u8]) -> String {
        match self {
            KeyFormat::Text => String::from_utf8_lossy(key).into_owned(),
            KeyFormat::Hex => hex::encode(key),
            KeyFormat::Base64 => BASE64.encode(key),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyFormat::Text => "text",
            KeyFormat::Hex => "hex",
            KeyFormat::Base64 => "base64",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueFormat {
    #[default]
    Bytes,
    Utf8,
    U64,
    I64,
    Json,
}

impl ValueFormat {
    pub fn parse(name: Option<&str>) -> Result<Self, String> {
        match name {
            None | Some("bytes") => Ok(ValueFormat::Bytes),
            Some("utf8") | Some("text") => Ok(ValueFormat::Utf8),
            Some("u64") => Ok(ValueFormat::U64),
            Some("i64") => Ok(ValueFormat::I64),
            Some("json") => Ok(ValueFormat::Json),
            Some(other) => Err(format!(
                "unknown value_format `{other}`: expected bytes, utf8, u64, i64 or json"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ValueFormat::Bytes => "bytes",
            ValueFormat::Utf8 => "utf8",
            ValueFormat::U64 => "u64",
            ValueFormat::I64 => "i64",
            ValueFormat::Json => "json",
        }
    }

    /// The value as JSON: decoded in this format, or base64 text for raw
    /// bytes. An undecodable value is an error naming the format.
    pub fn to_json(self, value: &[u8]) -> Result<Value, String> {
        let eight = || -> Result<[u8; 8], String> {
            value.try_into().map_err(|_| {
                format!(
                    "value has {} bytes, not the 8 of a {}",
                    value.len(),
                    self.name()
                )
            })
        };
        match self {
            ValueFormat::Bytes => Ok(Value::String(BASE64.encode(value))),
            ValueFormat::Utf8 => std::str::from_utf8(value)
                .map(|s| Value::String(s.to_string()))
                .map_err(|e| format!("value is not UTF-8: {e}")),
            ValueFormat::U64 => Ok(Value::from(u64::from_be_bytes(eight()?))),
            ValueFormat::I64 => Ok(Value::from(
                (u64::from_be_bytes(eight()?) ^ (1 << 63)) as i64,
            )),
            ValueFormat::Json => {
                serde_json::from_slice(value).map_err(|e| format!("value is not JSON: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_from_text_hex_and_base64() {
        assert_eq!(
            KeyFormat::parse(None).unwrap().decode("kafka").unwrap(),
            b"kafka"
        );
        let hex = KeyFormat::parse(Some("hex")).unwrap();
        assert_eq!(hex.decode("00ff").unwrap(), vec![0, 255]);
        assert_eq!(hex.encode(&[0, 255]), "00ff");
        assert!(hex.decode("zz").unwrap_err().contains("not hex"));
        let b64 = KeyFormat::parse(Some("base64")).unwrap();
        assert_eq!(b64.decode("AP8=").unwrap(), vec![0, 255]);
        assert!(
            KeyFormat::parse(Some("rot13"))
                .unwrap_err()
                .contains("rot13")
        );
    }

    #[test]
    fn values_decode_as_the_sdk_encodes_them() {
        assert_eq!(
            ValueFormat::U64.to_json(&42u64.to_be_bytes()).unwrap(),
            Value::from(42)
        );
        let minus_two = ((-2i64 as u64) ^ (1 << 63)).to_be_bytes();
        assert_eq!(
            ValueFormat::I64.to_json(&minus_two).unwrap(),
            Value::from(-2)
        );
        assert!(
            ValueFormat::U64
                .to_json(b"abc")
                .unwrap_err()
                .contains("3 bytes")
        );
        assert_eq!(ValueFormat::Utf8.to_json(b"hi").unwrap(), Value::from("hi"));
        assert_eq!(ValueFormat::Json.to_json(br#"{"a":1}"#).unwrap()["a"], 1);
        assert_eq!(
            ValueFormat::Bytes.to_json(&[0, 255]).unwrap(),
            Value::from("AP8=")
        );
        assert!(ValueFormat::parse(Some("xml")).is_err());
    }
}
