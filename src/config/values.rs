//! Value types several sections share: optional paths and names written as `""` for "off".

use serde::{Deserialize, Deserializer};

/// Deserializes `""` (how a file, a Helm value or an environment variable says "off") as `None`.
pub(crate) fn empty_is_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    let text = Option::<String>::deserialize(deserializer)?;
    Ok(text.filter(|t| !t.trim().is_empty()).map(T::from))
}

/// The `Debug`/error form of an optional setting: its value quoted, or `""` when off.
pub(crate) fn shown<T: std::fmt::Debug>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(|| "\"\"".to_owned(), |v| format!("{v:?}"))
}
