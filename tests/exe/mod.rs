//! Writing an executable that a test runs soon after, without "Text file busy".
//!
//! A test binary runs its tests on many threads. When one thread writes a script with
//! `fs::write` while another forks a child, the child holds a copy of the write
//! descriptor until its own `exec`, and on a loaded machine that can be long enough
//! for the script's `exec` to fail with ETXTBSY. Writing the file in a short-lived
//! child process keeps the write descriptor out of this process, so no fork here can
//! inherit it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Write `bytes` to `path` with mode 0755, the file opened only by a child process.
pub fn write_executable(path: &Path, bytes: &[u8]) {
    let mut child = Command::new("sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh to write an executable");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(bytes)
        .expect("write the executable's bytes");
    let status = child.wait().expect("wait for sh");
    assert!(
        status.success(),
        "writing {} failed: {status}",
        path.display()
    );
}
