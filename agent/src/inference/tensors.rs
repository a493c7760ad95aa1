//! The Open Inference Protocol's tensors as columns of raw fields: one tensor per field, shape
//! `[N]` or `[N, 1]`, BYTES for text and INT64 (or any integer or float type) for numbers.
//! Shared by the REST and gRPC forms of the protocol, which differ only in how data travels.

use super::error::{InferenceError, Place};
use super::input::{Sent, is_required};
use super::served::Served;

/// The output tensors every inference answers with.
pub const PROBABILITY: &str = "probability";
pub const READMITTED: &str = "readmitted";

/// Datatypes the protocol defines, with their element size in raw form (`None` for BYTES,
/// whose elements carry their own length).
const DATATYPES: [(&str, Option<usize>); 14] = [
    ("BOOL", Some(1)),
    ("INT8", Some(1)),
    ("INT16", Some(2)),
    ("INT32", Some(4)),
    ("INT64", Some(8)),
    ("UINT8", Some(1)),
    ("UINT16", Some(2)),
    ("UINT32", Some(4)),
    ("UINT64", Some(8)),
    ("FP16", Some(2)),
    ("FP32", Some(4)),
    ("FP64", Some(8)),
    ("BF16", Some(2)),
    ("BYTES", None),
];

/// A field's tensor datatype: text as BYTES, counts as INT64.
pub fn field_datatype(kind: &str) -> &'static str {
    if kind == "integer" { "INT64" } else { "BYTES" }
}

/// A tensor's name and datatype, as model metadata lists them.
pub type TensorMeta<'a> = (&'a str, &'static str);

/// The outputs every model answers with.
pub const OUTPUTS: [TensorMeta<'static>; 2] = [(PROBABILITY, "FP32"), (READMITTED, "BOOL")];

/// A model's input tensors: every field it reads or requires, in schema order.
pub fn input_tensors(served: &Served) -> Vec<TensorMeta<'_>> {
    served
        .bundle
        .input_signature()
        .columns
        .iter()
        .filter(|c| c.used || is_required(c))
        .map(|c| (c.spec.name.as_str(), field_datatype(&c.spec.kind)))
        .collect()
}

fn bad(name: &str, reason: impl Into<String>) -> InferenceError {
    InferenceError::invalid(Place::field(name), reason)
}

/// The element size of a known datatype; an unknown one is refused naming the tensor.
pub fn element_size(name: &str, datatype: &str) -> Result<Option<usize>, InferenceError> {
    DATATYPES
        .iter()
        .find(|(d, _)| *d == datatype)
        .map(|(_, size)| *size)
        .ok_or_else(|| {
            bad(
                name,
                format!(
                    "datatype {datatype:?} is not one of {}",
                    DATATYPES.map(|(d, _)| d).join(", ")
                ),
            )
        })
}

/// Checks a tensor's shape against its element count: `[N]` or `[N, 1]`, one value per record.
pub fn check_shape(name: &str, shape: &[i64], elements: usize) -> Result<(), InferenceError> {
    let rows = match shape {
        [n] | [n, 1] => *n,
        _ => {
            return Err(bad(
                name,
                format!("shape {shape:?}: a field's tensor is [N] or [N, 1], one value per record"),
            ));
        }
    };
    if usize::try_from(rows).ok() != Some(elements) {
        return Err(bad(
            name,
            format!("shape {shape:?} does not match its {elements} values"),
        ));
    }
    Ok(())
}

/// The elements of one tensor's raw little-endian bytes.
pub fn decode_raw<'a>(
    name: &str,
    datatype: &str,
    raw: &'a [u8],
) -> Result<Vec<Sent<'a>>, InferenceError> {
    let Some(size) = element_size(name, datatype)? else {
        return decode_bytes(name, raw);
    };
    if !raw.len().is_multiple_of(size) {
        return Err(bad(
            name,
            format!(
                "{} raw bytes are not a whole number of {size}-byte {datatype} values",
                raw.len()
            ),
        ));
    }
    raw.chunks_exact(size)
        .map(|b| element(name, datatype, b))
        .collect()
}

