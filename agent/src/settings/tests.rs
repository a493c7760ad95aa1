//! The settings' rules: defaults, layers (file, env, flags) in order, errors naming the key and
//! file, what listening beyond loopback needs, tokens, TLS, and a Debug that hides secrets.

use super::*;

fn flags() -> SettingsFlags {
    SettingsFlags::default()
}

fn no_env() -> Env {
    Env::prefixed("READMIT_TEST_UNSET_PREFIX_")
}

#[test]
fn defaults_run_every_role_on_loopback() {
    let s = flags().load(no_env()).unwrap();
    assert_eq!(s.roles, Role::ALL.to_vec());
    assert_eq!(s.grpc_addr.to_string(), "127.0.0.1:50051");
    assert_eq!(s.http_addr.to_string(), "127.0.0.1:8080");
    assert_eq!(s.data_dir, PathBuf::from("./readmit-data"));
    assert!(s.token.is_none());
}

#[test]
fn layers_apply_in_order_file_env_flags() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "agent.toml",
            "roles = [\"etl\"]\ngrpc_addr = \"127.0.0.1:1\"\nhttp_addr = \"127.0.0.1:2\"\n",
        )?;
        jail.set_env("READMIT_GRPC_ADDR", "127.0.0.1:3");
        jail.set_env("READMIT_ROLES", "tracking, inference");
        let mut f = flags();
        f.config = Some("agent.toml".into());
        f.roles = Some("etl,inference".into());
        let s = f.load(process_env()).unwrap();
        assert_eq!(s.roles, vec![Role::Etl, Role::Inference], "flags beat env");
        assert_eq!(s.grpc_addr.to_string(), "127.0.0.1:3", "env beats the file");
        assert_eq!(
            s.http_addr.to_string(),
            "127.0.0.1:2",
            "the file beats defaults"
        );
        Ok(())
    });
}

#[test]
fn typos_and_bad_values_name_the_key_and_file() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("typo.toml", "grpc_adr = \"127.0.0.1:1\"\n")?;
        let mut f = flags();
        f.config = Some("typo.toml".into());
        let err = f.load(no_env()).unwrap_err().to_string();
        assert!(
            err.contains("grpc_adr") && err.contains("typo.toml"),
            "{err}"
        );

        jail.create_file("role.toml", "roles = \"etl,billing\"\n")?;
        f.config = Some("role.toml".into());
        let err = f.load(no_env()).unwrap_err().to_string();
        assert!(err.contains("billing"), "{err}");
        Ok(())
    });
    let mut f = flags();
    f.http_addr = Some("localhost".into());
    let err = f.load(no_env()).unwrap_err().to_string();
    assert!(
        err.contains("http_addr") && err.contains("localhost"),
        "{err}"
    );
    f.http_addr = None;
    f.config = Some("/nonexistent/readmit.toml".into());
    let err = f.load(no_env()).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/readmit.toml"), "{err}");
}

#[test]
fn exposed_addresses_need_a_token_or_insecure() {
    let mut f = flags();
    f.grpc_addr = Some("0.0.0.0:50051".into());
    let err = f.load(no_env()).unwrap_err();
    assert!(
        matches!(err, SettingsError::ExposedWithoutToken { .. }),
        "{err}"
    );
    f.token = Some("t0ken".into());
    assert!(f.load(no_env()).is_ok());
    f.token = None;
    f.insecure = true;
    assert!(f.load(no_env()).is_ok());
}

#[test]
fn tokens_come_from_a_file_and_must_be_header_safe() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "from-file\n").unwrap();
    let mut f = flags();
    f.token_file = Some(path);
    assert_eq!(
        f.load(no_env()).unwrap().token.as_deref(),
        Some("from-file")
    );
    f.token = Some("both".into());
    assert!(f.load(no_env()).is_err());
    f.token_file = None;
    f.token = Some("has space".into());
    let err = f.load(no_env()).unwrap_err().to_string();
    assert!(err.contains("token"), "{err}");
}

