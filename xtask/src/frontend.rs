//! `cargo xtask frontend`: builds the Leptos dashboard (`frontend/`) into `static/pkg/`.
//!
//! The steps, each printed as it runs: make sure rustup has the `wasm32-unknown-unknown` target,
//! compile the crate with the `wasm-release` profile, generate the JS glue with the
//! `wasm-bindgen` CLI of exactly the version in `Cargo.lock` (the CLI refuses modules made by
//! another version), and shrink the module with `wasm-opt -Oz`.
//!
//! Next to the module and its JS glue it writes their `gzip -9` copies (`.gz`), which the server
//! sends to browsers that accept gzip.
//!
//! The tools are installed under `<target>/tools/` on first use and reused afterwards:
//! wasm-bindgen with `cargo install`, and wasm-opt from the npm package `binaryen`. Debian's
//! own binaryen (version 108) is never used: its wasm-opt writes modules Chromium rejects.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::run;

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";
pub const CRATE: &str = "flotilla-frontend";
pub const PROFILE: &str = "wasm-release";
/// The base name of the files in `static/pkg/`, which `static/index.html` imports.
pub const OUT_NAME: &str = "flotilla_frontend";
/// The npm `binaryen` release that provides wasm-opt.
const BINARYEN_VERSION: &str = "132.0.0";
/// Wasm features rustc enables by default for `wasm32-unknown-unknown`; wasm-opt must accept
/// them on input and may use them in its output.
const WASM_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-reference-types",
    "--enable-sign-ext",
    "--enable-multivalue",
];

/// Builds the frontend bundle into `<root>/static/pkg/`.
pub fn build(root: &Path) -> Result<()> {
    let started = Instant::now();
    let target_dir = target_dir(root)?;
    let out_dir = root.join("static").join("pkg");

    step(&format!("checking the Rust target {WASM_TARGET}"));
    ensure_wasm_target()?;

    // Compiling first brings Cargo.lock up to date, so the wasm-bindgen version read from it is
    // the one the module is built with.
    step(&format!("compiling {CRATE} (profile {PROFILE})"));
    run(Command::new(cargo())
        .current_dir(root)
        .args([
            "build",
            "-p",
            CRATE,
            "--target",
            WASM_TARGET,
            "--profile",
            PROFILE,
        ])
        .arg("--target-dir")
        .arg(&target_dir))?;
    let wasm = target_dir
        .join(WASM_TARGET)
        .join(PROFILE)
        .join(format!("{}.wasm", CRATE.replace('-', "_")));
    if !wasm.is_file() {
        bail!("cargo reported success but {} is missing", wasm.display());
    }

    let Tools {
        wasm_bindgen,
        wasm_opt,
    } = ensure_tools(root)?;

    step(&format!(
        "generating the JS bindings in {}",
        out_dir.display()
    ));
    // A fresh folder, so no file of an earlier build (an old snippet, say) lingers.
    if out_dir.exists() {
        fs::remove_dir_all(&out_dir).with_context(|| format!("removing {}", out_dir.display()))?;
    }
    run(Command::new(&wasm_bindgen)
        .args([
            "--target",
            "web",
            "--no-typescript",
            "--out-name",
            OUT_NAME,
            "--out-dir",
        ])
        .arg(&out_dir)
        .arg(&wasm))?;
    let bundle = out_dir.join(format!("{OUT_NAME}_bg.wasm"));

    step("optimising the module with wasm-opt -Oz");
    // Written beside the module and renamed over it, so a failed run leaves no truncated file.
    let optimised = out_dir.join(format!("{OUT_NAME}_bg.opt.wasm"));
    run(Command::new(&wasm_opt)
        .arg("-Oz")
        .args(WASM_FEATURES)
        .arg(&bundle)
        .arg("-o")
        .arg(&optimised))?;
    fs::rename(&optimised, &bundle)
        .with_context(|| format!("moving {} to {}", optimised.display(), bundle.display()))?;

    step("validating the optimised module");
    // Without `-o`, wasm-opt reads and validates the module and writes nothing.
    run(Command::new(&wasm_opt)
        .arg("--quiet")
        .args(WASM_FEATURES)
        .arg(&bundle))?;

    let js = out_dir.join(format!("{OUT_NAME}.js"));
    step("compressing the bundle for the server (gzip -9)");
    for file in [&bundle, &js] {
        // The server sends `<file>.gz` to browsers that accept gzip (ServeDir's precompressed
        // files); without gzip here it sends the plain files, which only costs bandwidth.
        if let Err(error) = run(Command::new("gzip")
            .args(["-9", "--keep", "--force"])
            .arg(file))
        {
            eprintln!(
                "not compressed ({error:#}); the server will send {} as is",
                file.display()
            );
        }
    }

    step("bundle sizes");
    for file in [&bundle, &js] {
        let size = file_size(file)?;
        match gzip_size(file) {
            Some(gzipped) => eprintln!(
                "{}: {} ({} gzipped)",
                file.display(),
                kib(size),
                kib(gzipped)
            ),
            None => eprintln!(
                "{}: {} (gzip not found, so no gzipped size)",
                file.display(),
                kib(size)
            ),
        }
    }
    eprintln!(
        "frontend built in {:.0?} into {}",
        started.elapsed(),
        out_dir.display()
    );
    Ok(())
}

