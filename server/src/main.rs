//! The `orgstack` binary; everything it does lives in [`orgstack::cli`].

/// mimalloc returns freed memory to the system promptly, which keeps the
/// server's resident memory bounded after bursts (large transient buffers
/// such as argon2's 19 MiB per password hash).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    orgstack::cli::main()
}