fn element<'a>(name: &str, datatype: &str, b: &[u8]) -> Result<Sent<'a>, InferenceError> {
    let int = |v: i128| {
        i64::try_from(v)
            .map(Sent::Int)
            .map_err(|_| bad(name, format!("{v} is too large")))
    };
    Ok(match datatype {
        "BOOL" => Sent::Bool(b[0] != 0),
        "INT8" => Sent::Int(i64::from(i8::from_le_bytes([b[0]]))),
        "INT16" => Sent::Int(i64::from(i16::from_le_bytes([b[0], b[1]]))),
        "INT32" => Sent::Int(i64::from(i32::from_le_bytes(
            b.try_into().unwrap_or_default(),
        ))),
        "INT64" => Sent::Int(i64::from_le_bytes(b.try_into().unwrap_or_default())),
        "UINT8" => Sent::Int(i64::from(b[0])),
        "UINT16" => Sent::Int(i64::from(u16::from_le_bytes([b[0], b[1]]))),
        "UINT32" => Sent::Int(i64::from(u32::from_le_bytes(
            b.try_into().unwrap_or_default(),
        ))),
        "UINT64" => int(i128::from(u64::from_le_bytes(
            b.try_into().unwrap_or_default(),
        )))?,
        "FP32" => Sent::Float(f64::from(f32::from_le_bytes(
            b.try_into().unwrap_or_default(),
        ))),
        "FP64" => Sent::Float(f64::from_le_bytes(b.try_into().unwrap_or_default())),
        other => {
            return Err(bad(
                name,
                format!("datatype {other} is not one a field takes: use BYTES, INT64 or FP64"),
            ));
        }
    })
}

/// BYTES elements: each a 4-byte little-endian length, then that many bytes of UTF-8.
fn decode_bytes<'a>(name: &str, mut raw: &'a [u8]) -> Result<Vec<Sent<'a>>, InferenceError> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let Some((len, rest)) = raw.split_first_chunk::<4>() else {
            return Err(bad(name, "raw BYTES data ends inside an element's length"));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(bad(
                name,
                format!(
                    "a raw BYTES element claims {len} bytes but {} remain",
                    rest.len()
                ),
            ));
        }
        let (text, rest) = rest.split_at(len);
        let text = std::str::from_utf8(text)
            .map_err(|_| bad(name, format!("element {} is not UTF-8 text", out.len())))?;
        out.push(Sent::Text(text));
        raw = rest;
    }
    Ok(out)
}

/// BYTES elements in raw form, for clients that asked for binary outputs.
pub fn encode_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn encode_bool(values: &[bool]) -> Vec<u8> {
    values.iter().map(|b| u8::from(*b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_tensors_decode_by_datatype() {
        let ints: Vec<u8> = [3i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            decode_raw("x", "INT64", &ints).unwrap(),
            vec![Sent::Int(3), Sent::Int(-1)]
        );
        let mut bytes = Vec::new();
        for s in ["[70-80)", ">8"] {
            bytes.extend(u32::try_from(s.len()).unwrap().to_le_bytes());
            bytes.extend(s.as_bytes());
        }
        assert_eq!(
            decode_raw("age", "BYTES", &bytes).unwrap(),
            vec![Sent::Text("[70-80)"), Sent::Text(">8")]
        );
        let e = decode_raw("age", "BYTES", &bytes[..bytes.len() - 1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`age`") && e.contains("claims"), "{e}");
        let e = decode_raw("x", "INT64", &ints[..5])
            .unwrap_err()
            .to_string();
        assert!(e.contains("whole number of 8-byte"), "{e}");
        let e = decode_raw("x", "COMPLEX", &ints).unwrap_err().to_string();
        assert!(e.contains("COMPLEX") && e.contains("BYTES"), "{e}");
        let nan = f64::NAN.to_le_bytes();
        assert!(matches!(decode_raw("x", "FP64", &nan).unwrap()[0], Sent::Float(f) if f.is_nan()));
    }

    #[test]
    fn shapes_are_one_value_per_record() {
        check_shape("x", &[3], 3).unwrap();
        check_shape("x", &[3, 1], 3).unwrap();
        assert!(check_shape("x", &[3, 2], 6).is_err());
        assert!(check_shape("x", &[4], 3).is_err());
        assert!(check_shape("x", &[-1], 3).is_err());
    }
}
