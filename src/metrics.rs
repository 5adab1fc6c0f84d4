//! Metrics: every name gatewatch exports, in one place.
//!
//! Labels are bounded: topic names, partition numbers and fixed reason codes, never values from a log
//! line. The registry is rendered as Prometheus text by the admin listener.

use std::sync::Arc;

use prometheus_client::encoding::{text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
pub struct DatasetLabels {
    pub dataset: &'static str,
    /// `parsed` (a known event type) or `unknown` (header and raw body only).
    pub result: &'static str,
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
pub struct ReasonLabels {
    pub reason: &'static str,
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
    pub ioc_hits: Counter,
    pub alerts: Family<StageLabels, Counter>,
    pub rules_loaded: Gauge,
    pub ioc_indicators: Gauge,
    pub reloads: Family<ReloadLabels, Counter>,
    pub rebalances: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatewatch");
        let records_in = Family::<TopicLabels, Counter>::default();
        let records_out = Family::<TopicLabels, Counter>::default();
        let parse_errors = Family::<ReasonLabels, Counter>::default();
        let parse_results = Family::<DatasetLabels, Counter>::default();
        let dlq_records = Family::<ReasonLabels, Counter>::default();
        let delivery_failures = Family::<TopicLabels, Counter>::default();
        let consumer_lag = Family::<PartitionLabels, Gauge>::default();
        let committed_offset = Family::<PartitionLabels, Gauge>::default();
        let stored_offset = Family::<PartitionLabels, Gauge>::default();
        let assigned_partitions = Gauge::default();
        let rebalances = Counter::default();
        let ioc_hits = Counter::default();
        let alerts = Family::<StageLabels, Counter>::default();
        let rules_loaded = Gauge::default();
        registry.register("alerts", "Alerts published, per stage", alerts.clone());
        registry.register("rules_loaded", "Detection and correlation rules in use", rules_loaded.clone());
        let ioc_indicators = Gauge::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register("ioc_hits", "Indicator matches added to events", ioc_hits.clone());
        registry.register("ioc_indicators", "Indicators loaded from all feeds", ioc_indicators.clone());
        registry.register("reloads", "Database and feed reloads, per component and outcome", reloads.clone());
        registry.register("records_in", "Input records consumed, per topic", records_in.clone());
        registry.register("records_out", "Output records acknowledged by the broker, per topic", records_out.clone());
        registry.register("parse_errors", "Input records that could not be parsed, per reason", parse_errors.clone());
        registry.register("parse_results", "Parsed input records, per dataset and result", parse_results.clone());
        registry.register(
            "dlq_records",
            "Dead-letter records acknowledged by the broker, per reason",
            dlq_records.clone(),
        );
        registry.register(
            "delivery_failures",
            "Output records whose delivery finally failed, per topic",
            delivery_failures.clone(),
        );
        registry.register(
            "consumer_lag",
            "Records between the committed offset and the high watermark",
            consumer_lag.clone(),
        );
        registry.register(
            "committed_offset",
            "Last offset committed to the group, per partition",
            committed_offset.clone(),
        );
        registry.register(
            "stored_offset",
            "Next offset to commit: every earlier record is fully delivered",
            stored_offset.clone(),
        );
        registry.register(
            "assigned_partitions",
            "Input partitions assigned to this instance",
            assigned_partitions.clone(),
        );
        registry.register("rebalances", "Consumer group rebalances seen", rebalances.clone());
        Metrics {
            registry: Arc::new(registry),
            records_in,
            records_out,
            parse_errors,
            parse_results,
            dlq_records,
            delivery_failures,
            consumer_lag,
            committed_offset,
            stored_offset,
            assigned_partitions,
            rebalances,
            ioc_hits,
            alerts,
            rules_loaded,
            ioc_indicators,
            reloads,
        }
    }

    pub fn topic(topic: &str) -> TopicLabels {
        TopicLabels { topic: topic.to_owned() }
    }

    pub fn partition(topic: &str, partition: i32) -> PartitionLabels {
        PartitionLabels { topic: topic.to_owned(), partition }
    }

    /// Renders the registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
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
    }
}
