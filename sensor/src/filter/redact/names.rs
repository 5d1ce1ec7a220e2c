//! Which option and key names hold a secret (`--db-password`, `API_KEY`), and which only point
//! at one (`--password-file`) or switch one off (`--no-password`).

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
