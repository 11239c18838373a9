//! A reader of raw BTF (the kernel's `btf.rst` format) for the few questions
//! start-up asks: a struct member's offset, whether a function or a
//! `btf_trace_*` typedef exists, an enumerator's value.
//!
//! Why not a general BTF crate: they decode every type and intern every name
//! up front (btf-rs: 0.2-0.5 s for vmlinux on the host, seconds under TCG),
//! where start-up needs about forty lookups. This reader indexes the type
//! records in one pass without decoding them, finds a name's string offset
//! with one substring search, and compares 32-bit name offsets.

use memchr::memmem;

const MAGIC: u16 = 0xeb9f;
const HEADER_MIN: usize = 24;

// Kinds (btf_type.info bits 24-28) whose records we read or skip.
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
pub(super) const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
pub(super) const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;
const KIND_MAX: u32 = 19;

/// String offset -> index of a wanted name ([`RawBtf::string_offsets`]).
pub type StrOffsets = hashbrown::HashMap<u32, usize>;

/// One BTF blob: vmlinux's, a module's split BTF over it, or a `--btf` file.
pub struct RawBtf {
    data: Vec<u8>,
    strs: std::ops::Range<usize>,
    /// Byte offset (in `data`) of each type record, in id order from `first_id`.
    offsets: Vec<u32>,
    /// Each record's name offset, beside it for a cache-friendly scan.
    names: Vec<u32>,
    /// 1 for a base; the base's type count + 1 for split BTF.
    first_id: u32,
    /// String offsets below this are the base's (split BTF), 0 for a base.
    str_base: u32,
}

