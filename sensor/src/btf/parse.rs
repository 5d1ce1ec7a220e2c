//! Decoding of a raw BTF blob: header, type section and string section.
//!
//! The layout follows `include/uapi/linux/btf.h`. Both byte orders are accepted: the magic
//! `0xEB9F` read as little-endian selects little-endian, read as `0x9FEB` it selects big-endian.
//! Every read is bounds-checked, so malformed input yields a [`BtfError`], never a panic.

use super::error::BtfError;

/// `BTF_MAGIC` as it appears when the blob's byte order matches the reader's.
const MAGIC: u16 = 0xEB9F;
/// The only BTF version defined so far.
const VERSION: u8 = 1;
/// Size of `struct btf_header` (the fixed part every version has).
const HEADER_LEN: usize = 24;
/// Size of `struct btf_type`.
const TYPE_LEN: usize = 12;
/// Size of `struct btf_member`.
const MEMBER_LEN: usize = 12;

/// BTF type kinds (`BTF_KIND_*`).
pub(super) mod kind {
    pub const INT: u8 = 1;
    pub const PTR: u8 = 2;
    pub const ARRAY: u8 = 3;
    pub const STRUCT: u8 = 4;
    pub const UNION: u8 = 5;
    pub const ENUM: u8 = 6;
    pub const FWD: u8 = 7;
    pub const TYPEDEF: u8 = 8;
    pub const VOLATILE: u8 = 9;
    pub const CONST: u8 = 10;
    pub const RESTRICT: u8 = 11;
    pub const FUNC: u8 = 12;
    pub const FUNC_PROTO: u8 = 13;
    pub const VAR: u8 = 14;
    pub const DATASEC: u8 = 15;
    pub const FLOAT: u8 = 16;
    pub const DECL_TAG: u8 = 17;
    pub const TYPE_TAG: u8 = 18;
    pub const ENUM64: u8 = 19;
}

/// One decoded `struct btf_type`, trimmed to what lookups need.
#[derive(Clone, Copy, Debug)]
pub(super) struct Type {
    /// Offset of the type's name in the string section (0 = anonymous).
    pub name_off: u32,
    /// Raw `info` word: vlen, kind and kind_flag.
    pub info: u32,
    /// `size` for INT/STRUCT/UNION/…, referenced type id for PTR/TYPEDEF/CONST/….
    pub size_or_type: u32,
    /// STRUCT/UNION: index of the first member in [`Parsed::members`];
    /// INT: the encoding word (bits, offset, encoding); otherwise 0.
    pub extra: u32,
}

impl Type {
    /// The `BTF_KIND_*` value.
    pub fn kind(&self) -> u8 {
        ((self.info >> 24) & 0x1f) as u8
    }

    /// Number of trailing records (members, enumerators, parameters, …).
    pub fn vlen(&self) -> usize {
        (self.info & 0xffff) as usize
    }

    /// Kind-specific flag; for STRUCT/UNION it means member offsets carry bitfield sizes.
    pub fn kind_flag(&self) -> bool {
        self.info >> 31 != 0
    }

    /// Whether this is a STRUCT or UNION.
    pub fn is_composite(&self) -> bool {
        matches!(self.kind(), kind::STRUCT | kind::UNION)
    }
}

/// One decoded `struct btf_member`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Member {
    /// Offset of the member's name in the string section (0 = anonymous).
    pub name_off: u32,
    /// Type id of the member.
    pub type_id: u32,
    /// Bit offset; with the parent's kind_flag set, the top 8 bits are the bitfield size.
    pub offset: u32,
}

/// Result of decoding a blob.
pub(super) struct Parsed {
    /// Types in id order; id `n` is at index `n - 1` (id 0 is the implicit `void`).
    pub types: Vec<Type>,
    /// Members of all STRUCT/UNION types, concatenated.
    pub members: Vec<Member>,
    /// Where the string section lies in the blob (not copied).
    pub strings: std::ops::Range<usize>,
}

/// Bounds-checked, byte-order-aware reads from the input.
#[derive(Clone, Copy)]
struct Reader<'a> {
    data: &'a [u8],
    big_endian: bool,
}

