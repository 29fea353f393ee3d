//! Path resolution the way the kernel does it: `.`, `..` and symbolic links, within a link budget.

use std::path::{Component, Path, PathBuf};

/// Most symbolic links followed while resolving one path; the workspace is written by the
/// commands themselves, so a crafted tree of links must not make validation slow.
const MAX_SYMLINKS: usize = 256;

pub(super) fn too_many_links(path: &str) -> String {
    format!(
        "`{path}` goes through more than {MAX_SYMLINKS} symbolic links; use a plain path inside \
         the workspace"
    )
}

/// Resolve `path` against `base` the way the kernel would, without needing it to exist: `.` and
/// `..` are applied in order, and every component that is an existing symbolic link (the last one
/// only with `follow_last`) is replaced by its target, so `link/..` goes where the kernel goes.
/// `base` must be absolute with its links resolved. `None`: too many links.
pub(super) fn resolve(base: &Path, path: &Path, follow_last: bool) -> Option<PathBuf> {
    let mut budget = MAX_SYMLINKS;
    resolve_within_budget(base, path, follow_last, &mut budget)
}

fn resolve_within_budget(
    base: &Path,
    path: &Path,
    follow_last: bool,
    budget: &mut usize,
) -> Option<PathBuf> {
    let mut current = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        base.to_path_buf()
    };
    let components: Vec<Component<'_>> = path.components().collect();
    for (position, component) in components.iter().enumerate() {
        match component {
            Component::Prefix(_) | Component::RootDir => current = PathBuf::from("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                current.pop();
            }
            Component::Normal(name) => {
                current.push(name);
                let last = position + 1 == components.len();
                if last && !follow_last {
                    continue;
                }
                if let Ok(target) = std::fs::read_link(&current) {
                    *budget = budget.checked_sub(1)?;
                    current.pop();
                    current = resolve_within_budget(&current, &target, true, budget)?;
                }
            }
        }
    }
    Some(current)
}
