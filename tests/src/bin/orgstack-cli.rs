//! The `orgstack` program built inside this package, so the integration
//! tests can run the real command line (`CARGO_BIN_EXE_orgstack-cli`).

/// See [`orgstack::alloc`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    orgstack::alloc::tune();
    orgstack::cli::main()
}
