//! The harness: runs the corpus under every engine, classifies what it finds against each
//! bug's expectations, replays and explains failures, and writes `reports/`.

pub mod bench;
pub mod book;
pub mod cause;
pub mod cli;
pub mod fidelity;
pub mod html;
pub mod matrix;
pub mod mutants;
pub mod output;
pub mod results;
pub mod summary;
pub mod swimlane;
pub mod walkthrough;

/// The workspace the harness was built in (walkthroughs are read and blessed there).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the harness lives in the workspace")
        .to_path_buf()
}
