//! Zero-filled arrays straight from the kernel's page allocator (anonymous `mmap`), for
//! the tracker's big tables: buckets and the connection-record pool.
//!
//! The point is *lazy commit*: a private anonymous mapping is all zero and takes no
//! memory until a page is first touched, so an empty table for millions of connections
//! costs only address space, and its resident size grows with the pages its users reach.
//! (The heap would not do that for these types: Rust's allocator serves alignments above
//! 16 bytes with `posix_memalign` and then writes zeros over every page.)
//!
//! With [`PageSize::Huge`] the array is first asked of the kernel's hugetlb pool
//! (`MAP_HUGETLB`, the default huge page size, usually 2 MiB: fewer TLB misses over a big
//! table; the pages DPDK's EAL was given come from the same pool); when the pool cannot
//! hold it the array falls back to 4 KiB pages, and [`ZeroedPages::page_size`] says which
//! was used. When even that mapping fails the array comes from the heap (zeroed, resident).
//!
//! This file does not need DPDK (the tracker's tests run without it); it lives here because
//! this module is the one place besides `dpdk-sys` that holds `unsafe` code.
//!
//! Invariants: the memory of a [`ZeroedPages<T>`] is `len` valid, initialised `T`s (all
//! zero bytes are a valid `T`, [`bytemuck::Zeroable`]), aligned for `T` (mappings start on
//! a page boundary, and `T`'s alignment is checked against the page size), owned by the
//! value alone and unmapped exactly once, on drop.

use bytemuck::Zeroable;
use std::ops::Deref;
use std::ptr::NonNull;

/// Which pages to back an array with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PageSize {
    /// The kernel's pages: 4 KiB, offered to transparent huge pages (`MADV_HUGEPAGE`)
    /// for mappings of 2 MiB and more.
    #[default]
    Small,
    /// Huge pages from the hugetlb pool, else 4 KiB pages.
    Huge,
}

/// Where an array's memory came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// A hugetlb mapping.
    HugePages,
    /// A 4 KiB-page anonymous mapping, committed as pages are touched.
    Pages,
    /// The heap (the mapping failed; everything resident).
    Heap,
}

impl Backing {
    /// The name start-up lines and benchmark output print: `hugepages`, `pages`, `heap`.
    pub fn name(self) -> &'static str {
        match self {
            Backing::HugePages => "hugepages",
            Backing::Pages => "pages",
            Backing::Heap => "heap",
        }
    }
}

/// `len` zero-initialised `T`s in their own anonymous mapping (see the module doc).
///
/// The start and length are kept for both kinds of memory, so that `deref` (on the
/// tracker's per-packet path, several times a packet) is two loads and no branch.
pub struct ZeroedPages<T> {
    ptr: NonNull<T>,
    len: usize,
    mem: Mem,
}

enum Mem {
    /// An anonymous mapping of `bytes` made here.
    Mapped { bytes: usize, huge: bool },
    /// A `Box<[T]>` of `len`, leaked into `ptr` (rebuilt in `drop`).
    Heap,
}

// SAFETY: a `ZeroedPages<T>` owns its `T`s exactly like a `Box<[T]>` does (no aliasing
// pointer is kept anywhere else), so it may move between threads when `T` may.
unsafe impl<T: Send> Send for ZeroedPages<T> {}
// SAFETY: shared access only hands out `&[T]`, so sharing is sound when `T: Sync`.
unsafe impl<T: Sync> Sync for ZeroedPages<T> {}

const SMALL_PAGE: usize = 4096;

/// Mappings of at least this size on small pages are offered to transparent huge pages.
const THP_MIN: usize = 2 << 20;

/// Asks the kernel to back a small-page mapping with transparent huge pages where it can
/// (`MADV_HUGEPAGE`): a first touch then commits 2 MiB at once, one page fault where 512
/// would be, and the TLB covers more of the table. Only advice: nothing fails without it.
fn advise_huge(p: NonNull<u8>, bytes: usize) {
    // SAFETY: advice on a mapping this module just made and owns, over its exact range;
    // MADV_HUGEPAGE changes no contents.
    unsafe { libc::madvise(p.as_ptr().cast(), bytes, libc::MADV_HUGEPAGE) };
}

