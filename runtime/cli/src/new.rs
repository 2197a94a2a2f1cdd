//! `sluice new NAME --lang rust|python|js`: a connector project that builds
//! with one command (`make`) and passes `sluice test-connector` as it is.
//!
//! The project holds the SDK's (or the language's kit's) sources and the
//! WIT they are built against, as embedded in this binary (see `build.rs`);
//! a Rust project also the lockfile this repository's guests are tested
//! with, a Python or JavaScript one a Makefile that installs the pinned
//! componentize-py or componentize-js into the project. None needs
//! anything from this repository.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::args::{Lang, NewArgs};

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// The Rust project's own files, `{{name}}` and `{{crate}}` filled in.
const RUST_TEMPLATE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
    ("Makefile", include_str!("../templates/rust/Makefile")),
    ("README.md", include_str!("../templates/rust/README.md")),
    ("src/lib.rs", include_str!("../templates/rust/src/lib.rs")),
    (
        "config.schema.json",
        include_str!("../templates/rust/config.schema.json"),
    ),
    (".gitignore", "/target\n"),
    (
        "sluice/sdk/Cargo.toml",
        include_str!("../templates/rust/sdk.Cargo.toml"),
    ),
];

/// The Python project's own files, `{{name}}` and `{{crate}}` filled in.
const PYTHON_TEMPLATE: &[(&str, &str)] = &[
    ("app.py", include_str!("../templates/python/app.py")),
    (
        "connector_api.py",
        include_str!("../templates/python/connector_api.py"),
    ),
    ("Makefile", include_str!("../templates/python/Makefile")),
    ("README.md", include_str!("../templates/python/README.md")),
    (".gitignore", "/.venv\n/*.wasm\n__pycache__/\n"),
];

/// The JavaScript project's own files, `{{name}}` and `{{crate}}` filled in.
const JS_TEMPLATE: &[(&str, &str)] = &[
    ("app.js", include_str!("../templates/js/app.js")),
    ("package.json", include_str!("../templates/js/package.json")),
    ("Makefile", include_str!("../templates/js/Makefile")),
    ("README.md", include_str!("../templates/js/README.md")),
    (".gitignore", "/node_modules\n/*.wasm\n"),
];

/// Make the project; print where it is and what to run next.
pub(crate) fn new_project(args: &NewArgs) -> Result<()> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() {
        bail!(
            "{} exists already: choose another name, or --dir for where the project goes",
            dir.display()
        );
    }
    match args.lang {
        Lang::Rust => write_rust(&dir, &args.name)?,
        Lang::Python => write_kit_project(&dir, &args.name, PYTHON_TEMPLATE, "python")?,
        Lang::Js => write_kit_project(&dir, &args.name, JS_TEMPLATE, "js")?,
    }
    println!("{}: a new sluice connector. Next:", dir.display());
    println!("  cd {} && make && make check", dir.display());
    Ok(())
}

/// A name that is a Cargo package name: lower-case letters, digits and
/// `-`, starting with a letter.
fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !first_ok || !rest_ok || name.len() > 64 || name.ends_with('-') {
        bail!("name `{name}`: lower-case letters, digits and `-`, starting with a letter (e.g. `acme-orders`)");
    }
    Ok(())
}

/// `text` with the project's name and its identifier form filled in.
fn fill(text: &str, name: &str) -> String {
    text.replace("{{name}}", name)
        .replace("{{crate}}", &name.replace('-', "_"))
}

fn write_rust(dir: &Path, name: &str) -> Result<()> {
    for (path, text) in RUST_TEMPLATE {
        write(dir, path, &fill(text, name))?;
    }
    for (path, text) in EMBEDDED {
        let target = if let Some(rest) = path.strip_prefix("guests/sdk/") {
            format!("sluice/sdk/{rest}")
        } else if *path == "guests/Cargo.lock" {
            "Cargo.lock".to_string()
        } else if path.starts_with("wit/") {
            (*path).to_string()
        } else {
            continue;
        };
        write(dir, &target, text)?;
    }
    Ok(())
}

/// A project in a language with a kit: its template, the kit
/// (`guests/kits/LANG/sluice_kit`) and the WIT.
fn write_kit_project(dir: &Path, name: &str, template: &[(&str, &str)], lang: &str) -> Result<()> {
    for (path, text) in template {
        write(dir, path, &fill(text, name))?;
    }
    let kit = format!("guests/kits/{lang}/");
    for (path, text) in EMBEDDED {
        let target = if let Some(rest) = path.strip_prefix(kit.as_str()) {
            rest.to_string()
        } else if path.starts_with("wit/") {
            (*path).to_string()
        } else {
            continue;
        };
        write(dir, &target, text)?;
    }
    Ok(())
}

fn write(dir: &Path, path: &str, text: &str) -> Result<()> {
    let target = dir.join(path);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&target, text).with_context(|| format!("cannot write {}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cargo_package_names() {
        for good in ["acme", "acme-orders", "a1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Acme", "1acme", "acme_orders", "acme-", "../x", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_sdk_the_wit_and_the_lockfile_are_embedded() {
        let paths: Vec<&str> = EMBEDDED.iter().map(|(p, _)| *p).collect();
        for expected in [
            "guests/sdk/src/lib.rs",
            "guests/sdk/src/query.rs",
            "wit/connector.wit",
            "wit/deps/http/http.wit",
            "guests/Cargo.lock",
            "guests/kits/python/sluice_kit/__init__.py",
            "guests/kits/python/sluice_kit/query.py",
            "guests/kits/js/sluice_kit/index.js",
            "guests/kits/js/sluice_kit/query.js",
        ] {
            assert!(paths.contains(&expected), "{expected} in {paths:?}");
        }
    }

    #[test]
    fn the_copied_sdk_manifest_asks_for_what_the_sdk_uses() {
        let sdk = include_str!("../../../guests/sdk/Cargo.toml");
        let copied = include_str!("../templates/rust/sdk.Cargo.toml");
        for line in sdk.lines().skip_while(|l| *l != "[dependencies]").skip(1) {
            let Some(name) = line.split([' ', '.']).next().filter(|n| !n.is_empty()) else {
                break;
            };
            assert!(
                copied.lines().any(|l| l.starts_with(&format!("{name} = "))),
                "the copied SDK manifest lacks `{name}`"
            );
        }
    }
}
