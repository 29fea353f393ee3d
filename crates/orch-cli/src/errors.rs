//! How errors read: each cause said once, and a path that is a file where a directory is
//! needed named as such.

use std::path::Path;

use crate::UserError;

/// The error with its causes, `: `-separated, leaving out a cause whose text the message so
/// far already ends with (an error that prints its source and also returns it as its
/// `source()` would otherwise say the OS's text twice: "File exists (os error 17): File exists
/// (os error 17)").
pub fn render(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// `what` (e.g. `the orch home`) at `dir` must be a directory or not exist yet, and so must
/// the first of its ancestors that exists: a file there is named instead of the OS's "Not a
/// directory" or "File exists".
pub fn expect_directory(what: &str, dir: &Path) -> Result<(), UserError> {
    for ancestor in dir.ancestors() {
        match std::fs::metadata(ancestor) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) if ancestor == dir => {
                return Err(UserError::new(format!(
                    "{what} {} is a file, not a directory; give a directory",
                    dir.display()
                )));
            }
            Ok(_) => {
                return Err(UserError::new(format!(
                    "{what} {}: {} is a file, not a directory; give a directory",
                    dir.display(),
                    ancestor.display()
                )));
            }
            Err(_) => continue,
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct WithSource(std::io::Error);
    impl std::fmt::Display for WithSource {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "create the directory /x: {}", self.0)
        }
    }
    impl std::error::Error for WithSource {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_already_said_is_not_repeated() {
        let io = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
        let shown = io.to_string();
        let err = anyhow::Error::new(WithSource(io)).context("open the orch database");
        assert_eq!(
            render(&err),
            format!("open the orch database: create the directory /x: {shown}")
        );
    }

    #[test]
    fn a_file_on_the_way_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let message = expect_directory("the orch home", &file.join("sub"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(&format!("{} is a file, not a directory", file.display())),
            "{message}"
        );
        assert!(expect_directory("the orch home", &dir.path().join("new/deeper")).is_ok());
    }
}
