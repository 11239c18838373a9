//! Struct member offsets from BTF: the running kernel's
//! (`/sys/kernel/btf/vmlinux` plus the split BTF of the filesystem modules)
//! or a file the user names (`--btf FILE`). They are handed to the tp_btf,
//! raw_tp, kprobe and fentry programs as load-time constants
//! ([`tracer_common::BtfOffsets`]), so one object serves every kernel.

use std::path::{Path, PathBuf};

use tracer_common::{BtfOffsets, TpFields};

use super::btf_scan::RawBtf;

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";
/// Modules whose types we read (split BTF over vmlinux), when loaded.
const MODULES: [&str; 3] = ["ext4", "xfs", "ext2"];

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("this kernel has no BTF ({VMLINUX} is missing): name a BTF file for it with --btf FILE, or use --backend tracepoint")]
    NoKernelBtf,
    #[error("cannot read BTF from {path}: {why} (--btf takes a raw BTF file, e.g. a copy of {VMLINUX} or a BTFHub .btf)")]
    Unreadable { path: PathBuf, why: String },
}

/// The BTF we read offsets from: a base and the split BTFs of loaded modules.
pub struct KernelBtf {
    pub source: PathBuf,
    base: RawBtf,
    modules: Vec<(String, RawBtf)>,
    /// Per blob (base first, then modules): ids of the names given to
    /// [`KernelBtf::prefetch`]; other names take the slower per-name walk.
    index: Vec<std::collections::HashMap<String, Vec<u32>>>,
    indexed: std::collections::HashSet<String>,
}

/// Where each [`BtfOffsets`] member comes from: (struct, member path), with
/// older names after the current one.
pub const MEMBERS: &[(&str, &str, &[&str])] = &[
    ("inode_i_sb", "inode", &["i_sb"]),
    ("inode_i_ino", "inode", &["i_ino"]),
    ("sb_s_dev", "super_block", &["s_dev"]),
    ("vmf_vma", "vm_fault", &["vma"]),
    ("vmf_pgoff", "vm_fault", &["pgoff"]),
    // `address` since 4.10; older kernels had `virtual_address`.
    ("vmf_address", "vm_fault", &["address", "virtual_address"]),
    ("vmf_flags", "vm_fault", &["flags"]),
    ("vma_vm_file", "vm_area_struct", &["vm_file"]),
    ("file_f_inode", "file", &["f_inode"]),
    ("iomap_offset", "iomap", &["offset"]),
    ("iomap_length", "iomap", &["length"]),
    ("iomap_type", "iomap", &["type"]),
    ("iomap_flags", "iomap", &["flags"]),
    ("ext4_map_lblk", "ext4_map_blocks", &["m_lblk"]),
    ("ext4_map_len", "ext4_map_blocks", &["m_len"]),
    ("ext4_map_flags", "ext4_map_blocks", &["m_flags"]),
    ("xfs_inode_vnode", "xfs_inode", &["i_vnode"]),
    ("irec_startoff", "xfs_bmbt_irec", &["br_startoff"]),
    ("irec_blockcount", "xfs_bmbt_irec", &["br_blockcount"]),
    ("bh_state", "buffer_head", &["b_state"]),
    ("bh_size", "buffer_head", &["b_size"]),
    ("iter_inode", "iomap_iter", &["inode"]),
    ("iter_flags", "iomap_iter", &["flags"]),
];

