//! RawData and CleanData end to end through `proto::Client` against a real agent, on SQLite,
//! MariaDB and PostgreSQL: malformed files refused with the line and column, the real file
//! ingested (streamed and by path, idempotently), batches appended exactly once until the pool
//! is empty, and the `preprocess_incremental` DAG writing CleanData fitted on training rows
//! only.

mod support;

use std::path::PathBuf;

use readmit_agent::RunningAgent;
use readmit_agent::settings::RawSettings;
use readmit_ml::data::{labels, read_csv, read_csv_bytes, split_frame};
use readmit_ml::pipeline::{Pipeline, PipelineParams};
use readmit_ml::split::{ORIGINAL_SEED, SplitMethod};
use readmit_proto::{Client, v1};
use sqlx::{Connection, Row};
use support::Backend;
use tonic::Code;

fn real_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/diabetic_data.csv.gz")
}

/// The real file without `..`, which agent-side paths may not hold.
fn real_path() -> PathBuf {
    real_data().canonicalize().unwrap()
}

/// Streams `bytes` to IngestUpload in 256 KiB chunks.
async fn upload(
    client: &Client,
    name: &str,
    bytes: Vec<u8>,
    replace: bool,
) -> Result<v1::IngestReply, tonic::Status> {
    let mut chunks = vec![v1::IngestChunk {
        chunk: Some(v1::ingest_chunk::Chunk::Header(v1::IngestHeader {
            file_name: name.into(),
            split: v1::SplitKind::Original as i32,
            replace,
        })),
    }];
    for part in bytes.chunks(256 * 1024) {
        chunks.push(v1::IngestChunk {
            chunk: Some(v1::ingest_chunk::Chunk::Data(part.to_vec())),
        });
    }
    client
        .etl()
        .ingest_upload(futures_util::stream::iter(chunks))
        .await
        .map(tonic::Response::into_inner)
}

