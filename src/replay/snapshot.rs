//! `--feeds-snapshot DIR`: the configured indicator feeds pinned to a directory (copies, a manifest of
//! names, formats, SHA-256 and the time), so a hunt can be repeated exactly.

use super::error::{io, refused, ReplayError, Result};
use std::path::Path;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::config::Settings;

/// The manifest of a feed snapshot directory.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Snapshot {
    version: u32,
    as_of: DateTime<Utc>,
    feeds: Vec<SnapshotFeed>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct SnapshotFeed {
    name: String,
    format: crate::enrich::feeds::Format,
    file: String,
    sha256: String,
}

pub(super) const SNAPSHOT_MANIFEST: &str = "snapshot.json";

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Settings whose feeds are those of the snapshot in `dir` (created from the configured feeds first
/// when `dir` does not exist), and the snapshot's time.
pub(super) fn pin_feeds(settings: &Settings, dir: &Path) -> Result<(Settings, DateTime<Utc>)> {
    let manifest = dir.join(SNAPSHOT_MANIFEST);
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(io(format!("--feeds-snapshot {}", dir.display())))?;
        let mut feeds = Vec::new();
        for (i, feed) in settings.enrich.ioc.feeds.iter().enumerate() {
            let bytes =
                std::fs::read(&feed.path).map_err(io(format!("feed {}: {}", feed.name, feed.path.display())))?;
            let file =
                format!("{i:02}-{}", Path::new(&feed.path).file_name().and_then(|n| n.to_str()).unwrap_or("feed"));
            std::fs::write(dir.join(&file), &bytes).map_err(io(format!("--feeds-snapshot {}", dir.display())))?;
            feeds.push(SnapshotFeed { name: feed.name.clone(), format: feed.format, file, sha256: sha256_hex(&bytes) });
        }
        let snapshot = Snapshot { version: 1, as_of: Utc::now(), feeds };
        let json = serde_json::to_vec_pretty(&snapshot).expect("the manifest serializes");
        std::fs::write(&manifest, json).map_err(io(format!("--feeds-snapshot: {}", manifest.display())))?;
    }
    let snapshot: Snapshot = serde_json::from_slice(
        &std::fs::read(&manifest).map_err(io(format!("--feeds-snapshot: {}", manifest.display())))?,
    )
    .map_err(|source| ReplayError::Json { what: format!("--feeds-snapshot: {}", manifest.display()), source })?;
    let mut pinned = settings.clone();
    pinned.enrich.ioc.feeds.clear();
    for feed in &snapshot.feeds {
        let path = dir.join(&feed.file);
        let bytes = std::fs::read(&path).map_err(io(format!("--feeds-snapshot: {}", path.display())))?;
        if sha256_hex(&bytes) != feed.sha256 {
            return Err(refused(format!("--feeds-snapshot: {} changed since the snapshot was taken", path.display())));
        }
        pinned.enrich.ioc.feeds.push(crate::config::FeedSettings {
            name: feed.name.clone(),
            path,
            format: feed.format,
        });
    }
    Ok((pinned, snapshot.as_of))
}
