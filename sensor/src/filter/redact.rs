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
use std::ops::Range;

use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

use super::noise::{FilterError, FnvBuild};
use crate::event::Event;

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

/// How a tool flag's value is redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// Attached (`-psecret`, `-pass=secret`) or the next argument.
    Value,
    /// Attached only (`7z -psecret`; a bare `-p` prompts).
    Attached,
    /// The next argument only (`openssl -K HEX`: `-kfile`, `-keyform` are other options).
    Separate,
    /// `user:secret` -> `user:[REDACTED]` (attached or next; no colon: untouched).
    AfterColon,
    /// `user%secret` -> `user%[REDACTED]`.
    AfterPercent,
    /// openssl `pass:secret` -> `pass:[REDACTED]`; `env:`, `file:`, `fd:`, `stdin` untouched.
    OpensslPass,
    /// A prefix within one argument (`/p:secret`).
    Prefix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    /// `htpasswd -b[...] FILE USER PASSWORD`: the last argument.
    HtpasswdBatch,
    /// `vault login TOKEN`: the first positional after `login`.
    VaultLogin,
    /// Oracle tools: the password of a `user/password[@db]` logon, as the first positional
    /// or after `target` / `catalog` / `auxiliary`, or in `userid=user/password`.
    OracleLogon,
    /// nmcli: the value after `password`, `*.psk`, `*.password`, `*.wep-key0..3`.
    Nmcli,
}

#[derive(Debug, Clone)]
struct Tool {
    names: Vec<String>,
    subcommand: Option<String>,
    flags: Vec<(String, Style)>,
    special: Special,
}

/// One built-in tool: executable basenames, subcommand, (flag, style) pairs.
pub type BuiltinTool = (
    &'static [&'static str],
    Option<&'static str>,
    &'static [(&'static str, &'static str)],
);

/// The built-in tool table.
pub const BUILTIN_TOOLS: &[BuiltinTool] = &[
    (
        &[
            "mysql",
            "mysqldump",
            "mysqladmin",
            "mysqlimport",
            "mysqlshow",
            "mysqlcheck",
            "mysqlpump",
            "mysqlslap",
            "mysqlbinlog",
            "mysqlsh",
            "mariadb",
            "mariadb-dump",
            "mariadb-admin",
            "mariadb-import",
            "mariadb-show",
            "mariadb-check",
            "mariadb-slap",
            "mariadb-binlog",
        ],
        None,
        &[("-p", "value")],
    ),
    (&["sshpass"], None, &[("-p", "value")]),
    (&["redis-cli", "keydb-cli"], None, &[("-a", "value")]),
    (
        &[
            "mongo",
            "mongosh",
            "mongodump",
            "mongorestore",
            "mongoexport",
            "mongoimport",
            "mongostat",
            "mongotop",
            "mongofiles",
        ],
        None,
        &[("-p", "value")],
    ),
    (
        &[
            "ldapsearch",
            "ldapadd",
            "ldapmodify",
            "ldapdelete",
            "ldapwhoami",
            "ldapcompare",
            "ldapmodrdn",
            "ldapexop",
        ],
        None,
        &[("-w", "value")],
    ),
    (
        &["ldappasswd"],
        None,
        &[("-w", "value"), ("-a", "value"), ("-s", "value")],
    ),
    (&["sqlcmd", "bcp", "osql", "isql"], None, &[("-P", "value")]),
    (&["ipmitool"], None, &[("-P", "value")]),
    (
        &["zip", "unzip", "zipcloak", "funzip"],
        None,
        &[("-P", "value")],
    ),
    (
        &["7z", "7za", "7zr", "rar", "unrar"],
        None,
        &[("-p", "attached")],
    ),
    (
        &["openssl"],
        None,
        &[
            ("-pass", "openssl"),
            ("-passin", "openssl"),
            ("-passout", "openssl"),
            ("-k", "separate"),
            ("-K", "separate"),
        ],
    ),
    (
        &["keytool"],
        None,
        &[
            ("-storepass", "value"),
            ("-keypass", "value"),
            ("-srcstorepass", "value"),
            ("-deststorepass", "value"),
            ("-srckeypass", "value"),
            ("-destkeypass", "value"),
            ("-new", "value"),
        ],
    ),
    (
        &["docker", "podman", "nerdctl"],
        Some("login"),
        &[("-p", "value")],
    ),
    (
        &["curl"],
        None,
        &[
            ("-u", "colon"),
            ("--user", "colon"),
            ("-U", "colon"),
            ("--proxy-user", "colon"),
            ("-E", "colon"),
            ("--cert", "colon"),
        ],
    ),
    (
        &["http", "https", "xh", "xhs"],
        None,
        &[("-a", "colon"), ("--auth", "colon")],
    ),
    (
        &[
            "smbclient",
            "smbmap",
            "rpcclient",
            "smbget",
            "smbcacls",
            "smbpasswd",
        ],
        None,
        &[("-U", "percent"), ("--user", "percent")],
    ),
    (
        &[
            "xfreerdp",
            "xfreerdp3",
            "wlfreerdp",
            "sdl-freerdp",
            "sdl-freerdp3",
        ],
        None,
        &[("/p:", "prefix"), ("/pth:", "prefix"), ("/gp:", "prefix")],
    ),
    (&["rdesktop"], None, &[("-p", "value")]),
    (&["useradd", "usermod"], None, &[("-p", "value")]),
    (&["htpasswd"], None, &[]),
    (&["vault", "bao"], Some("login"), &[]),
    (&["az"], Some("login"), &[("-p", "value")]),
    (
        &[
            "sqlplus", "sqlldr", "expdp", "impdp", "exp", "imp", "rman", "dgmgrl",
        ],
        None,
        &[],
    ),
    (&["nmcli"], None, &[]),
];

