//! The daemon's identity: a short random id per home (`<home>/instance-id`), created once. Its
//! embedded workers are named `embedded-<instance>-N`, so a daemon restarting on this home
//! releases only its own runs, never those of another daemon on the same database; it is also
//! the daemon's name as holder of the `scheduler` lease.

use std::path::Path;

use rand::Rng;

use crate::ServeError;

/// The file in the home that holds the instance id.
pub const INSTANCE_FILE: &str = "instance-id";

/// Length of an instance id: 10 lowercase letters (26^10, about 1.4e14 values).
const LEN: usize = 10;

/// Whether `id` is an instance id: lowercase ASCII letters only, so no id is a prefix of an old
/// worker name (`embedded-1`) and no worker name of one daemon is a prefix of another's.
fn valid(id: &str) -> bool {
    id.len() == LEN && id.bytes().all(|b| b.is_ascii_lowercase())
}

/// The home's instance id, created on first use. Call it with the home's lock held
/// ([`crate::lock_home`]): only one process writes the file. A file a crash left empty or
/// half-written is replaced (written to a temporary file and renamed, so it is never partial).
pub fn instance_id(home: &Path) -> Result<String, ServeError> {
    let path = home.join(INSTANCE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if valid(text.trim()) => return Ok(text.trim().to_owned()),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "the instance id file is unreadable; making a new id")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ServeError::Io {
                context: format!("read {}", path.display()),
                source,
            })
        }
    }
    let mut rng = rand::rng();
    let id: String = (0..LEN)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect();
    let temporary = home.join(format!("{INSTANCE_FILE}.tmp"));
    let io = |context: String| move |source| ServeError::Io { context, source };
    std::fs::write(&temporary, format!("{id}\n"))
        .map_err(io(format!("write {}", temporary.display())))?;
    std::fs::rename(&temporary, &path).map_err(io(format!("rename to {}", path.display())))?;
    Ok(id)
}

/// The name prefix of the embedded workers of the daemon with this instance id.
pub fn embedded_prefix(instance: &str) -> String {
    format!("{}-{instance}", crate::EMBEDDED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_id_is_made_once_and_kept() {
        let home = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let first = instance_id(home.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(valid(&first), "{first}");
        assert_eq!(instance_id(home.path()).ok(), Some(first.clone()));
        std::fs::write(home.path().join(INSTANCE_FILE), "").unwrap_or_else(|e| panic!("{e}"));
        let replaced = instance_id(home.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(valid(&replaced) && replaced != first);
    }
}