/// The CLIs that turn the compiled module into the bundle.
pub struct Tools {
    wasm_bindgen: PathBuf,
    wasm_opt: PathBuf,
}

/// Finds or installs the bundle's tools under `<target>/tools/`: wasm-bindgen of Cargo.lock's
/// version and wasm-opt. `cargo xtask frontend-tools` runs only this, so the image caches the
/// tools in a layer of their own.
pub fn ensure_tools(root: &Path) -> Result<Tools> {
    let tools = target_dir(root)?.join("tools");
    step("finding wasm-bindgen");
    let version = wasm_bindgen_version(&root.join("Cargo.lock"))?;
    let wasm_bindgen = ensure_wasm_bindgen(&version, &tools)?;
    step("finding wasm-opt");
    let wasm_opt = ensure_wasm_opt(&tools)?;
    Ok(Tools {
        wasm_bindgen,
        wasm_opt,
    })
}

/// Where cargo puts build output: `CARGO_TARGET_DIR` (relative to the current folder, as cargo
/// reads it) or `<root>/target`.
fn target_dir(root: &Path) -> Result<PathBuf> {
    let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") else {
        return Ok(root.join("target"));
    };
    let dir = PathBuf::from(dir);
    if dir.is_absolute() {
        return Ok(dir);
    }
    Ok(std::env::current_dir()
        .context("reading the current folder")?
        .join(dir))
}

/// Prints a step heading.
fn step(what: &str) {
    eprintln!("==> {what}");
}

/// The cargo that runs this xtask, so nested builds use the same toolchain.
fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// Runs a command and returns its standard output, failing when the command does.
fn output(cmd: &mut Command) -> Result<String> {
    let line = format!("{cmd:?}");
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {line}"))?;
    if !out.status.success() {
        bail!("{line} failed with {}", out.status);
    }
    String::from_utf8(out.stdout).with_context(|| format!("reading the output of {line}"))
}

/// Adds the wasm target to the active toolchain unless rustup already has it.
fn ensure_wasm_target() -> Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("listing rustup's installed targets (is rustup installed?)")?;
    if installed.lines().any(|line| line.trim() == WASM_TARGET) {
        eprintln!("{WASM_TARGET} is installed");
        return Ok(());
    }
    eprintln!("{WASM_TARGET} is missing; adding it");
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

/// The version of the `wasm-bindgen` crate in `Cargo.lock`.
fn wasm_bindgen_version(lock: &Path) -> Result<String> {
    let text = fs::read_to_string(lock).with_context(|| format!("reading {}", lock.display()))?;
    let versions = locked_versions(&text, "wasm-bindgen");
    match versions.as_slice() {
        [version] => {
            eprintln!("Cargo.lock has wasm-bindgen {version}");
            Ok(version.clone())
        }
        [] => bail!("{} has no wasm-bindgen package", lock.display()),
        _ => bail!(
            "{} has several wasm-bindgen versions ({}); the CLI must match the one {CRATE} uses",
            lock.display(),
            versions.join(", ")
        ),
    }
}

