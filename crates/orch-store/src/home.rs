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

/// Why a private file could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    /// Group or others can access it.
    #[error("{path} has mode {mode:o}, so other users can read it")]
    Exposed {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Creating, opening or reading it failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

/// The trimmed text of a secret file (a token, a key), creating it with mode 0600 holding
/// `fresh` if it does not exist; refused when group or others can access it. Returns the text
/// and whether it was created now.
pub fn load_or_create_private(
    path: &Path,
    fresh: &str,
) -> Result<(String, bool), PrivateFileError> {
    use std::io::{ErrorKind, Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let io = |context: &str| {
        let context = format!("{context} {}", path.display());
        move |source| PrivateFileError::Io { context, source }
    };
    // `create_new` makes the check and the creation one step, so two starts cannot race.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(format!("{fresh}\n").as_bytes())
                .map_err(io("write"))?;
            return Ok((fresh.to_owned(), true));
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("create")(e)),
    }
    let mut file = std::fs::File::open(path).map_err(io("open"))?;
    let mode = file.metadata().map_err(io("stat"))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::Exposed {
            path: path.display().to_string(),
            mode,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io("read"))?;
    Ok((text.trim().to_owned(), false))
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
