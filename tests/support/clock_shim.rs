//! A host whose wall clock is wrong, for one process: `clock_shim.c` built with the system's C
//! compiler and loaded with `LD_PRELOAD`. The offset lives in a file the test can rewrite.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A built shim and its offset file.
pub struct ClockShim {
    /// The shared object to preload.
    pub library: PathBuf,
    /// The file the offset (seconds) is read from.
    pub offset_file: PathBuf,
}

impl ClockShim {
    /// Builds the shim in `dir` with the wall clock `offset_s` seconds off; fails the test,
    /// naming the package, when there is no C compiler.
    pub fn build(dir: &Path, offset_s: i64) -> ClockShim {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/clock_shim.c");
        let library = dir.join("clock_shim.so");
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&library)
            .arg(&source)
            .arg("-ldl")
            .output()
            .unwrap_or_else(|e| {
                panic!("this test builds a clock shim with `cc` (apt-get install gcc): {e}")
            });
        assert!(
            out.status.success(),
            "building the clock shim failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shim = ClockShim {
            library,
            offset_file: dir.join("clock_offset"),
        };
        shim.set(offset_s);
        shim
    }

    /// Moves the clock to `offset_s` seconds off (read within a second).
    pub fn set(&self, offset_s: i64) {
        std::fs::write(&self.offset_file, offset_s.to_string()).unwrap();
    }
}
