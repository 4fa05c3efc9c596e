//! Prometheus metrics: a registry of metric families (HELP and TYPE
//! registered once, series by label set) that pollers update, rendered in
//! the text exposition format (version 0.0.4), served by [`crate::http`].
//!
//! The registry holds a snapshot: whoever polls sets values, a scrape only
//! renders them. [`sensor`] names the sensor's own metrics; other modules
//! (BGP peers, mitigations) describe theirs with [`Metrics::describe`] and
//! set them with [`Metrics::set`] or [`Metrics::replace`].

pub mod daemon;
pub mod pinned;
pub mod sensor;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{Arc, Mutex, MutexGuard},
};

/// Where the metrics are served unless configured (`metrics_listen`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9810";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (resets when the process or the map restarts).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl MetricType {
    fn name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
        }
    }
}

/// Label names and values, in the order given.
pub type Labels = Vec<(String, String)>;

#[derive(Debug)]
struct Family {
    help: String,
    kind: MetricType,
    series: BTreeMap<Labels, f64>,
}

/// The registry; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    families: Arc<Mutex<BTreeMap<String, Family>>>,
}

/// A name the exposition format would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid metric or label name {0:?}")]
pub struct InvalidName(pub String);

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Family>> {
        // A poisoned lock only means a setter panicked; the data is plain.
        self.families.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a family (once; a second call updates its help and type).
    pub fn describe(&self, name: &str, kind: MetricType, help: &str) -> Result<(), InvalidName> {
        if !valid_metric_name(name) {
            return Err(InvalidName(name.to_owned()));
        }
        let mut families = self.lock();
        let family = families.entry(name.to_owned()).or_insert_with(|| Family {
            help: String::new(),
            kind,
            series: BTreeMap::new(),
        });
        family.help = help.to_owned();
        family.kind = kind;
        Ok(())
    }

    /// Sets one series of a described family. An undescribed family or an
    /// invalid label name is refused (and logged): a typo must not make a
    /// metric that dashboards never find.
    pub fn set(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        let Some(labels) = owned_labels(labels) else {
            tracing::warn!(name, "metric with an invalid label name ignored");
            return;
        };
        match self.lock().get_mut(name) {
            Some(family) => {
                family.series.insert(labels, value);
            }
            None => tracing::warn!(name, "metric set before it was described; ignored"),
        }
    }

    /// Describes a gauge and sets one series: the one-call form for other
    /// modules' gauges (BGP peers, mitigations).
    pub fn set_gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), InvalidName> {
        self.describe(name, MetricType::Gauge, help)?;
        self.set(name, labels, value);
        Ok(())
    }

    /// Replaces every series of a described family, so series that are gone
    /// (a destination that left the top, a withdrawn mitigation) disappear.
    pub fn replace<'a>(
        &self,
        name: &str,
        series: impl IntoIterator<Item = (Vec<(&'a str, String)>, f64)>,
    ) {
        let mut fresh = BTreeMap::new();
        for (labels, value) in series {
            let borrowed: Vec<(&str, &str)> =
                labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match owned_labels(&borrowed) {
                Some(labels) => {
                    fresh.insert(labels, value);
                }
                None => tracing::warn!(name, "series with an invalid label name ignored"),
            }
        }
        match self.lock().get_mut(name) {
            Some(family) => family.series = fresh,
            None => tracing::warn!(name, "metric replaced before it was described; ignored"),
        }
    }

    /// Removes every series of a family (it stays described).
    pub fn clear(&self, name: &str) {
        if let Some(family) = self.lock().get_mut(name) {
            family.series.clear();
        }
    }

    /// The value of one series, if set.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = owned_labels(labels)?;
        self.lock().get(name)?.series.get(&labels).copied()
    }

    /// Every family in the text exposition format, by name.
    pub fn render(&self) -> String {
        let families = self.lock();
        let mut out = String::new();
        for (name, family) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.name());
            for (labels, value) in &family.series {
                out.push_str(name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {}", format_value(*value));
            }
        }
        out
    }
}

fn owned_labels(labels: &[(&str, &str)]) -> Option<Labels> {
    labels
        .iter()
        .map(|(k, v)| valid_label_name(k).then(|| ((*k).to_owned(), (*v).to_owned())))
        .collect()
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Integers exactly (counters read as integers), the rest as Go's
/// `ParseFloat` accepts them.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 9.007_199_254_740_992e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 1e15 || v.abs() < 1e-4 {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_and_escaped_labels() {
        let m = Metrics::new();
        m.describe("edge_sensor_x_total", MetricType::Counter, "X seen.\nTwice")
            .unwrap();
        m.set("edge_sensor_x_total", &[("peer", "a\"b\\c")], 3.0);
        m.set("edge_sensor_x_total", &[("peer", "z")], 0.5);
        let text = m.render();
        assert_eq!(
            text,
            "# HELP edge_sensor_x_total X seen.\\nTwice\n\
             # TYPE edge_sensor_x_total counter\n\
             edge_sensor_x_total{peer=\"a\\\"b\\\\c\"} 3\n\
             edge_sensor_x_total{peer=\"z\"} 0.5\n"
        );
    }

    #[test]
    fn undescribed_or_invalid_names_are_refused() {
        let m = Metrics::new();
        m.set("nope", &[], 1.0);
        assert!(!m.render().contains("nope"));
        assert!(m.describe("1bad", MetricType::Gauge, "").is_err());
        assert!(
            m.set_gauge("edge_sensor_ok", "", &[("bad-label", "x")], 1.0)
                .is_ok()
        );
        assert_eq!(m.get("edge_sensor_ok", &[]), None);
    }

    #[test]
    fn replace_drops_series_that_are_gone() {
        let m = Metrics::new();
        m.describe("edge_sensor_g", MetricType::Gauge, "g").unwrap();
        m.replace("edge_sensor_g", [(vec![("d", "a".to_owned())], 1.0)]);
        m.replace("edge_sensor_g", [(vec![("d", "b".to_owned())], 2.0)]);
        assert_eq!(m.get("edge_sensor_g", &[("d", "a")]), None);
        assert_eq!(m.get("edge_sensor_g", &[("d", "b")]), Some(2.0));
    }

    #[test]
    fn values_as_prometheus_reads_them() {
        assert_eq!(format_value(12.0), "12");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(1e300), "1e300");
        assert_eq!(format_value(1.5e-7), "1.5e-7");
    }
}
