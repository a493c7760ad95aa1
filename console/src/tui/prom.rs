//! The agents' Prometheus text: parsed into families (on the backend's tasks), kept as a short
//! history per series, and turned into rates and histogram percentiles for the charts.

use std::collections::{BTreeMap, VecDeque};

/// How long a series' history is kept.
pub const WINDOW_MS: i64 = 5 * 60 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Untyped,
}

/// One sample of one series: a number, or a histogram's cumulative buckets (`le`, count) with
/// its count.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(f64),
    Histogram {
        buckets: Vec<(f64, f64)>,
        count: f64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: Kind,
    pub help: String,
    /// Labels as written (`endpoint="predict"`, `le` dropped for histograms) and the value.
    pub series: Vec<(String, Value)>,
}

/// One scrape of an agent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    pub families: Vec<Family>,
}

/// Parses the text exposition format. Lines it does not understand are skipped: a scrape is
/// shown as far as it reads.
pub fn parse(text: &str) -> Scrape {
    let mut families: Vec<Family> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let family = |families: &mut Vec<Family>, index: &mut BTreeMap<String, usize>, name: &str| {
        *index.entry(name.to_owned()).or_insert_with(|| {
            families.push(Family {
                name: name.to_owned(),
                kind: Kind::Untyped,
                help: String::new(),
                series: Vec::new(),
            });
            families.len() - 1
        })
    };
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                let i = family(&mut families, &mut index, name);
                families[i].kind = match kind {
                    "counter" => Kind::Counter,
                    "gauge" => Kind::Gauge,
                    "histogram" => Kind::Histogram,
                    _ => Kind::Untyped,
                };
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, help)) = rest.split_once(' ') {
                let i = family(&mut families, &mut index, name);
                families[i].help = help.to_owned();
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, labels, value)) = split_sample(line) else {
            continue;
        };
        let hist_base = ["_bucket", "_count", "_sum"].iter().find_map(|suffix| {
            name.strip_suffix(suffix)
                .filter(|base| {
                    index
                        .get(*base)
                        .is_some_and(|&i| families[i].kind == Kind::Histogram)
                })
                .map(|base| (base, *suffix))
        });
        match hist_base {
            Some((base, suffix)) => {
                let i = family(&mut families, &mut index, base);
                let (le, rest) = take_label(&labels, "le");
                let series = &mut families[i].series;
                let pos = match series.iter().position(|(l, _)| *l == rest) {
                    Some(p) => p,
                    None => {
                        series.push((
                            rest.clone(),
                            Value::Histogram {
                                buckets: Vec::new(),
                                count: 0.0,
                            },
                        ));
                        series.len() - 1
                    }
                };
                if let Value::Histogram { buckets, count } = &mut series[pos].1 {
                    match suffix {
                        "_bucket" => {
                            let le = match le.as_deref() {
                                Some("+Inf") => f64::INFINITY,
                                Some(v) => v.parse().unwrap_or(f64::NAN),
                                None => f64::NAN,
                            };
                            if !le.is_nan() {
                                buckets.push((le, value));
                            }
                        }
                        "_count" => *count = value,
                        _ => {}
                    }
                }
            }
            None => {
                let i = family(&mut families, &mut index, name);
                families[i].series.push((labels, Value::Scalar(value)));
            }
        }
    }
    families.retain(|f| !f.series.is_empty());
    Scrape { families }
}

/// `name{labels} value [timestamp]` → (name, labels without braces, value).
fn split_sample(line: &str) -> Option<(&str, String, f64)> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line[open..].rfind('}')? + open;
            (
                &line[..open],
                line[open + 1..close].to_owned(),
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, String::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name.trim(), labels, value))
}

/// Takes one label out of a label list: its value and the list without it.
fn take_label(labels: &str, key: &str) -> (Option<String>, String) {
    let mut found = None;
    let mut rest = Vec::new();
    for part in split_labels(labels) {
        match part.split_once('=') {
            Some((k, v)) if k.trim() == key => found = Some(v.trim().trim_matches('"').to_owned()),
            _ => rest.push(part),
        }
    }
    (found, rest.join(","))
}