fn slot<'a>(o: &'a mut BtfOffsets, name: &str) -> &'a mut u16 {
    match name {
        "inode_i_sb" => &mut o.inode_i_sb,
        "inode_i_ino" => &mut o.inode_i_ino,
        "sb_s_dev" => &mut o.sb_s_dev,
        "vmf_vma" => &mut o.vmf_vma,
        "vmf_pgoff" => &mut o.vmf_pgoff,
        "vmf_address" => &mut o.vmf_address,
        "vmf_flags" => &mut o.vmf_flags,
        "vma_vm_file" => &mut o.vma_vm_file,
        "file_f_inode" => &mut o.file_f_inode,
        "iomap_offset" => &mut o.iomap_offset,
        "iomap_length" => &mut o.iomap_length,
        "iomap_type" => &mut o.iomap_type,
        "iomap_flags" => &mut o.iomap_flags,
        "ext4_map_lblk" => &mut o.ext4_map_lblk,
        "ext4_map_len" => &mut o.ext4_map_len,
        "ext4_map_flags" => &mut o.ext4_map_flags,
        "xfs_inode_vnode" => &mut o.xfs_inode_vnode,
        "irec_startoff" => &mut o.irec_startoff,
        "irec_blockcount" => &mut o.irec_blockcount,
        "bh_state" => &mut o.bh_state,
        "bh_size" => &mut o.bh_size,
        "iter_inode" => &mut o.iter_inode,
        "iter_flags" => &mut o.iter_flags,
        _ => unreachable!("MEMBERS and slot() list the same names"),
    }
}

/// Set one offset by its [`MEMBERS`] name (fixtures, tests).
pub fn set(o: &mut BtfOffsets, name: &str, v: u16) {
    *slot(o, name) = v;
}

/// Read one offset back by its [`MEMBERS`] name.
pub fn get(o: &BtfOffsets, name: &str) -> u16 {
    let mut c = *o;
    *slot(&mut c, name)
}

/// Offsets found, and the `struct.member`s this BTF lacks.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub offsets: BtfOffsets,
    pub missing: Vec<String>,
}

impl KernelBtf {
    /// `file`: the user's `--btf FILE`; None: the running kernel's.
    pub fn open(file: Option<&Path>) -> Result<Self, BtfError> {
        let unreadable = |path: &Path, e: &dyn std::fmt::Display| BtfError::Unreadable {
            path: path.to_path_buf(),
            why: e.to_string(),
        };
        // Read whole, then index in memory (see btf_scan: no type is decoded
        // until asked for, so start-up does not pay for 100,000+ types).
        let parse = |p: &Path, base: Option<&RawBtf>| -> Result<RawBtf, BtfError> {
            let bytes = std::fs::read(p).map_err(|e| unreadable(p, &e))?;
            RawBtf::parse(bytes, base).map_err(|e| unreadable(p, &e))
        };
        if let Some(f) = file {
            let base = parse(f, None)?;
            return Ok(Self {
                source: f.to_path_buf(),
                base,
                modules: Vec::new(),
                index: Vec::new(),
                indexed: Default::default(),
            });
        }
        let vmlinux = Path::new(VMLINUX);
        if !vmlinux.exists() {
            return Err(BtfError::NoKernelBtf);
        }
        let base = parse(vmlinux, None)?;
        let mut modules = Vec::new();
        for m in MODULES {
            let p = Path::new("/sys/kernel/btf").join(m);
            if p.exists() {
                match parse(&p, Some(&base)) {
                    Ok(b) => modules.push((m.to_string(), b)),
                    Err(e) => tracing::warn!("ignoring {}: {e}", p.display()),
                }
            }
        }
        Ok(Self {
            source: vmlinux.to_path_buf(),
            base,
            modules,
            index: Vec::new(),
            indexed: Default::default(),
        })
    }

    /// Index `names` (and every struct and enum [`Self::resolve`] reads) in
    /// one walk per blob, for the lookups that follow.
    pub fn prefetch(&mut self, names: &[&str]) {
        let mut all: Vec<&str> = names.to_vec();
        all.extend(MEMBERS.iter().map(|m| m.1));
        all.push("bh_state_bits");
        all.sort_unstable();
        all.dedup();
        // The base's strings are walked once, for it and every module.
        let base = self.base.string_offsets(&all);
        let mut index = vec![self.base.index_offsets(&[&base], &all)];
        index.extend(
            self.modules
                .iter()
                .map(|(_, b)| b.index_offsets(&[&b.string_offsets(&all), &base], &all)),
        );
        self.index = index;
        self.indexed = all.iter().map(|s| (*s).to_string()).collect();
    }

