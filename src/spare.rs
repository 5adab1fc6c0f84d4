//! Spare buffers: the emptied buffers of a thread's dropped per-record values (the event document,
//! the parsed fields), kept for the thread's next record so that a warm record path allocates none.
//!
//! A value type keeps its own pool (a `thread_local!` of [`Pool`]) and moves its buffers in when it is
//! dropped ([`keep`]) and out when one is made ([`take`]). Each pool holds a few buffers, none larger
//! than the owner allows, so a rare huge record does not pin its memory.

use std::cell::RefCell;
use std::thread::LocalKey;

/// A thread's spare buffers of one kind.
pub type Pool<T> = RefCell<Vec<T>>;

/// How many buffers of a kind a thread keeps (a record path holds one or two at a time).
pub const KEPT: usize = 4;

/// Keeps `buffers` in `pool` if it has room.
pub fn keep<T: 'static>(pool: &'static LocalKey<Pool<T>>, buffers: T) {
    // `try_with`: the thread's storage may already be gone while it exits.
    let _ = pool.try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut() {
            if pool.len() < KEPT {
                pool.push(buffers);
            }
        }
    });
}

/// Spare buffers from `pool`, if it has any.
pub fn take<T: 'static>(pool: &'static LocalKey<Pool<T>>) -> Option<T> {
    pool.try_with(|pool| pool.try_borrow_mut().ok().and_then(|mut pool| pool.pop())).ok().flatten()
}

/// `items` emptied, as a vector of `U` — in the same buffer when `T` and `U` have the same layout
/// (the same type for other lifetimes, which is what this is for): the standard library collects a
/// vector's `map` in place, and here nothing is left to map.
pub fn recast<T, U>(items: Vec<T>) -> Vec<U> {
    let mut items = items;
    items.clear();
    items.into_iter().map(|_| unreachable!("the vector is empty")).collect()
}

/// Vectors past this many items are not kept.
const LONGEST: usize = 1024;

thread_local! {
    /// Lists of texts ([`crate::parse::Value::List`], [`crate::doc::Val::List`]).
    static LISTS: Pool<Vec<&'static str>> = const { Pool::new(Vec::new()) };
    /// Key/value pairs ([`crate::parse::Value::Pairs`]).
    static PAIRS: Pool<Vec<(&'static str, &'static str)>> = const { Pool::new(Vec::new()) };
}

/// An empty list of texts, in a kept buffer when the thread has one.
pub fn list<'a>() -> Vec<&'a str> {
    take(&LISTS).unwrap_or_default()
}

/// Keeps the buffer of a list of texts that is done with.
pub fn keep_list(items: Vec<&str>) {
    if (1..=LONGEST).contains(&items.capacity()) {
        keep(&LISTS, recast(items));
    }
}

/// Empty key/value pairs, in a kept buffer when the thread has one.
pub fn pairs<'a>() -> Vec<(&'a str, &'a str)> {
    take(&PAIRS).unwrap_or_default()
}

/// Keeps the buffer of key/value pairs that are done with.
pub fn keep_pairs(items: Vec<(&str, &str)>) {
    if (1..=LONGEST).contains(&items.capacity()) {
        keep(&PAIRS, recast(items));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_buffer_is_handed_out_again_with_its_capacity() {
        let text = String::from("a b c");
        let mut items = list();
        items.extend(text.split(' '));
        items.reserve(100);
        let (at, capacity) = (items.as_ptr(), items.capacity());
        keep_list(items);
        let again: Vec<&'static str> = list();
        assert_eq!((again.as_ptr(), again.capacity()), (at, capacity), "the same buffer");
        assert!(again.is_empty());
    }
}
