//! `struct audit_rule_data` (include/uapi/linux/audit.h), built and parsed as bytes (pure).

pub const AUDIT_BITMASK_SIZE: usize = 64;
pub const AUDIT_MAX_FIELDS: usize = 64;
/// flags, action, field_count, mask[64], fields[64], values[64], fieldflags[64], buflen.
pub const RULE_FIXED_LEN: usize = 4 * (3 + AUDIT_BITMASK_SIZE + 3 * AUDIT_MAX_FIELDS + 1);

pub const AUDIT_FILTER_EXIT: u32 = 0x04;
pub const AUDIT_ALWAYS: u32 = 2;
pub const AUDIT_EQUAL: u32 = 0x4000_0000;
/// `field & value` is not zero (`-F a0&2`).
pub const AUDIT_BIT_MASK: u32 = 0x0800_0000;
pub const AUDIT_LESS_THAN: u32 = 0x1000_0000;
pub const AUDIT_ARCH: u32 = 11;
pub const AUDIT_ARG0: u32 = 200;
pub const AUDIT_FILTERKEY: u32 = 210;
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("audit rule of {0} bytes is shorter than the {RULE_FIXED_LEN}-byte header")]
    Short(usize),
    #[error("audit rule claims {claimed} string bytes but carries {have}")]
    BadBuflen { claimed: u32, have: usize },
    #[error("audit rule has {0} fields (max {AUDIT_MAX_FIELDS})")]
    TooManyFields(u32),
}

/// One exit-filter rule: syscalls, `field op value` conditions and an optional key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub flags: u32,
    pub action: u32,
    pub syscalls: Vec<u32>,
    /// (field, op, value) for numeric fields.
    pub fields: Vec<(u32, u32, u32)>,
    pub key: Option<String>,
}

impl Rule {
    /// `-a always,exit -F arch=<arch> -S <syscalls> [-F a0=<a0>] -k <key>`.
    pub fn exit_always(arch: u32, syscalls: &[u32], a0: Option<u32>, key: &str) -> Rule {
        let mut fields = vec![(AUDIT_ARCH, AUDIT_EQUAL, arch)];
        if let Some(v) = a0 {
            fields.push((AUDIT_ARG0, AUDIT_EQUAL, v));
        }
        Rule {
            flags: AUDIT_FILTER_EXIT,
            action: AUDIT_ALWAYS,
            syscalls: syscalls.to_vec(),
            fields,
            key: Some(key.to_string()),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut mask = [0u32; AUDIT_BITMASK_SIZE];
        for &nr in &self.syscalls {
            if let Some(word) = mask.get_mut((nr / 32) as usize) {
                *word |= 1 << (nr % 32);
            }
        }
        let mut fields = [0u32; AUDIT_MAX_FIELDS];
        let mut values = [0u32; AUDIT_MAX_FIELDS];
        let mut fieldflags = [0u32; AUDIT_MAX_FIELDS];
        let mut n = 0;
        for &(f, op, v) in self.fields.iter().take(AUDIT_MAX_FIELDS - 1) {
            fields[n] = f;
            fieldflags[n] = op;
            values[n] = v;
            n += 1;
        }
        let key = self.key.as_deref().unwrap_or("").as_bytes();
        if self.key.is_some() {
            fields[n] = AUDIT_FILTERKEY;
            fieldflags[n] = AUDIT_EQUAL;
            values[n] = key.len() as u32;
            n += 1;
        }
        let mut out = Vec::with_capacity(RULE_FIXED_LEN + key.len());
        let mut put = |v: u32| out.extend_from_slice(&v.to_ne_bytes());
        put(self.flags);
        put(self.action);
        put(n as u32);
        mask.iter().for_each(|&v| put(v));
        fields.iter().for_each(|&v| put(v));
        values.iter().for_each(|&v| put(v));
        fieldflags.iter().for_each(|&v| put(v));
        put(key.len() as u32);
        out.extend_from_slice(key);
        out
    }

    pub fn parse(b: &[u8]) -> Result<Rule, RuleError> {
        if b.len() < RULE_FIXED_LEN {
            return Err(RuleError::Short(b.len()));
        }
        let word =
            |i: usize| u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        let count = word(2);
        if count as usize > AUDIT_MAX_FIELDS {
            return Err(RuleError::TooManyFields(count));
        }
        let mask_at = 3;
        let fields_at = mask_at + AUDIT_BITMASK_SIZE;
        let values_at = fields_at + AUDIT_MAX_FIELDS;
        let flags_at = values_at + AUDIT_MAX_FIELDS;
        let buflen = word(flags_at + AUDIT_MAX_FIELDS);
        let buf = &b[RULE_FIXED_LEN..];
        if buflen as usize > buf.len() {
            return Err(RuleError::BadBuflen {
                claimed: buflen,
                have: buf.len(),
            });
        }
        let mut syscalls = Vec::new();
        for w in 0..AUDIT_BITMASK_SIZE {
            let m = word(mask_at + w);
            for bit in 0..32 {
                if m & (1 << bit) != 0 {
                    syscalls.push((w * 32 + bit) as u32);
                }
            }
        }
        let mut fields = Vec::new();
        let mut key = None;
        let mut str_off = 0usize;
        for i in 0..count as usize {
            let (f, v, op) = (word(fields_at + i), word(values_at + i), word(flags_at + i));
            if f == AUDIT_FILTERKEY {
                let end = (str_off + v as usize).min(buf.len());
                key = Some(String::from_utf8_lossy(&buf[str_off.min(end)..end]).into_owned());
                str_off = end;
            } else {
                fields.push((f, op, v));
            }
        }
        Ok(Rule {
            flags: word(0),
            action: word(1),
            syscalls,
            fields,
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Rule::exit_always(AUDIT_ARCH_X86_64, &[59, 322, 231, 42], Some(2), "sensor");
        let b = r.to_bytes();
        assert_eq!(b.len(), RULE_FIXED_LEN + 6);
        let p = Rule::parse(&b).unwrap();
        assert_eq!(p.key.as_deref(), Some("sensor"));
        assert_eq!(p.syscalls, vec![42, 59, 231, 322]);
        assert_eq!(
            p.fields,
            vec![
                (AUDIT_ARCH, AUDIT_EQUAL, AUDIT_ARCH_X86_64),
                (AUDIT_ARG0, AUDIT_EQUAL, 2)
            ]
        );
        assert_eq!((p.flags, p.action), (AUDIT_FILTER_EXIT, AUDIT_ALWAYS));
    }

    #[test]
    fn malformed_rules() {
        assert_eq!(Rule::parse(&[0; 10]), Err(RuleError::Short(10)));
        let mut b = Rule::exit_always(AUDIT_ARCH_I386, &[11], None, "k").to_bytes();
        b.truncate(RULE_FIXED_LEN);
        assert!(matches!(Rule::parse(&b), Err(RuleError::BadBuflen { .. })));
        let mut b = Rule::exit_always(AUDIT_ARCH_I386, &[11], None, "k").to_bytes();
        b[8..12].copy_from_slice(&99u32.to_ne_bytes());
        assert_eq!(Rule::parse(&b), Err(RuleError::TooManyFields(99)));
    }
}
