//! gatewatch: Citrix ADC / NetScaler syslog from Kafka → parsed ECS events, alerts and a dead-letter
//! topic, back to Kafka, at least once.
//!
//! The data flows `source → parse → ecs → enrich → detect → sink` (the middle as one record path,
//! `process`), with `offsets` tracking which input records are fully
//! delivered; `pipeline` wires the stages together and reads like that diagram.

pub mod admin;
pub mod baseline;
pub mod changelog;
pub mod config;
pub mod detect;
pub mod detect_state;
pub mod doc;
pub mod ecs;
pub mod enrich;
pub mod failure;
pub mod inspect;
pub mod intern;
pub mod kafka;
pub mod metrics;
pub mod offsets;
pub mod parse;
pub mod pipeline;
pub mod process;
pub mod replay;
pub mod secrets;
pub mod sink;
pub mod source;
pub mod spare;
pub mod telemetry;
pub mod timefmt;
pub mod transaction;