impl<'a> Reader<'a> {
    /// `len` bytes at absolute `offset`, or a [`BtfError::Truncated`] describing `what`.
    fn bytes(&self, offset: usize, len: usize, what: &'static str) -> Result<&'a [u8], BtfError> {
        offset
            .checked_add(len)
            .and_then(|end| self.data.get(offset..end))
            .ok_or(BtfError::Truncated {
                what,
                offset,
                needed: len,
                end: self.data.len(),
            })
    }

    fn u32(&self, offset: usize, what: &'static str) -> Result<u32, BtfError> {
        let b = self.bytes(offset, 4, what)?;
        Ok(self.word(b))
    }

    /// Decodes a 4-byte slice (callers guarantee the length).
    fn word(&self, b: &[u8]) -> u32 {
        let arr = [b[0], b[1], b[2], b[3]];
        if self.big_endian {
            u32::from_be_bytes(arr)
        } else {
            u32::from_le_bytes(arr)
        }
    }
}

/// Absolute `(start, end)` of a section whose offset is relative to the end of the header.
///
/// The caller guarantees `hdr_len <= data_len`.
fn section(
    data_len: usize,
    hdr_len: usize,
    off: u32,
    len: u32,
    name: &'static str,
) -> Result<(usize, usize), BtfError> {
    let available = data_len - hdr_len;
    if u64::from(off) + u64::from(len) > available as u64 {
        return Err(BtfError::SectionOutOfBounds {
            section: name,
            offset: off,
            len,
            available,
        });
    }
    let start = hdr_len + off as usize;
    Ok((start, start + len as usize))
}

/// Checks that `off` names a string inside a section of `len` bytes.
fn check_str(off: u32, len: usize) -> Result<(), BtfError> {
    if off == 0 || (off as usize) < len {
        Ok(())
    } else {
        Err(BtfError::BadStringOffset { offset: off, len })
    }
}

/// Size in bytes of the kind-specific data following a `btf_type`, or `None` for unknown kinds.
fn trailing_len(kind: u8, vlen: usize) -> Option<usize> {
    Some(match kind {
        kind::PTR
        | kind::FWD
        | kind::TYPEDEF
        | kind::VOLATILE
        | kind::CONST
        | kind::RESTRICT
        | kind::FUNC
        | kind::FLOAT
        | kind::TYPE_TAG => 0,
        kind::INT | kind::VAR | kind::DECL_TAG => 4,
        kind::ARRAY => 12,
        kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => vlen * 12,
        kind::ENUM | kind::FUNC_PROTO => vlen * 8,
        _ => return None,
    })
}

/// Decodes a complete BTF blob.
pub(super) fn parse(data: &[u8]) -> Result<Parsed, BtfError> {
    let magic_bytes = Reader {
        data,
        big_endian: false,
    }
    .bytes(0, 2, "header")?;
    let magic = u16::from_le_bytes([magic_bytes[0], magic_bytes[1]]);
    let big_endian = if magic == MAGIC {
        false
    } else if magic == MAGIC.swap_bytes() {
        true
    } else {
        return Err(BtfError::BadMagic(magic));
    };
    let r = Reader { data, big_endian };

    let header = r.bytes(0, HEADER_LEN, "header")?;
    if header[2] != VERSION {
        return Err(BtfError::UnsupportedVersion(header[2]));
    }
    let hdr_len = r.u32(4, "header")?;
    if (hdr_len as usize) < HEADER_LEN {
        return Err(BtfError::BadHeaderLen(hdr_len));
    }
    // Newer kernels may append header fields; make sure they are present, then skip them.
    r.bytes(0, hdr_len as usize, "header")?;
    let hdr_len = hdr_len as usize;
    let type_off = r.u32(8, "header")?;
    let type_len = r.u32(12, "header")?;
    let str_off = r.u32(16, "header")?;
    let str_len = r.u32(20, "header")?;

    let (types_start, types_end) = section(data.len(), hdr_len, type_off, type_len, "type")?;
    let (str_start, str_end) = section(data.len(), hdr_len, str_off, str_len, "string")?;
    let strings = &data[str_start..str_end];
    if strings.last().is_some_and(|&b| b != 0) {
        return Err(BtfError::UnterminatedStrings);
    }

    // Only the type section may be read from here on: a type running past its end is truncated.
    let tr = Reader {
        data: &data[..types_end],
        big_endian,
    };
    let mut types = Vec::with_capacity(type_len as usize / (TYPE_LEN + 4));
    let mut members = Vec::new();
    let mut pos = types_start;
    while pos < types_end {
        let id = u32::try_from(types.len() + 1).map_err(|_| BtfError::TooManyTypes)?;
        let head = tr.bytes(pos, TYPE_LEN, "type")?;
        let mut t = Type {
            name_off: tr.word(&head[0..4]),
            info: tr.word(&head[4..8]),
            size_or_type: tr.word(&head[8..12]),
            extra: 0,
        };
        check_str(t.name_off, strings.len())?;
        let kind = t.kind();
        let extra_len = trailing_len(kind, t.vlen()).ok_or(BtfError::UnknownKind { id, kind })?;
        let body = tr.bytes(pos + TYPE_LEN, extra_len, "type data")?;
        match kind {
            kind::INT => t.extra = tr.word(body),
            kind::STRUCT | kind::UNION => {
                t.extra = u32::try_from(members.len()).map_err(|_| BtfError::TooManyTypes)?;
                for m in body.chunks_exact(MEMBER_LEN) {
                    let member = Member {
                        name_off: tr.word(&m[0..4]),
                        type_id: tr.word(&m[4..8]),
                        offset: tr.word(&m[8..12]),
                    };
                    check_str(member.name_off, strings.len())?;
                    members.push(member);
                }
            }
            _ => {}
        }
        types.push(t);
        pos += TYPE_LEN + extra_len;
    }

    Ok(Parsed {
        types,
        members,
        strings: str_start..str_end,
    })
}
