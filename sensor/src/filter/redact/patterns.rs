//! The built-in secret patterns (regexes searched in every argument) and the replacement of
//! a match's group with the marker.
use regex::Regex;

/// Built-in patterns: (regex, group replaced; 0 = whole match).
///
/// Word boundaries are ASCII (`(?-u:\b)`): a Unicode `\b` makes the regex engine leave its
/// lazy DFA for the much slower PikeVM on any non-ASCII argument, which an attacker controls.
/// An ASCII boundary also treats a non-ASCII letter before a token as a boundary, so it
/// redacts at least as much.
pub(super) const BUILTIN_PATTERNS: &[(&str, usize)] = &[
    // NAME=value assignments (env, query strings, -D properties, k8s literals).
    (
        r#"(?i)(?:^|[^A-Za-z0-9_])[A-Za-z0-9_]*(?:password|passwd|passphrase|secret|token|api_?key|access_?key|private_?key|auth_?key|credentials?|_pwd|_pass|_pw)=('[^']*'?|"[^"]*"?|[^\s'"&;|]+)"#,
        1,
    ),
    (
        r#"(?i)(?:^|[^A-Za-z0-9_])pw=('[^']*'?|"[^"]*"?|[^\s'"&;|]+)"#,
        1,
    ),
    // The same names as JSON keys with a string value.
    (
        r#"(?i)"[A-Za-z0-9_\-]*(?:password|passwd|passphrase|secret|token|api_?key|access_?key|private_?key|auth_?key|credentials?|_pwd|_pass|_pw)"\s*:\s*"((?:[^"\\]|\\.)*)""#,
        1,
    ),
    // Authorization headers: keep the scheme.
    (
        r#"(?i)(?-u:\b)(?:proxy-)?authorization\s*:\s*(?:(?:bearer|basic|token|digest|negotiate|bot|apikey|aws4-hmac-sha256)\s+)?([^\s'"]+)"#,
        1,
    ),
    // Other credential headers.
    (
        r#"(?i)(?-u:\b)(?:x-[a-z0-9-]*(?:key|token|secret|password|auth)|api-key|private-token|cookie)\s*:\s*([^'"\r\n]+)"#,
        1,
    ),
    // bearer <token>
    (r"(?i)(?-u:\b)bearer\s+([A-Za-z0-9\-._~+/]+=*)", 1),
    // AWS access key ids.
    (r"(?-u:\b)((?:AKIA|ASIA)[0-9A-Z]{16})(?-u:\b)", 1),
    // URL credentials: scheme://user:password@
    (
        r"(?-u:\b)[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:([^/\s@]+)@",
        1,
    ),
    // Token formats with a recognisable prefix.
    (r"(?-u:\b)(gh[pousr]_[A-Za-z0-9]{30,})(?-u:\b)", 1),
    (r"(?-u:\b)(github_pat_[A-Za-z0-9_]{22,})", 1),
    (r"(?-u:\b)(glpat-[A-Za-z0-9_\-]{20,})", 1),
    (r"(?-u:\b)(xox[abposr]-[A-Za-z0-9\-]{10,})", 1),
    (r"(?-u:\b)((?:sk|rk)_live_[A-Za-z0-9]{16,})", 1),
    // Webhook URLs: the path is the credential.
    (
        r"(?-u:\b)hooks\.slack\.com/(?:services|workflows|triggers)/([A-Za-z0-9_/\-]+)",
        1,
    ),
    (
        r"(?-u:\b)discord(?:app)?\.com/api/webhooks/[0-9]+/([A-Za-z0-9_\-]+)",
        1,
    ),
    (
        r"(?-u:\b)(eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})",
        1,
    ),
    (r"-----BEGIN [A-Z ]*PRIVATE KEY-----([\s\S]+)", 1),
];

/// AWS secret access keys: 40 base64 characters standing alone.
pub(super) const AWS_SECRET: &str =
    r"(?:^|[^A-Za-z0-9/+=])([A-Za-z0-9/+]{40})(?:$|[^A-Za-z0-9/+=])";
pub(super) const AWS_CONTEXT: &str = r"(?i)(?:(?-u:\b)(?:AKIA|ASIA)[0-9A-Z]{16}(?-u:\b)|secret_?access_?key|aws_secret|secretaccesskey)";

#[derive(Debug, Clone)]
pub(super) struct Pattern {
    pub(super) re: Regex,
    pub(super) group: usize,
}

/// Replaces capture `group` of every match with `marker`; None when nothing matched.
pub(super) fn replace_group(re: &Regex, s: &str, group: usize, marker: &str) -> Option<String> {
    let mut out = String::new();
    let mut last = 0;
    let mut any = false;
    for caps in re.captures_iter(s) {
        let Some(m) = caps.get(group).or_else(|| caps.get(0)) else {
            continue;
        };
        if m.start() < last || m.as_str() == marker {
            continue;
        }
        out.push_str(&s[last..m.start()]);
        out.push_str(marker);
        last = m.end();
        any = true;
    }
    if !any {
        return None;
    }
    out.push_str(&s[last..]);
    Some(out)
}
