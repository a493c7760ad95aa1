//! Raw encounters from what clients send — JSON objects, rows of a table, columns of tensors —
//! validated against the schema into [`RawRecord`]s, with errors that name the record and the
//! field. Every inference interface reads its records through here.

use readmit_ml::record::{FieldValue, RawRecord, RecordError};
use serde_json::Value;

use super::error::{InferenceError, Place};

/// One value as a client sent it, before the schema has looked at it.
#[derive(Clone, Debug, PartialEq)]
pub enum Sent<'a> {
    Missing,
    Text(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A JSON array or object: never a field value.
    Nested(&'static str),
}

impl<'a> Sent<'a> {
    pub fn from_json(value: &'a Value) -> Self {
        match value {
            Value::Null => Sent::Missing,
            Value::String(s) => Sent::Text(s),
            Value::Bool(b) => Sent::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Sent::Int(i),
                None => Sent::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::Array(_) => Sent::Nested("an array"),
            Value::Object(_) => Sent::Nested("an object"),
        }
    }

    /// The schema's view of the value: text, a whole number, or missing.
    fn to_field(&self) -> Result<Option<FieldValue>, String> {
        match *self {
            Sent::Missing => Ok(None),
            Sent::Text(t) => Ok(Some(FieldValue::Text(t.to_owned()))),
            Sent::Int(i) => Ok(Some(FieldValue::Int(i))),
            Sent::Float(f) => whole(f).map(|i| Some(FieldValue::Int(i))),
            Sent::Bool(b) => Err(format!("{b} is a boolean; send a string or a number")),
            Sent::Nested(what) => Err(format!("{what} is not a field value")),
        }
    }
}

/// A float that is a whole number within i64, as JSON clients send `18.0`.
fn whole(f: f64) -> Result<i64, String> {
    const LIMIT: f64 = 9.007_199_254_740_992e15; // 2^53: every integer below is exact.
    if f.is_nan() {
        Err("NaN is not a value this field takes".into())
    } else if f.is_infinite() {
        Err(format!("{f} is not a value this field takes"))
    } else if f.fract() != 0.0 {
        Err(format!("{f} is not a whole number"))
    } else if f.abs() > LIMIT {
        Err(format!("{f} is too large"))
    } else {
        #[allow(clippy::cast_possible_truncation)]
        Ok(f as i64)
    }
}

/// A record from `(field, value)` pairs; `index` is the record's place in its batch.
pub fn record<'a, I>(index: Option<usize>, fields: I) -> Result<RawRecord, InferenceError>
where
    I: IntoIterator<Item = (&'a str, Sent<'a>)>,
{
    let place = |field: &str| Place {
        record: index,
        field: Some(field.to_owned()),
    };
    let mut parsed = Vec::new();
    for (name, value) in fields {
        let value = value
            .to_field()
            .map_err(|reason| InferenceError::invalid(place(name), reason))?;
        parsed.push((name, value));
    }
    RawRecord::from_fields(parsed).map_err(|e| {
        let (field, reason) = match e {
            RecordError::UnknownField { field } => (
                field,
                "unknown field; see /model-info for the fields the model reads".to_owned(),
            ),
            RecordError::MissingField { field } => (field.to_owned(), "is required".to_owned()),
            RecordError::BadValue { field, source } => (field.to_owned(), source.to_string()),
            RecordError::NegativePriorEncounters { value } => (
                readmit_ml::schema::PRIOR_ENCOUNTERS.to_owned(),
                format!("{value} is negative"),
            ),
        };
        InferenceError::invalid(place(&field), reason)
    })
}

/// A record from a JSON object.
pub fn record_from_json(index: Option<usize>, value: &Value) -> Result<RawRecord, InferenceError> {
    let Value::Object(map) = value else {
        return Err(InferenceError::invalid(
            Place {
                record: index,
                field: None,
            },
            format!(
                "a record is a JSON object of field names to values, not {}",
                json_kind(value)
            ),
        ));
    };
    record(
        index,
        map.iter().map(|(k, v)| (k.as_str(), Sent::from_json(v))),
    )
}

/// Records from a JSON array of objects, checked against the batch limit first.
pub fn records_from_json(items: &[Value], limit: usize) -> Result<Vec<RawRecord>, InferenceError> {
    check_count(items.len(), limit)?;
    items
        .iter()
        .enumerate()
        .map(|(i, v)| record_from_json(Some(i), v))
        .collect()
}

/// Refuses an empty batch or one over `limit` records.
pub fn check_count(n: usize, limit: usize) -> Result<(), InferenceError> {
    if n == 0 {
        return Err(InferenceError::Empty);
    }
    if n > limit {
        return Err(InferenceError::TooLarge {
            what: "batch",
            limit: limit as u64,
            unit: "records",
            setting: "inference_max_records",
        });
    }
    Ok(())
}

/// Whether a record must carry this field: a model input that may not be missing.
pub fn is_required(column: &readmit_ml::bundle::InputColumn) -> bool {
    column.spec.role == readmit_ml::schema::Role::Feature && !column.spec.missing_allowed
}

/// One column of a table or tensor request: a field name and one value per record.
#[derive(Debug)]
pub struct Column<'a> {
    pub name: &'a str,
    pub values: Vec<Sent<'a>>,
}

