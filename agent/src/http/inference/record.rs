//! The `RawRecord` schema of `/openapi.json`: one raw encounter as `/predict` and
//! `/invocations` read it, built from [`readmit_ml::schema::COLUMNS`] (names, kinds, ranges,
//! levels, whether missing is allowed) so the document cannot drift from what the parser takes.

use std::borrow::Cow;

use readmit_ml::bundle::InputColumn;
use readmit_ml::schema::{self, COLUMNS, ColumnSpec, Role};
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, SchemaType, Type};

use crate::inference::input;

/// The schema component `RawRecord`; it describes the JSON, it is never built.
pub(super) struct RawRecordSchema;

impl utoipa::PartialSchema for RawRecordSchema {
    fn schema() -> RefOr<Schema> {
        let mut record = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "One raw encounter in the UCI CSV's own column names and values. `null` (or \
                 \"?\", as the CSV writes it) means missing where missing is allowed; ids and \
                 the target may be sent and change nothing; an unknown field is refused.",
            ))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for column in &COLUMNS {
            let spec = ColumnSpec::from(column);
            let required = input::is_required(&InputColumn {
                spec: spec.clone(),
                used: true,
                training_levels: Vec::new(),
            });
            let note = match column.role {
                Role::Id => "An identifier: never a model input.",
                Role::Target => "The label: ignored when scoring.",
                Role::Dropped | Role::Feature => column.note,
            };
            record = record.property(column.name, field(&spec, note));
            if required {
                record = record.required(column.name);
            }
        }
        let prior = ColumnSpec {
            name: schema::PRIOR_ENCOUNTERS.to_owned(),
            role: Role::Feature,
            kind: "integer".to_owned(),
            min: Some(0),
            max: None,
            levels: Vec::new(),
            open: false,
            missing_allowed: true,
        };
        record = record.property(
            schema::PRIOR_ENCOUNTERS,
            field(
                &prior,
                "How many earlier encounters the patient had (engineered; not in the CSV). \
                 It needs the patient's history: when a client does not send it, the model \
                 scores the record with the training median in its place, not with 0.",
            ),
        );
        Schema::Object(record.build()).into()
    }
}

impl utoipa::ToSchema for RawRecordSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("RawRecord")
    }
}

/// One field's schema: its JSON type, range or levels, and `null` where missing is allowed.
fn field(spec: &ColumnSpec, note: &str) -> ObjectBuilder {
    let json_type = match spec.kind.as_str() {
        "integer" => Type::Integer,
        _ => Type::String,
    };
    let types: SchemaType = if spec.missing_allowed {
        [json_type, Type::Null].into_iter().collect()
    } else {
        json_type.into()
    };
    let mut description = match spec.kind.as_str() {
        "integer" => "A whole number (a numeric string is accepted too).".to_owned(),
        "icd9" => "An ICD-9 diagnosis code such as 250.83, V57 or E909.".to_owned(),
        _ if spec.open => format!(
            "A level of at most {} characters: the examples are the known ones, and a new \
             one scores as the model's \"other\" level.",
            schema::MAX_TEXT_LEN
        ),
        _ => "One of the levels listed.".to_owned(),
    };
    if spec.missing_allowed {
        description.push_str(" May be missing.");
    }
    if !note.is_empty() {
        description = format!("{description} {note}");
    }
    let mut builder = ObjectBuilder::new()
        .schema_type(types)
        .description(Some(description))
        .minimum(spec.min)
        // The ids' bound is i64::MAX, which says nothing a client can use.
        .maximum(spec.max.filter(|max| *max < i64::MAX));
    if spec.kind == "categorical" {
        let levels = spec.levels.iter().map(|l| Value::from(l.as_str()));
        builder = if spec.open {
            builder
                .max_length(Some(schema::MAX_TEXT_LEN))
                .examples(levels)
        } else if spec.missing_allowed {
            builder.enum_values(Some(levels.chain([Value::Null])))
        } else {
            builder.enum_values(Some(levels))
        };
    } else if spec.kind == "icd9" {
        builder = builder.max_length(Some(schema::MAX_TEXT_LEN));
    }
    builder
}
