//! Globs for comm, exe and argv rules: `*`, `?` and `[...]` classes.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Any,
    Star,
    Class {
        neg: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled glob. Patterns without metacharacters compare as plain strings.
#[derive(Debug, Clone)]
pub struct Glob {
    literal: Option<String>,
    toks: Vec<Tok>,
}

impl Glob {
    pub fn new(pat: &str) -> Result<Self, String> {
        let mut toks = Vec::new();
        let mut it = pat.chars().peekable();
        while let Some(c) = it.next() {
            match c {
                '*' => {
                    if toks.last() != Some(&Tok::Star) {
                        toks.push(Tok::Star)
                    }
                }
                '?' => toks.push(Tok::Any),
                '\\' => match it.next() {
                    Some(e) => toks.push(Tok::Lit(e)),
                    None => return Err(format!("glob {pat:?} ends with a backslash")),
                },
                '[' => {
                    let neg = matches!(it.peek(), Some('!') | Some('^'));
                    if neg {
                        it.next();
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let Some(c) = it.next() else {
                            return Err(format!("glob {pat:?}: unterminated ["));
                        };
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        let lo = if c == '\\' {
                            it.next()
                                .ok_or_else(|| format!("glob {pat:?}: unterminated ["))?
                        } else {
                            c
                        };
                        if it.peek() == Some(&'-') {
                            it.next();
                            match it.peek() {
                                Some(']') | None => {
                                    ranges.push((lo, lo));
                                    ranges.push(('-', '-'));
                                }
                                Some(_) => {
                                    let hi = it.next().unwrap_or(lo);
                                    if hi < lo {
                                        return Err(format!(
                                            "glob {pat:?}: range {lo}-{hi} is reversed"
                                        ));
                                    }
                                    ranges.push((lo, hi));
                                }
                            }
                        } else {
                            ranges.push((lo, lo));
                        }
                    }
                    toks.push(Tok::Class { neg, ranges });
                }
                c => toks.push(Tok::Lit(c)),
            }
        }
        let literal = toks.iter().all(|t| matches!(t, Tok::Lit(_))).then(|| {
            toks.iter()
                .map(|t| match t {
                    Tok::Lit(c) => *c,
                    _ => unreachable!(),
                })
                .collect()
        });
        Ok(Self { literal, toks })
    }

    /// The exact string this glob matches, when it has no metacharacters.
    pub fn literal(&self) -> Option<&str> {
        self.literal.as_deref()
    }

    fn tok_matches(t: &Tok, c: char) -> bool {
        match t {
            Tok::Lit(l) => *l == c,
            Tok::Any => true,
            Tok::Class { neg, ranges } => ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *neg,
            Tok::Star => true,
        }
    }

    pub fn is_match(&self, s: &str) -> bool {
        if let Some(l) = &self.literal {
            return l == s;
        }
        // Iterative matching with backtracking to the last star: O(len(s) * len(pattern)).
        let chars: Vec<char> = s.chars().collect();
        let (mut p, mut i) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while i < chars.len() {
            match self.toks.get(p) {
                Some(Tok::Star) => {
                    star = Some((p, i));
                    p += 1;
                }
                Some(t) if Self::tok_matches(t, chars[i]) => {
                    p += 1;
                    i += 1;
                }
                _ => match star {
                    Some((sp, si)) => {
                        p = sp + 1;
                        i = si + 1;
                        star = Some((sp, si + 1));
                    }
                    None => return false,
                },
            }
        }
        self.toks[p..].iter().all(|t| *t == Tok::Star)
    }
}
