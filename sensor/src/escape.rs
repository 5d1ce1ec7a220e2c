//! Lossless text for kernel bytes that may not be UTF-8 (argv, paths, comm).
//!
//! Valid UTF-8 passes through unchanged except `\`, which becomes `\\`. Every byte that is
//! not part of valid UTF-8 becomes `\xNN`. The result can be turned back into the original
//! bytes with [`unescape_bytes`], so nothing the kernel gave is replaced or dropped.

/// Escapes `bytes` as described in the module documentation.
pub fn escape_bytes(bytes: &[u8]) -> String {
    // The common case, valid UTF-8 without a backslash, is one copy.
    if let Ok(text) = std::str::from_utf8(bytes) {
        if !text.contains('\\') {
            return text.to_owned();
        }
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        let mut rest = chunk.valid();
        while let Some(i) = rest.find('\\') {
            out.push_str(&rest[..i]);
            out.push_str("\\\\");
            rest = &rest[i + 1..];
        }
        out.push_str(rest);
        for b in chunk.invalid() {
            out.push_str("\\x");
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0xf));
        }
    }
    out
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(n & 0xf)])
}

/// Inverse of [`escape_bytes`]. Returns `None` for text that escape_bytes cannot produce.
pub fn unescape_bytes(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1)? {
            b'\\' => {
                out.push(b'\\');
                i += 2;
            }
            b'x' => {
                let hex = text.get(i + 2..i + 4)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Bytes up to the first NUL (or all of them).
pub fn until_nul(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(n) => &bytes[..n],
        None => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_passes_through() {
        assert_eq!(
            escape_bytes("héllo wörld \"q\"".as_bytes()),
            "héllo wörld \"q\""
        );
        assert_eq!(escape_bytes(b""), "");
    }

    #[test]
    fn invalid_bytes_are_hex_escaped() {
        assert_eq!(escape_bytes(b"a\xffb"), "a\\xffb");
        assert_eq!(escape_bytes(b"\xc3"), "\\xc3");
        assert_eq!(escape_bytes(b"\xe2\x82"), "\\xe2\\x82");
    }

    #[test]
    fn backslash_is_doubled_so_escaping_is_unambiguous() {
        assert_eq!(escape_bytes(b"\\xff"), "\\\\xff");
        assert_ne!(escape_bytes(b"\\xff"), escape_bytes(b"\xff"));
        assert_eq!(escape_bytes(b"a\\b\xffc\\"), "a\\\\b\\xffc\\\\");
    }

    #[test]
    fn round_trip_all_byte_values() {
        let all: Vec<u8> = (0..=255u8)
            .chain(b"\\x00 \xf0\x9f\x98\x80".iter().copied())
            .collect();
        assert_eq!(unescape_bytes(&escape_bytes(&all)).unwrap(), all);
    }

    #[test]
    fn unescape_rejects_garbage() {
        assert_eq!(unescape_bytes("\\q"), None);
        assert_eq!(unescape_bytes("\\x1"), None);
        assert_eq!(unescape_bytes("\\"), None);
    }

    #[test]
    fn until_nul_stops_at_first_nul() {
        assert_eq!(until_nul(b"bash\0\0junk"), b"bash");
        assert_eq!(until_nul(b"full"), b"full");
    }
}
