//! One raw patient encounter as clients send it for scoring, validated against the schema.
//!
//! Serving turns a [`RawRecord`] into features without polars, so this module depends on the
//! schema only. On the wire a record is a JSON object of column name to string, number or null.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::schema::{self, COLUMNS, Cell, Kind, Role, ValueError};

/// Why a set of fields is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("unknown field `{field}`")]
    UnknownField { field: String },
    #[error("field `{field}` is required")]
    MissingField { field: &'static str },
    #[error("field `{field}`: {source}")]
    BadValue {
        field: &'static str,
        #[source]
        source: ValueError,
    },
    #[error("field `{PRIOR}`: {value} is negative", PRIOR = schema::PRIOR_ENCOUNTERS)]
    NegativePriorEncounters { value: i64 },
}

/// A field's value as sent: JSON clients may send integers as numbers or as strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Int(i64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Missing,
    Int(i64),
    Text(String),
}

/// A validated encounter: a value (possibly missing) for each of the 50 columns, plus the
/// engineered prior-encounter count when the sender knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, Option<FieldValue>>",
    into = "BTreeMap<String, Option<FieldValue>>"
)]
pub struct RawRecord {
    values: Vec<Value>,
    prior_encounters: Option<i64>,
}

impl RawRecord {
    /// Validates fields by name. Feature columns that may not be missing are required; ids,
    /// the target, dropped columns and [`schema::PRIOR_ENCOUNTERS`] may be absent. `None` and
    /// `"?"` both mean missing.
    pub fn from_fields<K, I>(fields: I) -> Result<Self, RecordError>
    where
        K: AsRef<str>,
        I: IntoIterator<Item = (K, Option<FieldValue>)>,
    {
        let mut values: Vec<Option<Value>> = vec![None; COLUMNS.len()];
        let mut prior_encounters = None;
        for (name, value) in fields {
            let name = name.as_ref();
            if name == schema::PRIOR_ENCOUNTERS {
                prior_encounters = parse_prior(value)?;
                continue;
            }
            let index = schema::index_of(name).ok_or_else(|| RecordError::UnknownField {
                field: name.to_owned(),
            })?;
            values[index] = Some(parse_field(index, value.as_ref())?);
        }
        let values = values
            .into_iter()
            .zip(&COLUMNS)
            .map(|(value, column)| match value {
                Some(v) => Ok(v),
                None if column.role == Role::Feature && !column.missing_allowed => {
                    Err(RecordError::MissingField { field: column.name })
                }
                None => Ok(Value::Missing),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            values,
            prior_encounters,
        })
    }

    /// A record from the 50 raw CSV fields in schema order, as a line of the file holds them.
    pub fn from_csv_fields(fields: &[&str]) -> Result<Self, RecordError> {
        if let Some(extra) = fields.get(COLUMNS.len()) {
            return Err(RecordError::UnknownField {
                field: format!("extra field {:?} after the 50th", extra),
            });
        }
        if let Some(missing) = COLUMNS.get(fields.len()) {
            return Err(RecordError::MissingField {
                field: missing.name,
            });
        }
        Self::from_fields(
            COLUMNS
                .iter()
                .zip(fields)
                .map(|(c, f)| (c.name, Some(FieldValue::Text((*f).to_owned())))),
        )
    }

    /// The value of column `index` of [`COLUMNS`].
    ///
    /// # Panics
    /// If `index >= 50`.
    pub fn cell(&self, index: usize) -> Cell<'_> {
        match &self.values[index] {
            Value::Missing => Cell::Missing,
            Value::Int(v) => Cell::Int(*v),
            Value::Text(t) => Cell::Text(t),
        }
    }

    /// The patient's earlier encounters, when known.
    pub fn prior_encounters(&self) -> Option<i64> {
        self.prior_encounters
    }

    /// Sets the patient's earlier-encounter count (the caller knows the history).
    pub fn with_prior_encounters(mut self, count: u32) -> Self {
        self.prior_encounters = Some(i64::from(count));
        self
    }

    /// The label, when the record carries the target column.
    pub fn label(&self) -> Option<bool> {
        let index = schema::index_of(schema::TARGET)?;
        match self.cell(index) {
            Cell::Text(t) => Some(schema::is_positive(t)),
            Cell::Missing | Cell::Int(_) => None,
        }
    }
}

fn parse_prior(value: Option<FieldValue>) -> Result<Option<i64>, RecordError> {
    let value = match value {
        None => return Ok(None),
        Some(FieldValue::Text(t)) if t == schema::MISSING => return Ok(None),
        Some(FieldValue::Int(v)) => v,
        Some(FieldValue::Text(t)) => t.parse().map_err(|_| RecordError::BadValue {
            field: "prior_encounters",
            source: ValueError::NotInteger { value: t.clone() },
        })?,
    };
    if value < 0 {
        return Err(RecordError::NegativePriorEncounters { value });
    }
    Ok(Some(value))
}

