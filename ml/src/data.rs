//! Reading the diabetes CSV (plain or gzip) into a validated, typed polars DataFrame, splitting
//! it, and feeding DataFrames to the feature pipeline.
//!
//! Every value is checked against [`crate::schema`] while reading, so a bad file fails with the
//! line and column at fault instead of surfacing later as a strange feature. The frame holds the
//! 50 columns in schema order (integers as Int64, everything else as String with `?` as null)
//! plus the engineered [`schema::PRIOR_ENCOUNTERS`] (Int64).

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::{
    ArrowSchema, Column as PlColumn, CompatLevel, CsvReadOptions, DataFrame, DataType, Field,
    IdxCa, IdxSize, Schema, SerReader,
};
use polars_arrow::io::ipc;

use crate::pipeline::{Cells, PipelineError, Source};
use crate::record::{FieldValue, RawRecord};
use crate::schema::{self, COLUMNS, Cell, Kind, ValueError};
use crate::split::{self, SplitIndices, SplitMethod};

/// Why a data file or frame cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid gzip file: {source}")]
    Gzip {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the file is empty (no header line)")]
    Empty { path: PathBuf },
    #[error("{path}: the header has no column `{column}`")]
    MissingColumn { path: PathBuf, column: &'static str },
    #[error("{path}: the header has an unexpected column `{column}` at position {position}")]
    ExtraColumn {
        path: PathBuf,
        column: String,
        position: usize,
    },
    #[error("{path}, line {line}: {found} fields, expected {expected}")]
    FieldCount {
        path: PathBuf,
        line: usize,
        expected: usize,
        found: usize,
    },
    #[error("{path}, line {line}: a quoted field runs past the end of the line")]
    QuotedLineBreak { path: PathBuf, line: usize },
    #[error("{path}, line {line}, column `{column}`: {source}")]
    BadValue {
        path: PathBuf,
        line: usize,
        column: &'static str,
        #[source]
        source: ValueError,
    },
    #[error("{path}, line {line}: encounter_id {encounter_id} appears twice")]
    DuplicateEncounter {
        path: PathBuf,
        line: usize,
        encounter_id: i64,
    },
    #[error("{path}: {source}")]
    Polars {
        path: PathBuf,
        #[source]
        source: polars::error::PolarsError,
    },
    #[error("the frame's column `{column}`: {reason}")]
    Frame { column: String, reason: String },
}

/// Reads and validates the CSV at `path`; gzip is detected by its magic bytes.
pub fn read_csv(path: &Path) -> Result<DataFrame, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_csv_bytes(bytes, path)
}

/// The CSV text of a file's content: gzip (detected by its magic bytes) is inflated, anything
/// else is returned as it is. `path` only names the file in errors.
pub fn decompress(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() * 7);
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|source| DataError::Gzip {
            path: path.to_owned(),
            source,
        })?;
    Ok(out)
}

/// Reads and validates CSV content (plain or gzip); `path` only names it in errors.
pub fn read_csv_bytes(bytes: Vec<u8>, path: &Path) -> Result<DataFrame, DataError> {
    read_frame(decompress(bytes, path)?, path, false)
}

/// Reads a stored split exported as CSV text: the 50 columns validated as in [`read_csv`],
/// and [`schema::PRIOR_ENCOUNTERS`] taken as stored (it was counted over the whole file at
/// ingest, which a split alone cannot redo).
pub fn read_stored_csv(bytes: Vec<u8>, path: &Path) -> Result<DataFrame, DataError> {
    read_frame(bytes, path, true)
}