#[test]
fn named_tokens_limits_and_dirs_load_from_every_layer() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("tokens", "ci:admin:ci-secret\nviewer:read:view-secret\n")?;
        jail.create_file(
            "agent.toml",
            "tokens_file = \"tokens\"\nmetrics_auth = true\n",
        )?;
        jail.set_env("READMIT_MAX_INGEST_BYTES", "1000");
        jail.set_env("READMIT_IMPORT_DIR", "/srv/import");
        let mut f = flags();
        f.config = Some("agent.toml".into());
        f.token = Some("single".into());
        f.max_artifact_bytes = Some(42);
        f.grpc_addr = Some("0.0.0.0:0".into());
        let s = f.load(process_env()).unwrap();
        let names: Vec<(&str, Scope)> = s
            .tokens
            .iter()
            .map(|t| (t.name.as_str(), t.scope))
            .collect();
        assert_eq!(
            names,
            [
                ("token", Scope::Admin),
                ("ci", Scope::Admin),
                ("viewer", Scope::Read)
            ]
        );
        assert!(s.metrics_auth);
        assert_eq!(s.max_ingest_bytes, 1000);
        assert_eq!(s.max_artifact_bytes, 42);
        assert_eq!(s.import_dir, PathBuf::from("/srv/import"));
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("ci-secret") && !shown.contains("single"),
            "{shown}"
        );

        // A tokens file alone is enough to listen beyond loopback.
        f.token = None;
        assert!(f.load(process_env()).is_ok());
        jail.create_file("tokens", "ci:root:ci-secret\n")?;
        let err = f.load(process_env()).unwrap_err().to_string();
        assert!(
            err.contains("tokens_file") && err.contains("line 1") && !err.contains("ci-secret"),
            "{err}"
        );
        jail.create_file("tokens", "a:read:single\n")?;
        f.token = Some("single".into());
        assert!(f.load(process_env()).is_err(), "one secret under two names");
        Ok(())
    });
    let s = flags().load(no_env()).unwrap();
    assert_eq!(s.import_dir, PathBuf::from("./readmit-data/import"));
    assert_eq!(s.max_ingest_bytes, DEFAULT_MAX_INGEST_BYTES);
    assert_eq!(s.max_artifact_bytes, DEFAULT_MAX_ARTIFACT_BYTES);
    assert!(!s.metrics_auth && s.tokens.is_empty());
    let mut f = flags();
    f.max_ingest_bytes = Some(0);
    let err = f.load(no_env()).unwrap_err().to_string();
    assert!(err.contains("max_ingest_bytes"), "{err}");
}

/// A self-signed certificate and key for `localhost`, written into `dir`.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

