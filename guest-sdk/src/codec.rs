//! Codecs: how typed keys and values become the bytes stores and topics hold.
//!
//! Integer encodings are big-endian (signed ones with the sign bit flipped) so
//! that the byte order a store sorts by is the numeric order: range scans over
//! integer keys then come back in numeric order. Must never change an encoding
//! once released: stored state and changelogs depend on it.

use std::fmt;

pub use crate::bindings::weir::streams::types::DataFormat as Format;

/// A value that can be written to and read back from a store or a record.
pub trait Codec: Sized {
    /// How the bytes are encoded, as a store declares it
    /// ([`StoreSpec::formats`](crate::StoreSpec::formats)) so interactive
    /// queries can show keys and values. Own codecs keep the default,
    /// opaque bytes, unless they write one of these encodings exactly.
    const FORMAT: Format = Format::Bytes;
    /// The bytes for `self`.
    fn encode(&self) -> Vec<u8>;
    /// `Self` from bytes written by [`Codec::encode`].
    fn decode(bytes: &[u8]) -> Result<Self, CodecError>;
}

/// Bytes that do not decode as the expected type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError {
    /// The type that was expected, e.g. `u64`.
    pub expected: &'static str,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot decode {}: {}", self.expected, self.reason)
    }
}

impl std::error::Error for CodecError {}

impl Codec for Vec<u8> {
    const FORMAT: Format = Format::Bytes;
    fn encode(&self) -> Vec<u8> {
        self.clone()
    }
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        Ok(bytes.to_vec())
    }
}

impl Codec for String {
    const FORMAT: Format = Format::Utf8;
    fn encode(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        String::from_utf8(bytes.to_vec()).map_err(|e| CodecError {
            expected: "UTF-8 string",
            reason: e.utf8_error().to_string(),
        })
    }
}

macro_rules! unsigned_codec {
    ($($t:ty => $f:ident),*) => {$(
        impl Codec for $t {
            const FORMAT: Format = Format::$f;
            fn encode(&self) -> Vec<u8> {
                self.to_be_bytes().to_vec()
            }
            fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
                let array = bytes.try_into().map_err(|_| CodecError {
                    expected: stringify!($t),
                    reason: format!("{} bytes, expected {}", bytes.len(), size_of::<$t>()),
                })?;
                Ok(<$t>::from_be_bytes(array))
            }
        }
    )*};
}

macro_rules! signed_codec {
    ($($t:ty => $u:ty, $f:ident),*) => {$(
        impl Codec for $t {
            const FORMAT: Format = Format::$f;
            fn encode(&self) -> Vec<u8> {
                // Flipping the sign bit makes negative numbers sort first.
                ((*self as $u) ^ (1 << (<$u>::BITS - 1))).to_be_bytes().to_vec()
            }
            fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
                let array = bytes.try_into().map_err(|_| CodecError {
                    expected: stringify!($t),
                    reason: format!("{} bytes, expected {}", bytes.len(), size_of::<$t>()),
                })?;
                Ok((<$u>::from_be_bytes(array) ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
    )*};
}

unsigned_codec!(u8 => U8, u16 => U16, u32 => U32, u64 => U64);
signed_codec!(i8 => u8, S8, i16 => u16, S16, i32 => u32, S32, i64 => u64, S64);

/// A serde value stored as JSON: `KvStore<String, Json<Profile>>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

impl<T: serde::Serialize + serde::de::DeserializeOwned> Codec for Json<T> {
    const FORMAT: Format = Format::Json;
    fn encode(&self) -> Vec<u8> {
        // Serializing plain data to a Vec cannot fail; a type whose Serialize
        // impl fails by design (a map with non-string keys) is a bug in it.
        serde_json::to_vec(&self.0).expect("value does not serialize as JSON")
    }
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        serde_json::from_slice(bytes)
            .map(Json)
            .map_err(|e| CodecError {
                expected: std::any::type_name::<T>(),
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Codec + PartialEq + fmt::Debug>(value: T) {
        assert_eq!(T::decode(&value.encode()).unwrap(), value);
    }

    #[test]
    fn values_round_trip() {
        round_trip(String::from("héllo wörld"));
        round_trip(vec![0u8, 255, 7]);
        round_trip(u64::MAX);
        round_trip(0u32);
        round_trip(i64::MIN);
        round_trip(-1i32);
        round_trip(i16::MAX);
        round_trip(Json(vec![("a".to_string(), 1u32)]));
    }

    #[test]
    fn integer_bytes_sort_in_numeric_order() {
        let numbers = [i64::MIN, -1_000_000, -1, 0, 1, 255, 256, i64::MAX];
        let encoded: Vec<Vec<u8>> = numbers.iter().map(Codec::encode).collect();
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(encoded, sorted);
        let unsigned: Vec<Vec<u8>> = [0u32, 1, 256, 65_536, u32::MAX]
            .iter()
            .map(Codec::encode)
            .collect();
        let mut sorted = unsigned.clone();
        sorted.sort();
        assert_eq!(unsigned, sorted);
    }

    #[test]
    fn bad_bytes_name_the_type() {
        let err = u64::decode(&[1, 2, 3]).unwrap_err();
        assert_eq!(err.expected, "u64");
        assert!(err.to_string().contains("3 bytes, expected 8"), "{err}");
        let err = String::decode(&[0xff, 0xfe]).unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");
        let err = Json::<Vec<u32>>::decode(b"{not json").unwrap_err();
        assert!(err.to_string().contains("Vec<u32>"), "{err}");
    }
}
