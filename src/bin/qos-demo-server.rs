//! The `qos-demo-server` binary: the demo application server lives in the library
//! (`qoscntrlr::demo_server`), which the `qoscntrlr` binary also runs when started under
//! this name.

fn main() -> std::process::ExitCode {
    qoscntrlr::demo_server::main()
}
