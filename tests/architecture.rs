//! ARCHITECTURE.md matches the tree: every source file is named in it, and every path it names exists.

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn architecture_names_every_source_file_and_only_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    let missing: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(root).unwrap().display().to_string())
        .filter(|f| !text.contains(&format!("`{f}`")))
        .collect();
    assert!(missing.is_empty(), "ARCHITECTURE.md does not name: {missing:?}");
    let named: Vec<&str> = text.split('`').skip(1).step_by(2).filter(|s| s.starts_with("src/")).collect();
    assert!(named.len() >= files.len(), "{named:?}");
    let gone: Vec<&&str> = named.iter().filter(|p| !root.join(p).exists()).collect();
    assert!(gone.is_empty(), "ARCHITECTURE.md names paths that do not exist: {gone:?}");
}
