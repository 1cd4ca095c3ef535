//! Allocator settings shared by every binary of the workspace (`orgstack`,
//! `admin-tui` and the copies the tests build).
//!
//! Each binary declares `mimalloc::MiMalloc` as its global allocator:
//! mimalloc returns freed memory to the system promptly, which keeps the
//! server's and the workers' resident memory bounded after bursts (argon2's
//! 19 MiB per password hash, a worker's batch of thousands of claimed jobs).
//! It is built without transparent huge pages (`no_thp` in the workspace
//! manifest): a 2 MiB page stays resident as long as one small object on it
//! lives, which more than doubled a worker's memory.

/// `mi_option_arena_eager_commit` in mimalloc 3's option enumeration (the
/// `libmimalloc-sys` bindings name only the older options).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
/// `mi_option_purge_delay` in the same enumeration.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Commits arena memory on demand, so that memory given back is decommitted
/// (and leaves the resident set) instead of merely reset, and gives it back
/// as soon as it is free rather than after a delay: with the default delay
/// a thread that frees memory and then goes quiet (a blocking-pool thread
/// that wrote upload parts) kept it, and a burst of 100 uploads left the
/// server at 190 MB instead of 46 MB; under the jobs load the peak is about
/// 6 MB lower (docs/benchmarks.md). Call first thing in `main`.
#[expect(unsafe_code, reason = "the one call into C: an allocator option")]
pub fn tune() {
    // SAFETY: sets a process-wide allocator option; mimalloc reads options
    // atomically, and this runs before any other thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}
