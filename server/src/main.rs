//! The `orgstack` binary; everything it does lives in [`orgstack::cli`].

/// See [`orgstack::alloc`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    orgstack::alloc::tune();
    orgstack::cli::main()
}
