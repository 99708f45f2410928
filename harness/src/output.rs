//! Writing reports whole or not at all.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Writes every `(name, content)` into `dir`: each file goes to a temporary name first, and only
/// when all are written are they renamed into place. An interrupted run leaves the previous
/// files as they were; other files in `dir` are never touched.
pub fn write_all(dir: &Path, files: &[(&str, String)]) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (name, content) in files {
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let written = fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(content.as_bytes())?;
            f.sync_all()
        });
        if let Err(e) = written {
            for (t, _) in &staged {
                let _ = fs::remove_file(t);
            }
            let _ = fs::remove_file(&tmp);
            return Err(format!("cannot write {}: {e}", tmp.display()));
        }
        staged.push((tmp, dir.join(name)));
    }
    for (tmp, dest) in staged {
        fs::rename(&tmp, &dest)
            .map_err(|e| format!("cannot move {} into place: {e}", dest.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_file_and_leaves_others_alone() {
        let dir = std::env::temp_dir().join(format!("harness-output-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("keep.txt"), "mine").unwrap();
        write_all(&dir, &[("a.json", "{}".into()), ("b.md", "# b".into())]).unwrap();
        assert_eq!(fs::read_to_string(dir.join("a.json")).unwrap(), "{}");
        assert_eq!(fs::read_to_string(dir.join("b.md")).unwrap(), "# b");
        assert_eq!(fs::read_to_string(dir.join("keep.txt")).unwrap(), "mine");
        let leftovers = fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".tmp")
            })
            .count();
        assert_eq!(leftovers, 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
