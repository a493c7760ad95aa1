//! k6-like thresholds (`p95<100ms`, `errors<1%`, `rps>=500`): parsed with errors naming the
//! bad part, judged against a test's figures live and at its end.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::stats::Window;

/// What a threshold looks at.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// A latency quantile, 0 < q ≤ 1 (1 is the maximum).
    Latency(f64),
    MeanLatency,
    /// The share of requests that failed, as a fraction.
    Errors,
    /// Requests answered per second.
    Rps,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

/// One threshold: `metric op value`, the value in milliseconds, a fraction or requests/s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub text: String,
    pub metric: Metric,
    pub op: Op,
    pub value: f64,
}

/// Whether a threshold held, and what was seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub threshold: String,
    pub passed: bool,
    /// In the threshold's unit: ms, percent or requests/s.
    pub observed: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("threshold {text:?}: {reason}")]
pub struct ParseError {
    pub text: String,
    pub reason: String,
}

fn err(text: &str, reason: impl Into<String>) -> ParseError {
    ParseError {
        text: text.to_owned(),
        reason: reason.into(),
    }
}

/// Parses one threshold, e.g. `p95<100ms`, `p(99.9) <= 1s`, `max<2s`, `errors<1%`,
/// `error_rate<0.01`, `rps>=500`.
pub fn parse(text: &str) -> Result<Threshold, ParseError> {
    let trimmed = text.trim();
    let Some(at) = trimmed.find(['<', '>']) else {
        return Err(err(
            trimmed,
            "no comparison: write it as metric<value, e.g. p95<100ms",
        ));
    };
    let (name, rest) = trimmed.split_at(at);
    let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
        (Op::Le, v)
    } else if let Some(v) = rest.strip_prefix(">=") {
        (Op::Ge, v)
    } else if let Some(v) = rest.strip_prefix('<') {
        (Op::Lt, v)
    } else {
        (Op::Gt, &rest[1..])
    };
    let name = name.trim().to_ascii_lowercase();
    let value = value.trim();
    let metric = match name.as_str() {
        "errors" | "error_rate" | "failures" | "http_req_failed" => Metric::Errors,
        "rps" | "req/s" | "throughput" => Metric::Rps,
        "max" => Metric::Latency(1.0),
        "mean" | "avg" => Metric::MeanLatency,
        "median" => Metric::Latency(0.5),
        p if p.starts_with('p') => {
            let digits = p[1..].trim_start_matches('(').trim_end_matches(')');
            let q: f64 = digits.parse().map_err(|_| {
                err(
                    trimmed,
                    format!("{name:?} is not a percentile such as p95 or p(99.9)"),
                )
            })?;
            if !(q > 0.0 && q <= 100.0) {
                return Err(err(trimmed, format!("percentile {q} is not in (0, 100]")));
            }
            // Rounded, so p99.9 reads 0.999 and not 0.9990000000000001.
            Metric::Latency((q * 1e4).round() / 1e6)
        }
        _ => {
            return Err(err(
                trimmed,
                format!("unknown metric {name:?}: use p50..p99.9, max, mean, errors or rps"),
            ));
        }
    };
    let number = |s: &str| -> Result<f64, ParseError> {
        let v: f64 = s
            .trim()
            .parse()
            .map_err(|_| err(trimmed, format!("{value:?} is not a number")))?;
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(err(
                trimmed,
                format!("{value:?} is not a finite, non-negative number"),
            ))
        }
    };
    let value = match metric {
        Metric::Latency(_) | Metric::MeanLatency => latency_ms(value).ok_or_else(|| {
            err(
                trimmed,
                format!("{value:?} is not a duration such as 100ms, 1.5s or 800us"),
            )
        })?,
        Metric::Errors => match value.strip_suffix('%') {
            Some(p) => number(p)? / 100.0,
            None => {
                let v = number(value)?;
                if v > 1.0 {
                    return Err(err(
                        trimmed,
                        "an error rate is a fraction (0.01) or a percentage (1%)",
                    ));
                }
                v
            }
        },
        Metric::Rps => number(value)?,
    };
    Ok(Threshold {
        text: trimmed.to_owned(),
        metric,
        op,
        value,
    })
}

/// `100ms`, `1.5s`, `800us`, or a bare number of milliseconds (k6's convention).
fn latency_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("us").or_else(|| text.strip_suffix("µs")) {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (text, 1.0)
    };
    let v: f64 = number.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v * scale)
}

impl Threshold {
    /// The figure this threshold reads, in its unit (errors as a fraction).
    fn observe(&self, window: &Window) -> f64 {
        match self.metric {
            Metric::Latency(q) => window.quantile_ms(q),
            Metric::MeanLatency => window.latency.mean() / 1000.0,
            Metric::Errors => window.error_rate(),
            Metric::Rps => window.rps(),
        }
    }

    pub fn judge(&self, window: &Window) -> Verdict {
        let seen = self.observe(window);
        let passed = match self.op {
            Op::Lt => seen < self.value,
            Op::Le => seen <= self.value,
            Op::Gt => seen > self.value,
            Op::Ge => seen >= self.value,
        };
        Verdict {
            threshold: self.text.clone(),
            passed,
            observed: if self.metric == Metric::Errors {
                seen * 100.0
            } else {
                seen
            },
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Every threshold's verdict on `window`.
pub fn judge_all(thresholds: &[Threshold], window: &Window) -> Vec<Verdict> {
    thresholds.iter().map(|t| t.judge(window)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k6_style_thresholds_parse() {
        let t = parse("p95<100ms").unwrap();
        assert_eq!(
            (t.metric, t.op, t.value),
            (Metric::Latency(0.95), Op::Lt, 100.0)
        );
        assert_eq!(parse("p(99.9) <= 1.5s").unwrap().value, 1500.0);
        assert_eq!(
            parse("p(99.9) <= 1.5s").unwrap().metric,
            Metric::Latency(0.999)
        );
        assert_eq!(parse("errors<1%").unwrap().value, 0.01);
        assert_eq!(parse("error_rate<0.05").unwrap().value, 0.05);
        assert_eq!(parse("rps>=500").unwrap().op, Op::Ge);
        assert_eq!(parse("max<800us").unwrap().value, 0.8);
        assert_eq!(parse("p99<250").unwrap().value, 250.0);
    }

    #[test]
    fn bad_thresholds_name_the_bad_part() {
        for (text, part) in [
            ("p95 100ms", "comparison"),
            ("p101<1s", "101"),
            ("pxx<1s", "pxx"),
            ("latency<1s", "latency"),
            ("p95<fast", "fast"),
            ("errors<5", "fraction"),
            ("rps>-1", "-1"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(part), "{text}: {e}");
        }
    }
}
