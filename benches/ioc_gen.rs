//! Synthetic indicator feeds for scale measurements: a deterministic mix shaped like real CTI feeds
//! (addresses, networks, domains, URLs and hashes dominate; a few hundred user-agent substrings and
//! tens of URL regexes regardless of size).

#![allow(clippy::unwrap_used)] // a test, benchmark or example: failing loudly is the point

use std::fmt::Write;

use super::samples::Rng;

/// A CSV feed of `n` indicators (plus the fixed user-agent and regex rows).
pub fn csv_feed(n: usize) -> String {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = String::with_capacity(n * 48);
    out.push_str("type,value,source,confidence\n");
    for i in 0..n {
        let r = rng.next();
        let (a, b, c, d) = ((r >> 8) as u8 % 223 + 1, (r >> 16) as u8, (r >> 24) as u8, (r >> 32) as u8);
        match i % 20 {
            0..=8 => writeln!(out, "ipv4,{a}.{b}.{c}.{d},gen,high"),
            9 => writeln!(out, "cidr,{a}.{b}.{c}.0/24,gen,medium"),
            10..=13 => writeln!(out, "domain,h{r:x}.example-{}.net,gen,medium", i % 997),
            14..=16 => writeln!(out, "url,http://{a}.{b}.{c}.{d}/p/{r:x}.sh,gen,high"),
            17 | 18 => {
                writeln!(out, "sha256,{:016x}{:016x}{:016x}{:016x},gen,high", r, rng.next(), rng.next(), rng.next())
            }
            _ => writeln!(out, "md5,{:016x}{:016x},gen,high", r, rng.next()),
        }
        .expect("writing to a String cannot fail");
    }
    for i in 0..200 {
        writeln!(out, "user_agent,EvilBot-{i}/,gen,low").expect("writing to a String cannot fail");
    }
    for i in 0..50 {
        writeln!(out, "url_pattern,^/vpns/portal/scripts/x{i}[a-z]+\\.pl$,gen,low")
            .expect("writing to a String cannot fail");
    }
    out
}