/// The kernel's default huge page size (`Hugepagesize` in /proc/meminfo), 2 MiB if unknown.
fn huge_page_size() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Hugepagesize:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(2 << 20)
}

/// Maps `bytes` (a multiple of the page size) of private anonymous memory, or `None`.
fn map(bytes: usize, huge: bool) -> Option<NonNull<u8>> {
    // Huge pages are reserved from the pool when mapped (so the mapping fails here, not
    // with SIGBUS at a later first touch); small pages are committed by first touch.
    let flags = libc::MAP_PRIVATE
        | libc::MAP_ANONYMOUS
        | if huge {
            libc::MAP_HUGETLB
        } else {
            libc::MAP_NORESERVE
        };
    // SAFETY: a new anonymous mapping at an address the kernel picks: no existing memory
    // is affected; the result is checked against MAP_FAILED before use.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    NonNull::new(p.cast::<u8>())
}

impl<T: Zeroable> ZeroedPages<T> {
    /// `len` zeroed `T`s on pages of `size` (falling back as the module doc says).
    pub fn new(len: usize, size: PageSize) -> ZeroedPages<T> {
        let Some(want) = len.checked_mul(std::mem::size_of::<T>()) else {
            // Larger than the address space: the heap refuses it the usual way.
            return ZeroedPages::heap(len);
        };
        if want == 0 || std::mem::align_of::<T>() > SMALL_PAGE {
            return ZeroedPages::heap(len);
        }
        let tries: &[(bool, usize)] = match size {
            PageSize::Huge => &[(true, 0), (false, SMALL_PAGE)],
            PageSize::Small => &[(false, SMALL_PAGE)],
        };
        for &(huge, page) in tries {
            let page = if huge { huge_page_size() } else { page };
            let bytes = want.div_ceil(page) * page;
            if let Some(p) = map(bytes, huge) {
                if !huge && bytes >= THP_MIN {
                    advise_huge(p, bytes);
                }
                return ZeroedPages {
                    ptr: p.cast::<T>(),
                    len,
                    mem: Mem::Mapped { bytes, huge },
                };
            }
        }
        ZeroedPages::heap(len)
    }

    fn heap(len: usize) -> ZeroedPages<T> {
        let b: Box<[T]> = bytemuck::allocation::zeroed_slice_box(len);
        ZeroedPages {
            // Owned through `ptr` from here on (`Box::from_raw` in `drop`).
            ptr: NonNull::from(Box::leak(b)).cast::<T>(),
            len,
            mem: Mem::Heap,
        }
    }
}

impl<T> ZeroedPages<T> {
    /// The byte offsets (whole 4 KiB pages, within the mapping) of the pages that hold
    /// elements `range`; `None` for heap memory or an empty range.
    fn page_range(&self, range: std::ops::Range<usize>) -> Option<(usize, usize)> {
        let Mem::Mapped { bytes, .. } = self.mem else {
            return None;
        };
        let size = std::mem::size_of::<T>();
        let start = (range.start.min(self.len) * size) / SMALL_PAGE * SMALL_PAGE;
        let end = (range.end.min(self.len) * size)
            .div_ceil(SMALL_PAGE)
            .saturating_mul(SMALL_PAGE)
            .min(bytes);
        (start < end).then_some((start, end))
    }

    /// Commits the pages that hold elements `range` now, in one system call
    /// (`MADV_POPULATE_WRITE`, Linux 5.14), so that their first touches take no page
    /// fault each. Contents do not change (pages already there are left as they are, new
    /// ones are zero), so other threads may be using the elements meanwhile. Only a hint:
    /// nothing happens on heap memory, and a kernel without it refuses it harmlessly.
    pub fn populate(&self, range: std::ops::Range<usize>) {
        let Some((start, end)) = self.page_range(range) else {
            return;
        };
        let ptr = self.ptr;
        // SAFETY: a range of whole pages inside the mapping this value owns (`start` and
        // `end` are page-aligned offsets within `bytes`); MADV_POPULATE_WRITE only faults
        // pages in, it changes no contents, so it races with no access to the `T`s.
        unsafe {
            libc::madvise(
                ptr.as_ptr().cast::<u8>().add(start).cast(),
                end - start,
                libc::MADV_POPULATE_WRITE,
            )
        };
    }

