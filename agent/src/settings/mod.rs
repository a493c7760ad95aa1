//! Layered, typed settings: compiled-in defaults, then a `--config` TOML file, then `READMIT_*`
//! environment variables, then command-line flags, validated once into [`Settings`].

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

use crate::auth::{Scope, TokenSpec};
use crate::roles::Role;
use crate::tls::TlsFiles;

/// The real data set is 18 MB (3.3 MB gzipped): room for fourteen times that.
pub const DEFAULT_MAX_INGEST_BYTES: u64 = 256 * 1024 * 1024;
/// A model bundle is a few MB; room for large ones without letting one PUT fill the disk.
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 1024 * 1024 * 1024;

/// Environment variables read as settings: `READMIT_` and the key in upper case.
const ENV_KEYS: [&str; 33] = [
    "model",
    "loadtest_max_users",
    "loadtest_max_rate",
    "loadtest_max_duration_s",
    "loadtest_max_concurrent",
    "loadtest_allow",
    "inference_max_records",
    "inference_max_body_bytes",
    "drift_window",
    "raw_db",
    "clean_db",
    "tracking_url",
    "dags_dir",
    "tracking_db",
    "artifact_root",
    "roles",
    "data_dir",
    "grpc_addr",
    "http_addr",
    "token",
    "token_file",
    "tokens_file",
    "metrics_auth",
    "import_dir",
    "max_ingest_bytes",
    "max_artifact_bytes",
    "insecure",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "tls_ca",
    "log_format",
    "log_level",
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The settings file's shape, before validation. Unknown keys are refused so typos surface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSettings {
    #[serde(deserialize_with = "roles_from_list_or_string")]
    pub roles: Vec<Role>,
    pub data_dir: PathBuf,
    pub grpc_addr: String,
    pub http_addr: String,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Named tokens with scopes, one `name:scope:secret` a line; re-read when it changes.
    pub tokens_file: Option<PathBuf>,
    /// Whether `/metrics` needs a token too (a `read` one is enough).
    pub metrics_auth: bool,
    /// Where files to ingest by path may be, besides `<data_dir>/datasets`; empty for
    /// `<data_dir>/import`.
    pub import_dir: String,
    /// The largest CSV ingested (a file, an upload, or a gzip's expansion), in bytes.
    pub max_ingest_bytes: u64,
    /// The largest artifact uploaded over HTTP, in bytes; larger uploads are answered 413.
    pub max_artifact_bytes: u64,
    pub insecure: bool,
    /// PEM certificate chain both listeners serve TLS with (with `tls_key`); re-read on change.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) clients must present a certificate from: mutual TLS.
    pub tls_client_ca: Option<PathBuf>,
    /// PEM CA certificate(s) this agent verifies the tracking role's certificate with, when
    /// it calls it over `https://` (its own included).
    pub tls_ca: Option<PathBuf>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// The ETL role's RawData database (and the DAG runner's state); empty for SQLite under
    /// the data dir.
    pub raw_db: String,
    /// The ETL role's CleanData database; empty for SQLite under the data dir.
    pub clean_db: String,
    /// Where operators' DAG files are read from; empty for `<data_dir>/dags`.
    pub dags_dir: String,
    /// The tracking role the ETL role logs training runs to (a gRPC URL); empty for this
    /// agent's own, when it runs the tracking role.
    pub tracking_url: String,
    /// The tracking store's database URL; empty for SQLite under the data dir.
    pub tracking_db: String,
    /// Where artifacts go: a directory or `s3://bucket/prefix`; empty for the data dir.
    pub artifact_root: String,
    /// The registered model version the inference role serves, as a model URI.
    pub model: String,
    /// Most records one prediction request may carry.
    pub inference_max_records: usize,
    /// Largest prediction request body, in bytes.
    pub inference_max_body_bytes: usize,
    /// Recent records the inference role's drift gauges are computed over.
    pub drift_window: usize,
    /// The most simulated users (or open-loop connections) one load test may run.
    pub loadtest_max_users: u32,
    /// The highest open-loop rate one load test may ask, in requests per second.
    pub loadtest_max_rate: u32,
    /// The longest a load test (or a whole capacity search) may run, in seconds.
    pub loadtest_max_duration_s: u64,
    /// Load tests running at once.
    pub loadtest_max_concurrent: usize,
    /// Hosts (`name` or `name:port`) load tests may target besides loopback and this agent's
    /// own listeners: a list, or one comma-separated string.
    #[serde(deserialize_with = "list_or_string")]
    pub loadtest_allow: Vec<String>,
}