    /// Each blob with the base it is split over (None for the base itself).
    fn all(&self) -> impl Iterator<Item = (&RawBtf, Option<&RawBtf>)> {
        std::iter::once((&self.base, None))
            .chain(self.modules.iter().map(|(_, b)| (b, Some(&self.base))))
    }

    /// Ids named `name` in blob `i` of [`Self::all`].
    fn ids(&self, i: usize, btf: &RawBtf, base: Option<&RawBtf>, name: &str) -> Vec<u32> {
        if self.indexed.contains(name) {
            return self.index[i].get(name).cloned().unwrap_or_default();
        }
        btf.ids_named(base, name)
    }

    /// Byte offset of `member` in `struct name`, looking through anonymous
    /// structs and unions (e.g. `vm_fault`'s `pgoff` lives in one since 5.x).
    pub fn member_offset(&self, name: &str, member: &str) -> Option<u32> {
        self.all().enumerate().find_map(|(i, (btf, base))| {
            self.ids(i, btf, base, name)
                .into_iter()
                .filter(|&id| btf.is_struct(base, id))
                .find_map(|id| btf.member_bits(base, id, member))
                .map(|bits| bits / 8)
        })
    }

    /// Whether `name` is a function in BTF (an fentry target).
    pub fn has_func(&self, name: &str) -> bool {
        self.all().enumerate().any(|(i, (btf, base))| {
            self.ids(i, btf, base, name)
                .into_iter()
                .any(|id| btf.is_func(base, id))
        })
    }

    /// Whether `btf_trace_<event>` exists: the typedef tp_btf attaches through.
    pub fn has_tp_btf(&self, event: &str) -> bool {
        let name = format!("btf_trace_{event}");
        self.all()
            .enumerate()
            .any(|(i, (btf, base))| !self.ids(i, btf, base, &name).is_empty())
    }

    /// vmlinux's id of the function `name` (`func`) or of the typedef
    /// `name`: the first of that kind, as aya's `id_by_type_name_kind`
    /// answers (tp_btf and fentry attach by this id).
    pub fn vmlinux_id(&self, name: &str, func: bool) -> Option<u32> {
        let kind = if func {
            super::btf_scan::KIND_FUNC
        } else {
            super::btf_scan::KIND_TYPEDEF
        };
        self.ids(0, &self.base, None, name)
            .into_iter()
            .filter(|&id| self.base.kind(None, id) == Some(kind))
            .min()
    }

    /// The module whose split BTF holds `name` when vmlinux's does not
    /// (ext4's and xfs's functions and tracepoints, when they are modules).
    pub fn module_of(&self, name: &str) -> Option<&str> {
        if !self.ids(0, &self.base, None, name).is_empty() {
            return None;
        }
        self.modules
            .iter()
            .enumerate()
            .find(|(i, (_, b))| !self.ids(i + 1, b, Some(&self.base), name).is_empty())
            .map(|(_, (m, _))| m.as_str())
    }

    /// Value of an enumerator (e.g. `BH_Mapped` of `enum bh_state_bits`).
    pub fn enum_value(&self, enum_name: &str, variant: &str) -> Option<u32> {
        self.all().enumerate().find_map(|(i, (btf, base))| {
            self.ids(i, btf, base, enum_name)
                .into_iter()
                .find_map(|id| btf.enum_value(base, id, variant))
        })
    }

