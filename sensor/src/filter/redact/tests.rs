//! Unit tests of the `redact` module.
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
