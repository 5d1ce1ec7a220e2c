//! The tools whose flags take a secret: the built-in list and how each flag's value is cut.

/// How a tool flag's value is redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
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
pub(super) enum Special {
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
pub(super) struct Tool {
    pub(super) names: Vec<String>,
    pub(super) subcommand: Option<String>,
    pub(super) flags: Vec<(String, Style)>,
    pub(super) special: Special,
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

pub(super) fn style_of(s: &str) -> Style {
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
