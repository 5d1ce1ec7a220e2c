//! One audit record payload (the text after the netlink header) parsed into a [`Record`].
//!
//! The kernel writes `audit(<secs>.<millis>:<serial>): ` and then space-separated `key=value`
//! fields. A value is bare (`pid=42`, `tty=(none)`), double-quoted (`comm="bash"`), or, for the
//! fields that carry untrusted strings, uppercase hex when the string held a space, a quote or
//! a byte outside 0x21..=0x7e (`comm=6D792070726F67`). The kernel never quotes a hex value and
//! never puts a space or `"` inside quotes, so a bare value of a hex-capable field that is valid
//! hex is decoded. User-space records (`USER_*`, `CRED_*`) carry their own fields inside
//! `msg='...'`; those are parsed into [`Record::nested`].
//!
//! Records of the types the sensor maps to events are parsed strictly: an unterminated quote or
//! a hex-capable field that is neither hex nor a placeholder is an error, which is how a
//! truncated datagram shows up. Every other type is parsed leniently and never fails past the
//! header, so unknown records still carry their serial to the assembler.
use thiserror::Error;

/// Record types from `linux/audit.h` that this module knows by name.
pub mod types {
    pub const LOGIN: u16 = 1006;
    pub const USER_AUTH: u16 = 1100;
    pub const USER_ACCT: u16 = 1101;
    pub const CRED_ACQ: u16 = 1103;
    pub const CRED_DISP: u16 = 1104;
    pub const USER_START: u16 = 1105;
    pub const USER_END: u16 = 1106;
    pub const USER_LOGIN: u16 = 1112;
    pub const SYSCALL: u16 = 1300;
    pub const PATH: u16 = 1302;
    pub const IPC: u16 = 1303;
    pub const SOCKETCALL: u16 = 1304;
    pub const CONFIG_CHANGE: u16 = 1305;
    pub const SOCKADDR: u16 = 1306;
    pub const CWD: u16 = 1307;
    pub const EXECVE: u16 = 1309;
    pub const EOE: u16 = 1320;
    pub const BPRM_FCAPS: u16 = 1321;
    pub const CAPSET: u16 = 1322;
    pub const PROCTITLE: u16 = 1327;
    pub const ANOM_ABEND: u16 = 1701;
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    #[error("empty audit record")]
    Empty,
    #[error("audit record does not start with `audit(`")]
    MissingHeader,
    #[error("audit record header is truncated")]
    TruncatedHeader,
    #[error("bad timestamp in audit record header")]
    BadTimestamp,
    #[error("bad serial in audit record header")]
    BadSerial,
    #[error("type {rtype}: field `{key}` has an unterminated quote (truncated record?)")]
    UnterminatedQuote { rtype: u16, key: String },
    #[error("type {rtype}: field `{key}` has text after its closing quote")]
    TextAfterQuote { rtype: u16, key: String },
    #[error("type {rtype}: field `{key}` is neither quoted nor valid hex (truncated record?)")]
    BadHex { rtype: u16, key: String },
}

/// One parsed record. Field values are decoded: quotes stripped, hex turned into bytes where the
/// field is hex-capable for this record type. Keys keep their kernel spelling (`a1[0]`,
/// `old-auid`). Order is the order in the record; a key may repeat (kept as given).
///
/// Storage is one byte buffer per record (the payload, with decoded hex values appended) and
/// one table of ranges into it, so parsing allocates per record, not per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub rtype: u16,
    /// Event time, Unix milliseconds (the kernel prints seconds and milliseconds).
    pub time_ms: u64,
    /// Event serial: every record of one event shares it.
    pub serial: u64,
    buf: Vec<u8>,
    fields: Vec<Field>,
    /// Fields inside `msg='...'` (user-space records), decoded the same way.
    nested: Vec<Field>,
    /// Tokens without `=` that were skipped (free text, AppArmor `(enforce)` suffixes, ...).
    pub skipped_tokens: u32,
}

/// Key and value of one field: byte ranges of [`Record::buf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    key: (u32, u32),
    value: (u32, u32),
}

