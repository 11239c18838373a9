//! The event model: one struct per observed step, serde names exactly as
//! DESIGN.md §3. Every source (ring buffer, trace file, JSON Lines,
//! simulator) produces these; every sink consumes them.
//!
//! `Event` is `Copy` and allocation-free (comm is a fixed 16-byte array) so
//! the hot path never touches the heap.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Pages covered by a PMD mapping (2 MiB / 4 KiB).
pub const PMD_PAGES: u64 = tracer_common::PMD_PAGES;

/// A block device as "major:minor" (userspace numbering).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dev {
    pub major: u32,
    pub minor: u32,
}

impl Dev {
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// From the kernel-internal `dev_t` (major << 20 | minor) that tracepoints carry.
    pub const fn from_kernel(dev: u32) -> Self {
        Self {
            major: dev >> 20,
            minor: dev & ((1 << 20) - 1),
        }
    }

    pub const fn to_kernel(self) -> u32 {
        (self.major << 20) | (self.minor & ((1 << 20) - 1))
    }

    /// From a userspace `st_dev` (glibc encoding).
    pub fn from_st_dev(dev: u64) -> Self {
        Self {
            major: libc::major(dev),
            minor: libc::minor(dev),
        }
    }
}

impl fmt::Display for Dev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl FromStr for Dev {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once(':')
            .ok_or_else(|| format!("device {s:?} is not MAJOR:MINOR (for example 7:0)"))?;
        let major = a
            .trim()
            .parse()
            .map_err(|_| format!("device {s:?}: bad major number"))?;
        let minor = b
            .trim()
            .parse()
            .map_err(|_| format!("device {s:?}: bad minor number"))?;
        Ok(Self { major, minor })
    }
}

impl Serialize for Dev {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dev {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dev;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a device as \"major:minor\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dev, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A task's command name, as the kernel keeps it (at most 15 bytes + NUL).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Comm(pub [u8; 16]);

impl Comm {
    /// At most 15 bytes and a NUL, like the kernel's TASK_COMM_LEN, cut back
    /// to a character boundary: half a character would not survive JSON.
    /// A NUL ends the name (as in the kernel): JSON can carry "a\u0000b",
    /// and bytes kept after the NUL would make two comms that print alike
    /// compare unequal (found by fuzz/ jsonl_reader).
    pub fn new(s: &str) -> Self {
        let s = s.split('\0').next().unwrap_or("");
        let mut b = [0u8; 16];
        let mut n = s.len().min(15);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        b[..n].copy_from_slice(&s.as_bytes()[..n]);
        Self(b)
    }

    /// A comm as the kernel hands it over. The kernel cuts task names at 15
    /// bytes without regard for UTF-8, and what follows the NUL is not part
    /// of the name: keep the whole characters before it, so the event equals
    /// what its JSON says. Per event, so no allocation: 16 bytes checked.
    #[inline]
    pub fn from_kernel(raw: [u8; 16]) -> Self {
        // Per byte: bit 7 of each byte, and 0x7f in each byte.
        const H: u64 = 0x8080_8080_8080_8080;
        const L7: u64 = !H;
        let w = u128::from_le_bytes(raw);
        let (lo, hi) = (w as u64, (w >> 64) as u64);
        if (lo | hi) & H == 0 {
            // All ASCII (the usual case): an ASCII byte plus 0x7f sets bit 7
            // exactly when the byte is not NUL (no carry leaves the byte), so
            // the first NUL is found in each half with word arithmetic, and
            // everything from it on is cleared (at most 15 bytes are kept).
            let zl = !lo.wrapping_add(L7) & H;
            let (lo, hi) = if zl != 0 {
                (lo & ((1u64 << (zl.trailing_zeros() & !7)) - 1), 0)
            } else {
                let zh = !hi.wrapping_add(L7) & H;
                let n = if zh != 0 {
                    zh.trailing_zeros() & !7
                } else {
                    56
                };
                (lo, hi & ((1u64 << n) - 1))
            };
            return Self((u128::from(lo) | u128::from(hi) << 64).to_le_bytes());
        }
        let n = raw.iter().position(|&c| c == 0).unwrap_or(16);
        let valid = match std::str::from_utf8(&raw[..n]) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&raw[..e.valid_up_to()]).unwrap_or(""),
        };
        Self::new(valid)
    }

