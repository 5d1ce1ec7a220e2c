//! argv redaction, applied before anything is written or shipped: values that look like
//! secrets are replaced with a marker (`[REDACTED]`). What is redacted:
//!
//! - long options whose name says secret (`--password=x`, `--password x`, `--db-password`,
//!   `--client-secret`, `--api-key`, `--access-token`, `-password x`, ...), except names that
//!   point at a secret rather than hold one (`--password-file`, `--token-path`, `--secret-name`)
//!   and booleans (`--no-password`, `--ask-pass`, `--password-stdin`);
//! - tool-specific flags ([`BUILTIN_TOOLS`]): `mysql -psecret` / `-p secret`, `sshpass -p`,
//!   `redis-cli -a`, `ldapsearch -w`, `sqlcmd -P`, `zip -P`, `7z -psecret`, `openssl -pass
//!   pass:x`, `keytool -storepass`, `docker login -p`, `curl -u user:x`, `smbclient -U user%x`,
//!   `xfreerdp /p:x`, `useradd -p HASH`, `htpasswd -b FILE USER PASS`, `vault login TOKEN`,
//!   `openssl enc -K HEX`, `az login -p x`, `nmcli ... password x` / `wifi-sec.psk x`, the
//!   Oracle logon `sqlplus user/x@db` (also `rman target user/x`, `expdp userid=user/x`);
//!   the tool is recognised anywhere in argv (`sudo mysql ...`, `timeout 5 sshpass ...`);
//! - assignments `NAME=value` where NAME ends in PASSWORD / PASSWD / PASSPHRASE / SECRET /
//!   TOKEN / API_KEY / ACCESS_KEY / PRIVATE_KEY / CREDENTIALS / _PWD / _PASS / _PW, or is PW
//!   (any case, also inside an argument: `-e DB_PASSWORD=x`, `--from-literal=password=x`,
//!   `?token=x&`), and the same names as JSON keys (`curl -d '{"password":"x"}'`);
//! - `Authorization:` / `Proxy-Authorization:` header values (scheme kept), `Cookie:`,
//!   `X-Api-Key:`-style headers (any `X-...-Key|Token|Secret|Password|Auth`), `bearer <token>`;
//! - AWS access key ids (`AKIA…`, `ASIA…`) and, when argv holds one or names the AWS secret
//!   key, 40-character base64 strings; `aws configure set aws_secret_access_key X`,
//!   `git config x.token X`, `npm config set …:_authToken X`;
//! - URL credentials (`scheme://user:password@host`, `redis://:password@host`);
//! - well-known token formats: GitHub (`ghp_…`, `github_pat_…`), GitLab (`glpat-…`), Slack
//!   (`xox?-…`), Stripe (`sk_live_…`), JWTs, PEM private key bodies, Slack and Discord
//!   webhook URLs (the path after `hooks.slack.com/services/`);
//! - configurable extra regexes, extra secret option names and extra tools.
//!
//! Arguments containing whitespace (`sh -c "mysql -psecret db"`) are also split shell-style
//! (quotes respected) and scanned the same way.
//!
//! Limits: redaction is pattern-based. A secret passed positionally to a tool not listed, or
//! hidden in an encoding, is not recognised; `mysql -p NAME` redacts NAME even though mysql
//! reads it as the database (safer that way round).
use std::collections::HashMap;

use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

use super::noise::{FilterError, FnvBuild};

mod names;
mod patterns;
mod scan;
mod shell;
mod tools;

pub use names::is_secret_name;
use patterns::{replace_group, Pattern, AWS_CONTEXT, AWS_SECRET, BUILTIN_PATTERNS};
use scan::{Edit, TokRef};
use shell::shell_tokens;
use tools::{style_of, Special, Style, Tool};
pub use tools::{BuiltinTool, BUILTIN_TOOLS};

pub const DEFAULT_MARKER: &str = "[REDACTED]";

/// `[filter.redaction]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedactionConfig {
    pub enabled: bool,
    /// Replaces each secret.
    pub marker: String,
    /// The built-in rules listed in the module documentation.
    pub builtin: bool,
    /// Extra regexes searched in every argument. A capture group named `secret` (else the
    /// first group, else the whole match) is replaced.
    pub patterns: Vec<String>,
    /// Extra option names whose value is secret for any tool (`--vault-id`, `-pw`).
    pub secret_options: Vec<String>,
    /// Extra tools with secret-taking flags.
    pub tools: Vec<ToolRule>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            marker: DEFAULT_MARKER.into(),
            builtin: true,
            patterns: Vec::new(),
            secret_options: Vec::new(),
            tools: Vec::new(),
        }
    }
}

