//! Shell-style tokens of an argument that holds a command line (`sh -c "mysql -psecret"`).
use std::ops::Range;

/// Shell-style split of one argument into token byte ranges (quotes group; `\` escapes).
pub(super) fn shell_tokens(s: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => escaped = true,
            (Some(_), _) => {}
            (None, '\\') => {
                escaped = true;
                start.get_or_insert(i);
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                start.get_or_insert(i);
            }
            (None, c) if c.is_whitespace() => {
                if let Some(st) = start.take() {
                    out.push(st..i);
                }
            }
            (None, _) => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(st) = start {
        out.push(st..s.len());
    }
    out
}

pub(super) fn strip_quotes(t: &str) -> &str {
    let b = t.as_bytes();
    if b.len() >= 2 && (b[0] == b'\'' || b[0] == b'"') && b[b.len() - 1] == b[0] {
        &t[1..t.len() - 1]
    } else {
        t.trim_matches(|c| c == '\'' || c == '"')
    }
}

pub(super) fn basename(t: &str) -> &str {
    let t = strip_quotes(t);
    t.rsplit('/').next().unwrap_or(t)
}