fn read_frame(bytes: Vec<u8>, path: &Path, stored_prior: bool) -> Result<DataFrame, DataError> {
    let header = check_layout(&bytes, path, stored_prior)?;

    // Every field as a string: parsing and validating is ours, so errors can name the line.
    let strings = Schema::from_iter(
        header
            .iter()
            .map(|name| Field::new(name.as_str().into(), DataType::String)),
    );
    let raw = CsvReadOptions::default()
        .with_has_header(true)
        .with_schema(Some(Arc::new(strings)))
        // An empty field stays "" and fails validation, instead of passing as null.
        .map_parse_options(|p| p.with_missing_is_null(false))
        .with_rechunk(true)
        .into_reader_with_file_handle(Cursor::new(bytes))
        .finish()
        .map_err(|source| DataError::Polars {
            path: path.to_owned(),
            source,
        })?;

    let height = raw.height();
    // Columns are independent: validate the two halves on two threads.
    let (left, right) = COLUMNS.split_at(COLUMNS.len() / 2);
    let validate_all = |part: &[schema::Column]| {
        part.iter()
            .map(|c| validate_column(&raw, c, path))
            .collect::<Result<Vec<_>, _>>()
    };
    let (left, right) = std::thread::scope(|scope| {
        let right = scope.spawn(|| validate_all(right));
        let left = validate_all(left);
        let right = right
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (left, right)
    });
    // The left half's error first, so the error named is the same as a sequential pass's.
    let mut columns = left?;
    columns.extend(right?);
    let prior = if stored_prior {
        stored_prior_encounters(&raw, path)?
    } else {
        prior_encounters(&columns[0], &columns[1], path)?
    };
    columns.push(PlColumn::new(schema::PRIOR_ENCOUNTERS.into(), prior));
    DataFrame::new(height, columns).map_err(|source| DataError::Polars {
        path: path.to_owned(),
        source,
    })
}

/// Validates one column of the all-strings frame and returns it typed: Int64, or String with
/// `?` as null.
fn validate_column(
    raw: &DataFrame,
    column: &schema::Column,
    path: &Path,
) -> Result<PlColumn, DataError> {
    let height = raw.height();
    let polars = |source| DataError::Polars {
        path: path.to_owned(),
        source,
    };
    let read = raw.column(column.name).map_err(polars)?;
    let strings = read.str().map_err(polars)?;
    let bad = |row: usize, source| DataError::BadValue {
        path: path.to_owned(),
        line: row + 2,
        column: column.name,
        source,
    };
    match column.kind {
        Kind::Integer { .. } => {
            let mut values = Vec::with_capacity(height);
            for (row, raw) in strings.iter().enumerate() {
                match column.parse(raw.unwrap_or_default()) {
                    Ok(Cell::Int(v)) => values.push(v),
                    Ok(_) => return Err(bad(row, ValueError::MissingNotAllowed)),
                    Err(e) => return Err(bad(row, e)),
                }
            }
            Ok(PlColumn::new(column.name.into(), values))
        }
        Kind::Categorical { .. } | Kind::Icd9 => {
            let mut any_missing = false;
            for (row, raw) in strings.iter().enumerate() {
                match column.parse(raw.unwrap_or_default()) {
                    Ok(Cell::Text(_)) => {}
                    Ok(_) => any_missing = true,
                    Err(e) => return Err(bad(row, e)),
                }
            }
            if any_missing {
                // `?` becomes null, so no consumer can mistake it for a level.
                let values: Vec<Option<&str>> = strings
                    .iter()
                    .map(|v| v.filter(|v| *v != schema::MISSING))
                    .collect();
                Ok(PlColumn::new(column.name.into(), values))
            } else {
                // Most columns never miss: share polars' buffer instead of copying it.
                Ok(read.clone())
            }
        }
    }
}

/// Checks the header against the schema and that every line has as many fields, before polars
/// sees the bytes: polars would pad short lines with nulls and its errors carry no line number.
/// Returns the header's column names.
/// The prior-encounter counts of a stored split: whole numbers, never missing or negative.
fn stored_prior_encounters(raw: &DataFrame, path: &Path) -> Result<Vec<i64>, DataError> {
    let strings = raw
        .column(schema::PRIOR_ENCOUNTERS)
        .and_then(PlColumn::str)
        .map_err(|source| DataError::Polars {
            path: path.to_owned(),
            source,
        })?;
    strings
        .iter()
        .enumerate()
        .map(|(row, v)| {
            let v = v.unwrap_or_default();
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| DataError::BadValue {
                    path: path.to_owned(),
                    line: row + 2,
                    column: schema::PRIOR_ENCOUNTERS,
                    source: ValueError::NotInteger {
                        value: v.to_owned(),
                    },
                })
        })
        .collect()
}