    pub fn as_str(&self) -> &str {
        let n = self.0.iter().position(|&c| c == 0).unwrap_or(16);
        // Kernel comms are bytes; show the valid UTF-8 prefix.
        match std::str::from_utf8(&self.0[..n]) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&self.0[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Comm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Comm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Comm;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a command name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Comm, E> {
                Ok(Comm::new(v))
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Size {
    Pte,
    Pmd,
}

impl Size {
    /// Pages a mapping of this size starting in `pgoff`'s PMD covers: (first, count).
    pub fn span(self, pgoff: u64) -> (u64, u64) {
        match self {
            Size::Pte => (pgoff, 1),
            Size::Pmd => (pgoff & !(PMD_PAGES - 1), PMD_PAGES),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapResult {
    Hole,
    Mapped,
    Unwritten,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidateReason {
    Truncate,
    PunchHole,
    CollapseRange,
    ZeroRange,
    Write,
}

/// How a fault ended. DESIGN.md §3 lists examples; unknown strings are kept
/// as `Other` rather than rejected, since kernels add results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultResult {
    Nopage,
    Fallback,
    Sigbus,
    Retry,
    Oom,
    Sigsegv,
    Error,
    #[serde(other)]
    Other,
}

impl FaultResult {
    /// From the kernel's `VM_FAULT_*` bits (6.x values).
    pub fn from_vm_fault(bits: u32) -> Self {
        const OOM: u32 = 0x1;
        const SIGBUS: u32 = 0x2;
        const SIGSEGV: u32 = 0x40;
        const NOPAGE: u32 = 0x100;
        const RETRY: u32 = 0x400;
        const FALLBACK: u32 = 0x800;
        if bits & SIGBUS != 0 {
            Self::Sigbus
        } else if bits & OOM != 0 {
            Self::Oom
        } else if bits & SIGSEGV != 0 {
            Self::Sigsegv
        } else if bits & FALLBACK != 0 {
            Self::Fallback
        } else if bits & RETRY != 0 {
            Self::Retry
        } else if bits & NOPAGE != 0 {
            Self::Nopage
        } else {
            Self::Other
        }
    }
}

/// The kind-specific part of an event. `kind` is the serde tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    FaultBegin {
        fault: u64,
        pgoff: u64,
        size: Size,
        write: bool,
    },
    MapBlocks {
        /// `None` outside a fault (a `write(2)`, a direct I/O, ...).
        fault: Option<u64>,
        pgoff: u64,
        npages: u64,
        result: MapResult,
        new: bool,
        write: bool,
    },
    LoadHole {
        fault: u64,
        pgoff: u64,
        size: Size,
    },
    InsertMapping {
        fault: u64,
        pgoff: u64,
        size: Size,
        /// No probe saw the insert; it was inferred from the fault's end.
        #[serde(default, skip_serializing_if = "is_false")]
        inferred: bool,
    },
    FaultEnd {
        fault: u64,
        result: FaultResult,
    },
    Invalidate {
        pgoff: u64,
        /// `u64::MAX`: to the end of the file.
        npages: u64,
        reason: InvalidateReason,
    },
    Lost {
        count: u64,
    },
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if takes a reference"
)]
fn is_false(b: &bool) -> bool {
    !*b
}

impl Body {
    /// The JSON `kind` name.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Body::FaultBegin { .. } => "fault_begin",
            Body::MapBlocks { .. } => "map_blocks",
            Body::LoadHole { .. } => "load_hole",
            Body::InsertMapping { .. } => "insert_mapping",
            Body::FaultEnd { .. } => "fault_end",
            Body::Invalidate { .. } => "invalidate",
            Body::Lost { .. } => "lost",
        }
    }

    /// Index 0..KINDS for per-kind counters.
    pub fn kind_index(&self) -> usize {
        match self {
            Body::FaultBegin { .. } => 0,
            Body::MapBlocks { .. } => 1,
            Body::LoadHole { .. } => 2,
            Body::InsertMapping { .. } => 3,
            Body::FaultEnd { .. } => 4,
            Body::Invalidate { .. } => 5,
            Body::Lost { .. } => 6,
        }
    }

    /// The fault this event belongs to, if any.
    pub fn fault(&self) -> Option<u64> {
        match *self {
            Body::FaultBegin { fault, .. }
            | Body::LoadHole { fault, .. }
            | Body::InsertMapping { fault, .. }
            | Body::FaultEnd { fault, .. } => Some(fault),
            Body::MapBlocks { fault, .. } => fault,
            Body::Invalidate { .. } | Body::Lost { .. } => None,
        }
    }
}

/// Names of the kinds, indexed by [`Body::kind_index`].
pub const KIND_NAMES: [&str; 7] = [
    "fault_begin",
    "map_blocks",
    "load_hole",
    "insert_mapping",
    "fault_end",
    "invalidate",
    "lost",
];

/// One event. Common fields first, then the kind-specific body flattened in.
/// Fields other than `ts` and `kind` default when absent so hand-written traces
/// stay short; tools may add fields (`probe` names the attach point).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub ts: u64,
    #[serde(default)]
    pub cpu: u32,
    #[serde(default)]
    pub tid: u32,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub comm: Comm,
    #[serde(default)]
    pub dev: Dev,
    #[serde(default)]
    pub ino: u64,
    /// The attach point that produced the event (a [`tracer_common::Probe`]
    /// discriminant); 0 for events not from the kernel.
    #[serde(default, skip_serializing_if = "is_zero_u16", with = "probe_name")]
    pub probe: u16,
    #[serde(flatten)]
    pub body: Body,
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if takes a reference"
)]
fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}

