//! The `qoscntrlr` binary: everything lives in the library; see `qoscntrlr::cli`.

fn main() -> std::process::ExitCode {
    qoscntrlr::cli::main()
}
