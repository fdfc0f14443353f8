//! One reading of a Warren process's metrics, taken from the Prometheus
//! exposition `/metrics` serves, so the overview, the internal events,
//! `warren doctor` and Prometheus itself all see the same figures under
//! the same names.
//!
//! The parser is Warren's own: the text-format crates on crates.io split
//! label values at `,` and `}` and drop the series whose values hold them,
//! as Warren's route patterns (`/api/projects/{project_id}`) do.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Label name → value of one series.
pub type Labels = BTreeMap<String, String>;

/// A histogram's cumulative bucket counts (`le` → count, `+Inf` last).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets(Vec<(f64, f64)>);

impl Buckets {
    /// The observations in all buckets together.
    pub fn count(&self) -> f64 {
        self.0.last().map_or(0.0, |(_, count)| *count)
    }

    fn add(&mut self, other: &Buckets) {
        if self.0.is_empty() {
            self.0 = other.0.clone();
            return;
        }
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            mine.1 += theirs.1;
        }
    }

    /// What was observed between `earlier` and this reading.
    pub fn since(&self, earlier: &Buckets) -> Buckets {
        let mut out = self.clone();
        if earlier.0.len() == self.0.len() {
            for (mine, theirs) in out.0.iter_mut().zip(&earlier.0) {
                // A counter that went down was reset (a restart): keep it whole.
                if mine.1 >= theirs.1 {
                    mine.1 -= theirs.1;
                }
            }
        }
        out
    }

    /// The `q` quantile, interpolated linearly inside its bucket as
    /// Prometheus' `histogram_quantile` does; `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut lower_bound = 0.0;
        let mut lower_count = 0.0;
        for &(bound, count) in &self.0 {
            if count >= rank {
                if bound.is_infinite() {
                    // Beyond the last finite bucket: its bound is all we know.
                    return Some(lower_bound);
                }
                let in_bucket = count - lower_count;
                let fraction = if in_bucket > 0.0 { (rank - lower_count) / in_bucket } else { 1.0 };
                return Some(lower_bound + (bound - lower_bound) * fraction);
            }
            lower_bound = bound;
            lower_count = count;
        }
        Some(lower_bound)
    }
}

/// Every series of one exposition.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Counters, gauges and untyped values (histograms' `_sum`/`_count`).
    values: Vec<(String, Labels, f64)>,
    histograms: Vec<(String, Labels, Buckets)>,
}

impl Reading {
    /// Reads an exposition; lines it cannot read are skipped.
    pub fn parse(text: &str) -> Reading {
        let histograms: HashSet<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split_once(' '))
            .filter(|(_, kind)| kind.trim() == "histogram")
            .map(|(name, _)| name)
            .collect();
        let mut reading = Reading::default();
        let mut buckets: HashMap<(String, Labels), Vec<(f64, f64)>> = HashMap::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let Some((name, mut labels, value)) = sample(line) else { continue };
            if let Some(base) = name.strip_suffix("_bucket").filter(|base| histograms.contains(base)) {
                if let Some(bound) = labels.remove("le").and_then(|le| number(&le)) {
                    buckets.entry((base.to_string(), labels)).or_default().push((bound, value));
                    continue;
                }
            }
            reading.values.push((name.to_string(), labels, value));
        }
        for ((name, labels), mut pairs) in buckets {
            pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
            reading.histograms.push((name, labels, Buckets(pairs)));
        }
        reading
    }

    /// Every series of `name` with its labels.
    pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a Labels, f64)> + 'a {
        self.values.iter().filter(move |(n, _, _)| n == name).map(|(_, labels, v)| (labels, *v))
    }

    /// The sum over the series of `name` whose labels pass `keep`.
    pub fn sum(&self, name: &str, keep: impl Fn(&Labels) -> bool) -> f64 {
        self.series(name).filter(|(labels, _)| keep(labels)).map(|(_, v)| v).sum()
    }

    /// A gauge without labels, if it was ever set.
    pub fn gauge(&self, name: &str) -> Option<f64> {
        self.series(name).map(|(_, v)| v).next()
    }

    /// How much the series of `name` whose labels pass `keep` grew since
    /// `earlier` (counters).
    pub fn increase(&self, earlier: &Reading, name: &str, keep: impl Fn(&Labels) -> bool + Copy) -> f64 {
        growth(self.sum(name, keep), earlier.sum(name, keep))
    }

    /// What the histograms of `name` whose labels pass `keep` observed
    /// since `earlier`.
    pub fn histogram_increase(
        &self,
        earlier: &Reading,
        name: &str,
        keep: impl Fn(&Labels) -> bool + Copy,
    ) -> Buckets {
        self.histogram(name, keep).since(&earlier.histogram(name, keep))
    }

    /// The buckets of the series of `name` whose labels pass `keep`, added.
    pub fn histogram(&self, name: &str, keep: impl Fn(&Labels) -> bool) -> Buckets {
        let mut total = Buckets::default();
        for (_, labels, buckets) in self.histograms.iter().filter(|(n, _, _)| n == name) {
            if keep(labels) {
                total.add(buckets);
            }
        }
        total
    }
}

