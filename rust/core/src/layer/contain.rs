//! Containment: every path a layer writes is resolved strictly inside the target root.
//!
//! Entry names are cleaned into relative components; absolute names and `..` are refused.
//! Existing symlinks on the way are followed the way `openat2(RESOLVE_IN_ROOT)` would, with
//! absolute targets taken relative to the root, and a target that climbs above the root is
//! refused with [`Error::PathEscape`]. The final component is never followed: an entry replaces
//! a symlink, it does not write through it.
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Symlinks followed while resolving one path before giving up (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// Clean a tar entry name into relative components; `.` and empty components are dropped.
pub fn entry_components(name: &[u8]) -> Result<Vec<OsString>> {
    let escape = || Error::PathEscape { path: String::from_utf8_lossy(name).into_owned() };
    if name.first() == Some(&b'/') {
        return Err(escape());
    }
    let mut out = Vec::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(escape()),
            _ => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok(out)
}

/// Hardlink targets: moby joins them to the root, so an absolute name is relative to it;
/// `..` that would leave the root is refused.
pub fn link_components(name: &[u8]) -> Result<Vec<OsString>> {
    let mut out: Vec<OsString> = Vec::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(Error::PathEscape { path: String::from_utf8_lossy(name).into_owned() });
                }
            }
            _ => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok(out)
}

pub struct Root {
    path: PathBuf,
    /// Relative paths known to be real directories (created or checked during this apply).
    known_dirs: HashSet<PathBuf>,
}

impl Root {
    pub fn new(path: &Path) -> Root {
        Root { path: path.to_path_buf(), known_dirs: HashSet::new() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Forget cached directories (after something was replaced or removed).
    pub fn invalidate(&mut self) {
        self.known_dirs.clear();
    }

    pub fn is_known_dir(&self, rel: &Path) -> bool {
        self.known_dirs.contains(rel)
    }

    pub fn mark_dir(&mut self, rel: &Path) {
        self.known_dirs.insert(rel.to_path_buf());
    }

    /// Resolve `comps` inside the root, following symlinks in all but the last component.
    /// Returns the resolved relative path.
    pub fn resolve(&self, comps: &[OsString], display: &[u8]) -> Result<PathBuf> {
        let escape = || Error::PathEscape { path: String::from_utf8_lossy(display).into_owned() };
        // most entries land in a directory already known to be real (every prefix of a known
        // directory is known): the walk below would push each component unchanged
        let plain = |c: &OsString| !c.is_empty() && c != "." && c != "..";
        if let Some((last, parent)) = comps.split_last().filter(|(_, parent)| !parent.is_empty() && comps.iter().all(plain)) {
            let mut rel: PathBuf = parent.iter().collect();
            if self.known_dirs.contains(&rel) {
                rel.push(last);
                return Ok(rel);
            }
        }
        let mut pending: Vec<OsString> = comps.iter().rev().cloned().collect();
        let mut stack: Vec<OsString> = Vec::new();
        let mut links = 0usize;
        while let Some(c) = pending.pop() {
            if c.is_empty() || c == "." {
                continue;
            }
            if c == ".." {
                if stack.pop().is_none() {
                    return Err(escape());
                }
                continue;
            }
            if pending.is_empty() {
                stack.push(c);
                break;
            }
            let rel: PathBuf = stack.iter().chain(std::iter::once(&c)).collect();
            if self.known_dirs.contains(&rel) {
                stack.push(c);
                continue;
            }
            match fs::symlink_metadata(self.path.join(&rel)) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Error::InvalidLayer(format!(
                            "too many levels of symbolic links resolving {}",
                            String::from_utf8_lossy(display)
                        )));
                    }
                    let target = fs::read_link(self.path.join(&rel))?;
                    let bytes = target.as_os_str().as_bytes();
                    if bytes.first() == Some(&b'/') {
                        stack.clear();
                    }
                    for part in bytes.split(|b| *b == b'/').rev() {
                        pending.push(OsStr::from_bytes(part).to_os_string());
                    }
                }
                Ok(_) | Err(_) => stack.push(c),
            }
        }
        Ok(stack.iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn names_are_cleaned_and_escapes_refused() {
        assert_eq!(entry_components(b"./a//b/.").unwrap(), vec![OsString::from("a"), OsString::from("b")]);
        assert!(matches!(entry_components(b"/etc/passwd"), Err(Error::PathEscape { .. })));
        assert!(matches!(entry_components(b"a/../../x"), Err(Error::PathEscape { .. })));
        assert_eq!(link_components(b"/etc/passwd").unwrap(), vec![OsString::from("etc"), OsString::from("passwd")]);
        assert!(matches!(link_components(b"../x"), Err(Error::PathEscape { .. })));
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        symlink("usr/lib", dir.path().join("lib")).unwrap();
        symlink("/usr", dir.path().join("abs")).unwrap();
        symlink("../../../..", dir.path().join("usr/lib/up")).unwrap();
        let comps = |s: &[u8]| entry_components(s).unwrap();
        assert_eq!(root.resolve(&comps(b"lib/x.so"), b"").unwrap(), PathBuf::from("usr/lib/x.so"));
        assert_eq!(root.resolve(&comps(b"abs/lib/y"), b"").unwrap(), PathBuf::from("usr/lib/y"));
        // the last component is never followed
        assert_eq!(root.resolve(&comps(b"lib"), b"").unwrap(), PathBuf::from("lib"));
        assert!(matches!(root.resolve(&comps(b"usr/lib/up/etc/passwd"), b""), Err(Error::PathEscape { .. })));
    }
}
