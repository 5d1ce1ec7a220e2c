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
mod tests;
