//! The `keel` binary: everything lives in `keel-cli`; this only hands over the process.

fn main() -> std::process::ExitCode {
    keel_cli::main()
}
