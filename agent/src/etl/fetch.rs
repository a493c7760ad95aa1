//! Fetching the real data set: download the UCI archive (or a plain or gzip CSV), extract
//! `diabetic_data.csv`, check its SHA-256 and keep it in a cache directory, so that a user with
//! network needs no manual step and a user without one is told to pass the file instead.
//!
//! Invariant: the cache holds either nothing or a file whose digest is [`DATASET_SHA256`]; it
//! is written through a temporary file in the same directory and renamed into place.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;

/// Where the UCI Machine Learning Repository publishes the data set (id 296, CC BY 4.0).
pub const DEFAULT_URL: &str = "https://archive.ics.uci.edu/static/public/296/diabetes+130-us+hospitals+for+years+1999-2008.zip";

/// SHA-256 of the published, uncompressed `diabetic_data.csv` (101,766 encounters).
pub const DATASET_SHA256: &str = "0689e7ec031237dc63031b938805c48377748761a3b26acab621567afa24df97";

/// The CSV's name inside the archive (possibly under a folder) and in the cache.
pub const FILE_NAME: &str = "diabetic_data.csv";

/// How long to wait for a connection: short, so that a machine without network fails fast.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the whole download may take (the archive is about 3 MB).
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(120);

/// The extracted CSV is 18 MB; anything far larger is not it, and must not fill the disk.
const MAX_CSV_BYTES: u64 = 1 << 30;

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// The data set in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// `cache_dir/diabetic_data.csv`.
    pub path: PathBuf,
    /// Its SHA-256, lowercase hex: always [`DATASET_SHA256`].
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Whether it was already cached (and verified), so nothing was downloaded.
    pub cached: bool,
}

/// Why the data set could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No connection, a timeout, or the transfer broke off.
    #[error(
        "cannot download {url}: {reason}. Without network, pass the file: readmit data ingest FILE"
    )]
    Unavailable { url: String, reason: String },
    /// The server answered, but not with the file.
    #[error(
        "cannot download {url}: the server answered {status}. Download the file some other way \
         and pass it: readmit data ingest FILE"
    )]
    Status { url: String, status: u16 },
    /// The download is not an archive or CSV this module can read.
    #[error("{url}: {reason}")]
    Invalid { url: String, reason: String },
    /// The extracted CSV is not the published file.
    #[error(
        "{url}: {FILE_NAME} has sha256 {found}, expected {expected}: not the published UCI \
         file, nothing was cached"
    )]
    Digest {
        url: String,
        found: String,
        expected: &'static str,
    },
    /// Reading or writing the cache.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Makes sure `cache_dir/diabetic_data.csv` holds the published file and returns it.
///
/// A cached copy whose digest matches is returned without touching the network unless `force`;
/// a cached copy that does not match is deleted and downloaded again. `url` defaults to
/// [`DEFAULT_URL`] and may serve a zip archive holding `diabetic_data.csv` (at any depth), a
/// gzip CSV or a plain CSV; the kind is told by the content's first bytes.
pub async fn fetch_dataset(
    cache_dir: &Path,
    url: Option<&str>,
    force: bool,
) -> Result<Fetched, FetchError> {
    let url = url.unwrap_or(DEFAULT_URL);
    let target = cache_dir.join(FILE_NAME);
    if !force && let Some(fetched) = verified_cache(&target).await? {
        return Ok(fetched);
    }
    tokio::fs::create_dir_all(cache_dir)
        .await
        .map_err(io_error(cache_dir))?;
    let download = download(url, cache_dir).await?;
    let owned_url = url.to_owned();
    let fetched = tokio::task::spawn_blocking(move || install(download, &owned_url, &target))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    tracing::info!(url, path = %fetched.path.display(), bytes = fetched.bytes, "data set fetched");
    Ok(fetched)
}

/// The cached file if it exists and verifies; a file that does not verify is removed.
async fn verified_cache(target: &Path) -> Result<Option<Fetched>, FetchError> {
    if !tokio::fs::try_exists(target)
        .await
        .map_err(io_error(target))?
    {
        return Ok(None);
    }
    let path = target.to_owned();
    let (sha256, bytes) = tokio::task::spawn_blocking(move || digest_file(&path))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        .map_err(io_error(target))?;
    if sha256 == DATASET_SHA256 {
        return Ok(Some(Fetched {
            path: target.to_owned(),
            sha256,
            bytes,
            cached: true,
        }));
    }
    tracing::warn!(
        path = %target.display(),
        %sha256,
        "cached data set does not verify; fetching it again"
    );
    tokio::fs::remove_file(target)
        .await
        .map_err(io_error(target))?;
    Ok(None)
}

fn digest_file(path: &Path) -> io::Result<(String, u64)> {
    let mut writer = DigestWriter::new(io::sink());
    io::copy(&mut std::fs::File::open(path)?, &mut writer)?;
    writer.finish()
}

