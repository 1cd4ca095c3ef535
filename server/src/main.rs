//! The `orgstack` binary; everything it does lives in [`orgstack::cli`].

fn main() -> std::process::ExitCode {
    orgstack::cli::main()
}
