//! Error type for BTF loading, parsing and lookups.

use std::path::PathBuf;

/// Everything that can go wrong while reading, decoding or querying BTF.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The BTF file could not be read.
    #[error("btf: failed to read {}: {source}", path.display())]
    Io {
        /// File that was being read.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The blob does not start with the BTF magic in either byte order.
    #[error("btf: bad magic {0:#06x} (expected 0xeb9f)")]
    BadMagic(u16),

    /// The header declares a BTF version this parser does not understand.
    #[error("btf: unsupported version {0} (expected 1)")]
    UnsupportedVersion(u8),

    /// The header's `hdr_len` is smaller than the fixed 24-byte header.
    #[error("btf: header length {0} is smaller than the minimum of 24 bytes")]
    BadHeaderLen(u32),

    /// The input ends before a structure that must be present.
    #[error(
        "btf: truncated {what}: need {needed} bytes at offset {offset}, \
         but the data ends at offset {end}"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Absolute byte offset in the input where the read started.
        offset: usize,
        /// Number of bytes required at `offset`.
        needed: usize,
        /// Absolute offset where the data being read ends (input or type section end).
        end: usize,
    },

    /// A section described by the header lies (partly) outside the input.
    #[error(
        "btf: {section} section (offset {offset}, length {len}) exceeds the \
         {available} bytes following the header"
    )]
    SectionOutOfBounds {
        /// `"type"` or `"string"`.
        section: &'static str,
        /// Section offset relative to the end of the header.
        offset: u32,
        /// Section length.
        len: u32,
        /// Bytes available after the header.
        available: usize,
    },

    /// A type uses a kind this parser does not know, so its size is unknown.
    #[error("btf: type {id} has unknown kind {kind}")]
    UnknownKind {
        /// Type id (ids start at 1).
        id: u32,
        /// Raw kind value.
        kind: u8,
    },

    /// A name offset points outside the string section.
    #[error("btf: string offset {offset} out of bounds (string section is {len} bytes)")]
    BadStringOffset {
        /// Offending offset.
        offset: u32,
        /// Length of the string section.
        len: usize,
    },

    /// The string section does not end with a NUL byte.
    #[error("btf: string section is not NUL-terminated")]
    UnterminatedStrings,

    /// The input holds more types or members than fit in 32-bit ids.
    #[error("btf: too many types or members")]
    TooManyTypes,

    /// A type refers to a type id that does not exist.
    #[error("btf: type id {0} does not exist")]
    BadTypeId(u32),

    /// Following type references went deeper than any sane kernel type (likely a cycle).
    #[error("btf: type chain too deep at type {0} (cyclic types?)")]
    TypeChainTooDeep(u32),

    /// No STRUCT or UNION with this name exists.
    #[error("btf: struct `{0}` not found")]
    StructNotFound(String),

    /// The struct exists but has no member with this name (also in anonymous members).
    #[error("btf: member `{member}` not found in struct `{struct_name}`")]
    MemberNotFound {
        /// Struct or union that was searched.
        struct_name: String,
        /// Member that was looked for.
        member: String,
    },

    /// The member is a bitfield and therefore has no byte offset.
    #[error("btf: member `{member}` of `{struct_name}` is a bitfield")]
    Bitfield {
        /// Struct or union containing the member.
        struct_name: String,
        /// The bitfield member.
        member: String,
    },

    /// The member's byte offset does not fit in a `u32`.
    #[error("btf: offset of member `{member}` of `{struct_name}` overflows u32")]
    OffsetOverflow {
        /// Struct or union containing the member.
        struct_name: String,
        /// The member.
        member: String,
    },
}