impl std::fmt::Debug for RawBtf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RawBtf {{ types: {}, first_id: {}, bytes: {} }}",
            self.offsets.len(),
            self.first_id,
            self.data.len()
        )
    }
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl RawBtf {
    /// Index `data`; `base` for module (split) BTF. A malformed blob is an
    /// error naming what is wrong, never a panic.
    pub fn parse(data: Vec<u8>, base: Option<&RawBtf>) -> Result<Self, String> {
        if data.len() < HEADER_MIN || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err("not raw BTF (no 0xeb9f magic; big-endian BTF is not supported)".into());
        }
        let h = |i: usize| u32_at(&data, 4 + 4 * i).map_or(0, |v| v as usize);
        let (hdr_len, type_off, type_len, str_off, str_len) = (h(0), h(1), h(2), h(3), h(4));
        let types = hdr_len + type_off..hdr_len + type_off + type_len;
        let strs = hdr_len + str_off..hdr_len + str_off + str_len;
        if hdr_len < HEADER_MIN || types.end > data.len() || strs.end > data.len() {
            return Err("truncated BTF (sections run past the end)".into());
        }
        let (first_id, str_base) = match base {
            Some(b) => (
                b.first_id + u32::try_from(b.offsets.len()).unwrap_or(u32::MAX),
                b.str_base + b.str_len(),
            ),
            None => (1, 0),
        };
        let mut offsets = Vec::with_capacity(type_len / 16);
        let mut names = Vec::with_capacity(type_len / 16);
        let mut at = types.start;
        while at < types.end {
            let (Some(name), Some(info)) = (u32_at(&data, at), u32_at(&data, at + 4)) else {
                return Err(format!("truncated type record at byte {at}"));
            };
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                k if k == 0 || k > KIND_MAX => {
                    return Err(format!("unknown BTF kind {k} at byte {at}"))
                }
                _ => 0,
            };
            offsets.push(u32::try_from(at).map_err(|_| "BTF over 4 GiB")?);
            names.push(name);
            at += 12 + extra;
        }
        if at != types.end {
            return Err("the last type record runs past the type section".into());
        }
        Ok(Self {
            data,
            strs,
            offsets,
            names,
            first_id,
            str_base,
        })
    }

    fn str_len(&self) -> u32 {
        u32::try_from(self.strs.len()).unwrap_or(u32::MAX)
    }

    /// The name at string offset `off` (split BTF: below `str_base` is the base's).
    fn name<'a>(&'a self, base: Option<&'a RawBtf>, off: u32) -> &'a [u8] {
        let (btf, off) = match base {
            Some(b) if off < self.str_base => (b, off),
            _ => (self, off - self.str_base),
        };
        let s = &btf.data[btf.strs.clone()];
        let rest = s.get(off as usize..).unwrap_or_default();
        &rest[..memchr::memchr(0, rest).unwrap_or(rest.len())]
    }

    /// String offset of `name` in this blob's own strings, if present.
    fn own_str(&self, name: &str) -> Option<u32> {
        let s = &self.data[self.strs.clone()];
        let mut needle = Vec::with_capacity(name.len() + 2);
        needle.push(0);
        needle.extend_from_slice(name.as_bytes());
        needle.push(0);
        // Strings are deduplicated, so the first exact match is the only one.
        memmem::find(s, &needle).map(|p| self.str_base + u32::try_from(p + 1).unwrap_or(u32::MAX))
    }

    /// Ids of this blob's types named `name` (split BTF also matches names
    /// stored in the base's strings).
    pub fn ids_named(&self, base: Option<&RawBtf>, name: &str) -> Vec<u32> {
        let offs: Vec<u32> = [self.own_str(name), base.and_then(|b| b.own_str(name))]
            .into_iter()
            .flatten()
            .collect();
        let mut out = Vec::new();
        for (i, n) in self.names.iter().enumerate() {
            if offs.contains(n) {
                out.push(self.first_id + u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        out
    }

    /// Ids of this blob's types for each of `wanted` that it names: one walk
    /// of the strings and one of the type records, where [`Self::ids_named`]
    /// walks both per name (start-up asks about a hundred names; under TCG
    /// each walk costs milliseconds). Start-up itself walks the base's
    /// strings once for every module ([`Self::string_offsets`]).
    #[cfg(test)]
    pub fn index_names(
        &self,
        base: Option<&RawBtf>,
        wanted: &[&str],
    ) -> std::collections::HashMap<String, Vec<u32>> {
        let own = self.string_offsets(wanted);
        match base {
            Some(b) => self.index_offsets(&[&own, &b.string_offsets(wanted)], wanted),
            None => self.index_offsets(&[&own], wanted),
        }
    }

    /// String offset -> index in `wanted`, for the names this blob's own
    /// strings hold: one walk of them. A module's split BTF also names types
    /// with the base's strings: its caller walks the base's once for all
    /// modules ([`Self::index_offsets`]).
    pub fn string_offsets(&self, wanted: &[&str]) -> StrOffsets {
        let mut lens = [false; 256];
        let mut by_name: hashbrown::HashMap<&[u8], usize> =
            hashbrown::HashMap::with_capacity(wanted.len());
        for (i, w) in wanted.iter().enumerate() {
            lens[w.len().min(255)] = true;
            by_name.entry(w.as_bytes()).or_insert(i);
        }
        let strs = &self.data[self.strs.clone()];
        let mut out = StrOffsets::default();
        let mut at = 0;
        for end in memchr::memchr_iter(0, strs) {
            let s = &strs[at..end];
            if lens[s.len().min(255)] {
                if let Some(&i) = by_name.get(s) {
                    out.insert(self.str_base + u32::try_from(at).unwrap_or(u32::MAX), i);
                }
            }
            at = end + 1;
        }
        out
    }

    /// Ids of this blob's types whose name offset is in one of `offs`
    /// (from [`Self::string_offsets`] of this blob and of its base), by name.
    pub fn index_offsets(
        &self,
        offs: &[&StrOffsets],
        wanted: &[&str],
    ) -> std::collections::HashMap<String, Vec<u32>> {
        let mut out: std::collections::HashMap<String, Vec<u32>> = std::collections::HashMap::new();
        for (i, n) in self.names.iter().enumerate() {
            if let Some(&w) = offs.iter().find_map(|o| o.get(n)) {
                out.entry(wanted[w].to_string())
                    .or_default()
                    .push(self.first_id + u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        out
    }

    /// (kind, kind_flag, vlen, size_or_type, record offset) of type `id`.
    fn record<'a>(
        &'a self,
        base: Option<&'a RawBtf>,
        id: u32,
    ) -> Option<(&'a RawBtf, u32, bool, usize, u32, usize)> {
        let btf = match base {
            Some(b) if id < self.first_id => b,
            _ => self,
        };
        let at = *btf.offsets.get(id.checked_sub(btf.first_id)? as usize)? as usize;
        let info = u32_at(&btf.data, at + 4)?;
        Some((
            btf,
            (info >> 24) & 0x1f,
            info >> 31 == 1,
            (info & 0xffff) as usize,
            u32_at(&btf.data, at + 8)?,
            at + 12,
        ))
    }

    pub fn kind(&self, base: Option<&RawBtf>, id: u32) -> Option<u32> {
        self.record(base, id).map(|r| r.1)
    }

    pub fn is_func(&self, base: Option<&RawBtf>, id: u32) -> bool {
        self.kind(base, id) == Some(KIND_FUNC)
    }

    pub fn is_struct(&self, base: Option<&RawBtf>, id: u32) -> bool {
        self.kind(base, id) == Some(KIND_STRUCT)
    }

    /// Bit offset of `member` in struct/union `id`, looking through anonymous
    /// structs and unions (and the typedef/const/volatile in front of them).
    pub fn member_bits(&self, base: Option<&RawBtf>, id: u32, member: &str) -> Option<u32> {
        self.member_bits_depth(base, id, member.as_bytes(), 0)
    }

    fn member_bits_depth(
        &self,
        base: Option<&RawBtf>,
        id: u32,
        member: &[u8],
        depth: u32,
    ) -> Option<u32> {
        // Anonymous nesting is a few levels deep in practice; a loop in a
        // damaged file must not recurse for ever.
        if depth > 16 {
            return None;
        }
        let (btf, kind, kflag, vlen, _, at) = self.record(base, id)?;
        if kind != KIND_STRUCT && kind != KIND_UNION {
            return None;
        }
        for i in 0..vlen {
            let m = at + 12 * i;
            let (name_off, ty, off) = (
                u32_at(&btf.data, m)?,
                u32_at(&btf.data, m + 4)?,
                u32_at(&btf.data, m + 8)?,
            );
            // With kind_flag set, the top 8 bits are a bitfield's size.
            let bits = if kflag { off & 0x00ff_ffff } else { off };
            let name = self.name(base, name_off);
            if name == member {
                return Some(bits);
            }
            if name.is_empty() {
                let mut inner = ty;
                for _ in 0..8 {
                    match self.kind(base, inner) {
                        Some(KIND_TYPEDEF | KIND_CONST | KIND_VOLATILE) => {
                            inner = self.record(base, inner)?.4
                        }
                        _ => break,
                    }
                }
                if let Some(b) = self.member_bits_depth(base, inner, member, depth + 1) {
                    return Some(bits + b);
                }
            }
        }
        None
    }

    /// Value of enumerator `variant` if type `id` is an enum holding it.
    pub fn enum_value(&self, base: Option<&RawBtf>, id: u32, variant: &str) -> Option<u32> {
        let (btf, kind, _, vlen, _, at) = self.record(base, id)?;
        let stride = match kind {
            KIND_ENUM => 8,
            KIND_ENUM64 => 12,
            _ => return None,
        };
        (0..vlen).find_map(|i| {
            let e = at + stride * i;
            (self.name(base, u32_at(&btf.data, e)?) == variant.as_bytes())
                .then(|| u32_at(&btf.data, e + 4))
                .flatten()
        })
    }

    /// Number of types in this blob (not counting a base's).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.offsets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a small BTF blob by hand: the format's own oracle.
    #[derive(Default)]
    struct Builder {
        types: Vec<u8>,
        strs: Vec<u8>,
        count: u32,
        /// Split BTF: its string offsets start after the base's strings.
        shift: u32,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                strs: vec![0],
                ..Self::default()
            }
        }
        fn s(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.shift + self.strs.len() as u32;
            self.strs.extend_from_slice(name.as_bytes());
            self.strs.push(0);
            off
        }
        fn ty(
            &mut self,
            name: &str,
            kind: u32,
            kflag: bool,
            vlen: u32,
            size_or_type: u32,
            extra: &[u32],
        ) -> u32 {
            let n = self.s(name);
            for w in [
                n,
                (kind << 24) | (u32::from(kflag) << 31) | vlen,
                size_or_type,
            ]
            .iter()
            .chain(extra)
            {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
            self.count += 1;
            self.count
        }
        fn strukt(
            &mut self,
            name: &str,
            kind: u32,
            kflag: bool,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let mut extra = Vec::new();
            for (m, ty, off) in members {
                extra.extend([self.s(m), *ty, *off]);
            }
            self.ty(name, kind, kflag, members.len() as u32, 64, &extra)
        }
        fn bytes(&self) -> Vec<u8> {
            let mut d = Vec::new();
            d.extend_from_slice(&MAGIC.to_le_bytes());
            d.extend_from_slice(&[1, 0]);
            for w in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strs.len() as u32,
            ] {
                d.extend_from_slice(&w.to_le_bytes());
            }
            d.extend_from_slice(&self.types);
            d.extend_from_slice(&self.strs);
            d
        }
    }

    fn sample() -> Builder {
        let mut b = Builder::new();
        let int = b.ty("int", KIND_INT, false, 0, 4, &[32]);
        // struct inner { int a; int b; } as an anonymous union member of vm_fault.
        let anon = b.strukt(
            "",
            KIND_UNION,
            false,
            &[("pgoff", int, 0), ("other", int, 0)],
        );
        let konst = b.ty("", KIND_CONST, false, 0, anon, &[]);
        b.strukt(
            "vm_fault",
            KIND_STRUCT,
            false,
            &[("vma", int, 0), ("", konst, 64), ("flags", int, 192)],
        );
        // kind_flag: bitfield size 3 in the top byte, bit offset 40 below.
        b.strukt(
            "buffer_head",
            KIND_STRUCT,
            true,
            &[("b_state", int, (3 << 24) | 40)],
        );
        b.ty("dax_iomap_pte_fault", KIND_FUNC, false, 1, 0, &[]);
        b.ty("btf_trace_iomap_iter", KIND_TYPEDEF, false, 0, int, &[]);
        let (m, n) = (b.s("BH_Mapped"), b.s("BH_New"));
        b.ty("bh_state_bits", KIND_ENUM, false, 2, 4, &[m, 5, n, 6]);
        b
    }

    #[test]
    fn finds_members_through_anonymous_const_unions_and_bitfields() {
        let btf = RawBtf::parse(sample().bytes(), None).unwrap();
        assert_eq!(btf.len(), 8);
        let vmf = btf.ids_named(None, "vm_fault");
        assert_eq!(vmf.len(), 1);
        assert!(btf.is_struct(None, vmf[0]));
        assert_eq!(btf.member_bits(None, vmf[0], "vma"), Some(0));
        assert_eq!(
            btf.member_bits(None, vmf[0], "pgoff"),
            Some(64),
            "inside the anonymous const union"
        );
        assert_eq!(btf.member_bits(None, vmf[0], "flags"), Some(192));
        assert_eq!(btf.member_bits(None, vmf[0], "nope"), None);
        let bh = btf.ids_named(None, "buffer_head")[0];
        assert_eq!(
            btf.member_bits(None, bh, "b_state"),
            Some(40),
            "bitfield size bits masked off"
        );
        let f = btf.ids_named(None, "dax_iomap_pte_fault");
        assert!(btf.is_func(None, f[0]));
        assert!(!btf.is_func(None, vmf[0]));
        assert_eq!(btf.ids_named(None, "btf_trace_iomap_iter").len(), 1);
        // A name that is only a suffix of a stored string is not a match.
        assert!(btf.ids_named(None, "trace_iomap_iter").is_empty());
        assert!(btf.ids_named(None, "iomap_pte_fault").is_empty());
        // The batched index answers as the per-name walk does.
        let names = [
            "vm_fault",
            "buffer_head",
            "dax_iomap_pte_fault",
            "btf_trace_iomap_iter",
            "int",
            "iomap_pte_fault",
            "absent",
        ];
        let idx = btf.index_names(None, &names);
        for n in names {
            assert_eq!(
                idx.get(n).cloned().unwrap_or_default(),
                btf.ids_named(None, n),
                "{n}"
            );
        }
        assert!(!idx.contains_key("iomap_pte_fault") && !idx.contains_key("absent"));
        let e = btf.ids_named(None, "bh_state_bits")[0];
        assert_eq!(btf.enum_value(None, e, "BH_New"), Some(6));
        assert_eq!(btf.enum_value(None, e, "BH_Lock"), None);
    }

    #[test]
    fn split_btf_continues_ids_and_strings_of_its_base() {
        let base = RawBtf::parse(sample().bytes(), None).unwrap();
        let mut m = Builder {
            shift: base.str_len(),
            ..Builder::new()
        };
        // A module type whose member type (id 1, "int") lives in the base.
        m.strukt("ext4_map_blocks", KIND_STRUCT, false, &[("m_lblk", 1, 32)]);
        let split = RawBtf::parse(m.bytes(), Some(&base)).unwrap();
        let ids = split.ids_named(Some(&base), "ext4_map_blocks");
        assert_eq!(ids, vec![9], "ids continue after the base's 8 types");
        assert_eq!(split.member_bits(Some(&base), 9, "m_lblk"), Some(32));
        assert!(
            split.ids_named(Some(&base), "vm_fault").is_empty(),
            "the base's types are the base's"
        );
        let idx = split.index_names(Some(&base), &["ext4_map_blocks", "vm_fault"]);
        assert_eq!(idx.get("ext4_map_blocks"), Some(&vec![9]));
        assert!(!idx.contains_key("vm_fault"));
        // Ids below first_id resolve in the base.
        assert_eq!(split.kind(Some(&base), 1), Some(KIND_INT));
    }

    #[test]
    fn damaged_blobs_are_errors_not_panics() {
        let good = sample().bytes();
        assert!(RawBtf::parse(Vec::new(), None).is_err());
        assert!(RawBtf::parse(vec![0; 64], None)
            .unwrap_err()
            .contains("magic"));
        for cut in [24, 30, good.len() - 1] {
            assert!(
                RawBtf::parse(good[..cut].to_vec(), None).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad_kind = good.clone();
        bad_kind[24 + 7] = 30; // first record's kind byte
        assert!(RawBtf::parse(bad_kind, None).unwrap_err().contains("kind"));
        // Every single-byte corruption parses or errs, and lookups never panic.
        for i in 0..good.len() {
            let mut d = good.clone();
            d[i] ^= 0xa5;
            if let Ok(b) = RawBtf::parse(d, None) {
                for id in 0..12 {
                    let _ = b.member_bits(None, id, "pgoff");
                    let _ = b.enum_value(None, id, "BH_New");
                }
                let _ = b.ids_named(None, "vm_fault");
                assert!(b.len() > 0, "a blob that parses has its types");
            }
        }
    }

    /// On this machine's kernel: aya's own BTF parser (an independent
    /// reader) agrees on which functions and tp_btf typedefs exist.
    #[test]
    fn agrees_with_aya_on_the_running_kernel() {
        let Ok(bytes) = std::fs::read(super::super::btf::VMLINUX) else {
            eprintln!("no kernel BTF here; skipped");
            return;
        };
        let ours = RawBtf::parse(bytes, None).unwrap();
        let aya = aya::Btf::from_sys_fs().unwrap();
        for name in [
            "vfs_read",
            "do_sys_openat2",
            "filemap_fault",
            "no_such_function_here",
            "inode",
        ] {
            let a = aya
                .id_by_type_name_kind(name, aya_obj::btf::BtfKind::Func)
                .ok();
            let o = ours
                .ids_named(None, name)
                .into_iter()
                .find(|&i| ours.is_func(None, i));
            assert_eq!(a, o, "{name}");
        }
        for name in [
            "btf_trace_sched_switch",
            "btf_trace_iomap_iter",
            "btf_trace_no_such_event",
        ] {
            let a = aya
                .id_by_type_name_kind(name, aya_obj::btf::BtfKind::Typedef)
                .ok();
            let o = ours
                .ids_named(None, name)
                .into_iter()
                .find(|&i| ours.kind(None, i) == Some(KIND_TYPEDEF));
            assert_eq!(a, o, "{name}");
        }
    }
}
