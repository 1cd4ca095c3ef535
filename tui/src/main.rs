//! `admin-tui`: the operators' console. Until its views land it only reports
//! its version.

fn main() {
    println!(
        "admin-tui {} (the console is not built yet; use `orgstack` commands)",
        env!("CARGO_PKG_VERSION")
    );
}
