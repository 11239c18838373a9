//! A loop-mounted ext4 made for one kernel test (shared by kernel.rs,
//! tracefile_kernel.rs and metrics_live.rs); unmounted on drop.
#![allow(dead_code, reason = "each test crate uses part of it")]

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

pub const PAGE: usize = 4096;

pub struct LoopFs {
    pub dir: PathBuf,
    pub mnt: PathBuf,
}

pub fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl LoopFs {
    /// `mkfs.ext4 -b 4096` on an image of `mib` MiB, mounted under a folder
    /// named after `tag` and this process.
    pub fn ext4(tag: &str, mib: u32) -> Self {
        let dir = std::env::temp_dir().join(format!("daxtrace-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("mnt")).unwrap();
        let img = dir.join("img");
        sh(Command::new("truncate")
            .args(["-s", &format!("{mib}M")])
            .arg(&img));
        sh(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096"])
            .arg(&img));
        sh(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(dir.join("mnt")));
        Self {
            mnt: dir.join("mnt"),
            dir,
        }
    }

    /// (MAJ:MIN as the kernel's tracepoints print it, kernel dev_t)
    pub fn dev(&self) -> (String, u64) {
        let d = std::fs::metadata(&self.mnt).unwrap().dev();
        let (ma, mi) = (libc::major(d), libc::minor(d));
        (format!("{ma}:{mi}"), (u64::from(ma) << 20) | u64::from(mi))
    }

    /// A sparse file of `pages` pages; returns (path, inode).
    pub fn sparse(&self, name: &str, pages: u64) -> (PathBuf, u64) {
        let p = self.mnt.join(name);
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(pages * PAGE as u64).unwrap();
        let ino = f.metadata().unwrap().ino();
        (p, ino)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