impl Record {
    /// First value of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.lookup(&self.fields, key)
    }

    /// First value of `key` inside `msg='...'`.
    pub fn get_nested(&self, key: &str) -> Option<&[u8]> {
        self.lookup(&self.nested, key)
    }

    /// Every field, in record order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.fields.iter().map(|f| (self.key(f), self.value(f)))
    }

    /// How many fields the record has (outside `msg='...'`).
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// Keeps the first `n` fields (tests and fuzzing build truncated records with it).
    pub fn truncate_fields(&mut self, n: usize) {
        self.fields.truncate(n);
    }

    /// The first values of several distinct keys, found in one pass over the fields (a
    /// SYSCALL record has some 35; a lookup per key would scan them again each time).
    pub fn get_many<const N: usize>(&self, keys: [&str; N]) -> [Option<&[u8]>; N] {
        let mut out = [None; N];
        let mut left = N;
        for f in &self.fields {
            let k = &self.buf[f.key.0 as usize..f.key.1 as usize];
            if let Some(i) = keys.iter().position(|w| w.as_bytes() == k) {
                if out[i].is_none() {
                    out[i] = Some(self.value(f));
                    left -= 1;
                    if left == 0 {
                        break;
                    }
                }
            }
        }
        out
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// A decimal field (`pid=42`, `exit=-115`, `auid=4294967295`).
    pub fn get_dec<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        dec(self.get(key))
    }

    /// A hex number field without prefix (`arch=c000003e`, SYSCALL `a0=7`).
    pub fn get_hex_u64(&self, key: &str) -> Option<u64> {
        hex_u64(self.get(key))
    }

    /// Rough heap footprint, for the assembler's memory bound.
    pub fn approx_bytes(&self) -> usize {
        64 + self.buf.len() + (self.fields.len() + self.nested.len()) * 48
    }

    fn key(&self, f: &Field) -> &str {
        // Keys are validated printable ASCII when parsed.
        std::str::from_utf8(&self.buf[f.key.0 as usize..f.key.1 as usize]).unwrap_or("")
    }

    fn value(&self, f: &Field) -> &[u8] {
        &self.buf[f.value.0 as usize..f.value.1 as usize]
    }

    fn lookup(&self, fields: &[Field], key: &str) -> Option<&[u8]> {
        let key = key.as_bytes();
        fields
            .iter()
            .find(|f| &self.buf[f.key.0 as usize..f.key.1 as usize] == key)
            .map(|f| self.value(f))
    }
}

/// A decimal value (`pid=42`, `exit=-115`), as [`Record::get_dec`] reads it.
pub fn dec<T: std::str::FromStr>(v: Option<&[u8]>) -> Option<T> {
    std::str::from_utf8(v?).ok()?.parse().ok()
}

/// A hex number without prefix, as [`Record::get_hex_u64`] reads it.
pub fn hex_u64(v: Option<&[u8]>) -> Option<u64> {
    let s = std::str::from_utf8(v?).ok()?;
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// True for types whose fields feed normalized events; they are parsed strictly.
fn strict(rtype: u16) -> bool {
    use types::*;
    matches!(
        rtype,
        SYSCALL | PATH | SOCKADDR | CWD | EXECVE | EOE | PROCTITLE | ANOM_ABEND | SOCKETCALL
    )
}

/// Whether `key` of a record of type `rtype` may be hex-encoded by its writer.
/// Bytes, not `str`: it runs for every unquoted field of every record.
fn hex_capable(rtype: u16, key: &[u8]) -> bool {
    use types::*;
    match rtype {
        EXECVE => std::str::from_utf8(key).is_ok_and(is_execve_arg),
        SYSCALL | ANOM_ABEND => matches!(key, b"comm" | b"exe" | b"key"),
        PATH => key == b"name",
        CWD => key == b"cwd",
        PROCTITLE => key == b"proctitle",
        SOCKADDR => key == b"saddr",
        // SOCKETCALL a0.. are numbers.
        SOCKETCALL => false,
        _ => matches!(
            key,
            b"comm"
                | b"exe"
                | b"cwd"
                | b"name"
                | b"path"
                | b"key"
                | b"acct"
                | b"cmd"
                | b"data"
                | b"saddr"
                | b"proctitle"
                | b"ocomm"
        ),
    }
}

/// `a<N>` or `a<N>[<M>]` (not `a<N>_len`, not `argc`).
fn is_execve_arg(key: &str) -> bool {
    let Some(rest) = key.strip_prefix('a') else {
        return false;
    };
    let (num, tail) = match rest.find('[') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if tail.is_empty() {
        return true;
    }
    let Some(inner) = tail.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
        return false;
    };
    !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit())
}

