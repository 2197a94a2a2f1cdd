//! Embeds what `sluice new` writes beside a new connector: the Rust SDK's
//! sources (`guests/sdk`), the Python and JavaScript kits (`guests/kits`),
//! the WIT they are built against (`wit/`) and the guests' `Cargo.lock` (so
//! a new Rust project builds with the versions this repository tests).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    collect(&root.join("guests/sdk/src"), &mut files);
    collect(&root.join("wit"), &mut files);
    collect(&root.join("guests/kits/python/sluice_kit"), &mut files);
    collect(&root.join("guests/kits/js/sluice_kit"), &mut files);
    files.push(root.join("guests/Cargo.lock"));
    files.sort();
    let mut out = String::from(
        "/// `(path in this repository, contents)` of every embedded file.\npub(crate) const EMBEDDED: &[(&str, &str)] = &[\n",
    );
    for file in &files {
        let relative = file.strip_prefix(&root).expect("under the root");
        let absolute = file.canonicalize().expect("an embedded file exists");
        writeln!(
            out,
            "    ({:?}, include_str!({:?})),",
            relative.to_str().expect("a UTF-8 path"),
            absolute.to_str().expect("a UTF-8 path")
        )
        .expect("a string takes writes");
        println!("cargo:rerun-if-changed={}", absolute.display());
    }
    out.push_str("];\n");
    println!(
        "cargo:rerun-if-changed={}",
        root.join("guests/sdk/src").display()
    );
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    for kit in ["python", "js"] {
        let dir = root.join(format!("guests/kits/{kit}/sluice_kit"));
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(dest.join("embedded.rs"), out).expect("OUT_DIR is writable");
}

/// Every file under `dir`, recursively.
fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else if path
            .extension()
            .is_some_and(|e| ["rs", "wit", "py", "js"].contains(&e.to_str().unwrap_or_default()))
        {
            // Sources only: never a `__pycache__` or an editor's leftovers.
            files.push(path);
        }
    }
}
