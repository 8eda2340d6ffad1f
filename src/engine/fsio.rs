//! File writes that never leave a half-written file behind. A leaf module: it imports nothing
//! from the engine, so every module that saves something can use it without a cycle.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file beside it (see [`temp_target`]), fsync,
/// rename. On failure the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}{TEMP_INFIX}{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename is durable only once the directory is synced; the data already is, so a
        // directory that cannot be opened or synced is not an error.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Between a temporary file's target name and the writer's process id: `.<name>.tmp-<pid>`.
const TEMP_INFIX: &str = ".tmp-";

/// The file name a temporary file of an interrupted [`write_atomic`] was meant to become, if
/// `file_name` is one.
pub fn temp_target(file_name: &str) -> Option<&str> {
    file_name.strip_prefix('.').and_then(|n| n.split_once(TEMP_INFIX)).map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_map_back_to_their_target() {
        assert_eq!(temp_target(".config.json.tmp-42"), Some("config.json"));
        assert_eq!(temp_target("config.json"), None);
        assert_eq!(temp_target(".hidden"), None);
    }

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1);
    }
}