fn check_layout(bytes: &[u8], path: &Path, stored_prior: bool) -> Result<Vec<String>, DataError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let header_end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let header_line = String::from_utf8_lossy(&bytes[..header_end]);
    let header_line = header_line.trim_end_matches('\r');
    if header_line.is_empty() {
        return Err(DataError::Empty {
            path: path.to_owned(),
        });
    }
    let header: Vec<String> = header_line
        .split(',')
        .map(|h| h.trim_matches('"').to_owned())
        .collect();
    for (position, name) in header.iter().enumerate() {
        let known =
            schema::index_of(name).is_some() || (stored_prior && name == schema::PRIOR_ENCOUNTERS);
        let repeated = header[..position].contains(name);
        if !known || repeated {
            return Err(DataError::ExtraColumn {
                path: path.to_owned(),
                column: name.clone(),
                position: position + 1,
            });
        }
    }
    if let Some(missing) = COLUMNS.iter().find(|c| !header.iter().any(|h| h == c.name)) {
        return Err(DataError::MissingColumn {
            path: path.to_owned(),
            column: missing.name,
        });
    }
    if stored_prior && !header.iter().any(|h| h == schema::PRIOR_ENCOUNTERS) {
        return Err(DataError::MissingColumn {
            path: path.to_owned(),
            column: schema::PRIOR_ENCOUNTERS,
        });
    }

    let expected = header.len();
    let mut line = 2;
    let mut fields = 1;
    let mut in_quotes = false;
    let mut line_empty = true;
    for &b in &bytes[(header_end + 1).min(bytes.len())..] {
        match b {
            b'"' => in_quotes = !in_quotes,
            b',' if !in_quotes => fields += 1,
            b'\n' if in_quotes => {
                return Err(DataError::QuotedLineBreak {
                    path: path.to_owned(),
                    line,
                });
            }
            b'\n' => {
                if !line_empty && fields != expected {
                    return Err(DataError::FieldCount {
                        path: path.to_owned(),
                        line,
                        expected,
                        found: fields,
                    });
                }
                line += 1;
                fields = 1;
                line_empty = true;
                continue;
            }
            b'\r' => continue,
            _ => {}
        }
        line_empty = false;
    }
    if in_quotes {
        return Err(DataError::QuotedLineBreak {
            path: path.to_owned(),
            line,
        });
    }
    if !line_empty && fields != expected {
        return Err(DataError::FieldCount {
            path: path.to_owned(),
            line,
            expected,
            found: fields,
        });
    }
    Ok(header)
}

/// How many encounters of the same patient have a smaller `encounter_id`: past only, so it is
/// known at admission and never leaks the future.
fn prior_encounters(
    encounters: &PlColumn,
    patients: &PlColumn,
    path: &Path,
) -> Result<Vec<i64>, DataError> {
    let polars = |source| DataError::Polars {
        path: path.to_owned(),
        source,
    };
    let encounters: Vec<i64> = encounters
        .i64()
        .map_err(polars)?
        .into_no_null_iter()
        .collect();
    let patients: Vec<i64> = patients
        .i64()
        .map_err(polars)?
        .into_no_null_iter()
        .collect();
    let mut order: Vec<usize> = (0..encounters.len()).collect();
    order.sort_unstable_by_key(|&i| encounters[i]);
    if let Some(pair) = order
        .windows(2)
        .find(|w| encounters[w[0]] == encounters[w[1]])
    {
        let row = pair[0].max(pair[1]);
        return Err(DataError::DuplicateEncounter {
            path: path.to_owned(),
            line: row + 2,
            encounter_id: encounters[row],
        });
    }
    let mut seen: HashMap<i64, i64> = HashMap::new();
    let mut prior = vec![0; encounters.len()];
    for i in order {
        let count = seen.entry(patients[i]).or_default();
        prior[i] = *count;
        *count += 1;
    }
    Ok(prior)
}

fn frame_error(column: &str, reason: impl std::fmt::Display) -> DataError {
    DataError::Frame {
        column: column.to_owned(),
        reason: reason.to_string(),
    }
}

