//! The token rules of the redactor: tool flags, secret options, `bearer X`, config setters.
use std::ops::Range;

use super::shell::{basename, strip_quotes};
use super::tools::{Special, Style, Tool};
use super::Redactor;

const SEPARATORS: [&str; 6] = [";", "&&", "||", "|", "&", "--"];
const SETTERS: [&str; 8] = [
    "set",
    "config",
    "configure",
    "--global",
    "--local",
    "--system",
    "--add",
    "--replace-all",
];

/// One token of a scan: which argument, where in it.
#[derive(Debug, Clone)]
pub(super) struct TokRef<'a> {
    pub(super) arg: usize,
    pub(super) at: usize,
    pub(super) text: &'a str,
}

/// A byte range of an argument to replace.
pub(super) type Edit = (usize, Range<usize>);

impl Redactor {
    /// The token rules: tools, secret options, `bearer X`, config setters.
    pub(super) fn scan(&self, toks: &[TokRef], edits: &mut Vec<Edit>) {
        let whole = |t: &TokRef| (t.arg, t.at..t.at + t.text.len());
        let mut tool: Option<&Tool> = None;
        let mut sub_ok = false;
        let mut positional = 0usize;
        let mut i = 0;
        while i < toks.len() {
            let t = &toks[i];
            let text = t.text;
            if SEPARATORS.contains(&text) || text.ends_with(';') {
                if text != "--" {
                    tool = None;
                }
                i += 1;
                continue;
            }
            if let Some(found) = self.tool_for(basename(text)) {
                tool = Some(found);
                sub_ok = found.subcommand.is_none();
                positional = 0;
                i += 1;
                continue;
            }
            if let Some(tl) = tool {
                if !sub_ok {
                    if tl.subcommand.as_deref() == Some(strip_quotes(text)) {
                        sub_ok = true;
                    }
                    i += 1;
                    continue;
                }
                if let Some(n) = self.tool_flag(tl, toks, i, edits) {
                    i += n;
                    continue;
                }
                match tl.special {
                    Special::HtpasswdBatch if text.starts_with('-') && text[1..].contains('b') => {
                        // The password is the last argument of this command.
                        let end = toks[i + 1..]
                            .iter()
                            .position(|x| SEPARATORS.contains(&x.text))
                            .map_or(toks.len(), |p| i + 1 + p);
                        if end > i + 1 && !toks[end - 1].text.starts_with('-') {
                            edits.push(whole(&toks[end - 1]));
                        }
                        i = end;
                        continue;
                    }
                    Special::OracleLogon if !text.starts_with('-') => {
                        let after_keyword = i > 0
                            && matches!(
                                toks[i - 1].text.to_ascii_lowercase().as_str(),
                                "target" | "catalog" | "auxiliary"
                            );
                        if positional == 0 || after_keyword || text.contains('=') {
                            if let Some(r) = oracle_logon_password(text) {
                                edits.push((t.arg, t.at + r.start..t.at + r.end));
                            }
                        }
                        positional += 1;
                        i += 1;
                        continue;
                    }
                    Special::Nmcli if nmcli_secret_key(strip_quotes(text)) => {
                        if let Some(next) = toks.get(i + 1) {
                            edits.push(whole(next));
                        }
                        i += 2;
                        continue;
                    }
                    Special::VaultLogin if !text.starts_with('-') && !text.contains('=') => {
                        if positional == 0 {
                            edits.push(whole(t));
                        }
                        positional += 1;
                        i += 1;
                        continue;
                    }
                    _ => {}
                }
            }
            if let Some(n) = self.generic_option(toks, i, edits) {
                i += n;
                continue;
            }
            if text.eq_ignore_ascii_case("bearer") && i + 1 < toks.len() {
                edits.push(whole(&toks[i + 1]));
                i += 2;
                continue;
            }
            if i >= 1
                && i + 1 < toks.len()
                && !text.starts_with('-')
                && !text.contains('=')
                && SETTERS.contains(&toks[i - 1].text)
                && self.secret_option(strip_quotes(text))
            {
                edits.push(whole(&toks[i + 1]));
                i += 2;
                continue;
            }
            i += 1;
        }
    }

