//! The `admin-tui` binary; the console lives in the `admin_tui` library.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    admin_tui::main()
}