fn parse_field(index: usize, value: Option<&FieldValue>) -> Result<Value, RecordError> {
    let column = &COLUMNS[index];
    let bad = |source| RecordError::BadValue {
        field: column.name,
        source,
    };
    let cell = match value {
        None => column.parse(schema::MISSING),
        Some(FieldValue::Text(t)) => column.parse(t),
        Some(FieldValue::Int(v)) => match column.kind {
            Kind::Integer { .. } => column.check_integer(*v),
            // Id-coded categoricals (admission_type_id, ...) arrive as JSON numbers.
            Kind::Categorical { .. } | Kind::Icd9 => {
                return column
                    .parse(&v.to_string())
                    .map(|c| cell_to_value(c))
                    .map_err(bad);
            }
        },
    }
    .map_err(bad)?;
    Ok(cell_to_value(cell))
}

fn cell_to_value(cell: Cell<'_>) -> Value {
    match cell {
        Cell::Missing => Value::Missing,
        Cell::Int(v) => Value::Int(v),
        Cell::Text(t) => Value::Text(t.to_owned()),
    }
}

impl TryFrom<BTreeMap<String, Option<FieldValue>>> for RawRecord {
    type Error = RecordError;

    fn try_from(map: BTreeMap<String, Option<FieldValue>>) -> Result<Self, Self::Error> {
        Self::from_fields(map)
    }
}

impl From<RawRecord> for BTreeMap<String, Option<FieldValue>> {
    fn from(record: RawRecord) -> Self {
        let mut map: Self = COLUMNS
            .iter()
            .zip(record.values)
            .filter_map(|(c, v)| {
                let field = match v {
                    Value::Int(i) => FieldValue::Int(i),
                    Value::Text(t) => FieldValue::Text(t),
                    // Absent fields read back as missing, so missing values need no entry.
                    Value::Missing => return None,
                };
                Some((c.name.to_owned(), Some(field)))
            })
            .collect();
        if let Some(p) = record.prior_encounters {
            map.insert(
                schema::PRIOR_ENCOUNTERS.to_owned(),
                Some(FieldValue::Int(p)),
            );
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Vec<(&'static str, Option<FieldValue>)> {
        schema::features()
            .filter(|(_, c)| !c.missing_allowed)
            .map(|(_, c)| {
                let value = match c.kind {
                    Kind::Integer { min, .. } => FieldValue::Int(min),
                    Kind::Categorical { levels, .. } => FieldValue::Text(levels[0].to_owned()),
                    Kind::Icd9 => FieldValue::Text("250".to_owned()),
                };
                (c.name, Some(value))
            })
            .collect()
    }

    #[test]
    fn required_optional_and_unknown_fields() {
        let record = RawRecord::from_fields(minimal()).unwrap();
        // Optional features, ids and the target are missing when absent.
        assert_eq!(
            record.cell(schema::index_of("race").unwrap()),
            Cell::Missing
        );
        assert_eq!(record.label(), None);
        assert_eq!(record.prior_encounters(), None);

        let mut without_age = minimal();
        without_age.retain(|(n, _)| *n != "age");
        assert_eq!(
            RawRecord::from_fields(without_age),
            Err(RecordError::MissingField { field: "age" })
        );
        let mut unknown = minimal();
        unknown.push(("shoe_size", Some(FieldValue::Int(44))));
        assert_eq!(
            RawRecord::from_fields(unknown),
            Err(RecordError::UnknownField {
                field: "shoe_size".into()
            })
        );
        let mut negative = minimal();
        negative.push((schema::PRIOR_ENCOUNTERS, Some(FieldValue::Int(-1))));
        assert_eq!(
            RawRecord::from_fields(negative),
            Err(RecordError::NegativePriorEncounters { value: -1 })
        );
    }

    #[test]
    fn values_are_validated_by_column() {
        let mut fields = minimal();
        fields.push(("time_in_hospital", Some(FieldValue::Text("three".into()))));
        assert!(matches!(
            RawRecord::from_fields(fields),
            Err(RecordError::BadValue {
                field: "time_in_hospital",
                source: ValueError::NotInteger { .. }
            })
        ));
        // An id-coded categorical may come as a number, and must still be a known code.
        let mut fields = minimal();
        fields.push(("admission_type_id", Some(FieldValue::Int(3))));
        let record = RawRecord::from_fields(fields).unwrap();
        let i = schema::index_of("admission_type_id").unwrap();
        assert_eq!(record.cell(i), Cell::Text("3"));
        let mut fields = minimal();
        fields.push(("admission_type_id", Some(FieldValue::Int(99))));
        assert!(matches!(
            RawRecord::from_fields(fields),
            Err(RecordError::BadValue {
                field: "admission_type_id",
                source: ValueError::UnknownLevel { .. }
            })
        ));
    }

    #[test]
    fn json_round_trip() {
        let mut fields = minimal();
        fields.push(("race", Some(FieldValue::Text("?".into()))));
        fields.push(("readmitted", Some(FieldValue::Text("<30".into()))));
        fields.push((schema::PRIOR_ENCOUNTERS, Some(FieldValue::Text("2".into()))));
        let record = RawRecord::from_fields(fields).unwrap();
        assert_eq!(record.label(), Some(true));
        assert_eq!(record.prior_encounters(), Some(2));
        let json = serde_json::to_string(&record).unwrap();
        let back: RawRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
        // Bad JSON fields are refused with the field's name.
        let err = serde_json::from_str::<RawRecord>(r#"{"age": "[50-60)", "bogus": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
        // A short CSV line names the first column it lacks.
        let csv = RawRecord::from_csv_fields(&["1"; 3]).unwrap_err();
        assert_eq!(csv, RecordError::MissingField { field: "gender" });
    }
}