/// A tool whose flags take a secret: `flags` are exact (`-k`, `-pass`); the value is the
/// next argument or attached (`-ksecret`, `-pass=secret`); a flag ending in `:` or `=` is a
/// prefix (`/p:secret`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ToolRule {
    /// Basenames of the executable.
    pub names: Vec<String>,
    /// Only after this subcommand (`login` for `docker login`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subcommand: Option<String>,
    pub flags: Vec<String>,
}

/// The compiled redactor (cheap to clone; stateless).
#[derive(Debug, Clone)]
pub struct Redactor {
    enabled: bool,
    marker: String,
    builtin: bool,
    tools: Vec<Tool>,
    /// Executable basename -> index in `tools` (first definition wins).
    by_name: HashMap<String, usize, FnvBuild>,
    secret_options: Vec<String>,
    patterns: Vec<Pattern>,
    set: RegexSet,
    /// The built-in patterns and the AWS context, as one prefilter over the joined argv.
    builtin_set: RegexSet,
    extra_patterns: usize,
    aws_context: Regex,
    aws_secret: Regex,
}

impl Redactor {
    pub fn new(cfg: &RedactionConfig) -> Result<Self, FilterError> {
        let mut tools = Vec::new();
        if cfg.builtin {
            for (names, sub, flags) in BUILTIN_TOOLS {
                let special = match names[0] {
                    "htpasswd" => Special::HtpasswdBatch,
                    "vault" => Special::VaultLogin,
                    "sqlplus" => Special::OracleLogon,
                    "nmcli" => Special::Nmcli,
                    _ => Special::None,
                };
                tools.push(Tool {
                    names: names.iter().map(|s| s.to_string()).collect(),
                    subcommand: sub.map(str::to_string),
                    flags: flags
                        .iter()
                        .map(|(f, s)| (f.to_string(), style_of(s)))
                        .collect(),
                    special,
                });
            }
        }
        for t in &cfg.tools {
            if t.names.is_empty() || t.flags.iter().any(|f| f.is_empty()) {
                return Err(FilterError::Redaction(
                    "a tool needs names and non-empty flags".into(),
                ));
            }
            tools.push(Tool {
                names: t.names.clone(),
                subcommand: t.subcommand.clone(),
                flags: t
                    .flags
                    .iter()
                    .map(|f| {
                        let style = if f.ends_with(':') || f.ends_with('=') {
                            Style::Prefix
                        } else {
                            Style::Value
                        };
                        (f.clone(), style)
                    })
                    .collect(),
                special: Special::None,
            });
        }
        let mut sources: Vec<(String, usize)> = Vec::new();
        if cfg.builtin {
            sources.extend(BUILTIN_PATTERNS.iter().map(|(p, g)| (p.to_string(), *g)));
        }
        for p in &cfg.patterns {
            let re =
                Regex::new(p).map_err(|e| FilterError::Redaction(format!("pattern {p:?}: {e}")))?;
            let group = match re.capture_names().position(|n| n == Some("secret")) {
                Some(i) => i,
                None if re.captures_len() > 1 => 1,
                None => 0,
            };
            sources.push((p.clone(), group));
        }
        let patterns = sources
            .iter()
            .map(|(p, g)| {
                Regex::new(p)
                    .map(|re| Pattern { re, group: *g })
                    .map_err(|e| FilterError::Redaction(format!("pattern {p:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let set = RegexSet::new(sources.iter().map(|(p, _)| p.as_str()))
            .map_err(|e| FilterError::Redaction(e.to_string()))?;
        let builtin_set = RegexSet::new(
            BUILTIN_PATTERNS
                .iter()
                .map(|(p, _)| *p)
                .chain(std::iter::once(AWS_CONTEXT)),
        )
        .map_err(|e| FilterError::Redaction(e.to_string()))?;
        if cfg.marker.is_empty() {
            return Err(FilterError::Redaction("marker must not be empty".into()));
        }
        let mut by_name = HashMap::default();
        for (i, t) in tools.iter().enumerate() {
            for n in &t.names {
                by_name.entry(n.clone()).or_insert(i);
            }
        }
        Ok(Self {
            enabled: cfg.enabled,
            marker: cfg.marker.clone(),
            builtin: cfg.builtin,
            tools,
            by_name,
            secret_options: cfg
                .secret_options
                .iter()
                .map(|s| s.trim_start_matches('-').to_ascii_lowercase())
                .collect(),
            patterns,
            set,
            builtin_set,
            extra_patterns: cfg.patterns.len(),
            aws_context: Regex::new(AWS_CONTEXT).expect("static regex"),
            aws_secret: Regex::new(AWS_SECRET).expect("static regex"),
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn tool_for(&self, name: &str) -> Option<&Tool> {
        if name.is_empty() {
            return None;
        }
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    fn secret_option(&self, name: &str) -> bool {
        (self.builtin && is_secret_name(name))
            || self
                .secret_options
                .iter()
                .any(|o| *o == name.trim_start_matches('-').to_ascii_lowercase())
    }

    /// Redacts argv in place; returns how many arguments changed.
    pub fn redact_argv(&self, argv: &mut [String]) -> usize {
        if !self.enabled || argv.is_empty() {
            return 0;
        }
        let mut changed = vec![false; argv.len()];
        // 1. Token rules over argv.
        let mut edits = Vec::new();
        {
            let toks: Vec<TokRef> = argv
                .iter()
                .enumerate()
                .map(|(i, a)| TokRef {
                    arg: i,
                    at: 0,
                    text: a.as_str(),
                })
                .collect();
            self.scan(&toks, &mut edits);
        }
        self.apply(argv, edits, &mut changed);
        // 2. The same inside arguments that hold a command line (sh -c "...").
        let mut edits = Vec::new();
        for (i, a) in argv.iter().enumerate() {
            if !a.contains(char::is_whitespace) {
                continue;
            }
            let toks: Vec<TokRef> = shell_tokens(a)
                .into_iter()
                .map(|r| TokRef {
                    arg: i,
                    at: r.start,
                    text: &a[r],
                })
                .collect();
            self.scan(&toks, &mut edits);
        }
        self.apply(argv, edits, &mut changed);
        // 3. Patterns. One pass over the joined arguments rules out the common case (no
        // pattern anywhere); only then is each argument searched. Extra patterns may anchor
        // on an argument's ends, so they are always searched per argument.
        let joined = argv.join("\n");
        let builtin_hit = self.builtin && self.builtin_set.is_match(&joined);
        let aws = builtin_hit && self.aws_context.is_match(&joined);
        if !builtin_hit && self.extra_patterns == 0 {
            return changed.iter().filter(|c| **c).count();
        }
        for (a, ch) in argv.iter_mut().zip(changed.iter_mut()) {
            let hits = self.set.matches(a);
            if hits.matched_any() {
                for i in hits.iter() {
                    let p = &self.patterns[i];
                    if let Some(s) = replace_group(&p.re, a, p.group, &self.marker) {
                        *a = s;
                        *ch = true;
                    }
                }
            }
            if aws {
                if let Some(s) = replace_group(&self.aws_secret, a, 1, &self.marker) {
                    *a = s;
                    *ch = true;
                }
            }
        }
        changed.iter().filter(|c| **c).count()
    }

    fn apply(&self, argv: &mut [String], mut edits: Vec<Edit>, changed: &mut [bool]) {
        if edits.is_empty() {
            return;
        }
        // Right to left within each argument; overlapping edits are merged by skipping.
        edits.sort_by(|a, b| (a.0, b.1.start).cmp(&(b.0, a.1.start)));
        let mut last: Option<(usize, usize)> = None;
        for (arg, r) in edits {
            if r.start >= r.end {
                continue;
            }
            if let Some((la, ls)) = last {
                if la == arg && r.end > ls {
                    continue;
                }
            }
            let a = &mut argv[arg];
            if r.end <= a.len() && a.is_char_boundary(r.start) && a.is_char_boundary(r.end) {
                if a[r.clone()] != *self.marker {
                    a.replace_range(r.clone(), &self.marker);
                    changed[arg] = true;
                }
                last = Some((arg, r.start));
            }
        }
    }
}

#[cfg(test)]
mod tests;
