//! Minimal, pure-Rust reader for the kernel's BTF type information.
//!
//! Rust eBPF programs carry no CO-RE relocations, so the sensor resolves the byte offsets of the
//! kernel struct members it reads from the running kernel's BTF (`/sys/kernel/btf/vmlinux`) at
//! load time and hands them to the eBPF programs.
//!
//! Only what those lookups need is kept: all types (compactly), the members of every struct and
//! union, the string table and a name index of STRUCT/UNION types. Split (module) BTF, which
//! refers to the vmlinux string table and type ids, is not supported.
//!
//! ```no_run
//! use sensor::btf::Btf;
//!
//! let btf = Btf::from_sys()?;
//! let tgid = btf.member_offset("task_struct", "tgid")?;
//! let has_loginuid = btf.has_member("task_struct", "loginuid");
//! # Ok::<(), sensor::btf::BtfError>(())
//! ```

mod error;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

pub use error::BtfError;
use parse::{kind, Member, Type};

/// Where the running kernel exposes its own BTF.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Bound on nesting (anonymous members) and modifier chains; real kernel types stay far below
/// it, and it keeps cyclic (malicious) BTF from recursing without end.
const MAX_DEPTH: usize = 64;

/// Parsed BTF: types, struct/union members, the string table and a struct/union name index.
pub struct Btf {
    /// Types in id order; id `n` is at index `n - 1`.
    types: Vec<Type>,
    /// Members of all STRUCT/UNION types, concatenated (see [`Type::extra`]).
    members: Vec<Member>,
    /// The blob as read; the string section is borrowed from it rather than copied, which
    /// keeps the start-up peak of resident memory low (see `docs/ARCHITECTURE.md#kernel-user-contract`).
    blob: Vec<u8>,
    /// Where the string section lies in `blob`.
    strings: std::ops::Range<usize>,
    /// Ids of the STRUCT/UNION to use for each name, sorted by name: the first one with
    /// members, or, failing that, the first one at all (an empty struct).
    composites: Vec<u32>,
}

/// A member found by [`Btf::find_member`].
#[derive(Clone, Copy)]
struct Found {
    /// Offset in bits from the start of the outermost struct.
    bits: u64,
    /// Whether the member itself is a bitfield.
    bitfield: bool,
}

impl Btf {
    /// Parses a BTF blob. Never panics; malformed input yields an error.
    pub fn parse(bytes: &[u8]) -> Result<Btf, BtfError> {
        Self::parse_owned(bytes.to_vec())
    }

    /// [`Btf::parse`] of a blob it keeps (its strings are used in place).
    pub fn parse_owned(blob: Vec<u8>) -> Result<Btf, BtfError> {
        let parse::Parsed {
            types,
            members,
            strings,
        } = parse::parse(&blob)?;
        let mut btf = Btf {
            types,
            members,
            blob,
            strings,
            composites: Vec::new(),
        };
        btf.build_index();
        Ok(btf)
    }

    /// Reads and parses the running kernel's BTF from `/sys/kernel/btf/vmlinux`.
    pub fn from_sys() -> Result<Btf, BtfError> {
        Self::from_path(Path::new(VMLINUX_BTF))
    }

    /// Reads and parses a raw BTF file (e.g. a copy of `/sys/kernel/btf/vmlinux`).
    pub fn from_path(path: &Path) -> Result<Btf, BtfError> {
        let bytes = std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_owned(bytes)
    }

    /// Byte offset of `member` inside the struct or union named `struct_name`.
    ///
    /// Members of anonymous (unnamed) struct/union members are searched recursively and their
    /// offsets summed (e.g. `mm_struct.arg_start` sits inside an anonymous struct on 6.x kernels;
    /// `qstr.name` follows an anonymous union). Typedef/const/volatile/restrict/type_tag wrappers
    /// around an anonymous member's type are followed. Bitfield members are an error. If several
    /// structs have that name, the first STRUCT/UNION with members is used (FWD declarations and
    /// empty definitions are skipped).
    pub fn member_offset(&self, struct_name: &str, member: &str) -> Result<u32, BtfError> {
        let t = self.find_struct(struct_name)?;
        let found = self.find_member(t, member.as_bytes(), 0)?;
        match found {
            None => Err(BtfError::MemberNotFound {
                struct_name: struct_name.to_owned(),
                member: member.to_owned(),
            }),
            Some(f) if f.bitfield || f.bits % 8 != 0 => Err(BtfError::Bitfield {
                struct_name: struct_name.to_owned(),
                member: member.to_owned(),
            }),
            Some(f) => u32::try_from(f.bits / 8).map_err(|_| BtfError::OffsetOverflow {
                struct_name: struct_name.to_owned(),
                member: member.to_owned(),
            }),
        }
    }

    /// Byte size of the struct or union named `struct_name`.
    pub fn struct_size(&self, struct_name: &str) -> Result<u32, BtfError> {
        Ok(self.find_struct(struct_name)?.size_or_type)
    }

    /// Whether the struct or union `struct_name` has `member`, directly or inside anonymous
    /// members (bitfields count). Useful for kernel-config or version dependent fields, e.g.
    /// `task_struct.loginuid` (CONFIG_AUDIT) or `start_boottime` vs `real_start_time`.
    pub fn has_member(&self, struct_name: &str, member: &str) -> bool {
        self.find_struct(struct_name)
            .and_then(|t| self.find_member(t, member.as_bytes(), 0))
            .is_ok_and(|found| found.is_some())
    }

