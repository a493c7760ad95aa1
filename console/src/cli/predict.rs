//! `readmit predict`: one raw encounter scored by an inference agent — given as JSON, as
//! `--field name=value` pairs, or taken from the test split through the ETL role — with the
//! fields that moved its score most.

use std::collections::HashMap;
use std::io::Read as _;
use std::process::ExitCode;

use anyhow::Context as _;
use readmit_proto::v1;
use serde::Serialize;
use serde_json::Value;

use super::Global;
use crate::fleet::{Fleet, Role, Routed};
use crate::output::{self, OutputFormat};

/// Most fields `--explain` may ask for (the record has 50).
const MAX_EXPLAIN: u32 = 50;
/// Largest record file or stdin read.
const MAX_RECORD_BYTES: u64 = 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// The record as a JSON object of field to value: inline, @FILE, or - for stdin.
    #[arg(value_name = "JSON", conflicts_with = "from_test")]
    pub record: Option<String>,
    /// A field as name=value; repeat. Sets (or overrides) that field of the record; values of
    /// numeric fields are checked against the served model's signature.
    #[arg(long = "field", value_name = "NAME=VALUE")]
    pub fields: Vec<String>,
    /// Start from the Nth record of the test split (from 0), read through the etl role.
    #[arg(long, value_name = "N")]
    pub from_test: Option<u64>,
    /// Also show the K fields that moved the score most.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub explain: u32,
}

/// One prediction as the command prints it.
#[derive(Debug, Serialize)]
pub struct PredictionView {
    pub agent: String,
    pub model: String,
    pub version: i64,
    pub threshold: f64,
    pub probability: f64,
    pub readmitted: bool,
    pub contributions: Vec<ContributionView>,
}

#[derive(Debug, Serialize)]
pub struct ContributionView {
    pub field: String,
    pub value: String,
    pub reference: String,
    pub effect: f64,
}

pub async fn run(global: &Global, args: &PredictArgs) -> anyhow::Result<ExitCode> {
    if args.explain > MAX_EXPLAIN {
        anyhow::bail!(
            "--explain: at most {MAX_EXPLAIN} fields, not {}",
            args.explain
        );
    }
    let fleet = global.fleet().await?;
    let mut record = match (&args.record, args.from_test) {
        (Some(text), _) => record_from_json(&read_record(text)?)?,
        (None, Some(n)) => test_record(&fleet, n).await?,
        (None, None) if args.fields.is_empty() => {
            anyhow::bail!("give the record as JSON, --field name=value, or --from-test N")
        }
        (None, None) => v1::Record::default(),
    };
    let inference = fleet.client(Role::Inference).await?;
    if !args.fields.is_empty() {
        set_fields(&inference, &mut record, &args.fields).await?;
    }
    let view = predict(&inference, record, args.explain).await?;
    match global.output {
        OutputFormat::Json => output::print_json(&view)?,
        OutputFormat::Table => print_view(&view),
    }
    Ok(ExitCode::SUCCESS)
}

/// The text of a record argument: itself, the file after `@`, or stdin for `-`.
fn read_record(arg: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    if arg == "-" {
        std::io::stdin()
            .take(MAX_RECORD_BYTES + 1)
            .read_to_string(&mut text)
            .context("reading the record from stdin")?;
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_RECORD_BYTES + 1).read_to_string(&mut text))
            .with_context(|| format!("record file {path}"))?;
    } else {
        return Ok(arg.to_owned());
    }
    if text.len() as u64 > MAX_RECORD_BYTES {
        anyhow::bail!("the record is over {MAX_RECORD_BYTES} bytes");
    }
    Ok(text)
}

/// A JSON object of field to string or number (null: missing) as a wire record.
pub fn record_from_json(text: &str) -> anyhow::Result<v1::Record> {
    let value: Value = serde_json::from_str(text).context("the record is not valid JSON")?;
    let Value::Object(map) = value else {
        anyhow::bail!("the record must be a JSON object of field names to values");
    };
    let mut fields = HashMap::new();
    for (name, value) in map {
        let kind = match value {
            Value::Null => continue,
            Value::String(s) => v1::field_value::Kind::Text(s),
            Value::Number(n) => v1::field_value::Kind::Number(
                n.as_f64()
                    .with_context(|| format!("field {name}: {n} is not a number we can send"))?,
            ),
            other => anyhow::bail!(
                "field {name}: a value is a string or a number, not {}",
                match other {
                    Value::Bool(_) => "a boolean",
                    Value::Array(_) => "an array",
                    _ => "an object",
                }
            ),
        };
        fields.insert(name, v1::FieldValue { kind: Some(kind) });
    }
    Ok(v1::Record { fields })
}