/// An Int64 column of the frame as a vector (nulls are an error).
pub fn int_column(df: &DataFrame, name: &str) -> Result<Vec<i64>, DataError> {
    let ca = df
        .column(name)
        .and_then(PlColumn::i64)
        .map_err(|e| frame_error(name, e))?;
    if ca.null_count() > 0 {
        return Err(frame_error(name, format!("{} nulls", ca.null_count())));
    }
    Ok(ca.into_no_null_iter().collect())
}

/// The labels: `readmitted == "<30"`.
pub fn labels(df: &DataFrame) -> Result<Vec<bool>, DataError> {
    let ca = df
        .column(schema::TARGET)
        .and_then(PlColumn::str)
        .map_err(|e| frame_error(schema::TARGET, e))?;
    ca.iter()
        .enumerate()
        .map(|(row, v)| {
            v.map(schema::is_positive)
                .ok_or_else(|| frame_error(schema::TARGET, format!("null at row {row}")))
        })
        .collect()
}

/// The rows at `indices`, in that order.
pub fn take_rows(df: &DataFrame, indices: &[usize]) -> Result<DataFrame, DataError> {
    let idx: Vec<IdxSize> = indices
        .iter()
        .map(|&i| IdxSize::try_from(i).map_err(|e| frame_error("<row index>", e)))
        .collect::<Result<_, _>>()?;
    df.take(&IdxCa::from_vec("idx".into(), idx))
        .map_err(|e| frame_error("<row index>", e))
}

/// The three splits of a frame, and the row positions they came from.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train_pool: DataFrame,
    pub validation: DataFrame,
    pub test: DataFrame,
    pub indices: SplitIndices,
}

/// Splits a frame read by [`read_csv`]; `seed` is used by the grouped method only.
pub fn split_frame(df: &DataFrame, method: SplitMethod, seed: u32) -> Result<Splits, DataError> {
    let patients = int_column(df, schema::PATIENT_NBR)?;
    let indices = split::split(method, &patients, seed);
    Ok(Splits {
        train_pool: take_rows(df, &indices.train_pool)?,
        validation: take_rows(df, &indices.validation)?,
        test: take_rows(df, &indices.test)?,
        indices,
    })
}

