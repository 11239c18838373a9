//! Memory for the tables reached at random per event (the page slots and
//! the page index): with 4 KiB pages nearly every access there would also
//! miss the TLB, so they ask for transparent huge pages.
//!
//! A hint only: where THP is off or refused, nothing changes but speed.

use std::marker::PhantomData;
use std::ptr::NonNull;

const HUGE: usize = 2 << 20;

/// Ask for huge pages on the 2 MiB-aligned part of an allocation (one a
/// caller cannot place itself, as a `Vec`'s). Pages already touched stay
/// small: call it before the first write.
pub(crate) fn advise<T>(v: &[T]) {
    let (a, len) = (v.as_ptr() as usize, std::mem::size_of_val(v));
    let start = a.next_multiple_of(HUGE);
    let end = (a + len) & !(HUGE - 1);
    if end > start {
        // SAFETY: the range lies inside memory this process owns (the slice's
        // allocation); MADV_HUGEPAGE changes no contents.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

/// `len` zeroed `T`s in a mapping of their own, 2 MiB aligned and advised
/// before anything touches it, so every page of it can be huge. (A heap
/// allocation of a few MiB starts anywhere, and may reuse memory already
/// touched with small pages: the slot chunks got one huge page of every two,
/// the index none; docs/performance.md.)
pub(crate) struct Zeroed<T> {
    ptr: NonNull<T>,
    len: usize,
    /// The whole mapping, for `munmap`.
    map: (*mut libc::c_void, usize),
    _own: PhantomData<T>,
}

// SAFETY: owns its memory like a Box<[T]>.
unsafe impl<T: Send> Send for Zeroed<T> {}
// SAFETY: as above; shared access is through &[T].
unsafe impl<T: Sync> Sync for Zeroed<T> {}

impl<T: Copy> Zeroed<T> {
    /// # Panics
    /// When the kernel refuses the mapping (out of memory), as an allocation would.
    pub(crate) fn new(len: usize) -> Self {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .expect("table size")
            .max(1);
        let size = bytes + HUGE;
        // SAFETY: an anonymous private mapping; no file, no fixed address.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(bytes, HUGE).expect("layout"),
            );
        }
        let start = (map as usize).next_multiple_of(HUGE);
        // SAFETY: [start, start + bytes) lies inside the mapping just made.
        unsafe {
            libc::madvise(
                start as *mut libc::c_void,
                map as usize + size - start,
                libc::MADV_HUGEPAGE,
            )
        };
        Self {
            // SAFETY: inside a successful mapping, so not null; 2 MiB aligned.
            ptr: unsafe { NonNull::new_unchecked(start as *mut T) },
            len,
            map: (map, size),
            _own: PhantomData,
        }
    }
}

impl<T> std::ops::Deref for Zeroed<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: `len` Ts of mapped memory, zero-filled by the kernel; the
        // callers' T (u64, slots written before read) are plain data.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> std::ops::DerefMut for Zeroed<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for Zeroed<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.map.0, self.map.1) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_is_aligned_zero_and_writable() {
        let mut z: Zeroed<u64> = Zeroed::new(3 << 18);
        assert_eq!(z.as_ptr() as usize % HUGE, 0);
        assert_eq!(z.len(), 3 << 18);
        assert!(z.iter().all(|&x| x == 0));
        let n = z.len();
        z[0] = 7;
        z[n - 1] = 9;
        assert_eq!((z[0], z[n - 1]), (7, 9));
        let empty: Zeroed<u64> = Zeroed::new(0);
        assert!(empty.is_empty());
    }
}
