//! The values of the event JSON writer ([`crate::json`]), written straight into the output
//! buffer: text, integers, bools and lists of them, the bytes serde_json would write for
//! them (docs/ARCHITECTURE.md#event-model). What has no fast path here (floats, maps, text
//! that needs escaping) goes through serde_json itself, so the output is serde_json's in
//! every case; the tests compare the two.
use std::collections::BTreeMap;

use serde::Serialize;

/// A value the generated writers hand to `Obj::num`.
pub(crate) trait Put {
    fn put(&self, out: &mut Vec<u8>);
}

/// Through serde_json (its formatting is the contract for what has no fast path).
pub(crate) fn put_serde<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing strings, numbers, lists and string-keyed maps into a Vec cannot fail (a
    // non-finite float becomes null).
    let _ = serde_json::to_writer(out, v);
}

/// Whether serde_json escapes byte `b` in a string: `"`, `\` and the controls below 0x20.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte of `s` needs escaping, eight bytes at a time: in each word, a byte below
/// 0x20, or one equal to `"` or `\`, leaves its top bit set in `(x - 0x01..) & !x & 0x80..`
/// (the classic "has a byte less than n" test: exact for whether one exists, for n <= 128).
fn any_needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const TOPS: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & TOPS;
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        if below(x, 0x20)
            | below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            != 0
        {
            return true;
        }
    }
    words.remainder().iter().any(|&b| needs_escape(b))
}

/// A JSON string: quoted as is when nothing in it needs escaping (nearly always), else
/// escaped by serde_json.
#[inline]
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    if any_needs_escape(s.as_bytes()) {
        return put_serde(out, s);
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Decimal digits of `n`, written in place at the end of `out` (no intermediate buffer).
#[inline]
pub(crate) fn put_u64(out: &mut Vec<u8>, mut n: u64) {
    let digits = n.checked_ilog10().map_or(1, |l| l as usize + 1);
    out.reserve(digits);
    let len = out.len();
    let spare = &mut out.spare_capacity_mut()[..digits];
    for slot in spare.iter_mut().rev() {
        slot.write(b'0' + (n % 10) as u8);
        n /= 10;
    }
    // SAFETY: the `digits` bytes after `len` were reserved and have just been written.
    unsafe { out.set_len(len + digits) };
}

#[inline]
pub(crate) fn put_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    put_u64(out, n.unsigned_abs());
}

/// `Put` for types that one function writes, given the value widened to its argument type.
macro_rules! put_with {
    ($write:ident($wide:ty): $($t:ty),+) => {$(
        impl Put for $t {
            #[inline]
            fn put(&self, out: &mut Vec<u8>) {
                $write(out, <$wide>::from(*self));
            }
        }
    )+};
}

put_with!(put_u64(u64): u64, u32);
put_with!(put_i64(i64): i64, i32);

impl Put for bool {
    #[inline]
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

/// Floats through serde_json (its shortest round-trip digits; null when not finite).
fn put_float<T: Serialize>(out: &mut Vec<u8>, v: T) {
    put_serde(out, &v);
}

put_with!(put_float(f64): f64);
put_with!(put_float(f32): f32);

impl Put for String {
    #[inline]
    fn put(&self, out: &mut Vec<u8>) {
        put_str(out, self);
    }
}

impl<T: Put> Put for [T] {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            v.put(out);
        }
        out.push(b']');
    }
}

impl<T: Put> Put for Vec<T> {
    #[inline]
    fn put(&self, out: &mut Vec<u8>) {
        self.as_slice().put(out);
    }
}

impl<K: Serialize, V: Serialize> Put for BTreeMap<K, V> {
    fn put(&self, out: &mut Vec<u8>) {
        put_serde(out, self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast<T: Put + ?Sized>(v: &T) -> Vec<u8> {
        let mut out = b"x".to_vec();
        v.put(&mut out);
        out
    }

    fn serde<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
        let mut out = b"x".to_vec();
        put_serde(&mut out, v);
        out
    }

    #[test]
    fn integers_are_serde_jsons() {
        let mut cases: Vec<i64> = vec![0, 1, 9, 10, 99, 100, i64::MAX, i64::MIN, -1, -10];
        for p in 0..19 {
            let t = 10i64.pow(p);
            cases.extend([t - 1, t, t + 1, -t, -t + 1, -t - 1]);
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            cases.push(x as i64);
            cases.push((x >> (x % 64)) as i64);
        }
        for n in cases {
            assert_eq!(fast(&n), serde(&n), "{n}");
            assert_eq!(fast(&(n as u64)), serde(&(n as u64)), "{n}");
            assert_eq!(fast(&(n as i32)), serde(&(n as i32)), "{n}");
            assert_eq!(fast(&(n as u32)), serde(&(n as u32)), "{n}");
        }
        assert_eq!(fast(&u64::MAX), serde(&u64::MAX));
    }

    #[test]
    fn strings_are_serde_jsons() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "/usr/bin/true".into(),
            "a\"b".into(),
            "back\\slash".into(),
            "tab\tnew\nline\r".into(),
            "é ü 日本 \u{7f} \u{2028} /".into(),
        ];
        // Every byte value below 0x80, alone and inside text, and every char up to 0x800.
        for b in 0u8..0x80 {
            cases.push(char::from(b).to_string());
            cases.push(format!("pre{}post", char::from(b)));
        }
        cases.push((0..0x800u32).filter_map(char::from_u32).collect());
        // Each byte that needs escaping, and its neighbours that do not, at every position of
        // the eight-byte words and the tail.
        for b in [0u8, 0x1f, b'"', b'\\', 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f] {
            for at in 0..20 {
                let mut t = "é".repeat(10).into_bytes();
                t.truncate(20);
                t[at] = b;
                cases.push(String::from_utf8_lossy(&t).into_owned());
            }
        }
        for s in &cases {
            assert_eq!(fast(s), serde(s), "{s:?}");
        }
        assert_eq!(fast(&cases), serde(&cases));
        assert_eq!(fast(&Vec::<String>::new()), serde(&Vec::<String>::new()));
    }

    #[test]
    fn other_values_are_serde_jsons() {
        for b in [true, false] {
            assert_eq!(fast(&b), serde(&b));
        }
        for f in [0.0, -0.5, 1e300, f64::NAN, f64::INFINITY, 0.1 + 0.2] {
            assert_eq!(fast(&f), serde(&f));
            assert_eq!(fast(&(f as f32)), serde(&(f as f32)));
        }
        assert_eq!(fast(&vec![1u32, 2, 3]), serde(&vec![1u32, 2, 3]));
        let m: BTreeMap<&str, u64> = [("b", 2), ("a\"", 1)].into_iter().collect();
        assert_eq!(fast(&m), serde(&m));
    }
}