/// A sample value: a float, `+Inf`, `-Inf` or `NaN`.
fn number(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

/// `name{label="value",…} value [timestamp]`, with the format's escapes
/// (`\\`, `\"`, `\n`) in label values.
fn sample(line: &str) -> Option<(&str, Labels, f64)> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Labels::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices();
        loop {
            // A label name up to `=`, or the end of the labels.
            let mut key = String::new();
            let mut closed = false;
            for (i, c) in chars.by_ref() {
                match c {
                    '=' => break,
                    '}' => {
                        rest = &after[i + 1..];
                        closed = true;
                        break;
                    }
                    ',' | ' ' => {}
                    c => key.push(c),
                }
            }
            if closed {
                break;
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    c => value.push(c),
                }
            }
            labels.insert(key, value);
        }
    }
    let value = number(rest.split_whitespace().next()?)?;
    Some((name, labels, value))
}

/// How much a counter grew from `earlier` to `now`; a counter that went
/// down was reset, so all of `now` is new.
pub fn growth(now: f64, earlier: f64) -> f64 {
    if now >= earlier {
        now - earlier
    } else {
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE warren_http_requests_total counter
warren_http_requests_total{route="/batch",method="POST",status="200"} 10
warren_http_requests_total{route="/batch",method="POST",status="503"} 2
warren_http_requests_total{route="/api/users/@me",method="GET",status="401"} 3
# TYPE warren_ingest_lag_records gauge
warren_ingest_lag_records 42
# TYPE warren_http_request_duration_seconds histogram
warren_http_request_duration_seconds_bucket{route="/batch",le="0.01"} 50
warren_http_request_duration_seconds_bucket{route="/batch",le="0.1"} 90
warren_http_request_duration_seconds_bucket{route="/batch",le="+Inf"} 100
warren_http_request_duration_seconds_sum{route="/batch"} 3.5
warren_http_request_duration_seconds_count{route="/batch"} 100
"#;

    #[test]
    fn reads_counters_gauges_and_histograms() {
        let reading = Reading::parse(TEXT);
        let status = |labels: &Labels| labels.get("status").cloned().unwrap_or_default();
        assert_eq!(reading.sum("warren_http_requests_total", |_| true), 15.0);
        assert_eq!(reading.sum("warren_http_requests_total", |l| status(l).starts_with('5')), 2.0);
        assert_eq!(reading.gauge("warren_ingest_lag_records"), Some(42.0));
        assert_eq!(reading.gauge("missing"), None);
        let batch = reading.histogram("warren_http_request_duration_seconds", |_| true);
        assert_eq!(batch.count(), 100.0);
        let median = batch.quantile(0.5).expect("observations");
        assert!((median - 0.01).abs() < 1e-9, "{median}");
        let p70 = batch.quantile(0.7).expect("observations");
        assert!((p70 - 0.055).abs() < 1e-9, "halfway through the second bucket: {p70}");
        assert_eq!(batch.quantile(0.99), Some(0.1), "beyond the last bound");
        assert_eq!(reading.series("warren_http_request_duration_seconds_count").count(), 1);
    }

    #[test]
    fn label_values_keep_braces_commas_and_escapes() {
        let reading = Reading::parse(
            "# TYPE t counter\n\
             t{route=\"/api/projects/{project_id}/query\",note=\"a,b=c \\\"q\\\" \\\\\"} 7 1700000000\n\
             t 2\n\
             garbage line\n",
        );
        let series: Vec<_> = reading.series("t").collect();
        assert_eq!(series.len(), 2, "{series:?}");
        assert_eq!(series[0].0.get("route").map(String::as_str), Some("/api/projects/{project_id}/query"));
        assert_eq!(series[0].0.get("note").map(String::as_str), Some(r#"a,b=c "q" \"#));
        assert_eq!(series[0].1, 7.0);
        assert!(series[1].0.is_empty());
    }

    #[test]
    fn differences_survive_resets() {
        let earlier = Reading::parse(TEXT).histogram("warren_http_request_duration_seconds", |_| true);
        let later = Buckets(vec![(0.01, 60.0), (0.1, 100.0), (f64::INFINITY, 120.0)]);
        let delta = later.since(&earlier);
        assert_eq!(delta.count(), 20.0);
        assert_eq!(delta.quantile(0.5), Some(0.01));
        assert_eq!(Buckets::default().quantile(0.5), None);
        assert_eq!(growth(5.0, 3.0), 2.0);
        assert_eq!(growth(1.0, 3.0), 1.0, "a restart");
    }
}
