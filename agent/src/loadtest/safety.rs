//! What bounds a load test: ceilings on users, rate, duration and concurrent tests (settings),
//! and the target allowlist — loopback, this agent's own listeners, the hosts the operator
//! names, and the listeners of an inference agent that vouches for itself (the console names
//! the agents it knows) — so the engine cannot be pointed at an arbitrary host.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::LoadTestError;

/// The ceilings and the allowlist one agent enforces.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_users: u32,
    pub max_rate: f64,
    pub max_duration: Duration,
    pub max_concurrent: usize,
    /// Hosts (`name` or `name:port`) allowed besides loopback and `own`.
    pub allow: Vec<String>,
    /// This agent's listeners.
    pub own: Vec<SocketAddr>,
}

impl Limits {
    pub fn from_settings(settings: &crate::settings::Settings, own: Vec<SocketAddr>) -> Self {
        Self {
            max_users: settings.loadtest_max_users,
            max_rate: f64::from(settings.loadtest_max_rate),
            max_duration: settings.loadtest_max_duration,
            max_concurrent: settings.loadtest_max_concurrent,
            allow: settings.loadtest_allow.clone(),
            own,
        }
    }

    #[cfg(test)]
    pub fn for_tests() -> Self {
        Self {
            max_users: 1000,
            max_rate: 20_000.0,
            max_duration: Duration::from_secs(3600),
            max_concurrent: 2,
            allow: vec!["inference.internal:8080".into()],
            own: vec!["10.0.0.5:8080".parse().unwrap_or_else(|_| unreachable!())],
        }
    }
}

fn refuse(url: &str, reason: impl Into<String>) -> LoadTestError {
    LoadTestError::NotAllowed {
        target: url.to_owned(),
        reason: reason.into(),
    }
}

/// Checks a target URL against the allowlist; its normalized form, `http[s]://host:port`.
pub fn check_target(url: &str, limits: &Limits) -> Result<String, LoadTestError> {
    let text = url.trim();
    if text.is_empty() {
        return Err(LoadTestError::Invalid {
            field: "target.url",
            reason: "it is empty: give the inference agent, e.g. http://127.0.0.1:8080".into(),
        });
    }
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let uri: http::Uri = with_scheme.parse().map_err(|e| LoadTestError::Invalid {
        field: "target.url",
        reason: format!("{text:?} is not a URL: {e}"),
    })?;
    let Some(scheme @ ("http" | "https")) = uri.scheme_str() else {
        return Err(LoadTestError::Invalid {
            field: "target.url",
            reason: format!("{text:?}: the engine speaks http:// and https:// only"),
        });
    };
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(LoadTestError::Invalid {
            field: "target.url",
            reason: format!("{text:?}: give the agent's base URL; the target kind picks the path"),
        });
    }
    let Some(authority) = uri.authority() else {
        return Err(LoadTestError::Invalid {
            field: "target.url",
            reason: format!("{text:?} names no host"),
        });
    };
    if authority.as_str().contains('@') {
        return Err(LoadTestError::Invalid {
            field: "target.url",
            reason: "credentials in the URL are not accepted".into(),
        });
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let Some(port) = authority.port_u16() else {
        return Err(LoadTestError::Invalid {
            field: "target.url",
            reason: format!("{text:?} names no port"),
        });
    };
    let allowed = match host.parse::<IpAddr>() {
        Ok(ip) => {
            ip.is_loopback()
                || limits.own.contains(&SocketAddr::new(ip, port))
                || listed(&limits.allow, host, port)
        }
        Err(_) => host.eq_ignore_ascii_case("localhost") || listed(&limits.allow, host, port),
    };
    if !allowed {
        return Err(refuse(
            text,
            "only loopback, this agent's own listeners, the hosts in the loadtest_allow \
             setting and the listeners of a target agent that answers as an inference agent \
             (target.agent) may be load-tested",
        ));
    }
    Ok(format!("{scheme}://{authority}"))
}

/// Asks the agent at `agent_url` (gRPC, with this agent's token and TLS options) who it is;
/// its two listeners as allowlist entries (`host:port`, the host as `agent_url` names it) when
/// it runs the inference role. Load then goes only to a host that answered as a readmit
/// inference agent of this deployment, never to one it merely names.
pub async fn vouched_listeners(
    agent_url: &str,
    token: Option<&str>,
    tls: &readmit_proto::ClientTls,
) -> Result<Vec<String>, LoadTestError> {
    let refused = |reason: String| LoadTestError::NotAllowed {
        target: agent_url.to_owned(),
        reason,
    };
    let url = readmit_proto::normalize_url(agent_url).map_err(|e| LoadTestError::Invalid {
        field: "target.agent",
        reason: e.to_string(),
    })?;
    let host = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .ok_or_else(|| LoadTestError::Invalid {
            field: "target.agent",
            reason: format!("{agent_url:?} names no host"),
        })?;
    let asked = async {
        let client = readmit_proto::Client::connect_with(&url, token, tls)
            .await
            .map_err(|e| refused(format!("it did not answer: {e}")))?;
        client
            .agent_info()
            .await
            .map_err(|e| refused(format!("it did not answer: {e}")))
    };
    let info = tokio::time::timeout(Duration::from_secs(5), asked)
        .await
        .map_err(|_| refused("it did not answer GetInfo within 5 s".into()))??;
    if !info.roles.iter().any(|r| r == "inference") {
        return Err(refused(format!(
            "it runs {:?}, not the inference role",
            info.roles
        )));
    }
    Ok([&info.grpc_addr, &info.http_addr]
        .into_iter()
        .filter_map(|addr| addr.parse::<SocketAddr>().ok())
        .map(|addr| format!("{host}:{}", addr.port()))
        .collect())
}

fn listed(allow: &[String], host: &str, port: u16) -> bool {
    allow.iter().any(|entry| {
        let entry = entry.trim();
        match entry.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() && !h.ends_with(':') => {
                h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .eq_ignore_ascii_case(host)
                    && p.parse::<u16>().ok() == Some(port)
            }
            _ => entry.eq_ignore_ascii_case(host),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_own_listeners_and_listed_hosts_only() {
        let l = Limits::for_tests();
        assert_eq!(
            check_target("127.0.0.1:8080", &l).unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(check_target("http://[::1]:9", &l).is_ok());
        assert_eq!(
            check_target("https://localhost:8443", &l).unwrap(),
            "https://localhost:8443"
        );
        assert!(check_target("http://localhost:9", &l).is_ok());
        assert!(check_target("http://10.0.0.5:8080", &l).is_ok());
        assert!(check_target("http://inference.internal:8080/", &l).is_ok());
        for refused in [
            "http://10.0.0.5:8081",
            "http://inference.internal:9090",
            "http://example.com:80",
            "http://8.8.8.8:53",
        ] {
            let e = check_target(refused, &l).unwrap_err();
            assert!(
                matches!(e, LoadTestError::NotAllowed { .. }),
                "{refused}: {e}"
            );
        }
        for invalid in [
            "",
            "ftp://127.0.0.1:1",
            "http://127.0.0.1",
            "http://127.0.0.1:1/predict",
            "http://u:p@127.0.0.1:1",
        ] {
            let e = check_target(invalid, &l).unwrap_err();
            assert!(matches!(e, LoadTestError::Invalid { .. }), "{invalid}: {e}");
        }
    }
}