fn style_of(s: &str) -> Style {
    match s {
        "attached" => Style::Attached,
        "separate" => Style::Separate,
        "colon" => Style::AfterColon,
        "percent" => Style::AfterPercent,
        "openssl" => Style::OpensslPass,
        "prefix" => Style::Prefix,
        _ => Style::Value,
    }
}

/// Built-in patterns: (regex, group replaced; 0 = whole match).
///
/// Word boundaries are ASCII (`(?-u:\b)`): a Unicode `\b` makes the regex engine leave its
/// lazy DFA for the much slower PikeVM on any non-ASCII argument, which an attacker controls.
/// An ASCII boundary also treats a non-ASCII letter before a token as a boundary, so it
/// redacts at least as much.
const BUILTIN_PATTERNS: &[(&str, usize)] = &[
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
const AWS_SECRET: &str = r"(?:^|[^A-Za-z0-9/+=])([A-Za-z0-9/+]{40})(?:$|[^A-Za-z0-9/+=])";
const AWS_CONTEXT: &str = r"(?i)(?:(?-u:\b)(?:AKIA|ASIA)[0-9A-Z]{16}(?-u:\b)|secret_?access_?key|aws_secret|secretaccesskey)";

#[derive(Debug, Clone)]
struct Pattern {
    re: Regex,
    group: usize,
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

/// Whether an option or key name holds a secret value (see the module documentation).
pub fn is_secret_name(name: &str) -> bool {
    // Fast reject without allocating: every secret name contains one of these.
    const HINTS: [&str; 6] = ["pass", "secret", "token", "pw", "key", "credential"];
    if !HINTS.iter().any(|h| contains_ci(name, h)) && !contains_ci(name, "bearer") {
        return false;
    }
    let n = name.trim_start_matches('-').to_ascii_lowercase();
    let segs: Vec<&str> = n
        .split(['-', '_', '.', ':', '/'])
        .filter(|s| !s.is_empty())
        .collect();
    let (Some(&first), Some(&last)) = (segs.first(), segs.last()) else {
        return false;
    };
    if segs.len() > 1
        && matches!(
            first,
            "no" | "ask"
                | "prompt"
                | "use"
                | "with"
                | "without"
                | "show"
                | "print"
                | "require"
                | "allow"
                | "disable"
                | "enable"
                | "skip"
                | "generate"
                | "gen"
                | "reset"
        )
    {
        return false;
    }
    if segs.len() > 1
        && matches!(
            last,
            "file"
                | "files"
                | "path"
                | "dir"
                | "fd"
                | "env"
                | "stdin"
                | "prompt"
                | "length"
                | "len"
                | "type"
                | "id"
                | "name"
                | "ttl"
                | "expiry"
                | "expires"
                | "url"
                | "uri"
                | "endpoint"
                | "command"
                | "cmd"
                | "helper"
                | "store"
                | "policy"
                | "count"
                | "min"
                | "max"
                | "mode"
                | "format"
                | "header"
                | "source"
                | "role"
                | "arn"
                | "version"
                | "location"
                | "ref"
                | "mount"
                | "manager"
                | "provider"
        )
    {
        return false;
    }
    if ["password", "passwd", "passphrase", "secret"]
        .iter()
        .any(|w| n.contains(w))
    {
        return !matches!(last, "secrets" | "passwords");
    }
    if segs.iter().any(|s| {
        (s.ends_with("token") && *s != "tokens")
            || matches!(
                *s,
                "pwd" | "apikey" | "credential" | "credentials" | "bearer"
            )
    }) {
        return true;
    }
    if last == "pass" || last == "pw" {
        return true;
    }
    segs.windows(2).any(|w| {
        w[1] == "key"
            && matches!(
                w[0],
                "api" | "access" | "auth" | "encryption" | "master" | "signing" | "license"
            )
    })
}

/// ASCII case-insensitive substring test (`needle` in lower case).
fn contains_ci(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Shell-style split of one argument into token byte ranges (quotes group; `\` escapes).
fn shell_tokens(s: &str) -> Vec<Range<usize>> {
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

fn strip_quotes(t: &str) -> &str {
    let b = t.as_bytes();
    if b.len() >= 2 && (b[0] == b'\'' || b[0] == b'"') && b[b.len() - 1] == b[0] {
        &t[1..t.len() - 1]
    } else {
        t.trim_matches(|c| c == '\'' || c == '"')
    }
}

fn basename(t: &str) -> &str {
    let t = strip_quotes(t);
    t.rsplit('/').next().unwrap_or(t)
}

/// One token of a scan: which argument, where in it.
#[derive(Debug, Clone)]
struct TokRef<'a> {
    arg: usize,
    at: usize,
    text: &'a str,
}

/// A byte range of an argument to replace.
type Edit = (usize, Range<usize>);

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

    /// Redacts the event's argv in place; returns how many arguments changed.
    pub fn redact_event(&self, ev: &mut Event) -> usize {
        if !self.enabled {
            return 0;
        }
        match ev.process.as_mut().and_then(|p| p.argv.as_mut()) {
            Some(argv) => self.redact_argv(argv),
            None => 0,
        }
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

    /// The token rules: tools, secret options, `bearer X`, config setters.
    fn scan(&self, toks: &[TokRef], edits: &mut Vec<Edit>) {
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

/// Replaces capture `group` of every match with `marker`; None when nothing matched.
fn replace_group(re: &Regex, s: &str, group: usize, marker: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Redactor {
        Redactor::new(&RedactionConfig::default()).unwrap()
    }

    fn red(args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        r().redact_argv(&mut v);
        v
    }

    fn joined(args: &[&str]) -> String {
        red(args).join(" ")
    }

    /// (argv, expected argv after redaction).
    const MUST: &[(&[&str], &[&str])] = &[
        (&["app", "--password=hunter2"], &["app", "--password=[REDACTED]"]),
        (&["app", "--password", "hunter2"], &["app", "--password", "[REDACTED]"]),
        (&["app", "--db-password=x1"], &["app", "--db-password=[REDACTED]"]),
        (&["app", "--dbpassword", "x1"], &["app", "--dbpassword", "[REDACTED]"]),
        (&["app", "--client-secret", "s3"], &["app", "--client-secret", "[REDACTED]"]),
        (&["app", "--client_secret=s3"], &["app", "--client_secret=[REDACTED]"]),
        (&["app", "--api-key=k"], &["app", "--api-key=[REDACTED]"]),
        (&["app", "--apikey", "k"], &["app", "--apikey", "[REDACTED]"]),
        (&["app", "--access-token=t"], &["app", "--access-token=[REDACTED]"]),
        (&["app", "--token", "t"], &["app", "--token", "[REDACTED]"]),
        (&["app", "--auth-token", "t"], &["app", "--auth-token", "[REDACTED]"]),
        (&["app", "--passphrase", "t"], &["app", "--passphrase", "[REDACTED]"]),
        (&["app", "--ftp-pass", "t"], &["app", "--ftp-pass", "[REDACTED]"]),
        (&["java", "-password", "t"], &["java", "-password", "[REDACTED]"]),
        (&["curl", "--oauth2-bearer", "t"], &["curl", "--oauth2-bearer", "[REDACTED]"]),
        (&["mysql", "-uroot", "-phunter2", "db"], &["mysql", "-uroot", "-p[REDACTED]", "db"]),
        (&["mysql", "-p", "hunter2"], &["mysql", "-p", "[REDACTED]"]),
        (&["/usr/bin/mysqldump", "-phunter2"], &["/usr/bin/mysqldump", "-p[REDACTED]"]),
        (&["mysqladmin", "-u", "root", "-phunter2", "status"], &["mysqladmin", "-u", "root", "-p[REDACTED]", "status"]),
        (&["sshpass", "-p", "hunter2", "ssh", "h"], &["sshpass", "-p", "[REDACTED]", "ssh", "h"]),
        (&["sshpass", "-phunter2", "ssh", "h"], &["sshpass", "-p[REDACTED]", "ssh", "h"]),
        (&["redis-cli", "-a", "hunter2", "ping"], &["redis-cli", "-a", "[REDACTED]", "ping"]),
        (&["mongosh", "-u", "a", "-p", "hunter2"], &["mongosh", "-u", "a", "-p", "[REDACTED]"]),
        (&["ldapsearch", "-x", "-w", "hunter2", "-b", "dc=x"], &["ldapsearch", "-x", "-w", "[REDACTED]", "-b", "dc=x"]),
        (&["sqlcmd", "-S", "h", "-U", "sa", "-P", "hunter2"], &["sqlcmd", "-S", "h", "-U", "sa", "-P", "[REDACTED]"]),
        (&["ipmitool", "-H", "h", "-P", "hunter2"], &["ipmitool", "-H", "h", "-P", "[REDACTED]"]),
        (&["zip", "-P", "hunter2", "a.zip", "f"], &["zip", "-P", "[REDACTED]", "a.zip", "f"]),
        (&["7z", "a", "-phunter2", "x.7z"], &["7z", "a", "-p[REDACTED]", "x.7z"]),
        (&["openssl", "enc", "-pass", "pass:hunter2"], &["openssl", "enc", "-pass", "pass:[REDACTED]"]),
        (&["openssl", "pkcs12", "-passin", "pass:hunter2", "-passout", "env:X"], &["openssl", "pkcs12", "-passin", "pass:[REDACTED]", "-passout", "env:X"]),
        (&["openssl", "enc", "-k", "hunter2"], &["openssl", "enc", "-k", "[REDACTED]"]),
        (&["keytool", "-list", "-storepass", "hunter2"], &["keytool", "-list", "-storepass", "[REDACTED]"]),
        (&["docker", "login", "-u", "me", "-p", "hunter2", "reg"], &["docker", "login", "-u", "me", "-p", "[REDACTED]", "reg"]),
        (&["docker", "login", "--password", "hunter2"], &["docker", "login", "--password", "[REDACTED]"]),
        (&["curl", "-u", "user:hunter2", "https://x"], &["curl", "-u", "user:[REDACTED]", "https://x"]),
        (&["curl", "--user=user:hunter2", "https://x"], &["curl", "--user=user:[REDACTED]", "https://x"]),
        (&["curl", "-uuser:hunter2", "https://x"], &["curl", "-uuser:[REDACTED]", "https://x"]),
        (&["curl", "-H", "Authorization: Bearer abc.def", "https://x"], &["curl", "-H", "Authorization: Bearer [REDACTED]", "https://x"]),
        (&["curl", "-H", "authorization:Basic dXNlcjpwYXNz"], &["curl", "-H", "authorization:Basic [REDACTED]"]),
        (&["curl", "-H", "X-Api-Key: abc123"], &["curl", "-H", "X-Api-Key: [REDACTED]"]),
        (&["curl", "-H", "Cookie: session=abc; other=1"], &["curl", "-H", "Cookie: [REDACTED]"]),
        (&["http", "-a", "me:hunter2", "x.org"], &["http", "-a", "me:[REDACTED]", "x.org"]),
        (&["smbclient", "//h/s", "-U", "user%hunter2"], &["smbclient", "//h/s", "-U", "user%[REDACTED]"]),
        (&["xfreerdp", "/u:me", "/p:hunter2", "/v:h"], &["xfreerdp", "/u:me", "/p:[REDACTED]", "/v:h"]),
        (&["useradd", "-p", "$6$salt$hash", "bob"], &["useradd", "-p", "[REDACTED]", "bob"]),
        (&["htpasswd", "-bc", ".htpasswd", "bob", "hunter2"], &["htpasswd", "-bc", ".htpasswd", "bob", "[REDACTED]"]),
        (&["vault", "login", "s.abcdef"], &["vault", "login", "[REDACTED]"]),
        (&["env", "PASSWORD=hunter2", "app"], &["env", "PASSWORD=[REDACTED]", "app"]),
        (&["env", "PGPASSWORD=hunter2", "psql"], &["env", "PGPASSWORD=[REDACTED]", "psql"]),
        (&["env", "MYSQL_PWD=hunter2", "mysql"], &["env", "MYSQL_PWD=[REDACTED]", "mysql"]),
        (&["env", "GITHUB_TOKEN=abc", "gh"], &["env", "GITHUB_TOKEN=[REDACTED]", "gh"]),
        (&["env", "AWS_SECRET_ACCESS_KEY=abc", "aws"], &["env", "AWS_SECRET_ACCESS_KEY=[REDACTED]", "aws"]),
        (&["env", "db_pass=abc"], &["env", "db_pass=[REDACTED]"]),
        (&["docker", "run", "-e", "DB_PASSWORD=hunter2", "img"], &["docker", "run", "-e", "DB_PASSWORD=[REDACTED]", "img"]),
        (&["kubectl", "create", "secret", "generic", "s", "--from-literal=password=hunter2"], &["kubectl", "create", "secret", "generic", "s", "--from-literal=password=[REDACTED]"]),
        (&["java", "-Djavax.net.ssl.keyStorePassword=hunter2", "-jar", "a.jar"], &["java", "-Djavax.net.ssl.keyStorePassword=[REDACTED]", "-jar", "a.jar"]),
        (&["curl", "https://x/login?user=a&password=hunter2&next=/"], &["curl", "https://x/login?user=a&password=[REDACTED]&next=/"]),
        (&["app", "bearer", "tok123"], &["app", "bearer", "[REDACTED]"]),
        (&["app", "Bearer tok123"], &["app", "Bearer [REDACTED]"]),
        (&["aws", "s3", "ls", "--access-key", "AKIAIOSFODNN7EXAMPLE"], &["aws", "s3", "ls", "--access-key", "[REDACTED]"]),
        (&["app", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"], &["app", "[REDACTED]", "[REDACTED]"]),
        (&["app", "key=AKIAIOSFODNN7EXAMPLE,secret=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"], &["app", "key=[REDACTED],secret=[REDACTED]"]),
        // Word boundaries are ASCII: a non-ASCII letter next to a token does not hide it.
        (&["app", "éAKIAIOSFODNN7EXAMPLEü"], &["app", "é[REDACTED]ü"]),
        (&["app", "ключ:ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"], &["app", "ключ:[REDACTED]"]),
        (&["aws", "configure", "set", "aws_secret_access_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"], &["aws", "configure", "set", "aws_secret_access_key", "[REDACTED]"]),
        (&["aws", "configure", "set", "aws_session_token", "FwoGZX"], &["aws", "configure", "set", "aws_session_token", "[REDACTED]"]),
        (&["git", "config", "--global", "github.token", "abc"], &["git", "config", "--global", "github.token", "[REDACTED]"]),
        (&["npm", "config", "set", "//registry.npmjs.org/:_authToken", "abc"], &["npm", "config", "set", "//registry.npmjs.org/:_authToken", "[REDACTED]"]),
        (&["git", "clone", "https://me:hunter2@git.example/r.git"], &["git", "clone", "https://me:[REDACTED]@git.example/r.git"]),
        (&["redis-cli", "-u", "redis://:hunter2@h:6379/0"], &["redis-cli", "-u", "redis://:[REDACTED]@h:6379/0"]),
        (&["psql", "postgresql://app:hunter2@db/app"], &["psql", "postgresql://app:[REDACTED]@db/app"]),
        (&["gh", "x", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"], &["gh", "x", "[REDACTED]"]),
        (&["x", "glpat-abcdefghij0123456789"], &["x", "[REDACTED]"]),
        (&["x", "xoxb-1234567890-abcdef"], &["x", "[REDACTED]"]),
        (&["x", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"], &["x", "[REDACTED]"]),
        (&["sh", "-c", "mysql -uroot -phunter2 db"], &["sh", "-c", "mysql -uroot -p[REDACTED] db"]),
        (&["bash", "-c", "PASSWORD=hunter2 ./run.sh"], &["bash", "-c", "PASSWORD=[REDACTED] ./run.sh"]),
        (&["sh", "-c", "curl -H 'Authorization: Bearer tok' https://x"], &["sh", "-c", "curl -H 'Authorization: Bearer [REDACTED]' https://x"]),
        (&["sh", "-c", "app --password 'hunter 2' && ls"], &["sh", "-c", "app --password [REDACTED] && ls"]),
        (&["sh", "-c", "cd /x; sshpass -p pw ssh h"], &["sh", "-c", "cd /x; sshpass -p [REDACTED] ssh h"]),
        (&["sudo", "mysql", "-phunter2"], &["sudo", "mysql", "-p[REDACTED]"]),
        (&["timeout", "5", "sshpass", "-p", "pw", "ssh", "h"], &["timeout", "5", "sshpass", "-p", "[REDACTED]", "ssh", "h"]),
        (&["app", "--password=hunter2", "--token=t2"], &["app", "--password=[REDACTED]", "--token=[REDACTED]"]),
        // JSON bodies.
        (&["curl", "-d", r#"{"password":"hunter2"}"#, "https://x"], &["curl", "-d", r#"{"password":"[REDACTED]"}"#, "https://x"]),
        (&["curl", "--data-raw", r#"{"user": "bob", "api_key": "hunter2", "n": 1}"#], &["curl", "--data-raw", r#"{"user": "bob", "api_key": "[REDACTED]", "n": 1}"#]),
        (&["curl", "-d", r#"{"auth":{"clientSecret":"hunter2\"x"}}"#], &["curl", "-d", r#"{"auth":{"clientSecret":"[REDACTED]"}}"#]),
        (&["sh", "-c", r#"curl -d '{"db_password":"hunter2"}' https://x"#], &["sh", "-c", r#"curl -d '{"db_password":"[REDACTED]"}' https://x"#]),
        // Oracle logons.
        (&["sqlplus", "scott/hunter2@orcl"], &["sqlplus", "scott/[REDACTED]@orcl"]),
        (&["sqlplus", "-s", "scott/hunter2"], &["sqlplus", "-s", "scott/[REDACTED]"]),
        (&["sqlplus", "sys/hunter2@//db:1521/svc", "as", "sysdba"], &["sqlplus", "sys/[REDACTED]@//db:1521/svc", "as", "sysdba"]),
        (&["rman", "target", "sys/hunter2@prod", "catalog", "rc/hunter2@rcat"], &["rman", "target", "sys/[REDACTED]@prod", "catalog", "rc/[REDACTED]@rcat"]),
        (&["expdp", "userid=scott/hunter2@orcl", "directory=d", "dumpfile=x.dmp"], &["expdp", "userid=scott/[REDACTED]@orcl", "directory=d", "dumpfile=x.dmp"]),
        (&["sqlldr", "scott/hunter2", "control=load.ctl"], &["sqlldr", "scott/[REDACTED]", "control=load.ctl"]),
        // nmcli.
        (&["nmcli", "device", "wifi", "connect", "X", "password", "hunter2"], &["nmcli", "device", "wifi", "connect", "X", "password", "[REDACTED]"]),
        (&["nmcli", "con", "modify", "home", "wifi-sec.psk", "hunter2"], &["nmcli", "con", "modify", "home", "wifi-sec.psk", "[REDACTED]"]),
        (&["nmcli", "con", "add", "type", "wifi", "802-1x.password", "hunter2", "ssid", "corp"], &["nmcli", "con", "add", "type", "wifi", "802-1x.password", "[REDACTED]", "ssid", "corp"]),
        // openssl raw key.
        (&["openssl", "enc", "-aes-256-cbc", "-K", "00112233445566778899aabbccddeeff", "-iv", "0102"], &["openssl", "enc", "-aes-256-cbc", "-K", "[REDACTED]", "-iv", "0102"]),
        (&["openssl", "enc", "-d", "-K", "hunter2"], &["openssl", "enc", "-d", "-K", "[REDACTED]"]),
        // az.
        (&["az", "login", "-u", "me@x.org", "-p", "hunter2"], &["az", "login", "-u", "me@x.org", "-p", "[REDACTED]"]),
        (&["az", "login", "--service-principal", "-u", "app", "-p", "hunter2", "--tenant", "t"], &["az", "login", "--service-principal", "-u", "app", "-p", "[REDACTED]", "--tenant", "t"]),
        // _PW names.
        (&["env", "DB_PW=hunter2", "cmd"], &["env", "DB_PW=[REDACTED]", "cmd"]),
        (&["env", "PW=hunter2", "cmd"], &["env", "PW=[REDACTED]", "cmd"]),
        // Webhooks.
        (&["curl", "-X", "POST", "https://hooks.slack.com/services/T0000000/B0000000/hunter2XXXXXXXXXXXXXXXX"], &["curl", "-X", "POST", "https://hooks.slack.com/services/[REDACTED]"]),
        (&["curl", "https://discord.com/api/webhooks/123456/hunter2-abc_DEF"], &["curl", "https://discord.com/api/webhooks/123456/[REDACTED]"]),
        // Credential headers by shape.
        (&["curl", "-H", "X-Auth-Key: hunter2", "https://api.x"], &["curl", "-H", "X-Auth-Key: [REDACTED]", "https://api.x"]),
        (&["curl", "-H", "X-Shopify-Access-Token: hunter2"], &["curl", "-H", "X-Shopify-Access-Token: [REDACTED]"]),
        (&["sh", "-c", "curl -H 'X-Auth-Key: hunter2' -H 'X-Auth-Email: a@b.c' https://x"], &["sh", "-c", "curl -H 'X-Auth-Key: [REDACTED]' -H 'X-Auth-Email: a@b.c' https://x"]),
    ];

    /// Arguments that must come out unchanged.
    const MUST_NOT: &[&[&str]] = &[
        &["git", "commit", "-m", "fix password reset bug"],
        &["ls", "-p", "/tmp"],
        &["mkdir", "-p", "/a/b"],
        &["ssh", "-p", "2222", "host"],
        &["ps", "-p", "1"],
        &["cp", "-p", "a", "b"],
        &["docker", "run", "-p", "8080:80", "img"],
        &["docker", "run", "--user=1000:1000", "img"],
        &["mysql", "-u", "root", "-h", "db", "-P", "3306"],
        &["mysql", "-p", "-u", "root"],
        &["7z", "x", "-p", "archive.7z"],
        &["app", "--password-file=/run/secrets/db"],
        &["app", "--password-file", "/run/secrets/db"],
        &["app", "--token-path", "/var/run/token"],
        &["kubectl", "get", "secret", "--secret-name=foo"],
        &["env", "PASSWORD_FILE=/run/x", "app"],
        &["env", "PWD=/home/u", "OLDPWD=/tmp", "app"],
        &["env", "TOKEN_URL=https://x/token"],
        &["app", "--bypass=1"],
        &["app", "--pass-through=yes"],
        &["llm", "--max-tokens=5", "--tokenizer=bpe"],
        &["passwd", "alice"],
        &["app", "--no-password", "db"],
        &["ansible-playbook", "--ask-become-pass", "site.yml"],
        &["docker", "login", "--password-stdin", "reg"],
        &["git", "show", "3f4a03c8c9d2e1f0a1b2c3d4e5f60718293a4b5c"],
        &["sha1sum", "-c", "da39a3ee5e6b4b0d3255bfef95601890afd80709"],
        &["curl", "https://example.com/a:b@c"],
        &["curl", "http://host:8080/path"],
        &["ssh", "git@github.com"],
        &["git", "clone", "ssh://git@github.com/x/y"],
        &["curl", "-u", "justauser", "https://x"],
        &["openssl", "enc", "-pass", "env:PASS", "-in", "f"],
        &["openssl", "enc", "-passin", "file:/etc/k"],
        &["echo", "bearer"],
        &["grep", "-r", "password", "/etc"],
        &["app", "--secrets-dir=/run/secrets"],
        &["app", "--aws-access-key-id=foo"],
        &["java", "-Dfile.encoding=UTF-8", "-jar", "x.jar"],
        &["vault", "login", "-method=userpass", "username=bob"],
        &["bash", "-c", "echo the token is in the file"],
        &["x", "-Wl,--as-needed"],
        &["python3", "-m", "http.server", "8000"],
        // Ordinary neighbours of the rules added for issue 16.
        &[
            "curl",
            "-d",
            r#"{"user":"bob","tokens":5,"password_file":"/run/x"}"#,
            "https://x",
        ],
        &[
            "curl",
            "-d",
            r#"{"max_tokens": 100, "token_type": "bearer", "password": null}"#,
        ],
        &[
            "curl",
            "-H",
            "Content-Type: application/json",
            "-H",
            "Accept: */*",
        ],
        &[
            "curl",
            "-H",
            "X-Request-Id: 5f2c",
            "-H",
            "X-Forwarded-For: 10.0.0.1",
        ],
        &["curl", "-H", "X-Auth-Email: a@b.c"],
        &["sqlplus", "/nolog"],
        &["sqlplus", "/", "as", "sysdba"],
        &[
            "sqlplus",
            "-s",
            "scott@orcl",
            "@dir/run.sql",
            "logs/out.txt",
        ],
        &["rman", "target", "/"],
        &["nmcli", "device", "wifi", "connect", "X"],
        &["nmcli", "connection", "show", "--active"],
        &["openssl", "enc", "-kfile", "/etc/k", "-in", "f"],
        &[
            "openssl", "req", "-new", "-key", "k.pem", "-keyout", "x.pem", "-keyform", "PEM",
        ],
        &["az", "login"],
        &["az", "vm", "list", "-p", "x"],
        &[
            "env",
            "PWD=/home/u",
            "HTTP_PROXY=http://p:3128",
            "PW_LEN=8",
            "cmd",
        ],
        &["curl", "https://hooks.example.com/services/T1/B2"],
        &["curl", "https://api.slack.com/methods/chat.postMessage"],
        &["make", "-C", "dir/sub"],
    ];

    #[test]
    fn must_redact() {
        for (input, want) in MUST {
            let got = red(input);
            assert_eq!(got, *want, "input {input:?}");
            assert!(
                !got.join(" ").contains("hunter2"),
                "hunter2 leaked for {input:?}: {got:?}"
            );
        }
    }

    #[test]
    fn must_not_redact() {
        for input in MUST_NOT {
            assert_eq!(red(input), *input, "input {input:?}");
        }
    }

    #[test]
    fn counts_changed_args_and_is_idempotent() {
        let mut v: Vec<String> = ["mysql", "-phunter2", "--password=x", "db"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(r().redact_argv(&mut v), 2);
        let once = v.clone();
        assert_eq!(r().redact_argv(&mut v), 0);
        assert_eq!(v, once);
    }

    #[test]
    fn configurable() {
        let cfg = RedactionConfig {
            marker: "***".into(),
            patterns: vec![r"pin=(?P<secret>\d+)".into(), r"ACME-[0-9]{6}".into()],
            secret_options: vec!["--pw".into()],
            tools: vec![ToolRule {
                names: vec!["mytool".into()],
                subcommand: None,
                flags: vec!["-k".into(), "key:".into()],
            }],
            ..Default::default()
        };
        let r = Redactor::new(&cfg).unwrap();
        let mut v: Vec<String> = [
            "mytool",
            "-k",
            "s1",
            "key:s2",
            "pin=1234",
            "ACME-123456",
            "--pw",
            "s3",
            "--password=s4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        r.redact_argv(&mut v);
        assert_eq!(
            v,
            vec![
                "mytool",
                "-k",
                "***",
                "key:***",
                "pin=***",
                "***",
                "--pw",
                "***",
                "--password=***"
            ]
        );
        // builtin off: only the configured rules.
        let r = Redactor::new(&RedactionConfig {
            builtin: false,
            patterns: vec![r"pin=(\d+)".into()],
            ..Default::default()
        })
        .unwrap();
        let mut v = vec!["x".to_string(), "--password=s".into(), "pin=12".into()];
        r.redact_argv(&mut v);
        assert_eq!(v, vec!["x", "--password=s", "pin=[REDACTED]"]);
        // disabled: nothing.
        let r = Redactor::new(&RedactionConfig {
            enabled: false,
            ..Default::default()
        })
        .unwrap();
        let mut v = vec!["x".to_string(), "--password=s".into()];
        assert_eq!(r.redact_argv(&mut v), 0);
        // errors
        assert!(Redactor::new(&RedactionConfig {
            patterns: vec!["(".into()],
            ..Default::default()
        })
        .is_err());
        assert!(Redactor::new(&RedactionConfig {
            marker: String::new(),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn secret_names() {
        for n in [
            "password",
            "--password",
            "db-password",
            "DB_PASSWORD",
            "client_secret",
            "api-key",
            "apikey",
            "access_token",
            "authToken",
            "_authToken",
            "github.token",
            "pass",
            "ftp-pass",
            "pwd",
            "credentials",
            "secret-key",
            "aws_secret_access_key",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in [
            "password-file",
            "token-path",
            "secret-name",
            "no-password",
            "ask-pass",
            "password-stdin",
            "bypass",
            "pass-through",
            "max-tokens",
            "tokenizer",
            "user",
            "key",
            "private-key",
            "aws-access-key-id",
            "passive",
            "compass",
            "secrets",
            "",
            "--",
        ] {
            assert!(!is_secret_name(n), "{n}");
        }
    }

    #[test]
    fn shell_token_ranges() {
        let s = r#"a 'b c' "d \" e" f\ g"#;
        let toks: Vec<&str> = shell_tokens(s).into_iter().map(|r| &s[r]).collect();
        assert_eq!(toks, vec!["a", "'b c'", r#""d \" e""#, r"f\ g"]);
        assert!(shell_tokens("   ").is_empty());
        assert_eq!(shell_tokens("'unterminated x").len(), 1);
    }

    #[test]
    fn non_ascii_and_odd_input_do_not_panic() {
        for args in [
            vec!["mysql", "-pé€"],
            vec!["--password=", "--password"],
            vec!["-p"],
            vec!["curl", "-u"],
            vec!["htpasswd", "-b"],
            vec!["sh", "-c", "'"],
            vec!["sh", "-c", "mysql -p"],
            vec!["x", "Authorization:"],
            vec!["é", "--tökén=ü"],
        ] {
            let _ = joined(&args);
        }
        assert_eq!(joined(&["mysql", "-pé€"]), "mysql -p[REDACTED]");
    }
}
