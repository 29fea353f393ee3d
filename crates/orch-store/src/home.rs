//! The orch home is private to its user: mode 0700, so the database, tokens, key, config and
//! bundles in it cannot be read by other local users whatever their own modes are.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Make `home` private: create it (and missing parents) with mode 0700, or, when it exists with
/// group or other bits, chmod it to 0700. Returns the mode it had when it was changed, so the
/// caller can say so.
pub fn secure(home: &Path) -> std::io::Result<Option<u32>> {
    match std::fs::metadata(home) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 == 0 {
                return Ok(None);
            }
            std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))?;
            Ok(Some(mode))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(home)?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_home_others_can_read_is_made_private_and_the_old_mode_reported() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        assert_eq!(secure(&home).unwrap(), None);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&home), 0o700);
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(secure(&home).unwrap(), Some(0o755));
        assert_eq!(mode(&home), 0o700);
    }
}