    /// A tool flag at `i`: returns tokens consumed.
    fn tool_flag(
        &self,
        tool: &Tool,
        toks: &[TokRef],
        i: usize,
        edits: &mut Vec<Edit>,
    ) -> Option<usize> {
        let t = &toks[i];
        for (flag, style) in &tool.flags {
            let f = flag.as_str();
            if *style == Style::Prefix {
                if let Some(rest) = t.text.strip_prefix(f) {
                    if !rest.is_empty() {
                        edits.push((t.arg, t.at + f.len()..t.at + t.text.len()));
                    }
                    return Some(1);
                }
                continue;
            }
            if t.text == f {
                if *style == Style::Attached {
                    return Some(1);
                }
                if *style == Style::Separate {
                    if let Some(next) = toks.get(i + 1) {
                        edits.push((next.arg, next.at..next.at + next.text.len()));
                        return Some(2);
                    }
                    return Some(1);
                }
                let Some(next) = toks.get(i + 1) else {
                    return Some(1);
                };
                if next.text.starts_with('-') && next.text.len() > 1 {
                    return Some(1); // `mysql -p -u root`: -p prompts
                }
                if let Some(r) = value_range(next.text, *style) {
                    edits.push((next.arg, next.at + r.start..next.at + r.end));
                }
                return Some(2);
            }
            // Attached: `-psecret`, `-pass=secret`. Single-letter flags only attach directly.
            if *style == Style::Separate {
                continue;
            }
            if let Some(rest) = t.text.strip_prefix(f) {
                let (skip, rest) = match rest.strip_prefix('=') {
                    Some(r) => (1, r),
                    None if f.len() == 2 => (0, rest),
                    None => continue,
                };
                if rest.is_empty() {
                    return Some(1);
                }
                if let Some(r) = value_range(rest, *style) {
                    let base = t.at + f.len() + skip;
                    edits.push((t.arg, base + r.start..base + r.end));
                }
                return Some(1);
            }
        }
        None
    }

    /// `--name=value`, `--name value`, `-name value` with a secret name.
    fn generic_option(&self, toks: &[TokRef], i: usize, edits: &mut Vec<Edit>) -> Option<usize> {
        let t = &toks[i];
        let text = t.text;
        let dashes = if text.starts_with("--") {
            2
        } else if text.starts_with('-') && text.len() > 3 {
            1
        } else {
            return None;
        };
        let body = &text[dashes..];
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return None;
        }
        if !self.secret_option(name) {
            return None;
        }
        match value {
            Some(v) if !v.is_empty() => {
                let start = t.at + dashes + name.len() + 1;
                edits.push((t.arg, start..start + v.len()));
                Some(1)
            }
            Some(_) => Some(1),
            None => match toks.get(i + 1) {
                Some(n) if !(n.text.starts_with('-') && n.text.len() > 1) => {
                    edits.push((n.arg, n.at..n.at + n.text.len()));
                    Some(2)
                }
                _ => Some(1),
            },
        }
    }
}

/// The part of a flag value to redact, by style.
fn value_range(v: &str, style: Style) -> Option<Range<usize>> {
    if v.is_empty() {
        return None;
    }
    match style {
        Style::Value | Style::Attached | Style::Prefix | Style::Separate => Some(0..v.len()),
        Style::AfterColon => v
            .find(':')
            .map(|p| p + 1..v.len())
            .filter(|r| !r.is_empty()),
        Style::AfterPercent => v
            .find('%')
            .map(|p| p + 1..v.len())
            .filter(|r| !r.is_empty()),
        Style::OpensslPass => {
            let inner = strip_quotes(v);
            let off = v.find(inner).unwrap_or(0);
            inner
                .strip_prefix("pass:")
                .map(|rest| off + 5..off + 5 + rest.len())
                .filter(|r| !r.is_empty())
        }
    }
}

/// The password in an Oracle logon `user/password[@connect]` (optionally after `userid=`,
/// `target=`, `catalog=`): `None` for `/nolog`, `/`, `user@db` (prompts) or anything else.
fn oracle_logon_password(t: &str) -> Option<Range<usize>> {
    let inner = strip_quotes(t);
    let base = t.find(inner).unwrap_or(0);
    let (key_len, logon) = match inner.split_once('=') {
        Some((k, v))
            if ["userid", "target", "catalog", "auxiliary"]
                .iter()
                .any(|n| k.eq_ignore_ascii_case(n)) =>
        {
            (k.len() + 1, v)
        }
        Some(_) => return None,
        None => (0, inner),
    };
    let (user, rest) = logon.split_once('/')?;
    let user = user.trim_matches('"');
    if user.is_empty()
        || !user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_$#.".contains(&b))
    {
        return None;
    }
    let pw_len = rest.find('@').unwrap_or(rest.len());
    if pw_len == 0 {
        return None;
    }
    let start = base + key_len + (logon.len() - rest.len());
    Some(start..start + pw_len)
}

/// nmcli property or keyword whose next argument is a secret.
fn nmcli_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    k == "password"
        || k.ends_with(".psk")
        || k.ends_with(".password")
        || k.ends_with(".pin")
        || (k.contains(".wep-key") && k.ends_with(|c: char| ('0'..='3').contains(&c)))
}