impl RawSettings {
    /// An agent on free loopback ports (port 0) with its files under `data_dir`: what tests,
    /// benchmarks and embedded uses start.
    pub fn loopback(data_dir: &Path, roles: &[Role]) -> Self {
        Self {
            grpc_addr: "127.0.0.1:0".into(),
            http_addr: "127.0.0.1:0".into(),
            data_dir: data_dir.to_owned(),
            roles: roles.to_vec(),
            ..Self::default()
        }
    }
}

impl Default for RawSettings {
    fn default() -> Self {
        Self {
            roles: Role::ALL.to_vec(),
            data_dir: PathBuf::from("./readmit-data"),
            grpc_addr: "127.0.0.1:50051".into(),
            http_addr: "127.0.0.1:8080".into(),
            token: None,
            token_file: None,
            tokens_file: None,
            metrics_auth: false,
            import_dir: String::new(),
            max_ingest_bytes: DEFAULT_MAX_INGEST_BYTES,
            max_artifact_bytes: DEFAULT_MAX_ARTIFACT_BYTES,
            insecure: false,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_ca: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            raw_db: String::new(),
            clean_db: String::new(),
            dags_dir: String::new(),
            tracking_url: String::new(),
            tracking_db: String::new(),
            artifact_root: String::new(),
            model: crate::inference::DEFAULT_TARGET.to_owned(),
            inference_max_records: 10_000,
            inference_max_body_bytes: 16 * 1024 * 1024,
            drift_window: 1_000,
            loadtest_max_users: 1_000,
            loadtest_max_rate: 20_000,
            loadtest_max_duration_s: 3_600,
            loadtest_max_concurrent: 2,
            loadtest_allow: Vec::new(),
        }
    }
}

/// Flags given on the command line; only those present override the layers below.
#[derive(Clone, Debug, Default, Serialize, clap::Args)]
pub struct SettingsFlags {
    /// A TOML settings file (keys as the long flags, with underscores).
    #[arg(long, env = "READMIT_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Roles to run, comma separated: etl, tracking, inference [default: all]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<String>,
    /// Where SQLite files, artifacts and runs are kept [default: ./readmit-data]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// The gRPC listener [default: 127.0.0.1:50051]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_addr: Option<String>,
    /// The HTTP listener [default: 127.0.0.1:8080]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<String>,
    /// Bearer token every gRPC call and mutating HTTP call must carry (prefer READMIT_TOKEN:
    /// flags show in the process list).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Read the bearer token from this file.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Named tokens with scopes, one `name:scope:secret` a line (scope: read or admin);
    /// re-read when it changes, so tokens rotate without a restart.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<PathBuf>,
    /// Require a token (read scope) on /metrics too.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub metrics_auth: bool,
    /// Directory files to ingest by path may be in, besides <data-dir>/datasets
    /// [default: <data-dir>/import]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_dir: Option<String>,
    /// Largest CSV ingested, as a file, an upload or a gzip's expansion, in bytes
    /// [default: 268435456]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ingest_bytes: Option<u64>,
    /// Largest artifact uploaded over HTTP, in bytes [default: 1073741824]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_artifact_bytes: Option<u64>,
    /// Allow serving a non-loopback address with neither a token nor mutual TLS.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Serve TLS on both listeners with this PEM certificate chain (with --tls-key); re-read
    /// when it changes, so certificates rotate without a restart.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate signed by a CA in this PEM file.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,
    /// The CA (PEM) the tracking role's certificate is verified with when this agent calls it
    /// over https:// [default: the public web roots]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Log format [default: text]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `readmit_agent=debug,info` [default: info]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// RawData database (and DAG runs): sqlite:PATH, mysql://, mariadb:// or postgres:// URL
    /// [default: sqlite under the data dir]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_db: Option<String>,
    /// CleanData database: sqlite:PATH, mysql://, mariadb:// or postgres:// URL
    /// [default: sqlite under the data dir]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clean_db: Option<String>,
    /// The tracking role's gRPC URL, for the training DAG [default: this agent's own]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_url: Option<String>,
    /// Directory of DAG files (*.toml) [default: <data-dir>/dags]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dags_dir: Option<String>,
    /// Tracking database: sqlite:PATH, mysql://, mariadb:// or postgres:// URL
    /// [default: sqlite under the data dir]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_db: Option<String>,
    /// Artifact root: a directory or s3://bucket/prefix (endpoint and keys from AWS_*)
    /// [default: artifacts under the data dir]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_root: Option<String>,
    /// The model the inference role serves: models:/NAME/STAGE, models:/NAME@ALIAS or
    /// models:/NAME/VERSION [default: models:/best_diabetes_readmission_model/Production]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Most records in one prediction request [default: 10000]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference_max_records: Option<usize>,
    /// Largest prediction request body in bytes [default: 16777216]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference_max_body_bytes: Option<usize>,
    /// Recent records the input-drift gauges are computed over [default: 1000]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift_window: Option<usize>,
}