#[test]
fn beyond_loopback_needs_a_token_or_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "agent");
    let mut f = flags();
    f.roles = Some("tracking".into());
    f.http_addr = Some("0.0.0.0:8080".into());
    f.tls_cert = Some(cert.clone());
    f.tls_key = Some(key);
    // TLS alone encrypts but lets anyone in: not enough.
    let err = f.load(no_env()).unwrap_err();
    assert!(
        matches!(err, SettingsError::ExposedWithoutToken { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("mutual TLS"), "{err}");
    f.tls_client_ca = Some(cert);
    let s = f.load(no_env()).unwrap();
    assert!(s.tls.as_ref().is_some_and(|t| t.client_ca.is_some()));
    assert!(s.tokens.is_empty());
    f.tls_client_ca = None;
    f.insecure = true;
    assert!(f.load(no_env()).is_ok(), "--insecure still allows it");
}

#[test]
fn tls_settings_load_from_every_layer_and_errors_name_the_setting_and_file() {
    figment::Jail::expect_with(|jail| {
        let dir = jail.directory().to_owned();
        let (cert, key) = self_signed(&dir, "agent");
        let (ca, _) = self_signed(&dir, "ca");
        jail.create_file(
            "agent.toml",
            &format!("tls_cert = {:?}\ntls_key = \"wrong\"\n", cert.display()),
        )?;
        jail.set_env("READMIT_TLS_KEY", key.display().to_string());
        jail.set_env("READMIT_TLS_CA", ca.display().to_string());
        let mut f = flags();
        f.config = Some("agent.toml".into());
        f.tls_client_ca = Some(ca.clone());
        let s = f.load(process_env()).unwrap();
        assert_eq!(
            s.tls,
            Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: Some(ca.clone()),
            })
        );
        assert_eq!(s.tls_ca.as_ref(), Some(&ca));
        // The agent's own clients present its certificate to https:// tracking URLs only.
        let own = s.client_tls("https://tracking:50051");
        assert_eq!(own.ca_cert.as_ref(), Some(&ca));
        assert_eq!(own.cert.as_ref(), Some(&cert));
        assert!(!s.client_tls("http://tracking:50051").is_set());
        // Key material never reaches the debug output.
        let key_text = std::fs::read_to_string(&key).unwrap();
        let secret_line = key_text.lines().nth(1).unwrap();
        assert!(!format!("{s:?}").contains(secret_line));

        // A key that is not a key, a certificate that is not one, a key for another
        // certificate: each error names the setting and the file.
        std::fs::write(dir.join("bad-key.pem"), "not a key").unwrap();
        f.tls_key = Some(dir.join("bad-key.pem"));
        let err = f.load(process_env()).unwrap_err().to_string();
        assert!(
            err.contains("tls_key") && err.contains("bad-key.pem"),
            "{err}"
        );
        f.tls_key = None;
        f.tls_cert = Some(key);
        let err = f.load(process_env()).unwrap_err().to_string();
        assert!(
            err.contains("tls_cert") && err.contains("agent-key.pem"),
            "{err}"
        );
        assert!(!err.contains(secret_line), "{err}");
        let (_, other_key) = self_signed(&dir, "other");
        f.tls_cert = Some(cert);
        f.tls_key = Some(other_key);
        let err = f.load(process_env()).unwrap_err().to_string();
        assert!(
            err.contains("tls_key") && err.contains("other-key.pem"),
            "{err}"
        );
        f.tls_key = None;
        f.tls_client_ca = Some(dir.join("missing-ca.pem"));
        let err = f.load(process_env()).unwrap_err().to_string();
        assert!(
            err.contains("tls_client_ca") && err.contains("missing-ca.pem"),
            "{err}"
        );
        Ok(())
    });
    let mut f = flags();
    f.tls_key = Some("key.pem".into());
    let err = f.load(no_env()).unwrap_err().to_string();
    assert!(
        err.contains("tls_cert"),
        "a key without a certificate: {err}"
    );
    f.tls_key = None;
    f.tls_client_ca = Some("ca.pem".into());
    let err = f.load(no_env()).unwrap_err().to_string();
    assert!(
        err.contains("tls_client_ca"),
        "mutual TLS without a certificate: {err}"
    );
}

#[test]
fn an_agent_calling_its_own_tracking_role_over_tls_needs_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "agent");
    let mut f = flags();
    f.tls_cert = Some(cert.clone());
    f.tls_key = Some(key);
    let err = f.load(no_env()).unwrap_err().to_string();
    assert!(err.contains("tls_ca"), "{err}");
    f.tls_ca = Some(cert);
    assert!(f.load(no_env()).is_ok());
    f.tls_ca = None;
    f.roles = Some("tracking".into());
    assert!(f.load(no_env()).is_ok(), "tracking alone calls no one");
}

#[test]
fn debug_output_hides_the_token() {
    let mut f = flags();
    f.token = Some("very-secret".into());
    let s = f.load(no_env()).unwrap();
    assert!(!format!("{s:?}").contains("very-secret"));
}
