//! The `keel` binary: everything lives in `keel-cli`; this only hands over the process.

fn main() -> std::process::ExitCode {
    restore_sigpipe();
    keel_cli::main()
}

/// Rust ignores SIGPIPE, so `keel images | head -1` would panic on the closed
/// pipe; CLI tools are expected to exit quietly instead, as docker does.
#[allow(unsafe_code)]
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; setting a
    // signal's disposition to SIG_DFL has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