/// Validated settings: the only form the servers accept.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    pub roles: Vec<Role>,
    pub data_dir: PathBuf,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The single admin token (`token`/`token_file`): also what this agent's own clients send
    /// to other roles.
    pub token: Option<String>,
    /// Every token accepted: the single one (named `token`) and the tokens file's.
    pub tokens: Vec<TokenSpec>,
    pub tokens_file: Option<PathBuf>,
    pub metrics_auth: bool,
    pub import_dir: PathBuf,
    pub max_ingest_bytes: u64,
    pub max_artifact_bytes: u64,
    /// TLS on both listeners (mutual with a client CA); none for plain TCP.
    pub tls: Option<TlsFiles>,
    /// The CA this agent's own clients verify `https://` tracking URLs with.
    pub tls_ca: Option<PathBuf>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub raw_db: String,
    pub clean_db: String,
    pub dags_dir: PathBuf,
    pub tracking_url: String,
    pub tracking_db: String,
    pub artifact_root: String,
    pub model: crate::inference::ModelTarget,
    pub inference_max_records: usize,
    pub inference_max_body_bytes: usize,
    pub drift_window: usize,
    pub loadtest_max_users: u32,
    pub loadtest_max_rate: u32,
    pub loadtest_max_duration: std::time::Duration,
    pub loadtest_max_concurrent: usize,
    pub loadtest_allow: Vec<String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("roles", &self.roles)
            .field("data_dir", &self.data_dir)
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tokens", &self.tokens)
            .field("tokens_file", &self.tokens_file)
            .field("metrics_auth", &self.metrics_auth)
            .field("import_dir", &self.import_dir)
            .field("max_ingest_bytes", &self.max_ingest_bytes)
            .field("max_artifact_bytes", &self.max_artifact_bytes)
            .field("tls", &self.tls)
            .field("tls_ca", &self.tls_ca)
            .field("log_format", &self.log_format)
            .field("log_level", &self.log_level)
            .field("raw_db", &crate::db::redact(&self.raw_db))
            .field("clean_db", &crate::db::redact(&self.clean_db))
            .field("dags_dir", &self.dags_dir)
            .field("tracking_url", &self.tracking_url)
            .field("tracking_db", &crate::db::redact(&self.tracking_db))
            .field("artifact_root", &self.artifact_root)
            .field("model", &self.model.to_string())
            .field("inference_max_records", &self.inference_max_records)
            .field("inference_max_body_bytes", &self.inference_max_body_bytes)
            .field("drift_window", &self.drift_window)
            .field("loadtest_max_users", &self.loadtest_max_users)
            .field("loadtest_max_rate", &self.loadtest_max_rate)
            .field("loadtest_max_duration", &self.loadtest_max_duration)
            .field("loadtest_max_concurrent", &self.loadtest_max_concurrent)
            .field("loadtest_allow", &self.loadtest_allow)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Layer(String),
    #[error("setting `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(
        "refusing to serve {addr} with neither a token nor mutual TLS: set --token (or \
         READMIT_TOKEN, --tokens-file), or --tls-cert, --tls-key and --tls-client-ca; bind a \
         loopback address; or pass --insecure"
    )]
    ExposedWithoutToken { addr: SocketAddr },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl SettingsFlags {
    /// Merges every layer and validates the result. `env` supplies the environment, so tests
    /// can pass their own instead of the process's.
    pub fn load(&self, env: Env) -> Result<Settings, SettingsError> {
        let mut figment = Figment::from(Serialized::defaults(RawSettings::default()));
        if let Some(path) = &self.config {
            if !path.is_file() {
                return Err(SettingsError::File {
                    path: path.clone(),
                    reason: "no such file".into(),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let raw: RawSettings = figment
            .merge(env.filter(|key| ENV_KEYS.iter().any(|k| key == *k)))
            .merge(Serialized::defaults(self))
            .extract()
            .map_err(|e| SettingsError::Layer(figment_message(&e)))?;
        raw.validate()
    }
}

/// The process environment's `READMIT_*` variables.
pub fn process_env() -> Env {
    Env::prefixed("READMIT_")
}

impl RawSettings {
    pub fn validate(self) -> Result<Settings, SettingsError> {
        let grpc_addr = parse_addr("grpc_addr", &self.grpc_addr)?;
        let http_addr = parse_addr("http_addr", &self.http_addr)?;
        let token = match (self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                return Err(SettingsError::Invalid {
                    field: "token_file",
                    reason: "give either token or token_file, not both".into(),
                });
            }
            (Some(token), None) => Some(token),
            (None, Some(path)) => Some(read_token_file(path)?),
            (None, None) => None,
        };
        if let Some(token) = &token {
            check_token(token)?;
        }
        let tokens =
            all_tokens(token.as_deref(), self.tokens_file.as_deref()).map_err(|reason| {
                SettingsError::Invalid {
                    field: "tokens_file",
                    reason,
                }
            })?;
        let tls = tls_files(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_client_ca.as_deref(),
        )?;
        if let Some(files) = &tls {
            crate::tls::check(files)?;
        }
        if let Some(path) = &self.tls_ca {
            crate::tls::root_store("tls_ca", path)?;
        }
        let mutual = tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        if tokens.is_empty() && !mutual && !self.insecure {
            for addr in [grpc_addr, http_addr] {
                if !addr.ip().is_loopback() {
                    return Err(SettingsError::ExposedWithoutToken { addr });
                }
            }
        }
        let mut roles = self.roles;
        roles.sort();
        roles.dedup();
        let calls_own_tracking = roles.contains(&Role::Tracking)
            && (roles.contains(&Role::Etl) || roles.contains(&Role::Inference))
            && self.tracking_url.trim().is_empty();
        if tls.is_some() && calls_own_tracking && self.tls_ca.is_none() {
            return Err(SettingsError::Invalid {
                field: "tls_ca",
                reason: "this agent calls its own tracking role over TLS: name the CA that \
                         signed tls_cert"
                    .into(),
            });
        }
        let under_data_dir = |url: &str, file: &str| match url.trim() {
            "" => crate::db::sqlite_url(&self.data_dir.join(file)),
            url => url.to_owned(),
        };
        let raw_db = under_data_dir(&self.raw_db, "raw.db");
        let clean_db = under_data_dir(&self.clean_db, "clean.db");
        let tracking_db = under_data_dir(&self.tracking_db, "tracking.db");
        let model = self
            .model
            .parse()
            .map_err(
                |e: crate::inference::target::TargetError| SettingsError::Invalid {
                    field: "model",
                    reason: e.to_string(),
                },
            )?;
        for (field, value) in [
            ("inference_max_records", self.inference_max_records),
            ("inference_max_body_bytes", self.inference_max_body_bytes),
            ("drift_window", self.drift_window),
        ] {
            if value == 0 {
                return Err(SettingsError::Invalid {
                    field,
                    reason: "it must be at least 1".into(),
                });
            }
        }
        let dags_dir = match self.dags_dir.trim() {
            "" => self.data_dir.join("dags"),
            dir => PathBuf::from(dir),
        };
        let import_dir = match self.import_dir.trim() {
            "" => self.data_dir.join("import"),
            dir => PathBuf::from(dir),
        };
        for (field, value) in [
            ("max_ingest_bytes", self.max_ingest_bytes),
            ("max_artifact_bytes", self.max_artifact_bytes),
        ] {
            if value == 0 {
                return Err(SettingsError::Invalid {
                    field,
                    reason: "must be at least 1 byte".into(),
                });
            }
        }
        for (field, value) in [
            ("loadtest_max_users", u64::from(self.loadtest_max_users)),
            ("loadtest_max_rate", u64::from(self.loadtest_max_rate)),
            ("loadtest_max_duration_s", self.loadtest_max_duration_s),
            (
                "loadtest_max_concurrent",
                self.loadtest_max_concurrent as u64,
            ),
        ] {
            if value == 0 {
                return Err(SettingsError::Invalid {
                    field,
                    reason: "it must be at least 1".into(),
                });
            }
        }
        let loadtest_allow: Vec<String> = self
            .loadtest_allow
            .iter()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .collect();
        if let Some(bad) = loadtest_allow
            .iter()
            .find(|h| h.contains(['/', '@', ' ']) || h.contains("://"))
        {
            return Err(SettingsError::Invalid {
                field: "loadtest_allow",
                reason: format!("{bad:?} is not a host or host:port"),
            });
        }
        Ok(Settings {
            loadtest_max_users: self.loadtest_max_users,
            loadtest_max_rate: self.loadtest_max_rate,
            loadtest_max_duration: std::time::Duration::from_secs(self.loadtest_max_duration_s),
            loadtest_max_concurrent: self.loadtest_max_concurrent,
            loadtest_allow,
            raw_db,
            clean_db,
            dags_dir,
            tracking_url: self.tracking_url.trim().to_owned(),
            tracking_db,
            artifact_root: self.artifact_root.trim().to_owned(),
            roles,
            data_dir: self.data_dir,
            grpc_addr,
            http_addr,
            token,
            tokens,
            tokens_file: self.tokens_file,
            metrics_auth: self.metrics_auth,
            import_dir,
            max_ingest_bytes: self.max_ingest_bytes,
            max_artifact_bytes: self.max_artifact_bytes,
            tls,
            tls_ca: self.tls_ca,
            log_format: self.log_format,
            log_level: self.log_level,
            model,
            inference_max_records: self.inference_max_records,
            inference_max_body_bytes: self.inference_max_body_bytes,
            drift_window: self.drift_window,
        })
    }
}

/// The TLS settings as files: a certificate and key go together; a client CA needs them.
fn tls_files(
    cert: Option<&Path>,
    key: Option<&Path>,
    client_ca: Option<&Path>,
) -> Result<Option<TlsFiles>, SettingsError> {
    let unset = |field, reason: &str| SettingsError::Invalid {
        field,
        reason: reason.into(),
    };
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            client_ca: client_ca.map(Path::to_owned),
        })),
        (Some(_), None) => Err(unset("tls_key", "tls_cert is set, so its key must be too")),
        (None, Some(_)) => Err(unset(
            "tls_cert",
            "tls_key is set, so its certificate must be too",
        )),
        (None, None) if client_ca.is_some() => Err(unset(
            "tls_client_ca",
            "mutual TLS needs the agent's own tls_cert and tls_key",
        )),
        (None, None) => Ok(None),
    }
}

