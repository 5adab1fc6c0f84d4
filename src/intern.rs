//! Interned short texts: the names an event derives from its record (lower-cased event names and
//! protocols, snake-case names of unmapped body keys) come from a small vocabulary that repeats on every
//! record, so each is kept once for the life of the process and handed out as `&'static str` — the
//! record path then copies none of them.
//!
//! The vocabulary is bounded: at most [`CAPACITY`] texts of at most [`LONGEST`] bytes (≤ 1 MiB), shared
//! by every thread. Past that (a flood of novel names) texts are copied per use, as before.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::{LazyLock, RwLock};

/// How many texts are kept.
pub const CAPACITY: usize = 8192;
/// The longest text kept.
pub const LONGEST: usize = 128;

static TEXTS: LazyLock<RwLock<HashSet<&'static str>>> = LazyLock::new(|| RwLock::new(HashSet::new()));

thread_local! {
    /// Where [`build`] writes a text before looking it up.
    static SCRATCH: RefCell<String> = RefCell::new(String::with_capacity(LONGEST));
}

/// `text`, interned when the vocabulary has room, else a copy.
pub fn intern(text: &str) -> Cow<'static, str> {
    if text.len() > LONGEST {
        return Cow::Owned(text.to_owned());
    }
    // A poisoned lock only means another thread panicked while holding it; the set itself is intact
    // (an insert either happened or did not).
    let texts = TEXTS.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(&kept) = texts.get(text) {
        return Cow::Borrowed(kept);
    }
    drop(texts);
    let mut texts = TEXTS.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(&kept) = texts.get(text) {
        return Cow::Borrowed(kept);
    }
    if texts.len() >= CAPACITY {
        return Cow::Owned(text.to_owned());
    }
    let kept: &'static str = Box::leak(text.to_owned().into_boxed_str());
    texts.insert(kept);
    Cow::Borrowed(kept)
}

/// The text `write` writes, interned ([`intern`]): built in a per-thread buffer, so a text already
/// kept costs no allocation.
pub fn build(write: impl FnOnce(&mut String)) -> Cow<'static, str> {
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        write(scratch);
        intern(scratch)
    })
}

/// `text` in ASCII lower case (protocol names: `TCP` → `tcp`).
pub fn lower(text: &str) -> Cow<'static, str> {
    build(|out| out.extend(text.chars().map(|c| c.to_ascii_lowercase())))
}

/// `text` in ASCII lower case with spaces as `_` (event names: `Login Failed` → `login_failed`).
pub fn lower_snake(text: &str) -> Cow<'static, str> {
    build(|out| out.extend(text.chars().map(|c| if c == ' ' { '_' } else { c.to_ascii_lowercase() })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_kept_once_and_handed_out_by_reference() {
        let a = intern("tcp-interned-test");
        let b = build(|s| s.push_str("tcp-interned-test"));
        match (a, b) {
            (Cow::Borrowed(a), Cow::Borrowed(b)) => assert!(std::ptr::eq(a, b), "the same text"),
            other => panic!("not interned: {other:?}"),
        }
        assert_eq!(lower_snake("Login Failed"), "login_failed");
        assert!(matches!(intern(&"x".repeat(LONGEST + 1)), Cow::Owned(_)), "long texts are copied");
    }
}
