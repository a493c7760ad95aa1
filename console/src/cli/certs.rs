//! `readmit certs init`: a development CA and the certificates a three-node setup needs — one
//! server certificate per agent host and a `console` client certificate — made with rcgen,
//! private keys written readable by their owner only.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The client certificate `certs init` always makes, for the console.
const CONSOLE: &str = "console";
/// The CA's validity: long, as a development CA is replaced by a real one, not renewed.
const CA_DAYS: i64 = 3650;

#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Make a development CA (ca.pem, ca-key.pem), a server certificate per host
    /// (<host>.pem, <host>-key.pem: the host name, localhost, 127.0.0.1 and ::1 in its names)
    /// and a console client certificate (console.pem, console-key.pem).
    Init {
        /// Agent host names (or IP addresses), comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        hosts: Vec<String>,
        /// Directory to write the files to (made if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Days the host and console certificates are valid.
        #[arg(long, default_value_t = 825)]
        days: u32,
        /// Overwrite files that already exist.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(command: &CertsCommand) -> anyhow::Result<ExitCode> {
    match command {
        CertsCommand::Init {
            hosts,
            out,
            days,
            force,
        } => {
            let files = init(hosts, *days)?;
            let written = write_all(out, &files, *force)?;
            for path in &written {
                println!("{}", path.display());
            }
            println!(
                "Agents: --tls-cert {dir}/<host>.pem --tls-key {dir}/<host>-key.pem \
                 --tls-client-ca {dir}/ca.pem --tls-ca {dir}/ca.pem",
                dir = out.display()
            );
            println!(
                "Console: --ca-cert {dir}/ca.pem --tls-cert {dir}/console.pem \
                 --tls-key {dir}/console-key.pem",
                dir = out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One file to write: its name, its PEM text, and whether it holds a private key.
pub(crate) struct PemFile {
    name: String,
    text: String,
    secret: bool,
}

/// Every file, made in memory first so nothing is written unless all of it could be made.
pub(crate) fn init(hosts: &[String], days: u32) -> anyhow::Result<Vec<PemFile>> {
    let mut names: Vec<&str> = Vec::new();
    for host in hosts.iter().map(|h| h.trim()) {
        check_host(host)?;
        if !names.contains(&host) {
            names.push(host);
        }
    }
    if names.is_empty() {
        bail!("--hosts: name at least one agent host");
    }
    let now = time::OffsetDateTime::now_utc();
    // Back-dated an hour, so a clock a little behind still accepts a certificate made now.
    let not_before = now - time::Duration::hours(1);

    let ca_key = KeyPair::generate().context("cannot make the CA's key")?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "readmit development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = not_before;
    ca.not_after = now + time::Duration::days(CA_DAYS);
    let ca_cert = ca
        .self_signed(&ca_key)
        .context("cannot sign the CA certificate")?;
    let mut files = vec![
        PemFile {
            name: "ca.pem".into(),
            text: ca_cert.pem(),
            secret: false,
        },
        PemFile {
            name: "ca-key.pem".into(),
            text: ca_key.serialize_pem(),
            secret: true,
        },
    ];
    let issuer = Issuer::new(ca, ca_key);
    let not_after = now + time::Duration::days(i64::from(days.max(1)));

    for host in names {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, host);
        params.subject_alt_names = host_names(host)?;
        // Agents present their own certificate as clients too (calls to the tracking role).
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = not_before;
        params.not_after = not_after;
        files.extend(leaf(host, &params, &issuer)?);
    }
    let mut console = CertificateParams::default();
    console.distinguished_name.push(DnType::CommonName, CONSOLE);
    console.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    console.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    console.not_before = not_before;
    console.not_after = not_after;
    files.extend(leaf(CONSOLE, &console, &issuer)?);
    Ok(files)
}

fn leaf(
    name: &str,
    params: &CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
) -> anyhow::Result<[PemFile; 2]> {
    let key = KeyPair::generate().with_context(|| format!("cannot make {name}'s key"))?;
    let cert = params
        .signed_by(&key, issuer)
        .with_context(|| format!("cannot sign {name}'s certificate"))?;
    Ok([
        PemFile {
            name: format!("{name}.pem"),
            text: cert.pem(),
            secret: false,
        },
        PemFile {
            name: format!("{name}-key.pem"),
            text: key.serialize_pem(),
            secret: true,
        },
    ])
}

/// A host becomes file names: letters, digits, dots and dashes only, and none of the names
/// the CA and the console use.
fn check_host(host: &str) -> anyhow::Result<()> {
    if host.is_empty() {
        bail!("--hosts: an empty host name");
    }
    if host.parse::<IpAddr>().is_ok() {
        if host.contains(':') {
            bail!("--hosts: {host:?}: name IPv6 hosts by a DNS name (::1 is always included)");
        }
        return Ok(());
    }
    let valid = host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !host.starts_with(['.', '-'])
        && !host.contains("..");
    if !valid {
        bail!("--hosts: {host:?} is not a host name (letters, digits, dots and dashes)");
    }
    if host == "ca" || host == CONSOLE {
        bail!("--hosts: {host:?} is reserved for the CA and console files");
    }
    Ok(())
}

/// The host's own name, then localhost and both loopback addresses.
fn host_names(host: &str) -> anyhow::Result<Vec<SanType>> {
    let mut names = Vec::new();
    let mut add = |name: &str| -> anyhow::Result<()> {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.to_owned()
                    .try_into()
                    .with_context(|| format!("{name:?} cannot be a certificate name"))?,
            ),
        };
        if !names.contains(&san) {
            names.push(san);
        }
        Ok(())
    };
    for name in [host, "localhost", "127.0.0.1", "::1"] {
        add(name)?;
    }
    Ok(names)
}

/// Writes every file, refusing (before writing any) when one exists and `force` is off. Keys
/// are mode 0600 from the moment they exist.
pub(crate) fn write_all(
    dir: &Path,
    files: &[PemFile],
    force: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if !force {
        let existing: Vec<String> = files
            .iter()
            .map(|f| dir.join(&f.name))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            bail!(
                "refusing to overwrite {} (pass --force to replace them)",
                existing.join(", ")
            );
        }
    }
    let mut written = Vec::new();
    for file in files {
        let path = dir.join(&file.name);
        write_file(&path, &file.text, file.secret)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn write_file(path: &Path, text: &str, secret: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let mode = if secret { 0o600 } else { 0o644 };
        options.mode(mode);
        let mut file = options.open(path)?;
        // An existing file keeps its mode when opened: narrow it before the key goes in.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = secret;
        let mut file = options.open(path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_must_be_names_that_make_safe_file_names() {
        for good in ["etl", "tracking.example.org", "10.0.0.7", "node-1"] {
            assert!(check_host(good).is_ok(), "{good}");
        }
        for bad in [
            "", "../etc", "a/b", "ca", "console", "-x", "a..b", "fe80::1",
        ] {
            assert!(check_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn init_makes_a_ca_a_certificate_per_host_and_the_console_one() {
        let files = init(&["etl".into(), "tracking".into(), "etl".into()], 30).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ca.pem",
                "ca-key.pem",
                "etl.pem",
                "etl-key.pem",
                "tracking.pem",
                "tracking-key.pem",
                "console.pem",
                "console-key.pem"
            ]
        );
        for f in &files {
            assert_eq!(f.secret, f.name.ends_with("-key.pem"), "{}", f.name);
            let label = if f.secret {
                "PRIVATE KEY-----"
            } else {
                "BEGIN CERTIFICATE-----"
            };
            assert!(f.text.contains(label), "{}", f.name);
        }
    }
}