/// Splits `a="x,y",b="z"` at the commas outside quotes.
fn split_labels(labels: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in labels.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == ',' && !quoted {
            if !current.trim().is_empty() {
                parts.push(current.trim().to_owned());
            }
            current.clear();
            continue;
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        parts.push(current.trim().to_owned());
    }
    parts
}

/// One series' recent samples.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub points: VecDeque<(i64, Value)>,
}

/// The recent scrapes of one agent, per family and series.
#[derive(Clone, Debug, Default)]
pub struct Store {
    pub families: BTreeMap<String, (Kind, String, BTreeMap<String, History>)>,
    pub last_ms: i64,
}

impl Store {
    pub fn add(&mut self, at_ms: i64, scrape: Scrape) {
        self.last_ms = at_ms;
        for family in scrape.families {
            let entry = self
                .families
                .entry(family.name)
                .or_insert_with(|| (family.kind, family.help.clone(), BTreeMap::new()));
            entry.0 = family.kind;
            for (labels, value) in family.series {
                let history = entry.2.entry(labels).or_default();
                history.points.push_back((at_ms, value));
                while history
                    .points
                    .front()
                    .is_some_and(|(t, _)| *t < at_ms - WINDOW_MS)
                {
                    history.points.pop_front();
                }
            }
        }
    }

    /// Every series as (family, labels), in order.
    pub fn series(&self) -> Vec<(&str, &str, Kind)> {
        self.families
            .iter()
            .flat_map(|(name, (kind, _, series))| {
                series
                    .keys()
                    .map(move |labels| (name.as_str(), labels.as_str(), *kind))
            })
            .collect()
    }

    /// A family's series summed at each scrape (labels ignored), for agent-wide figures.
    pub fn summed(&self, family: &str) -> History {
        let mut out: BTreeMap<i64, Value> = BTreeMap::new();
        if let Some((_, _, series)) = self.families.get(family) {
            for history in series.values() {
                for (t, v) in &history.points {
                    let slot = out.entry(*t).or_insert_with(|| match v {
                        Value::Scalar(_) => Value::Scalar(0.0),
                        Value::Histogram { .. } => Value::Histogram {
                            buckets: Vec::new(),
                            count: 0.0,
                        },
                    });
                    add_value(slot, v);
                }
            }
        }
        History {
            points: out.into_iter().collect(),
        }
    }
}

fn add_value(slot: &mut Value, v: &Value) {
    match (slot, v) {
        (Value::Scalar(a), Value::Scalar(b)) => *a += b,
        (
            Value::Histogram { buckets, count },
            Value::Histogram {
                buckets: b,
                count: c,
            },
        ) => {
            *count += c;
            if buckets.is_empty() {
                buckets.clone_from(b);
            } else {
                for (slot, (_, n)) in buckets.iter_mut().zip(b) {
                    slot.1 += n;
                }
            }
        }
        _ => {}
    }
}

/// Per-second rate between consecutive samples of a counter (or of a histogram's count);
/// x in seconds before `now_ms`. A counter that went down (a restart) starts again.
pub fn rate(history: &History, now_ms: i64) -> Vec<(f64, f64)> {
    let value = |v: &Value| match v {
        Value::Scalar(x) => *x,
        Value::Histogram { count, .. } => *count,
    };
    history
        .points
        .iter()
        .zip(history.points.iter().skip(1))
        .filter(|((t0, _), (t1, _))| t1 > t0)
        .map(|((t0, v0), (t1, v1))| {
            let d = value(v1) - value(v0);
            let d = if d < 0.0 { value(v1) } else { d };
            (
                (*t1 - now_ms) as f64 / 1000.0,
                d * 1000.0 / (*t1 - *t0) as f64,
            )
        })
        .collect()
}