impl Settings {
    /// The tracking role the other roles talk to: the configured one, else this agent's own
    /// (over its gRPC listener, as between machines, on loopback when it listens on every
    /// address), else none (empty).
    pub fn tracking_target(&self, own_grpc: SocketAddr) -> String {
        if !self.tracking_url.is_empty() {
            self.tracking_url.clone()
        } else if self.roles.contains(&Role::Tracking) {
            let scheme = if self.tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{}", loopback_if_unspecified(own_grpc))
        } else {
            String::new()
        }
    }

    /// What this agent's own clients use to call `url` (the tracking role): the CA to verify
    /// it with, and this agent's certificate for servers that ask for one. None for `http://`.
    pub fn client_tls(&self, url: &str) -> readmit_proto::ClientTls {
        if !url.starts_with("https://") {
            return readmit_proto::ClientTls::default();
        }
        readmit_proto::ClientTls {
            ca_cert: self.tls_ca.clone(),
            cert: self.tls.as_ref().map(|t| t.cert.clone()),
            key: self.tls.as_ref().map(|t| t.key.clone()),
        }
    }
}

fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

fn parse_addr(field: &'static str, value: &str) -> Result<SocketAddr, SettingsError> {
    value.trim().parse().map_err(|_| SettingsError::Invalid {
        field,
        reason: format!("{value:?} is not an IP address and port such as 127.0.0.1:8080"),
    })
}

