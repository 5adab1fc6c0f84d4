//! The rule prefilter: one literal search per field tells which rules a record could match at all, so
//! a rule whose literals cannot match is not evaluated (most records match no rule, and most rules
//! name a URL path, a command line or a user agent they look for).
//!
//! Built from the rules' [`Need`]s when the set is loaded: for each field some rule needs, one
//! automaton over every literal needed there (ASCII case ignored, as the rules compare ASCII texts).
//! It only ever says "possible" too often, never too rarely: a rule with no need, a value that is not
//! an ASCII string (the rules compare such text lower-cased, or as a number), and a field whose literals
//! did not compile leave the rules gated on it possible.

use std::collections::BTreeMap;

use aho_corasick::AhoCorasick;
use smallvec::SmallVec;

use super::sigma::{Need, Rule};
use crate::doc::{Doc, Leaf};

/// A set of rules by position, one bit each (inline up to 256 rules).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules(SmallVec<[u64; 4]>);

impl Rules {
    fn none(count: usize) -> Rules {
        Rules(SmallVec::from_elem(0, count.div_ceil(64)))
    }

    fn insert(&mut self, rule: usize) {
        if let Some(word) = self.0.get_mut(rule / 64) {
            *word |= 1 << (rule % 64);
        }
    }

    pub fn contains(&self, rule: usize) -> bool {
        self.0.get(rule / 64).is_some_and(|word| word & (1 << (rule % 64)) != 0)
    }
}

/// The literals the rules need at one field.
#[derive(Debug)]
struct Field {
    path: String,
    automaton: AhoCorasick,
    /// The rule of each literal (the automaton's pattern ids).
    rule_of: Vec<usize>,
    /// Every rule gated on this field.
    gated: Rules,
}

#[derive(Debug, Default)]
pub struct Prefilter {
    /// How many rules it was built for.
    count: usize,
    /// Rules with no need: always possible.
    ungated: Rules,
    fields: Vec<Field>,
}

impl Prefilter {
    pub fn new(rules: &[Rule]) -> Prefilter {
        let mut ungated = Rules::none(rules.len());
        let mut by_path: BTreeMap<String, Vec<(String, usize)>> = BTreeMap::new();
        for (ri, rule) in rules.iter().enumerate() {
            match rule.need() {
                Some(Need { path, literals }) => {
                    by_path.entry(path).or_default().extend(literals.into_iter().map(|l| (l, ri)))
                }
                None => ungated.insert(ri),
            }
        }
        let mut fields = Vec::new();
        for (path, literals) in by_path {
            let built = AhoCorasick::builder().ascii_case_insensitive(true).build(literals.iter().map(|(l, _)| l));
            let rule_of: Vec<usize> = literals.iter().map(|&(_, ri)| ri).collect();
            let mut gated = Rules::none(rules.len());
            for &ri in &rule_of {
                gated.insert(ri);
            }
            match built {
                Ok(automaton) => fields.push(Field { path, automaton, rule_of, gated }),
                Err(_) => rule_of.iter().for_each(|&ri| ungated.insert(ri)),
            }
        }
        Prefilter { count: rules.len(), ungated, fields }
    }

    /// The rules `doc` could match, of the `count` rules of the set.
    pub fn possible(&self, doc: &Doc<'_>, count: usize) -> Rules {
        if count != self.count {
            // Not built for these rules: every one is possible.
            let mut all = Rules::none(count);
            (0..count).for_each(|ri| all.insert(ri));
            return all;
        }
        let mut possible = self.ungated.clone();
        for field in &self.fields {
            for leaf in doc.lookup(&field.path) {
                match leaf {
                    Leaf::Str(text) if text.is_ascii() => {
                        for found in field.automaton.find_overlapping_iter(text) {
                            possible.insert(field.rule_of[found.pattern().as_usize()]);
                        }
                    }
                    Leaf::Null | Leaf::Object => {}
                    _ => possible.0.iter_mut().zip(&field.gated.0).for_each(|(p, g)| *p |= g),
                }
            }
        }
        possible
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::{DateTime, Utc};

    use crate::detect::{RuleSet, Worker};
    use crate::ecs::Origin;
    use crate::parse::{Dataset, ParseContext};
    use crate::process::{Clocks, Created, Input, Processor};

    #[test]
    fn a_rule_ruled_out_never_matches_and_most_rules_are_ruled_out_for_most_records() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let options = crate::config::Settings::default().detect.options();
        let (set, errors) = RuleSet::load(&[root.join("rules")], &options);
        assert!(errors.is_empty(), "{errors:?}");
        let gated = set.rules.iter().filter(|r| r.need().is_some()).count();
        assert!(gated * 2 > set.rules.len(), "{gated} of {} rules have literals to search for", set.rules.len());

        let ctx = ParseContext::default();
        let processor = Processor { ctx: &ctx, enricher: None, rules: &set, detect: &options };
        let received: DateTime<Utc> = "2024-08-01T00:00:00Z".parse().unwrap();
        let clocks = Clocks { received, indicators: received, created: Created::EventTime };
        let mut records: Vec<(Option<Dataset>, String)> = Vec::new();
        for entry in std::fs::read_dir(root.join("tests/fixtures/public-samples")).unwrap() {
            let path = entry.unwrap().path();
            let hint = Dataset::from_path(&path.to_string_lossy());
            let text = std::fs::read_to_string(&path).unwrap();
            records.extend(text.lines().filter(|l| !l.starts_with('#')).map(|l| (hint, l.to_owned())));
        }
        // Texts the rules compare lower-cased (not ASCII) and upper-case ASCII.
        for url in
            ["/VPN/../VPNS/CFG/SMB.CONF?é", "/vpn/../vpns/portal/scripts/newbm.pl?K=\u{212A}", "/VPNS/PORTAL/X.XML"]
        {
            records.push((
                Some(Dataset::HttpAccess),
                format!("203.0.113.9 - - [11/Jan/2020:10:00:00 +0000] \"GET {url} HTTP/1.1\" 200 146 \"-\" \"curl\""),
            ));
        }

        let (mut matched, mut ruled_out, mut pairs) = (0, 0, 0);
        for (hint, line) in &records {
            let input = Input {
                payload: line.as_bytes(),
                hint: *hint,
                origin: Origin::File { file: "s", line: 1 },
                appliance: None,
            };
            let Ok(processed) = processor.process(None::<&mut Worker>, input, clocks) else { continue };
            let possible = set.prefilter.possible(&processed.doc, set.rules.len());
            for (ri, rule) in set.rules.iter().enumerate() {
                pairs += 1;
                if rule.matches(&processed.doc) {
                    matched += 1;
                    assert!(possible.contains(ri), "{} matches {line:?} but was ruled out", rule.meta.id);
                }
                if !possible.contains(ri) {
                    ruled_out += 1;
                }
            }
        }
        assert!(matched >= 30, "{matched} matches: the samples hold attacks");
        assert!(ruled_out * 2 > pairs, "{ruled_out} of {pairs} (record, rule) pairs ruled out");
    }
}
