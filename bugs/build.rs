//! Generates the corpus's module tree from the files under `src/<project>/`, so that adding a
//! bug is adding its two files (`<id>.rs`, `<id>.md`) and nothing else, and generates each
//! bug's tests (`cargo test -p bugs <id>`).

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn main() {
    let src = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("src");
    // Absolute: a target dir shared by two checkouts must rerun this for each of them.
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed=excluded.tsv");
    let mut projects: Vec<_> = fs::read_dir(&src)
        .expect("bugs/src is readable")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .collect();
    projects.sort();
    let (mut modules, mut tests) = (String::new(), String::new());
    for dir in projects {
        let project = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 project name");
        let mut bugs: Vec<_> = fs::read_dir(&dir)
            .expect("a project folder is readable")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .collect();
        bugs.sort();
        if bugs.is_empty() {
            continue;
        }
        writeln!(modules, "pub mod {project} {{").unwrap();
        for path in bugs {
            let id = path
                .file_stem()
                .and_then(|n| n.to_str())
                .expect("a UTF-8 bug id");
            assert!(
                id.starts_with(&format!("{project}_")),
                "bugs/src/{project}/{id}.rs: a bug's file is named by its id, `{project}_<number>`"
            );
            // Absolute: a relative #[path] in an included file resolves against OUT_DIR.
            // (Reports show locations relative to the workspace root all the same.)
            writeln!(
                modules,
                "    #[path = {:?}]\n    pub mod {id};",
                path.display().to_string()
            )
            .unwrap();
            writeln!(
                tests,
                "    mod {id} {{\n        \
                 #[test]\n        fn buggy_is_detected() {{ crate::check::buggy_is_detected(\"{id}\") }}\n        \
                 #[test]\n        fn fixed_is_clean() {{ crate::check::fixed_is_clean(\"{id}\") }}\n        \
                 #[test]\n        fn native_run_gives_no_other_verdict() {{ crate::check::native_baseline(\"{id}\") }}\n        \
                 #[test]\n        fn maps_to_upstream() {{ crate::check::maps_to_upstream(\"{id}\") }}\n    \
                 }}"
            )
            .unwrap();
        }
        writeln!(modules, "}}").unwrap();
    }
    let out = format!("{modules}\n#[cfg(test)]\nmod tests {{\n{tests}}}\n");
    let path = Path::new(&env::var("OUT_DIR").expect("cargo sets it")).join("corpus.rs");
    fs::write(path, out).expect("OUT_DIR is writable");
}