/// Every version of package `name` in the text of a `Cargo.lock`.
fn locked_versions(lock: &str, name: &str) -> Vec<String> {
    let wanted = format!("name = \"{name}\"");
    let mut versions = Vec::new();
    let mut lines = lock.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line != wanted {
            continue;
        }
        // Cargo writes `version` right after `name` in each `[[package]]`.
        if let Some(version) = lines
            .next()
            .and_then(|l| l.strip_prefix("version = \""))
            .and_then(|l| l.strip_suffix('"'))
        {
            versions.push(version.to_owned());
        }
    }
    versions
}

/// A `wasm-bindgen` CLI of exactly `version`: the one on PATH if it matches, else one installed
/// under `tools/`, installing it on first use.
fn ensure_wasm_bindgen(version: &str, tools: &Path) -> Result<PathBuf> {
    let wanted = format!("wasm-bindgen {version}");
    match Command::new("wasm-bindgen").arg("--version").output() {
        Ok(out) if out.status.success() => {
            let found = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if found == wanted {
                eprintln!("using {found} from PATH");
                return Ok(PathBuf::from("wasm-bindgen"));
            }
            eprintln!("ignoring {found} on PATH: {CRATE} needs {wanted}");
        }
        _ => eprintln!("no wasm-bindgen on PATH"),
    }

    let root = tools.join(format!("wasm-bindgen-{version}"));
    let bin = root.join("bin").join("wasm-bindgen");
    if bin.is_file() {
        eprintln!("using {}", bin.display());
        return Ok(bin);
    }
    eprintln!(
        "installing wasm-bindgen-cli {version} into {}",
        root.display()
    );
    // Not `--locked`: the CLI's lock file names a dependency version that is no longer on
    // crates.io. Without CARGO_TARGET_DIR, cargo install builds in a temporary folder instead of
    // taking the workspace's target lock for minutes.
    run(Command::new(cargo())
        .env_remove("CARGO_TARGET_DIR")
        .args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            version,
            "--root",
        ])
        .arg(&root))?;
    if !bin.is_file() {
        bail!("cargo install finished but {} is missing", bin.display());
    }
    Ok(bin)
}

/// wasm-opt from npm's `binaryen` [`BINARYEN_VERSION`], installed under `tools/binaryen` on
/// first use (or when another version is there).
fn ensure_wasm_opt(tools: &Path) -> Result<PathBuf> {
    let prefix = tools.join("binaryen");
    let bin = prefix.join("node_modules").join(".bin").join("wasm-opt");
    let major = BINARYEN_VERSION
        .split('.')
        .next()
        .unwrap_or(BINARYEN_VERSION);
    if bin.is_file() {
        let found = output(Command::new(&bin).arg("--version"))?;
        let found = found.trim();
        // It prints e.g. `wasm-opt version 132 (version_132)`.
        if found.split_whitespace().nth(2) == Some(major) {
            eprintln!("using {} ({found})", bin.display());
            return Ok(bin);
        }
        eprintln!(
            "{} is {found}, not version {major}; reinstalling",
            bin.display()
        );
    }
    eprintln!(
        "installing binaryen {BINARYEN_VERSION} from npm into {}",
        prefix.display()
    );
    fs::create_dir_all(&prefix).with_context(|| format!("creating {}", prefix.display()))?;
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&prefix)
        .arg(format!("binaryen@{BINARYEN_VERSION}")))
    .context("installing binaryen with npm (are Node.js and npm installed?)")?;
    if !bin.is_file() {
        bail!("npm finished but {} is missing", bin.display());
    }
    Ok(bin)
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path)
        .with_context(|| format!("reading the size of {}", path.display()))?
        .len())
}

/// The size of `path` compressed by `gzip -9`, as a server would send it; `None` without gzip.
pub fn gzip_size(path: &Path) -> Option<u64> {
    let out = Command::new("gzip")
        .args(["-9", "--stdout"])
        .arg(path)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout.len() as u64)
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::locked_versions;

    #[test]
    fn finds_every_locked_version_of_a_package() {
        let lock = r#"
[[package]]
name = "wasm-bindgen"
version = "0.2.130"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "wasm-bindgen-macro"
version = "0.2.130"
"#;
        assert_eq!(locked_versions(lock, "wasm-bindgen"), ["0.2.130"]);
        assert!(locked_versions(lock, "leptos").is_empty());
    }
}
