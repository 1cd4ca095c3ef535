//! The `admin-tui` program built inside this package, so the integration
//! tests can drive the real console (`CARGO_BIN_EXE_admin-tui-cli`).

/// See [`orgstack::alloc`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    orgstack::alloc::tune();
    admin_tui::main()
}