/// Records from columns of equal length (OIP tensors, MLflow's split and columnar forms).
pub fn records_from_columns(
    columns: &[Column<'_>],
    limit: usize,
) -> Result<Vec<RawRecord>, InferenceError> {
    let Some(first) = columns.first() else {
        return Err(InferenceError::Empty);
    };
    let n = first.values.len();
    if let Some(other) = columns.iter().find(|c| c.values.len() != n) {
        return Err(InferenceError::malformed(format!(
            "column `{}` has {} values but `{}` has {n}: every column needs one per record",
            other.name,
            other.values.len(),
            first.name
        )));
    }
    let mut names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(InferenceError::malformed(format!(
            "column `{}` is sent twice",
            pair[0]
        )));
    }
    check_count(n, limit)?;
    (0..n)
        .map(|i| {
            record(
                Some(i),
                columns.iter().map(|c| (c.name, c.values[i].clone())),
            )
        })
        .collect()
}

pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A realistic record with every column, as the CSV has it.
    fn example() -> Value {
        let fields = readmit_ml::synth::Generator::new(3, 100).next_fields();
        let map: serde_json::Map<String, Value> = readmit_ml::schema::COLUMNS
            .iter()
            .zip(fields)
            .map(|(c, f)| (c.name.to_owned(), Value::String(f)))
            .collect();
        let mut value = Value::Object(map);
        value["num_medications"] = json!(18.0);
        value["admission_type_id"] = json!(1);
        value
    }

    fn error(value: &Value) -> String {
        record_from_json(Some(2), value).unwrap_err().to_string()
    }

    #[test]
    fn a_json_record_parses_and_bad_values_name_record_and_field() {
        record_from_json(None, &example()).unwrap();
        let with = |k: &str, v: Value| {
            let mut e = example();
            e[k] = v;
            e
        };
        let e = error(&with("age", json!("[200-300)")));
        assert!(
            e.starts_with("record 2: field `age`") && e.contains("[70-80)"),
            "{e}"
        );
        let e = error(&with("num_medications", json!(18.5)));
        assert!(
            e.contains("`num_medications`") && e.contains("whole"),
            "{e}"
        );
        let e = error(&with("number_inpatient", json!(-1)));
        assert!(
            e.contains("`number_inpatient`") && e.contains("outside"),
            "{e}"
        );
        let e = error(&with("insulin", json!(true)));
        assert!(e.contains("`insulin`") && e.contains("boolean"), "{e}");
        let e = error(&with("shoe_size", json!(44)));
        assert!(
            e.contains("`shoe_size`") && e.contains("unknown field"),
            "{e}"
        );
        let mut missing = example();
        missing.as_object_mut().unwrap().remove("age");
        let e = error(&missing);
        assert!(e.contains("`age`") && e.contains("required"), "{e}");
        let e = error(&json!([1, 2]));
        assert!(e.contains("record 2") && e.contains("an array"), "{e}");
    }

    #[test]
    fn floats_must_be_whole_and_finite() {
        assert_eq!(whole(18.0), Ok(18));
        assert!(whole(f64::NAN).unwrap_err().contains("NaN"));
        assert!(whole(f64::INFINITY).unwrap_err().contains("inf"));
        assert!(whole(1e300).unwrap_err().contains("large"));
    }

    #[test]
    fn columns_must_line_up() {
        let age = Column {
            name: "age",
            values: vec![Sent::Text("[70-80)"), Sent::Text("[50-60)")],
        };
        let short = Column {
            name: "gender",
            values: vec![Sent::Text("Male")],
        };
        let e = records_from_columns(&[age, short], 10)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`gender` has 1") && e.contains("`age` has 2"),
            "{e}"
        );
        assert!(matches!(
            records_from_columns(&[], 10),
            Err(InferenceError::Empty)
        ));
        assert!(matches!(
            check_count(11, 10),
            Err(InferenceError::TooLarge { limit: 10, .. })
        ));
    }
}
