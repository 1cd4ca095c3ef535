//! The `orgstack` binary; everything it does lives in [`orgstack::cli`].

/// mimalloc returns freed memory to the system promptly, which keeps the
/// server's and the workers' resident memory bounded after bursts (large
/// transient buffers such as argon2's 19 MiB per password hash, or a
/// worker's batch of thousands of claimed jobs). Built without transparent
/// huge pages (`no_thp`): a 2 MiB page stays resident as long as one small
/// object on it lives, which more than doubled a worker's memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc 3's option enumeration (the
/// `libmimalloc-sys` bindings name only the older options).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

#[expect(unsafe_code, reason = "the one call into C: an allocator option")]
fn main() -> std::process::ExitCode {
    // Commit arena memory on demand, so that memory given back is
    // decommitted (and leaves the resident set) instead of merely reset.
    // SAFETY: sets a process-wide allocator option before any other thread
    // exists; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
    orgstack::cli::main()
}