    /// Every offset of [`MEMBERS`].
    pub fn resolve(&self) -> Resolved {
        let mut offsets = BtfOffsets::NONE;
        let mut missing = Vec::new();
        for (slot_name, strukt, names) in MEMBERS {
            match names.iter().find_map(|m| self.member_offset(strukt, m)) {
                Some(off) => {
                    *slot(&mut offsets, slot_name) = u16::try_from(off).unwrap_or(TpFields::ABSENT)
                }
                None => missing.push(format!("{strukt}.{}", names[0])),
            }
        }
        // The current task's ids and name, for the tp_btf programs; not
        // "missing" when absent: those programs then call the helpers.
        for (member, slot) in [
            ("pid", &mut offsets.task_pid),
            ("tgid", &mut offsets.task_tgid),
            ("comm", &mut offsets.task_comm),
        ] {
            if let Some(off) = self
                .member_offset("task_struct", member)
                .and_then(|o| u16::try_from(o).ok())
            {
                *slot = off;
            }
        }
        // Bit numbers of buffer_head state (legacy get_block results).
        for (variant, slot) in [("BH_Mapped", 0), ("BH_New", 1), ("BH_Unwritten", 2)] {
            if let Some(v) = self
                .enum_value("bh_state_bits", variant)
                .and_then(|v| u16::try_from(v).ok())
            {
                match slot {
                    0 => offsets.bh_bit_mapped = v,
                    1 => offsets.bh_bit_new = v,
                    _ => offsets.bh_bit_unwritten = v,
                }
            }
        }
        Resolved { offsets, missing }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_has_a_slot() {
        let mut o = BtfOffsets::NONE;
        for (i, (name, _, _)) in MEMBERS.iter().enumerate() {
            *slot(&mut o, name) = i as u16;
        }
        for (i, (name, _, _)) in MEMBERS.iter().enumerate() {
            assert_eq!(get(&o, name), i as u16, "{name} shares a slot");
        }
    }

    /// On a machine with BTF, the offsets we compute must match what the
    /// kernel itself prints for the classic tracepoints' sources: here we
    /// check against known invariants that could be false if the anonymous
    /// member walk were wrong (pgoff is after vma in vm_fault; i_ino is
    /// after i_sb in inode).
    #[test]
    fn running_kernel_offsets_are_plausible() {
        let Ok(k) = KernelBtf::open(None) else {
            eprintln!("no kernel BTF here; skipped");
            return;
        };
        let r = k.resolve();
        let o = r.offsets;
        for name in [
            "inode_i_sb",
            "inode_i_ino",
            "sb_s_dev",
            "vmf_vma",
            "vmf_pgoff",
            "vmf_flags",
            "iomap_offset",
            "iomap_length",
            "iomap_type",
        ] {
            assert_ne!(
                get(&o, name),
                TpFields::ABSENT,
                "{name} missing: {:?}",
                r.missing
            );
        }
        assert_eq!(
            o.vmf_vma, 0,
            "vm_fault starts with vma (in an anonymous const struct since 5.x)"
        );
        assert!(o.vmf_pgoff > o.vmf_vma && o.vmf_pgoff < 64);
        assert!(o.inode_i_ino > o.inode_i_sb);
        assert!(o.iomap_length > o.iomap_offset && o.iomap_type > o.iomap_length);
        // The batched index gives the same answers as the per-name walk.
        let mut p = KernelBtf::open(None).unwrap();
        p.prefetch(&[
            "vfs_read",
            "btf_trace_iomap_iter_dstmap",
            "no_such_function_here",
        ]);
        assert_eq!(p.resolve().offsets, o);
        assert_eq!(p.resolve().missing, r.missing);
        for f in ["vfs_read", "no_such_function_here"] {
            assert_eq!(p.has_func(f), k.has_func(f), "{f}");
            assert_eq!(p.module_of(f), k.module_of(f), "{f}");
        }
        assert!(p.has_tp_btf("iomap_iter_dstmap"));
        assert!(k.has_tp_btf("iomap_iter_dstmap"));
        assert!(!k.has_tp_btf("no_such_event_here"));
        assert!(k.has_func("vfs_read"));
        assert!(!k.has_func("inode"), "a struct is not a function");
        // task_struct: pid then tgid (two pid_t), comm later.
        assert!(
            o.task_pid != TpFields::ABSENT
                && o.task_tgid == o.task_pid + 4
                && o.task_comm > o.task_tgid,
            "{o:?}"
        );
        // enum bh_state_bits: BH_Uptodate is 0 on every kernel; Mapped/New follow.
        assert!(
            o.bh_bit_mapped != TpFields::ABSENT && o.bh_bit_new == o.bh_bit_mapped + 1,
            "{o:?}"
        );
    }
}