    /// Fills [`Btf::composites`] from the named STRUCT/UNION types.
    fn build_index(&mut self) {
        // `parse` guarantees fewer than u32::MAX types, so `i + 1` fits.
        let mut ids: Vec<u32> = (0..self.types.len())
            .filter(|&i| self.types[i].is_composite() && self.types[i].name_off != 0)
            .map(|i| (i + 1) as u32)
            .collect();
        // Stable: types of one name stay in id order.
        ids.sort_by(|&a, &b| self.type_name(a).cmp(self.type_name(b)));
        let mut index: Vec<u32> = Vec::with_capacity(ids.len());
        for id in ids {
            let last = index.last().copied();
            match last {
                Some(prev) if self.type_name(prev) == self.type_name(id) => {
                    let prev_is_empty = self.ty(prev).is_ok_and(|p| p.vlen() == 0);
                    let has_members = self.ty(id).is_ok_and(|t| t.vlen() > 0);
                    if prev_is_empty && has_members {
                        *index.last_mut().expect("checked") = id;
                    }
                }
                _ => index.push(id),
            }
        }
        index.shrink_to_fit();
        self.composites = index;
    }

    /// The name of type `id` (empty when unknown or anonymous).
    fn type_name(&self, id: u32) -> &[u8] {
        self.ty(id)
            .map(|t| self.name(t.name_off))
            .unwrap_or_default()
    }

    /// The NUL-terminated string at `off` in the string section (empty if out of range).
    fn name(&self, off: u32) -> &[u8] {
        let strings = self.blob.get(self.strings.clone()).unwrap_or_default();
        let rest = strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    /// The type with id `id` (`0`, `void`, is not a stored type).
    fn ty(&self, id: u32) -> Result<&Type, BtfError> {
        (id as usize)
            .checked_sub(1)
            .and_then(|i| self.types.get(i))
            .ok_or(BtfError::BadTypeId(id))
    }

    /// The struct or union chosen for `name` (see [`Btf::composites`]).
    fn find_struct(&self, name: &str) -> Result<&Type, BtfError> {
        self.composites
            .binary_search_by(|&id| self.type_name(id).cmp(name.as_bytes()))
            .ok()
            .and_then(|i| self.ty(self.composites[i]).ok())
            .ok_or_else(|| BtfError::StructNotFound(name.to_owned()))
    }

    /// Members of a STRUCT/UNION (empty for other kinds).
    fn members_of(&self, t: &Type) -> &[Member] {
        if !t.is_composite() {
            return &[];
        }
        let start = t.extra as usize;
        start
            .checked_add(t.vlen())
            .and_then(|end| self.members.get(start..end))
            .unwrap_or_default()
    }

    /// Follows TYPEDEF/VOLATILE/CONST/RESTRICT/TYPE_TAG from `id`; `None` for `void`.
    fn resolve(&self, mut id: u32) -> Result<Option<&Type>, BtfError> {
        for _ in 0..MAX_DEPTH {
            if id == 0 {
                return Ok(None);
            }
            let t = self.ty(id)?;
            match t.kind() {
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    id = t.size_or_type;
                }
                _ => return Ok(Some(t)),
            }
        }
        Err(BtfError::TypeChainTooDeep(id))
    }

    /// Depth-first search for `name` among the members of `t`, descending into anonymous
    /// struct/union members in declaration order.
    fn find_member(&self, t: &Type, name: &[u8], depth: usize) -> Result<Option<Found>, BtfError> {
        for m in self.members_of(t) {
            let (bits, bitfield_size) = if t.kind_flag() {
                (m.offset & 0x00ff_ffff, m.offset >> 24)
            } else {
                (m.offset, 0)
            };
            if m.name_off != 0 {
                if self.name(m.name_off) == name {
                    let bitfield = bitfield_size != 0
                        || (!t.kind_flag() && self.is_int_bitfield(m.type_id)?);
                    return Ok(Some(Found {
                        bits: u64::from(bits),
                        bitfield,
                    }));
                }
                continue;
            }
            // Anonymous member: an embedded struct/union (or unnamed bitfield padding).
            let Some(inner) = self.resolve(m.type_id)? else {
                continue;
            };
            if inner.is_composite() {
                if depth + 1 >= MAX_DEPTH {
                    return Err(BtfError::TypeChainTooDeep(m.type_id));
                }
                if let Some(f) = self.find_member(inner, name, depth + 1)? {
                    return Ok(Some(Found {
                        bits: f.bits + u64::from(bits),
                        bitfield: f.bitfield,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Without kind_flag, a bitfield is encoded as an INT whose bit count is narrower than its
    /// storage or that has a non-zero bit offset.
    fn is_int_bitfield(&self, type_id: u32) -> Result<bool, BtfError> {
        Ok(match self.resolve(type_id)? {
            Some(t) if t.kind() == kind::INT => {
                let nr_bits = t.extra & 0xff;
                let bit_offset = (t.extra >> 16) & 0xff;
                bit_offset != 0 || u64::from(nr_bits) != u64::from(t.size_or_type) * 8
            }
            _ => false,
        })
    }
}

impl fmt::Debug for Btf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Btf")
            .field("types", &self.types.len())
            .field("members", &self.members.len())
            .field("strings_len", &self.strings.len())
            .field("named_structs", &self.composites.len())
            .finish()
    }
}