/// Placeholders the kernel writes instead of a string it does not have.
fn placeholder(v: &[u8]) -> bool {
    matches!(v, b"" | b"(null)" | b"(none)" | b"?" | b"unknown")
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Decodes an even-length hex string; `None` when it is not one.
pub fn decode_hex(v: &[u8]) -> Option<Vec<u8>> {
    let n = hex_len(v)?;
    Some((0..n).map(|j| hex_byte(v[2 * j], v[2 * j + 1])).collect())
}

/// Parses one record payload of type `rtype`. Trailing NULs and newlines are ignored.
pub fn parse(rtype: u16, payload: &[u8]) -> Result<Record, RecordError> {
    let mut end = payload.len();
    while end > 0 && matches!(payload[end - 1], 0 | b'\n') {
        end -= 1;
    }
    let payload = &payload[..end];
    if payload.is_empty() {
        return Err(RecordError::Empty);
    }
    let (time_ms, serial, rest) = parse_header(payload)?;
    let mut rec = Record {
        rtype,
        time_ms,
        serial,
        // Keys and values are never longer than the text they come from.
        buf: Vec::with_capacity(rest.len()),
        fields: Vec::with_capacity(rest.iter().filter(|&&b| b == b'=').count()),
        nested: Vec::new(),
        skipped_tokens: 0,
    };
    let mut skipped = 0;
    let mut msg = None;
    let Record { buf, fields, .. } = &mut rec;
    parse_fields(
        rtype,
        strict(rtype),
        rest,
        buf,
        fields,
        &mut skipped,
        Some(&mut msg),
    )?;
    if let Some(inner) = msg {
        // Nested text comes from user space: always lenient.
        let Record { buf, nested, .. } = &mut rec;
        parse_fields(rtype, false, inner, buf, nested, &mut skipped, None)?;
    }
    rec.skipped_tokens = skipped;
    Ok(rec)
}

/// `audit(1795805362.236:6): ` -> (unix ms, serial, rest).
fn parse_header(p: &[u8]) -> Result<(u64, u64, &[u8]), RecordError> {
    let rest = if let Some(r) = p.strip_prefix(b"audit(") {
        r
    } else if b"audit(".starts_with(p) {
        return Err(RecordError::TruncatedHeader);
    } else {
        return Err(RecordError::MissingHeader);
    };
    let close = rest
        .iter()
        .position(|&b| b == b')')
        .ok_or(RecordError::TruncatedHeader)?;
    let inside = &rest[..close];
    let after = &rest[close + 1..];
    let colon = inside
        .iter()
        .position(|&b| b == b':')
        .ok_or(RecordError::BadSerial)?;
    let (stamp, serial) = (&inside[..colon], &inside[colon + 1..]);
    let serial = parse_digits(serial, 20).ok_or(RecordError::BadSerial)?;
    let dot = stamp
        .iter()
        .position(|&b| b == b'.')
        .ok_or(RecordError::BadTimestamp)?;
    let secs = parse_digits(&stamp[..dot], 20).ok_or(RecordError::BadTimestamp)?;
    let frac = &stamp[dot + 1..];
    if frac.is_empty() || frac.len() > 9 || !frac.iter().all(u8::is_ascii_digit) {
        return Err(RecordError::BadTimestamp);
    }
    // The kernel prints exactly three digits; read any 1..=9 as a decimal fraction.
    let mut ms = 0u64;
    for i in 0..3 {
        ms = ms * 10 + frac.get(i).map_or(0, |d| u64::from(d - b'0'));
    }
    let time_ms = secs
        .checked_mul(1000)
        .and_then(|v| v.checked_add(ms))
        .ok_or(RecordError::BadTimestamp)?;
    let rest = match after.strip_prefix(b":") {
        Some(r) => r,
        None if after.is_empty() => return Err(RecordError::TruncatedHeader),
        None => return Err(RecordError::MissingHeader),
    };
    Ok((time_ms, serial, rest))
}

fn parse_digits(d: &[u8], max_len: usize) -> Option<u64> {
    if d.is_empty() || d.len() > max_len {
        return None;
    }
    d.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

fn valid_key(k: &[u8]) -> bool {
    !k.is_empty()
        && k.iter()
            .all(|&b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\''))
}

/// Splits `s` into key=value fields, copying each key and its decoded value to the end of
/// `buf` and recording their ranges in `out`. `msg` receives the inner text of `msg='...'`
/// when given.
fn parse_fields<'a>(
    rtype: u16,
    strict: bool,
    s: &'a [u8],
    buf: &mut Vec<u8>,
    out: &mut Vec<Field>,
    skipped: &mut u32,
    mut msg: Option<&mut Option<&'a [u8]>>,
) -> Result<(), RecordError> {
    let n = s.len();
    let key_err = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
    let mut i = 0;
    while i < n {
        if s[i] == b' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < n && s[i] != b'=' && s[i] != b' ' {
            i += 1;
        }
        let key = &s[start..i];
        if i >= n || s[i] == b' ' || !valid_key(key) {
            // A token without `=` (or with an odd key): skip to the next space.
            while i < n && s[i] != b' ' {
                i += 1;
            }
            *skipped = skipped.saturating_add(1);
            continue;
        }
        i += 1; // '='
        let value: Value<'_> = match s.get(i) {
            Some(&q @ (b'"' | b'\'')) => {
                let body = &s[i + 1..];
                let close = if q == b'"' {
                    body.iter().position(|&b| b == b'"')
                } else {
                    // User-space text may hold single quotes: the value runs to the last one.
                    body.iter().rposition(|&b| b == b'\'')
                };
                let Some(close) = close else {
                    if strict {
                        let key = key_err(key);
                        return Err(RecordError::UnterminatedQuote { rtype, key });
                    }
                    push_field(buf, out, key, Value::Raw(body));
                    break;
                };
                let inner = &body[..close];
                i += 1 + close + 1;
                if i < n && s[i] != b' ' {
                    if strict {
                        let key = key_err(key);
                        return Err(RecordError::TextAfterQuote { rtype, key });
                    }
                    while i < n && s[i] != b' ' {
                        i += 1;
                    }
                }
                if q == b'\'' && key == b"msg" {
                    if let Some(slot) = msg.as_deref_mut() {
                        if slot.is_none() {
                            *slot = Some(inner);
                        }
                    }
                }
                Value::Raw(inner)
            }
            _ => {
                let vstart = i;
                while i < n && s[i] != b' ' {
                    i += 1;
                }
                let raw = &s[vstart..i];
                let capable = hex_capable(rtype, key);
                if capable && hex_len(raw).is_some() {
                    Value::Hex(raw)
                } else if !capable || !strict || placeholder(raw) {
                    Value::Raw(raw)
                } else {
                    let key = key_err(key);
                    return Err(RecordError::BadHex { rtype, key });
                }
            }
        };
        push_field(buf, out, key, value);
    }
    Ok(())
}

/// A field value as written in the record: to copy as is, or valid hex to decode.
enum Value<'a> {
    Raw(&'a [u8]),
    Hex(&'a [u8]),
}

fn push_field(buf: &mut Vec<u8>, out: &mut Vec<Field>, key: &[u8], value: Value<'_>) {
    // Ranges are u32; a record is one netlink datagram (far below 4 GiB).
    let at = |buf: &Vec<u8>| buf.len() as u32;
    let k0 = at(buf);
    buf.extend_from_slice(key);
    let v0 = at(buf);
    match value {
        Value::Raw(v) => buf.extend_from_slice(v),
        Value::Hex(h) => buf.extend(h.chunks_exact(2).map(|p| hex_byte(p[0], p[1]))),
    }
    out.push(Field {
        key: (k0, v0),
        value: (v0, at(buf)),
    });
}

/// The decoded length of an even-length hex string; `None` when it is not one.
fn hex_len(v: &[u8]) -> Option<usize> {
    if v.is_empty() || !v.len().is_multiple_of(2) || !v.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    Some(v.len() / 2)
}

fn hex_byte(hi: u8, lo: u8) -> u8 {
    hex_val(hi).unwrap_or(0) << 4 | hex_val(lo).unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests;
