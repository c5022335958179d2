//! The `qoscntrlr` binary: everything lives in the library; see `qoscntrlr::cli`.
//!
//! Started under the name `qos-demo-server` (argv[0], as the controller does when that
//! program is found neither beside it nor on PATH) it is the demo server instead.

fn main() -> std::process::ExitCode {
    let invoked_as = std::env::args_os().next().unwrap_or_default();
    let name = std::path::Path::new(&invoked_as).file_name();
    if name == Some(std::ffi::OsStr::new(qoscntrlr::demo_server::PROGRAM)) {
        return qoscntrlr::demo_server::main();
    }
    qoscntrlr::cli::main()
}
