//! Conditions: `sel1 and not (sel2 or 1 of filter*)` parsed into a tree over the rule's selections.

/// What is wrong with a condition.
#[derive(Debug, thiserror::Error)]
pub enum ConditionProblem {
    #[error("condition names {0:?}, which matches no selection")]
    NoSelection(String),
    #[error("condition ends early")]
    EndsEarly,
    #[error("unbalanced parentheses in condition")]
    Unbalanced,
    #[error("expected `of` after {0:?}")]
    ExpectedOf(String),
    #[error("expected a selection pattern after `of`")]
    ExpectedPattern,
    #[error("unexpected {0:?} in condition")]
    Unexpected(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cond {
    Sel(usize),
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

/// Tokens of a condition.
pub(super) fn tokenize(condition: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    for c in condition.chars() {
        match c {
            '(' | ')' => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
                tokens.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

struct CondParser<'a> {
    tokens: Vec<String>,
    pos: usize,
    names: &'a [String],
}

impl CondParser<'_> {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn next(&mut self) -> Option<String> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Cond, ConditionProblem> {
        let mut terms = vec![self.and()?];
        while self.peek().is_some_and(|t| t.eq_ignore_ascii_case("or")) {
            self.next();
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Cond::Or(terms) })
    }

    fn and(&mut self) -> Result<Cond, ConditionProblem> {
        let mut terms = vec![self.not()?];
        while self.peek().is_some_and(|t| t.eq_ignore_ascii_case("and")) {
            self.next();
            terms.push(self.not()?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Cond::And(terms) })
    }

    fn not(&mut self) -> Result<Cond, ConditionProblem> {
        if self.peek().is_some_and(|t| t.eq_ignore_ascii_case("not")) {
            self.next();
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn matching(&self, pattern: &str) -> Result<Vec<usize>, ConditionProblem> {
        let found: Vec<usize> = if pattern == "them" {
            (0..self.names.len()).collect()
        } else if let Some(prefix) = pattern.strip_suffix('*') {
            self.names.iter().enumerate().filter(|(_, n)| n.starts_with(prefix)).map(|(i, _)| i).collect()
        } else {
            self.names.iter().position(|n| n == pattern).into_iter().collect()
        };
        if found.is_empty() {
            return Err(ConditionProblem::NoSelection(pattern.to_owned()));
        }
        Ok(found)
    }

    fn atom(&mut self) -> Result<Cond, ConditionProblem> {
        let token = self.next().ok_or(ConditionProblem::EndsEarly)?;
        match token.as_str() {
            "(" => {
                let inner = self.or()?;
                match self.next().as_deref() {
                    Some(")") => Ok(inner),
                    _ => Err(ConditionProblem::Unbalanced),
                }
            }
            "1" | "any" | "all" => {
                let of = self.next();
                if !of.as_deref().is_some_and(|o| o.eq_ignore_ascii_case("of")) {
                    return Err(ConditionProblem::ExpectedOf(token));
                }
                let pattern = self.next().ok_or(ConditionProblem::ExpectedPattern)?;
                let sels: Vec<Cond> = self.matching(&pattern)?.into_iter().map(Cond::Sel).collect();
                Ok(if token == "all" { Cond::And(sels) } else { Cond::Or(sels) })
            }
            name => Ok(Cond::Sel(self.matching(name)?[0])),
        }
    }
}

pub(super) fn parse_condition(condition: &str, names: &[String]) -> Result<Cond, ConditionProblem> {
    let mut parser = CondParser { tokens: tokenize(condition), pos: 0, names };
    let cond = parser.or()?;
    if parser.pos < parser.tokens.len() {
        return Err(ConditionProblem::Unexpected(parser.tokens[parser.pos].clone()));
    }
    Ok(cond)
}