/// Gauge values; x in seconds before `now_ms`.
pub fn values(history: &History, now_ms: i64) -> Vec<(f64, f64)> {
    history
        .points
        .iter()
        .filter_map(|(t, v)| match v {
            Value::Scalar(x) => Some(((*t - now_ms) as f64 / 1000.0, *x)),
            Value::Histogram { .. } => None,
        })
        .collect()
}

/// The q-quantile (0..1) of what a histogram observed between consecutive samples, in the
/// histogram's unit; intervals that observed nothing are left out.
pub fn quantiles(history: &History, q: f64, now_ms: i64) -> Vec<(f64, f64)> {
    history
        .points
        .iter()
        .zip(history.points.iter().skip(1))
        .filter_map(|((_, a), (t1, b))| {
            let v = quantile_between(a, b, q)?;
            Some(((*t1 - now_ms) as f64 / 1000.0, v))
        })
        .collect()
}

/// The q-quantile of what a histogram observed from `a` to `b` (two cumulative samples), by
/// linear interpolation inside the bucket, as Prometheus' `histogram_quantile` does.
pub fn quantile_between(a: &Value, b: &Value, q: f64) -> Option<f64> {
    let (Value::Histogram { buckets: ba, .. }, Value::Histogram { buckets: bb, .. }) = (a, b)
    else {
        return None;
    };
    if ba.len() != bb.len() {
        return quantile_of(bb, q);
    }
    let delta: Vec<(f64, f64)> = ba
        .iter()
        .zip(bb)
        .map(|((le, x), (_, y))| (*le, (y - x).max(0.0)))
        .collect();
    quantile_of(&delta, q)
}

/// The q-quantile of cumulative buckets.
pub fn quantile_of(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for (le, count) in buckets {
        if *count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let inside = count - below;
            let frac = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (le - lower) * frac);
        }
        lower = *le;
        below = *count;
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP req_total Requests.
# TYPE req_total counter
req_total{endpoint="predict",outcome="ok"} 10
req_total{endpoint="a,b",outcome="ok"} 5
# HELP lat_seconds Latency.
# TYPE lat_seconds histogram
lat_seconds_bucket{endpoint="predict",le="0.001"} 0
lat_seconds_bucket{endpoint="predict",le="0.01"} 8
lat_seconds_bucket{endpoint="predict",le="+Inf"} 10
lat_seconds_sum{endpoint="predict"} 0.05
lat_seconds_count{endpoint="predict"} 10
# TYPE up gauge
up 1
"#;

    #[test]
    fn parses_counters_histograms_and_gauges() {
        let scrape = parse(TEXT);
        let names: Vec<_> = scrape.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["req_total", "lat_seconds", "up"]);
        assert_eq!(
            scrape.families[0].series[1].0,
            r#"endpoint="a,b",outcome="ok""#
        );
        let Value::Histogram { buckets, count } = &scrape.families[1].series[0].1 else {
            panic!("not a histogram")
        };
        assert_eq!(*count, 10.0);
        assert_eq!(buckets.len(), 3);
        assert_eq!(scrape.families[1].series[0].0, r#"endpoint="predict""#);
    }

    #[test]
    fn rates_and_quantiles_follow_the_deltas() {
        let mut store = Store::default();
        store.add(0, parse(TEXT));
        store.add(2000, parse(&TEXT.replace("} 10\n", "} 30\n")));
        let rate = rate(&store.summed("req_total"), 2000);
        assert_eq!(rate, vec![(0.0, 10.0)]);
        // Between the scrapes 20 observations, none under 10 ms: the median is the +Inf
        // bucket's lower bound.
        let q = quantiles(&store.summed("lat_seconds"), 0.5, 2000);
        assert_eq!(q, vec![(0.0, 0.01)]);
        assert!(
            (quantile_of(&[(0.001, 0.0), (0.01, 8.0), (f64::INFINITY, 10.0)], 0.5).unwrap()
                - 0.006625)
                .abs()
                < 1e-9
        );
    }
}
