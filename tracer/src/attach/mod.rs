//! The kernel side: what the running kernel offers (`tracefs`, `plan`), and
//! loading and attaching our programs (`load`).

pub mod btf;
mod btf_scan;
pub mod funcs;
pub mod load;
pub mod plan;
pub mod privileges;
pub mod tracefs;

use thiserror::Error;

pub use load::{Filter, Loaded};
pub use plan::{AttachPlan, Backend, Choice, Status, Step};

#[derive(Debug, Error)]
pub enum AttachError {
    #[error("tracing needs root (or CAP_BPF and CAP_PERFMON): run daxtrace with sudo")]
    NotPrivileged,
    #[error("tracefs is not mounted and could not be mounted ({0}): run `mount -t tracefs nodev /sys/kernel/tracing` as root")]
    NoTracefs(String),
    #[error("this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): use a kernel built with CONFIG_DEBUG_INFO_BTF=y, or name its BTF file with --btf FILE")]
    NoBtf,
    #[error("device {0} does not exist (no /sys/dev/block/{0}): pass the MAJ:MIN of a mounted block device (see `lsblk` or `stat -c %d`)")]
    NoSuchDevice(String),
    #[error("inode {ino} was not found on {where_}: pass the inode number of an existing file (`stat -c %i FILE`)")]
    NoSuchInode { ino: u64, where_: String },
    #[error("none of the fault-path tracepoints exist on this kernel (no fs_dax or iomap events in tracefs): `daxtrace probe` shows what is missing")]
    NothingToAttach,
    #[error("this daxtrace was built without its eBPF programs (DAXTRACE_EBPF=stub): rebuild without it (`cargo xtask setup` installs bpf-linker)")]
    StubObject,
    #[error("the thread preparing aya's eBPF loader panicked (a bug): please report it with `daxtrace probe --json`")]
    LoaderPanicked,
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("program {program}: {source}")]
    ProgramNamed {
        program: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("map {0} is missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Btf(#[from] btf::BtfError),
    #[error("no program for {0} in this build")]
    NoProgram(String),
}