    /// How many bytes of the elements `range` are resident (whole 4 KiB pages, from
    /// `mincore`); all of them on heap memory. For tests of what is committed when.
    #[cfg(test)]
    pub(crate) fn resident_bytes(&self, range: std::ops::Range<usize>) -> usize {
        if let Mem::Heap = self.mem {
            return range.len() * std::mem::size_of::<T>();
        }
        let Some((start, end)) = self.page_range(range) else {
            return 0;
        };
        let mut vec = vec![0u8; (end - start) / SMALL_PAGE];
        // SAFETY: a page-aligned range inside the mapping this value owns; `vec` has one
        // byte per 4 KiB page of it, which is all mincore writes.
        let rc = unsafe {
            libc::mincore(
                self.ptr.as_ptr().cast::<u8>().add(start).cast(),
                end - start,
                vec.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "mincore failed");
        vec.iter().filter(|&&v| v & 1 != 0).count() * SMALL_PAGE
    }

    /// Where the memory came from.
    pub fn backing(&self) -> Backing {
        match self.mem {
            Mem::Mapped { huge: true, .. } => Backing::HugePages,
            Mem::Mapped { huge: false, .. } => Backing::Pages,
            Mem::Heap => Backing::Heap,
        }
    }
}

impl<T> Deref for ZeroedPages<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` holds `len` initialised (zero-valid) `T`s, aligned (a page start,
        // alignment checked in `new`, or a box's), live until `self` is dropped; only
        // shared references are handed out.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for ZeroedPages<T> {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
        match self.mem {
            Mem::Mapped { bytes, .. } => {
                // SAFETY: the `T`s are owned here and never used again; dropping them in
                // place first keeps `Drop` types correct (the tracker's have no drop glue).
                unsafe { std::ptr::drop_in_place(slice) };
                // SAFETY: `ptr`/`bytes` are exactly the mapping made in `new`, unmapped
                // once.
                unsafe { libc::munmap(self.ptr.as_ptr().cast(), bytes) };
            }
            // SAFETY: `ptr`/`len` are the `Box<[T]>` leaked in `heap`, rebuilt once, here.
            Mem::Heap => drop(unsafe { Box::from_raw(slice) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Zeroable)]
    #[repr(C, align(64))]
    struct Line {
        a: AtomicU64,
        b: [AtomicU64; 7],
    }

    #[test]
    fn mapped_array_is_zero_aligned_and_writable() {
        let p = ZeroedPages::<Line>::new(10_000, PageSize::Small);
        assert_eq!(p.backing(), Backing::Pages);
        assert_eq!(p.len(), 10_000);
        assert_eq!(p.as_ptr() as usize % 64, 0);
        assert!(p.iter().all(|l| l.a.load(Ordering::Relaxed) == 0));
        p[9_999].b[6].store(7, Ordering::Relaxed);
        assert_eq!(p[9_999].b[6].load(Ordering::Relaxed), 7);
    }

    #[test]
    fn huge_request_falls_back_to_small_pages_when_the_pool_is_empty() {
        let p = ZeroedPages::<AtomicU64>::new(1 << 20, PageSize::Huge);
        let pool_free = std::fs::read_to_string("/proc/meminfo")
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("HugePages_Free:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default();
        if pool_free == "0" {
            assert_eq!(p.backing(), Backing::Pages);
        } else {
            assert_ne!(p.backing(), Backing::Heap);
        }
        p[(1 << 20) - 1].store(1, Ordering::Relaxed);
        assert_eq!(p.iter().map(|v| v.load(Ordering::Relaxed)).sum::<u64>(), 1);
    }

    #[test]
    fn populated_pages_keep_their_contents_and_stay_zero_elsewhere() {
        let p = ZeroedPages::<Line>::new(1000, PageSize::Small);
        p[3].a.store(9, Ordering::Relaxed);
        p.populate(0..500);
        p.populate(990..2000);
        assert_eq!(p[3].a.load(Ordering::Relaxed), 9);
        assert_eq!(
            p.iter().map(|l| l.a.load(Ordering::Relaxed)).sum::<u64>(),
            9
        );
    }

    #[test]
    fn empty_array_comes_from_the_heap() {
        let p = ZeroedPages::<AtomicU64>::new(0, PageSize::Small);
        assert_eq!(p.len(), 0);
        assert_eq!(p.backing(), Backing::Heap);
    }
}
