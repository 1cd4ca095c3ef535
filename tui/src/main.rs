//! The `admin-tui` binary; the console lives in the `admin_tui` library.

/// See [`orgstack::alloc`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    orgstack::alloc::tune();
    admin_tui::main()
}
