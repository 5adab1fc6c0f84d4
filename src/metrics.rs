//! Metrics: every name gatewatch exports, in one place.
//!
//! Labels are bounded: topic names, partition numbers and fixed reason codes, never values from a log
//! line. The registry is rendered as Prometheus text by the admin listener.

use std::sync::Arc;

use prometheus_client::encoding::{text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

/// One sample of the registry: family name (counters without `_total`), labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub counter: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    pub worker: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatasetLabels {
    pub dataset: &'static str,
    /// `parsed` (a known event type) or `unknown` (header and raw body only).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// A rule id from the loaded rule files (bounded by the rule set).
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `geoip-city`, `geoip-asn`, `feed:<name>` (names come from the configuration), `ioc-index`.
    pub component: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `committed` or `aborted`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CapLabels {
    /// `correlation_group`, `value` or `suppression_window`.
    pub what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WarmupLabels {
    /// `warming` (still learning, scores 0) or `ready`.
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PollLabels {
    /// The appliance's configured name.
    pub appliance: String,
    /// `ok`, `auth_failed`, `http_error`, `unreachable`, `bad_response`.
    pub outcome: &'static str,
}

/// The metric handles; cheap to clone (every field is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub records_in: Family<TopicLabels, Counter>,
    pub records_out: Family<TopicLabels, Counter>,
    pub parse_errors: Family<ReasonLabels, Counter>,
    pub parse_results: Family<DatasetLabels, Counter>,
    pub dlq_records: Family<ReasonLabels, Counter>,
    pub delivery_failures: Family<TopicLabels, Counter>,
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    pub committed_offset: Family<PartitionLabels, Gauge>,
    pub stored_offset: Family<PartitionLabels, Gauge>,
    pub assigned_partitions: Gauge,
    pub worker_partitions: Family<WorkerLabels, Gauge>,
    pub ioc_hits: Counter,
    pub alerts: Family<StageLabels, Counter>,
    pub rule_hits: Family<RuleLabels, Counter>,
    pub rules_loaded: Gauge,
    pub ioc_indicators: Gauge,
    pub reloads: Family<ReloadLabels, Counter>,
    pub rebalances: Counter,
    pub baseline_series: Family<WarmupLabels, Gauge>,
    pub baseline_samples: Family<ReasonLabels, Counter>,
    pub baseline_snapshots: Counter,
    pub baseline_restored: Counter,
    pub detect_state_written: Counter,
    pub detect_state_restored: Counter,
    pub detect_capped: Family<CapLabels, Counter>,
    pub transactions: Family<OutcomeLabels, Counter>,
    pub nitro_polls: Family<PollLabels, Counter>,
    pub admin_connections_closed: Counter,
    pub ready: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatewatch");
        // In the order /metrics lists them.
        Metrics {
            rule_hits: registered(&mut registry, "rule_hits", "Alerts published, per rule id"),
            alerts: registered(&mut registry, "alerts", "Alerts published, per stage"),
            rules_loaded: registered(&mut registry, "rules_loaded", "Detection and correlation rules in use"),
            ioc_hits: registered(&mut registry, "ioc_hits", "Indicator matches added to events"),
            ioc_indicators: registered(&mut registry, "ioc_indicators", "Indicators loaded from all feeds"),
            reloads: registered(&mut registry, "reloads", "Database and feed reloads, per component and outcome"),
            records_in: registered(&mut registry, "records_in", "Input records consumed, per topic"),
            records_out: registered(&mut registry, "records_out", "Output records acknowledged by the broker, per topic"),
            parse_errors: registered(&mut registry, "parse_errors", "Input records that could not be parsed, per reason"),
            parse_results: registered(&mut registry, "parse_results", "Parsed input records, per dataset and result"),
            dlq_records: registered(&mut registry, "dlq_records", "Dead-letter records acknowledged by the broker, per reason"),
            delivery_failures: registered(&mut registry, "delivery_failures", "Output records whose delivery finally failed, per topic"),
            consumer_lag: registered(&mut registry, "consumer_lag", "Records between the committed offset and the high watermark"),
            committed_offset: registered(&mut registry, "committed_offset", "Last offset committed to the group, per partition"),
            stored_offset: registered(&mut registry, "stored_offset", "Next offset to commit: every earlier record is fully delivered"),
            assigned_partitions: registered(&mut registry, "assigned_partitions", "Input partitions assigned to this instance"),
            worker_partitions: registered(&mut registry, "worker_partitions", "Input partitions assigned to each worker of this instance"),
            rebalances: registered(&mut registry, "rebalances", "Consumer group rebalances seen"),
            baseline_series: registered(&mut registry, "baseline_series", "Metric series held by this instance, per warm-up state"),
            baseline_samples: registered(&mut registry, "baseline_samples", "Metric samples seen, per result (scored, warming, stale, replayed)"),
            baseline_snapshots: registered(&mut registry, "baseline_snapshots", "Series states written to the state topic"),
            baseline_restored: registered(&mut registry, "baseline_restored", "Series states read back from the state topic on assignment"),
            nitro_polls: registered(&mut registry, "nitro_polls", "NITRO polls, per appliance and outcome"),
            transactions: registered(&mut registry, "transactions", "Exactly-once mode: transactions ended, per outcome (committed, aborted)"),
            detect_capped: registered(&mut registry, "detect_capped", "Detection state dropped by a cap before it expired (detect.max_groups, detect.max_values), per kind"),
            detect_state_written: registered(&mut registry, "detect_state_written", "Detection state entries (correlation groups, suppression windows, deletions) written to the state topic"),
            detect_state_restored: registered(&mut registry, "detect_state_restored", "Detection state entries read back from the state topic on assignment"),
            admin_connections_closed: registered(&mut registry, "admin_connections_closed", "Admin connections closed early because admin.max_connections were open"),
            ready: registered(&mut registry, "ready", "1 while the instance is ready as /readyz says: its workers have their assignments and its producer reaches a broker"),
            registry: Arc::new(registry),
        }
    }

    pub fn topic(topic: &str) -> TopicLabels {
        TopicLabels { topic: topic.to_owned() }
    }

    pub fn partition(topic: &str, partition: i32) -> PartitionLabels {
        PartitionLabels { topic: topic.to_owned(), partition }
    }

    /// Every registered family: name (counters without `_total`) and whether it is a counter.
    pub fn families(&self) -> Vec<(String, bool)> {
        self.render()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split_once(' '))
            .map(|(name, kind)| (name.to_owned(), kind == "counter"))
            .collect()
    }

    /// Every current sample, read back from the rendered registry: the OTLP exporter observes these.
    pub fn samples(&self) -> Vec<Sample> {
        let text = self.render();
        let mut counters = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, "counter")) = rest.split_once(' ') {
                    counters.insert(name.to_owned());
                }
            }
        }
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let family = name.strip_suffix("_total").unwrap_or(name);
            let labels = labels
                .split("\",")
                .filter(|l| !l.is_empty())
                .filter_map(|l| l.split_once("=\"").map(|(k, v)| (k.to_owned(), v.trim_end_matches('"').to_owned())))
                .collect();
            out.push(Sample { name: family.to_owned(), labels, value, counter: counters.contains(family) });
        }
        out
    }

    /// Renders the registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// A new metric of type `M`, registered under `name` (`gatewatch_` prefixed) with its help text.
fn registered<M: Metric + Default + Clone>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::new();
        m.records_in.get_or_create(&Metrics::topic("adc.raw")).inc_by(3);
        m.parse_errors.get_or_create(&ReasonLabels { reason: "empty" }).inc();
        let text = m.render();
        assert!(text.contains("gatewatch_records_in_total{topic=\"adc.raw\"} 3"), "{text}");
        assert!(text.contains("gatewatch_parse_errors_total{reason=\"empty\"} 1"), "{text}");
        let samples = m.samples();
        let records = samples.iter().find(|s| s.name == "gatewatch_records_in").unwrap();
        assert_eq!((records.value, records.counter), (3.0, true));
        assert_eq!(records.labels, [("topic".to_string(), "adc.raw".to_string())]);
        assert!(samples.iter().any(|s| s.name == "gatewatch_assigned_partitions" && !s.counter));
    }
}