/// Writes a frame as an Arrow IPC file, atomically: a reader sees the old file or the whole new
/// one, so a task retried after a crash of its process never reads half a hand-off. Not synced
/// to disk: a hand-off lives as long as its run, and a run a power loss interrupts is failed on
/// restart, not resumed — syncing tens of MiB per task would buy nothing.
pub fn write_ipc(df: &mut DataFrame, path: &Path) -> Result<(), DataError> {
    let io = |source| DataError::Io {
        path: path.to_owned(),
        source,
    };
    let polars = |source| DataError::Polars {
        path: path.to_owned(),
        source,
    };
    df.rechunk_mut_par();
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    let schema = Arc::new(
        df.columns()
            .iter()
            .map(|c| c.field().to_arrow(CompatLevel::newest()))
            .collect::<ArrowSchema>(),
    );
    let mut writer = ipc::write::FileWriter::try_new(
        std::io::BufWriter::new(file.as_file()),
        schema,
        None,
        ipc::write::WriteOptions { compression: None },
    )
    .map_err(polars)?;
    for batch in df.iter_chunks(CompatLevel::newest(), false) {
        writer.write(&batch, None).map_err(polars)?;
    }
    writer.finish().map_err(polars)?;
    let mut buffered = writer.into_inner();
    std::io::Write::flush(&mut buffered).map_err(io)?;
    drop(buffered);
    file.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Reads an Arrow IPC file written by [`write_ipc`].
pub fn read_ipc(path: &Path) -> Result<DataFrame, DataError> {
    let io = |source| DataError::Io {
        path: path.to_owned(),
        source,
    };
    let polars = |source| DataError::Polars {
        path: path.to_owned(),
        source,
    };
    let mut file = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
    let metadata = ipc::read::read_file_metadata(&mut file).map_err(polars)?;
    let schema = Arc::clone(&metadata.schema);
    let mut frame: Option<DataFrame> = None;
    for batch in ipc::read::FileReader::new(file, metadata, None, None) {
        let part = DataFrame::from(batch.map_err(polars)?);
        match &mut frame {
            Some(df) => {
                df.vstack_mut_owned(part).map_err(polars)?;
            }
            None => frame = Some(part),
        }
    }
    match frame {
        Some(mut df) => {
            df.rechunk_mut_par();
            Ok(df)
        }
        // No batches: an empty frame with the file's columns.
        None => Ok(DataFrame::empty_with_schema(&Schema::from_iter(
            schema.iter_values().map(Field::from),
        ))),
    }
}

/// The split fingerprint of a frame: SHA-256 of its encounter ids joined by commas.
pub fn fingerprint(df: &DataFrame) -> Result<String, DataError> {
    Ok(split::fingerprint(int_column(df, schema::ENCOUNTER_ID)?))
}

/// Rows of a frame read by [`read_csv`] as raw records (with their prior-encounter count), for
/// input examples and parity checks against the serving path.
pub fn records(df: &DataFrame, rows: std::ops::Range<usize>) -> Result<Vec<RawRecord>, DataError> {
    let rows = rows.start.min(df.height())..rows.end.min(df.height());
    let frame = df.slice(i64::try_from(rows.start).unwrap_or(i64::MAX), rows.len());
    let mut fields: Vec<Vec<(&'static str, Option<FieldValue>)>> =
        vec![Vec::with_capacity(COLUMNS.len() + 1); rows.len()];
    let sources = (0..COLUMNS.len())
        .map(Source::Column)
        .chain([Source::PriorEncounters]);
    for source in sources {
        frame
            .for_each_cell(source, &mut |i, cell| {
                let value = match cell {
                    Cell::Missing => None,
                    Cell::Int(v) => Some(FieldValue::Int(v)),
                    Cell::Text(t) => Some(FieldValue::Text(t.to_owned())),
                };
                fields[i].push((source.name(), value));
            })
            .map_err(|e| frame_error(source.name(), e))?;
    }
    fields
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            RawRecord::from_fields(f)
                .map_err(|e| frame_error("<record>", format!("row {}: {e}", rows.start + i)))
        })
        .collect()
}

impl Cells for DataFrame {
    fn n_rows(&self) -> usize {
        self.height()
    }

    fn for_each_cell(
        &self,
        source: Source,
        f: &mut dyn FnMut(usize, Cell<'_>),
    ) -> Result<(), PipelineError> {
        let name = source.name();
        let column = self
            .column(name)
            .map_err(|_| PipelineError::MissingColumn {
                column: name.to_owned(),
            })?;
        let wrong_type = |expected| PipelineError::ColumnType {
            column: name.to_owned(),
            expected,
            found: column.dtype().to_string(),
        };
        let kind = match source {
            Source::Column(i) => COLUMNS[i].kind,
            Source::PriorEncounters => Kind::Integer {
                min: 0,
                max: i64::MAX,
            },
        };
        match (kind, column.dtype()) {
            (Kind::Integer { .. }, DataType::Int64) => {
                let ca = column.i64().map_err(|_| wrong_type("Int64"))?;
                for (i, v) in ca.iter().enumerate() {
                    f(i, v.map_or(Cell::Missing, Cell::Int));
                }
            }
            (Kind::Categorical { .. } | Kind::Icd9, DataType::String) => {
                let ca = column.str().map_err(|_| wrong_type("String"))?;
                for (i, v) in ca.iter().enumerate() {
                    f(i, v.map_or(Cell::Missing, Cell::Text));
                }
            }
            // Id-coded categoricals that some other reader typed as integers: same levels.
            (Kind::Categorical { .. }, DataType::Int64) => {
                let ca = column.i64().map_err(|_| wrong_type("String"))?;
                for (i, v) in ca.iter().enumerate() {
                    match v {
                        Some(v) => f(i, Cell::Text(&v.to_string())),
                        None => f(i, Cell::Missing),
                    }
                }
            }
            (Kind::Integer { .. }, _) => return Err(wrong_type("Int64")),
            (Kind::Categorical { .. } | Kind::Icd9, _) => return Err(wrong_type("String")),
        }
        Ok(())
    }
}