/// The HTTP client: rustls on ring with the Mozilla roots compiled in, so HTTPS works on
/// machines without a system certificate store.
fn client(url: &str) -> Result<reqwest_tls::Client, FetchError> {
    let unavailable = |reason: String| FetchError::Unavailable {
        url: url.to_owned(),
        reason,
    };
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| unavailable(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest_tls::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        .user_agent(concat!("readmit/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| unavailable(readmit_proto::error_chain(&e)))
}

/// Streams the response body to a temporary file in `dir` (deleted when dropped).
async fn download(url: &str, dir: &Path) -> Result<NamedTempFile, FetchError> {
    // The message names the URL once; reqwest's own would repeat it.
    let unavailable = |e: reqwest_tls::Error| FetchError::Unavailable {
        url: url.to_owned(),
        reason: readmit_proto::error_chain(&e.without_url()),
    };
    let client = client(url)?;
    let mut response = client.get(url).send().await.map_err(unavailable)?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    let temp = tempfile::Builder::new()
        .prefix(".download-")
        .tempfile_in(dir)
        .map_err(io_error(dir))?;
    let mut file = tokio::fs::File::from_std(temp.reopen().map_err(io_error(temp.path()))?);
    while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
        file.write_all(&chunk)
            .await
            .map_err(io_error(temp.path()))?;
    }
    file.flush().await.map_err(io_error(temp.path()))?;
    Ok(temp)
}

/// Extracts the CSV from the download into a temporary file beside `target`, checks its
/// digest and renames it into place. On any error both temporary files are deleted.
fn install(download: NamedTempFile, url: &str, target: &Path) -> Result<Fetched, FetchError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let invalid = |reason: String| FetchError::Invalid {
        url: url.to_owned(),
        reason,
    };
    let mut magic = [0u8; 4];
    let read = read_prefix(download.path(), &mut magic).map_err(io_error(download.path()))?;
    let magic = &magic[..read];

    let out = tempfile::Builder::new()
        .prefix(".diabetic_data-")
        .tempfile_in(dir)
        .map_err(io_error(dir))?;
    let mut writer = DigestWriter::new(io::BufWriter::new(
        out.reopen().map_err(io_error(out.path()))?,
    ));
    let file = download.reopen().map_err(io_error(download.path()))?;
    let copied = if magic.starts_with(ZIP_MAGIC) {
        let mut archive = zip::ZipArchive::new(io::BufReader::new(file))
            .map_err(|e| invalid(format!("not a readable zip archive: {e}")))?;
        let index = (0..archive.len())
            .find(|&i| {
                matches!(archive.name_for_index(i), Some(Ok(name))
                    if name.rsplit('/').next() == Some(FILE_NAME))
            })
            .ok_or_else(|| invalid(format!("the zip archive holds no {FILE_NAME}")))?;
        let entry = archive
            .by_index(index)
            .map_err(|e| invalid(format!("{FILE_NAME} in the zip archive: {e}")))?;
        copy_limited(entry, &mut writer)
            .map_err(|e| invalid(format!("extracting {FILE_NAME} from the zip archive: {e}")))?
    } else if magic.starts_with(GZIP_MAGIC) {
        let gz = flate2::read::MultiGzDecoder::new(io::BufReader::new(file));
        copy_limited(gz, &mut writer)
            .map_err(|e| invalid(format!("decompressing the gzip file: {e}")))?
    } else {
        copy_limited(file, &mut writer).map_err(io_error(out.path()))?
    };
    let (sha256, bytes) = writer.finish().map_err(io_error(out.path()))?;
    debug_assert_eq!(bytes, copied);
    drop(download);
    if sha256 != DATASET_SHA256 {
        return Err(FetchError::Digest {
            url: url.to_owned(),
            found: sha256,
            expected: DATASET_SHA256,
        });
    }
    out.as_file().sync_all().map_err(io_error(out.path()))?;
    out.persist(target).map_err(|e| FetchError::Io {
        path: target.to_owned(),
        source: e.error,
    })?;
    Ok(Fetched {
        path: target.to_owned(),
        sha256,
        bytes,
        cached: false,
    })
}

fn read_prefix(path: &Path, buf: &mut [u8]) -> io::Result<usize> {
    let mut file = std::fs::File::open(path)?;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Copies at most [`MAX_CSV_BYTES`]; more is an error rather than a full disk.
fn copy_limited(reader: impl Read, writer: &mut impl Write) -> io::Result<u64> {
    let copied = io::copy(&mut reader.take(MAX_CSV_BYTES + 1), writer)?;
    if copied > MAX_CSV_BYTES {
        return Err(io::Error::other(format!(
            "more than {MAX_CSV_BYTES} bytes, far larger than {FILE_NAME}"
        )));
    }
    Ok(copied)
}

/// A writer that hashes and counts what passes through it.
struct DigestWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> DigestWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Flushes the inner writer; returns the lowercase hex digest and the byte count.
    fn finish(mut self) -> io::Result<(String, u64)> {
        self.inner.flush()?;
        Ok((super::io::hex(&self.hasher.finalize()), self.bytes))
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