/// `probe` is written as the tracepoint name ("iomap:iomap_iter_dstmap").
mod probe_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use tracer_common::Probe;

    #[allow(clippy::trivially_copy_pass_by_ref, reason = "serde's with= signature")]
    pub fn serialize<S: Serializer>(v: &u16, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(Probe::from_u16(*v).map_or("", Probe::tracepoint))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Probe::by_name(&s).map_or(0, |p| p as u16))
    }
}

/// Where a page lives: the key of every per-page timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PageKey {
    pub dev: Dev,
    pub ino: u64,
    pub pgoff: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_match_design() {
        let line = r#"{"ts":10,"cpu":1,"tid":7,"pid":7,"comm":"rd","dev":"259:0","ino":12,"kind":"map_blocks","fault":null,"pgoff":64,"npages":16,"result":"mapped","new":true,"write":true}"#;
        let e: Event = serde_json::from_str(line).unwrap();
        assert_eq!(e.dev, Dev::new(259, 0));
        assert_eq!(
            e.body,
            Body::MapBlocks {
                fault: None,
                pgoff: 64,
                npages: 16,
                result: MapResult::Mapped,
                new: true,
                write: true
            }
        );
        let back = serde_json::to_string(&e).unwrap();
        let again: Event = serde_json::from_str(&back).unwrap();
        assert_eq!(e, again);
        assert!(back.contains(r#""kind":"map_blocks""#), "{back}");
    }

    #[test]
    fn kernel_dev_encoding() {
        let d = Dev::new(259, 3);
        assert_eq!(Dev::from_kernel(d.to_kernel()), d);
        assert_eq!(d.to_kernel(), (259 << 20) | 3);
    }

    #[test]
    fn unknown_fault_result_is_kept() {
        let e: Event =
            serde_json::from_str(r#"{"ts":1,"kind":"fault_end","fault":3,"result":"completed"}"#)
                .unwrap();
        assert_eq!(
            e.body,
            Body::FaultEnd {
                fault: 3,
                result: FaultResult::Other
            }
        );
    }

    #[test]
    fn pmd_span_is_aligned() {
        assert_eq!(Size::Pmd.span(1000), (512, 512));
        assert_eq!(Size::Pte.span(1000), (1000, 1));
    }

    /// A multi-byte character across the 15-byte limit must not be cut in
    /// half: the JSON would then name a shorter comm than the event holds,
    /// and Event -> JSON -> Event would not give the same event back.
    #[test]
    fn comm_truncates_on_a_char_boundary() {
        for name in [
            "aaaaaaaaaaaaaa\u{e9}",
            "aaaaaaaaaaaaa\u{20ac}x",
            "\u{1f600}\u{1f600}\u{1f600}\u{1f600}",
            "writer",
            "exactly15bytes!",
        ] {
            let c = Comm::new(name);
            assert!(name.starts_with(c.as_str()), "{name:?} -> {:?}", c.as_str());
            // At most 15 bytes, and no more than one character (<= 4 bytes) dropped at the cut.
            assert!(
                c.as_str().len() <= 15 && c.as_str().len() + 4 > name.len().min(15),
                "{name:?} -> {:?}",
                c.as_str()
            );
            let e = Event {
                comm: c,
                ..serde_json::from_str(r#"{"ts":1,"kind":"lost","count":1}"#).unwrap()
            };
            let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
            assert_eq!(back, e, "{name:?}");
        }
        assert_eq!(Comm::new("aaaaaaaaaaaaaa\u{e9}").as_str(), "aaaaaaaaaaaaaa");
        assert_eq!(Comm::new("exactly15bytes!!").as_str(), "exactly15bytes!");
    }

    /// The kernel cuts task names at 15 bytes without regard for UTF-8: a
    /// decoded comm keeps only whole characters, so it equals what its JSON says.
    #[test]
    fn kernel_comm_cut_mid_character_round_trips() {
        let mut raw = [0u8; 16];
        raw[..15].copy_from_slice(&"aaaaaaaaaaaaaa\u{e9}".as_bytes()[..15]);
        assert_eq!(Comm::from_kernel(raw), Comm::new("aaaaaaaaaaaaaa"));
        // Bytes after the NUL are not part of the name.
        assert_eq!(
            Comm::from_kernel(*b"rd\0garbage\0\0\0\0\0\0"),
            Comm::new("rd")
        );
    }

    /// JSON can spell a NUL inside a comm; the name ends there, as in the
    /// kernel, so the event reads back equal to itself (fuzz/ jsonl_reader found it).
    #[test]
    fn comm_with_nul_in_json_round_trips() {
        let e: Event =
            serde_json::from_str(r#"{"ts":1,"comm":"a\u0000b","kind":"lost","count":1}"#).unwrap();
        assert_eq!(e.comm, Comm::new("a"));
        assert_eq!(e.comm.0, *b"a\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        assert_eq!(Comm::new("\0x"), Comm::default());
    }

    /// The all-ASCII fast path of `from_kernel` gives what the general path
    /// gives: the bytes before the first NUL, at most 15.
    #[test]
    fn kernel_comm_ascii_fast_path() {
        let mut rng = crate::workload::Rng::new(3);
        for _ in 0..20_000 {
            let mut raw = [0u8; 16];
            for b in &mut raw {
                // Mostly letters, some NULs, now and then a high byte (slow path).
                *b = match rng.below(20) {
                    0..=2 => 0,
                    3 => 0x80 | rng.below(0x80) as u8,
                    _ => b'a' + rng.below(26) as u8,
                };
            }
            let n = raw.iter().position(|&c| c == 0).unwrap_or(16);
            let want = match std::str::from_utf8(&raw[..n]) {
                Ok(s) => Comm::new(s),
                Err(e) => Comm::new(std::str::from_utf8(&raw[..e.valid_up_to()]).unwrap()),
            };
            assert_eq!(Comm::from_kernel(raw), want, "{raw:?}");
        }
        assert_eq!(
            Comm::from_kernel(*b"sixteen_bytes_xx"),
            Comm::new("sixteen_bytes_x")
        );
        assert_eq!(Comm::from_kernel([0; 16]), Comm::new(""));
    }
}