/// The first lines of the real file, decompressed, with `edit` applied to line `line`
/// (1 is the header).
fn small_csv(rows: usize, line: usize, edit: impl Fn(&str) -> String) -> Vec<u8> {
    let bytes = std::fs::read(real_data()).unwrap();
    let text = readmit_ml::data::decompress(bytes, &real_data()).unwrap();
    let text = String::from_utf8(text).unwrap();
    let mut out = String::new();
    for (i, l) in text.lines().take(rows + 1).enumerate() {
        if i + 1 == line {
            out.push_str(&edit(l));
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    out.into_bytes()
}

async fn suite(backend: Backend) {
    let Some(raw_db) = support::fresh(backend).await else {
        return;
    };
    let Some(clean_db) = support::fresh(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let settings = RawSettings {
        raw_db: raw_db.url.clone(),
        clean_db: clean_db.url.clone(),
        // Ingest by path reads only from the import directory: the real file's own.
        import_dir: real_path().parent().unwrap().display().to_string(),
        ..RawSettings::loopback(dir.path(), &[readmit_agent::Role::Etl])
    }
    .validate()
    .unwrap();
    let agent = RunningAgent::start(settings).await.unwrap();
    let client = Client::connect(&agent.grpc_url(), None).await.unwrap();
    let mut etl = client.etl();

    // Malformed files: refused with the file, line and column, nothing written.
    let missing_column = small_csv(5, 1, |h| h.replace(",race,", ",ethnicity,"));
    let e = upload(&client, "no_race.csv", missing_column, false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("no_race.csv"), "{}", e.message());
    let bad_age = small_csv(5, 3, |l| l.replacen("[10-20)", "[10-21)", 1));
    let e = upload(&client, "bad_age.csv", bad_age, false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("bad_age.csv, line 3, column `age`"),
        "{}",
        e.message()
    );
    let e = etl
        .append_batch(v1::AppendBatchRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("ingest"), "{}", e.message());

    // The real file, streamed.
    let reply = upload(
        &client,
        "diabetic_data.csv.gz",
        std::fs::read(real_data()).unwrap(),
        false,
    )
    .await
    .unwrap();
    assert!(reply.changed);
    let expected = readmit_ml::split::split_original(101_766);
    let count = |tables: &[v1::TableCount], name: &str| {
        tables
            .iter()
            .find(|t| t.table == name)
            .map(|t| t.rows)
            .unwrap_or(-1)
    };
    let pool = expected.train_pool.len() as i64;
    assert_eq!(count(&reply.tables, "train_pool"), pool);
    assert_eq!(count(&reply.tables, "train_data"), 0);
    assert_eq!(
        count(&reply.tables, "validation_data"),
        expected.validation.len() as i64
    );
    assert_eq!(
        count(&reply.tables, "test_data"),
        expected.test.len() as i64
    );

    // The same file again, by path on the agent: nothing changes. Another file is refused.
    let again = etl
        .ingest(v1::IngestRequest {
            path: real_path().display().to_string(),
            split: v1::SplitKind::Original as i32,
            replace: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.changed, "{again:?}");
    assert_eq!(again.sha256, reply.sha256);
    let e = upload(&client, "other.csv", small_csv(50, 0, str::to_owned), false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("--replace"), "{}", e.message());

    // Appends: exactly once per request id, until the pool is empty.
    let first = etl
        .append_batch(v1::AppendBatchRequest {
            batch_size: 0,
            request_id: "first".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (first.appended, first.train_rows, first.batch_number),
        (15_000, 15_000, 1)
    );
    let retried = etl
        .append_batch(v1::AppendBatchRequest {
            batch_size: 0,
            request_id: "first".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(retried.replayed);
    assert_eq!((retried.appended, retried.batch_number), (15_000, 1));

    // The status names each split by the ML core's fingerprints (its original-split test holds
    // the same digests), and counts the positive class: 11,357 of the file's rows are "<30".
    let status = etl
        .get_data_status(v1::GetDataStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let facts = |tables: &[v1::TableCount], name: &str| {
        let t = tables.iter().find(|t| t.table == name).unwrap();
        (t.fingerprint.clone(), t.readmitted.unwrap_or(-1))
    };
    let (pool_print, pool_positive) = facts(&status.tables, "train_pool");
    assert_eq!(
        pool_print,
        "4bd9ef583b83b5e68f8c227ff67b265595b3409c59d55474f75d9927ec551925"
    );
    let (validation_print, validation_positive) = facts(&status.tables, "validation_data");
    assert_eq!(
        validation_print,
        "6e34a091daf9083a779eefea9a017da32a0d47e9c91373f4df58cdaaa5594ada"
    );
    let (test_print, test_positive) = facts(&status.tables, "test_data");
    assert_eq!(
        test_print,
        "ea39aae1b0d90f8f3323150633e557cc9079184770b5676409231e1001fd75fd"
    );
    assert_eq!(pool_positive + validation_positive + test_positive, 11_357);
    for positive in [pool_positive, validation_positive, test_positive] {
        assert!(positive > 1_000, "{status:?}");
    }
    let (batch_print, batch_positive) = facts(&status.tables, "train_data");
    assert_eq!(
        batch_print,
        "8d3d28be3eb18426923a8437bd20167a5d43cf6dfca3c68c9fadb1b854f0a529"
    );
    assert!((1..pool_positive).contains(&batch_positive), "{status:?}");
    let clean = status.tables.iter().find(|t| t.database == "clean");
    assert!(clean.is_none_or(|t| t.fingerprint.is_empty() && t.readmitted.is_none()));
    let mut batches = 1;
    loop {
        let r = etl
            .append_batch(v1::AppendBatchRequest::default())
            .await
            .unwrap()
            .into_inner();
        if r.exhausted {
            assert_eq!(r.appended, 0);
            assert!(r.message.contains("exhausted"), "{}", r.message);
            break;
        }
        batches += 1;
        assert_eq!(r.batch_number, batches);
        assert_eq!(r.train_rows + r.pool_remaining, pool);
    }
    assert_eq!(batches, (pool + 14_999) / 15_000);
    let status = etl
        .get_data_status(v1::GetDataStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.train_rows, pool);
    assert_eq!(status.pool_remaining, 0);
    assert_eq!(status.batches_appended, batches);
    assert_eq!(count(&status.tables, "train_data"), pool);
    // Every pool row is in train_data now, in pool order: the same rows, the same digest.
    assert_eq!(
        facts(&status.tables, "train_data"),
        (pool_print, pool_positive)
    );

    // The counts are published for Prometheus too.
    let metrics = reqwest::get(format!("{}/metrics", agent.http_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        format!("readmit_etl_rows_ingested_total{{table=\"train_pool\"}} {pool}"),
        format!("readmit_etl_rows_ingested_total{{table=\"train_data\"}} {pool}"),
        format!("readmit_etl_table_rows{{database=\"raw\",table=\"train_data\"}} {pool}"),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in\n{metrics}"
        );
    }

    // Leftovers of a save that died before its swap (MySQL's DDL commits as it goes): the
    // next save clears them away.
    const LEFTOVERS: [&str; 2] = ["diabetes_train_processed__staging", "clean_version__old"];
    let mut conn = sqlx::AnyConnection::connect(&clean_db.url).await.unwrap();
    for table in LEFTOVERS {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {table} (x BIGINT)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }

    // Preprocessing.
    let run = support::trigger(&client, "preprocess_incremental", &[]).await;
    let run = support::wait_for_run(&client, &run.run_id, support::run_finished, 120).await;
    assert_eq!(run.state, v1::RunState::Succeeded as i32, "{run:?}");
    let status = etl
        .get_data_status(v1::GetDataStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count(&status.tables, "diabetes_train_processed"), pool);
    assert_eq!(
        count(&status.tables, "diabetes_validation_processed"),
        expected.validation.len() as i64
    );
    assert_eq!(
        count(&status.tables, "diabetes_test_processed"),
        expected.test.len() as i64
    );

    // CleanData holds 50 features fitted on training rows only: the same pipeline fitted here
    // on the pool alone gives the stored validation features exactly.
    let frame = read_csv(&real_data()).unwrap();
    let splits = split_frame(&frame, SplitMethod::Original, ORIGINAL_SEED).unwrap();
    let y = labels(&splits.train_pool).unwrap();
    let pipeline = Pipeline::fit(&splits.train_pool, &y, &PipelineParams::default()).unwrap();
    assert_eq!(pipeline.n_features(), 50);
    let x_val = pipeline.transform(&splits.validation).unwrap();
    let val_ids = readmit_ml::data::int_column(&splits.validation, "encounter_id").unwrap();

    let stored: String = sqlx::query_scalar("SELECT pipeline FROM clean_version")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let stored = Pipeline::from_json(&stored).unwrap();
    assert_eq!(stored.names(), pipeline.names());
    let features: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM clean_features")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(features, 50);
    for table in LEFTOVERS {
        let gone = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .execute(&mut conn)
            .await;
        assert!(gone.is_err(), "{table} is still there");
    }
    let columns: Vec<String> =
        sqlx::query("SELECT column_name FROM clean_features ORDER BY position")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
    let probe = 7;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM diabetes_validation_processed WHERE encounter_id = {}",
        val_ids[probe]
    )))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    for (c, name) in columns.iter().enumerate() {
        let stored = row.get::<f64, _>(name.as_str()) as f32;
        assert_eq!(stored, x_val.row(probe)[c], "feature {name}");
    }
    drop(conn);

    agent.stop().await.unwrap();
    raw_db.cleanup().await;
    clean_db.cleanup().await;
}

/// Text with quotes, commas and backslashes, and missing values, read back from RawData as
/// written, with each row's stored prior-encounter count.
async fn round_trip(backend: Backend) {
    let Some(raw_db) = support::fresh(backend).await else {
        return;
    };
    let Some(clean_db) = support::fresh(backend).await else {
        return;
    };
    let odd_field = r#""Odd ""quoted"", with\back\slash""#;
    let odd_value = r#"Odd "quoted", with\back\slash"#;
    let csv = small_csv(300, 2, |l| {
        let mut fields: Vec<String> = l.split(',').map(str::to_owned).collect();
        let at = readmit_ml::schema::index_of("medical_specialty").unwrap();
        fields[at] = odd_field.to_owned();
        fields.join(",")
    });
    let dir = tempfile::tempdir().unwrap();
    let registry = prometheus::Registry::new();
    let data = readmit_agent::etl::data::DataService::open(
        readmit_agent::db::Db::connect(&raw_db.url).await.unwrap(),
        readmit_agent::db::Db::connect(&clean_db.url).await.unwrap(),
        dir.path(),
        readmit_agent::etl::data::DataLimits {
            import_dir: dir.path().join("import"),
            max_ingest_bytes: readmit_agent::settings::DEFAULT_MAX_INGEST_BYTES,
        },
        readmit_agent::etl::metrics::DataMetrics::new(&registry).unwrap(),
    )
    .await
    .unwrap();
    data.ingest_bytes(csv.clone(), "odd.csv", SplitMethod::Original, false)
        .await
        .unwrap();
    data.append_batch(1000, "all").await.unwrap();
    let frame = read_csv_bytes(csv, std::path::Path::new("odd.csv")).unwrap();
    let splits = split_frame(&frame, SplitMethod::Original, ORIGINAL_SEED).unwrap();
    let mut seen_odd = false;
    for (table, expected) in [
        ("train_data", &splits.train_pool),
        ("validation_data", &splits.validation),
        ("test_data", &splits.test),
    ] {
        let stored = data.raw().read_table(table).await.unwrap();
        assert_eq!(stored.height(), expected.height(), "{table}");
        for column in expected.get_column_names() {
            let a = stored.column(column).unwrap().as_materialized_series();
            let b = expected.column(column).unwrap().as_materialized_series();
            assert!(a.equals_missing(b), "{table}.{column}: {a:?} vs {b:?}");
        }
        let specialties = stored
            .column("medical_specialty")
            .unwrap()
            .str()
            .unwrap()
            .clone();
        seen_odd |= specialties.iter().any(|v| v == Some(odd_value));
    }
    assert!(seen_odd, "the odd value never came back");
    raw_db.cleanup().await;
    clean_db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_on_sqlite() {
    round_trip(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_on_mariadb() {
    round_trip(Backend::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_on_postgres() {
    round_trip(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_on_sqlite() {
    suite(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_on_mariadb() {
    suite(Backend::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_on_postgres() {
    suite(Backend::Postgres).await;
}