fn read_token_file(path: &Path) -> Result<String, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| SettingsError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(text.trim().to_owned())
}

/// The single admin token (named `token`) and the tokens file's, checked to be distinct.
pub fn all_tokens(single: Option<&str>, file: Option<&Path>) -> Result<Vec<TokenSpec>, String> {
    let mut tokens = Vec::new();
    if let Some(secret) = single {
        tokens.push(TokenSpec::new("token", Scope::Admin, secret)?);
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let listed =
            crate::auth::parse_tokens(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        tokens.extend(listed);
    }
    crate::auth::check_distinct(&tokens)?;
    Ok(tokens)
}

fn check_token(token: &str) -> Result<(), SettingsError> {
    if token.is_empty() {
        return Err(SettingsError::Invalid {
            field: "token",
            reason: "it is empty".into(),
        });
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SettingsError::Invalid {
            field: "token",
            reason: "only visible ASCII characters can travel in an HTTP header".into(),
        });
    }
    Ok(())
}

/// figment's messages already name the key and the layer (file or env var) it came from.
fn figment_message(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn list_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Items {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Items::deserialize(d)? {
        Items::List(items) => items,
        Items::Text(text) => text.split(',').map(str::to_owned).collect(),
    })
}

fn roles_from_list_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Role>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Roles {
        List(Vec<String>),
        Text(String),
    }
    let names = match Roles::deserialize(d)? {
        Roles::List(names) => names,
        Roles::Text(text) => text.split(',').map(str::to_owned).collect(),
    };
    names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .map(|n| n.parse().map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
#[allow(
    clippy::result_large_err,
    reason = "figment::Jail fixes the closure's error type"
)]
mod tests;