/// The `n`th record of the test split, from an agent with the ETL role.
pub async fn test_record(fleet: &Fleet, n: u64) -> anyhow::Result<v1::Record> {
    let etl = fleet.client(Role::Etl).await?;
    let reply = etl
        .etl()
        .get_test_records(v1::GetTestRecordsRequest {
            offset: n,
            limit: 1,
        })
        .await
        .map_err(|s| anyhow::anyhow!("--from-test: {}", output::status_error(etl.url(), &s)))?
        .into_inner();
    reply
        .records
        .into_iter()
        .next()
        .with_context(|| format!("--from-test: the test split has no record {n}"))
}

/// Applies `name=value` pairs, typed by the served model's signature: numeric fields must
/// parse as numbers; `?` or an empty value makes the field missing.
async fn set_fields(
    inference: &Routed,
    record: &mut v1::Record,
    pairs: &[String],
) -> anyhow::Result<()> {
    let signature = inference
        .inference()
        .get_signature(v1::GetSignatureRequest {})
        .await
        .map_err(|s| {
            anyhow::anyhow!(
                "--field needs the served model's signature: {}",
                output::status_error(inference.url(), &s)
            )
        })?
        .into_inner();
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            anyhow::bail!("--field {pair:?}: give name=value");
        };
        let name = name.trim();
        let Some(input) = signature.inputs.iter().find(|f| f.name == name) else {
            anyhow::bail!("--field {name}: the served model has no such field");
        };
        if value.is_empty() || value == "?" {
            record.fields.remove(name);
            continue;
        }
        let numeric = matches!(
            v1::FieldType::try_from(input.r#type),
            Ok(v1::FieldType::Integer | v1::FieldType::Number)
        );
        let kind = if numeric {
            let number: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite())
                .with_context(|| format!("--field {name}: {value:?} is not a number"))?;
            v1::field_value::Kind::Number(number)
        } else {
            v1::field_value::Kind::Text(value.to_owned())
        };
        record
            .fields
            .insert(name.to_owned(), v1::FieldValue { kind: Some(kind) });
    }
    Ok(())
}

/// Scores one record on `inference`, with up to `explain` contributions.
pub async fn predict(
    inference: &Routed,
    record: v1::Record,
    explain: u32,
) -> anyhow::Result<PredictionView> {
    let reply = inference
        .inference()
        .predict(v1::PredictRequest {
            records: vec![record],
            explain,
        })
        .await
        .map_err(|s| anyhow::anyhow!(output::status_error(inference.url(), &s)))?
        .into_inner();
    let prediction = reply
        .predictions
        .into_iter()
        .next()
        .context("the agent answered with no prediction")?;
    Ok(PredictionView {
        agent: inference.agent.name.clone(),
        model: reply.model_name,
        version: reply.model_version,
        threshold: reply.threshold,
        probability: prediction.probability,
        readmitted: prediction.readmitted,
        contributions: prediction
            .contributions
            .into_iter()
            .map(|c| ContributionView {
                field: c.field,
                value: c.value,
                reference: c.reference,
                effect: c.effect,
            })
            .collect(),
    })
}

fn print_view(view: &PredictionView) {
    let mut table = output::table([
        "MODEL",
        "VERSION",
        "PROBABILITY",
        "THRESHOLD",
        "READMITTED",
        "AGENT",
    ]);
    table.add_row([
        view.model.clone(),
        view.version.to_string(),
        format!("{:.4}", view.probability),
        format!("{:.4}", view.threshold),
        if view.readmitted { "yes" } else { "no" }.to_owned(),
        view.agent.clone(),
    ]);
    println!("{table}");
    if !view.contributions.is_empty() {
        let mut table = output::table(["FIELD", "VALUE", "TYPICAL", "EFFECT"]);
        for c in &view.contributions {
            table.add_row([
                c.field.clone(),
                c.value.clone(),
                c.reference.clone(),
                format!("{:+.4}", c.effect),
            ]);
        }
        println!("{table}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_records_take_strings_and_numbers_and_name_bad_fields() {
        let r =
            record_from_json(r#"{"race":"Caucasian","time_in_hospital":3,"weight":null}"#).unwrap();
        assert_eq!(r.fields.len(), 2, "null is missing");
        assert_eq!(
            r.fields["time_in_hospital"].kind,
            Some(v1::field_value::Kind::Number(3.0))
        );
        let err = record_from_json(r#"{"race":true}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("race") && err.contains("boolean"), "{err}");
        assert!(record_from_json("[1]").is_err());
        assert!(record_from_json("{").is_err());
    }
}
