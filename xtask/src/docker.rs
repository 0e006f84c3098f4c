//! The container image's recipe (`Dockerfile`) and the checks that keep it buildable where no
//! Docker engine runs.
//!
//! `cargo xtask ci` lints the Dockerfile with hadolint and reads its `RUN` instructions. Each
//! command in them (the parts between `&&`) must be one of:
//!
//! - a build command of [`build_commands`]: the frontend recipe (`cargo xtask frontend` and
//!   `frontend-tools`, the very code CI runs), the server build ([`SERVER_BUILD`], which CI
//!   runs in the dev profile and the image with `--release`), and cargo-chef's dependency-only
//!   builds, whose profile, target and package come from the same constants;
//! - image set-up that builds nothing of ours ([`is_setup`]): apt-get, the wasm target, the
//!   pinned cargo-chef, the runtime user.
//!
//! Anything else fails CI, as does a build command missing from the Dockerfile or a `COPY`
//! of a path the repository lacks: the image's recipe cannot drift from what CI proves.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{frontend, run};

/// The cargo arguments that build the `flotilla` binary. CI runs them as they are; the image
/// adds `--release`.
pub const SERVER_BUILD: [&str; 6] = [
    "build",
    "--locked",
    "--package",
    "flotilla-server",
    "--bin",
    "flotilla",
];

/// Where cargo-chef's recipe (the workspace's manifests) goes between the image's stages.
const RECIPE: &str = "recipe.json";

/// Lints the Dockerfile with hadolint (from `python`'s virtualenv) and checks its recipe.
pub fn check(root: &Path, python: &Path) -> Result<()> {
    let dockerfile = root.join("Dockerfile");
    let hadolint = python
        .parent()
        .context("the virtualenv's python has no folder")?
        .join("hadolint");
    run(Command::new(hadolint)
        .current_dir(root)
        .arg("--config")
        .arg(root.join(".hadolint.yaml"))
        .arg(&dockerfile))?;
    let text = fs::read_to_string(&dockerfile)
        .with_context(|| format!("reading {}", dockerfile.display()))?;
    let problems = recipe_problems(&text, &|path| root.join(path).exists());
    if !problems.is_empty() {
        bail!(
            "the Dockerfile's recipe drifted from CI's:\n  {}",
            problems.join("\n  ")
        );
    }
    eprintln!("Dockerfile: hadolint is clean and every build command is one CI runs");
    Ok(())
}

/// The build commands the image runs, each as the Dockerfile spells it.
pub fn build_commands() -> Vec<String> {
    let target = frontend::WASM_TARGET;
    vec![
        format!("cargo chef prepare --recipe-path {RECIPE}"),
        format!(
            "cargo chef cook --recipe-path {RECIPE} --profile {} --target {target} --package {}",
            frontend::PROFILE,
            frontend::CRATE
        ),
        "cargo xtask frontend-tools".to_owned(),
        "cargo xtask frontend".to_owned(),
        format!(
            "cargo chef cook --recipe-path {RECIPE} --release --package {}",
            SERVER_BUILD[3]
        ),
        format!("cargo {} --release", SERVER_BUILD.join(" ")),
    ]
}

/// Whether `command` prepares the image without building any of our code.
fn is_setup(command: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        ["apt-get", "update"] | ["rm", "-rf", "/var/lib/apt/lists/*"] => true,
        [
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            packages @ ..,
        ] => !packages.is_empty() && packages.iter().all(|p| !p.starts_with('-')),
        ["rustup", "target", "add", target] => *target == frontend::WASM_TARGET,
        ["cargo", "install", "cargo-chef", "--locked", "--version", _] => true,
        ["useradd", ..] | ["mkdir", "-p", _] | ["chown", _, _] => true,
        _ => false,
    }
}

/// Everything wrong with the Dockerfile `text`; `exists` says whether a path of the build
/// context is in the repository.
fn recipe_problems(text: &str, exists: &dyn Fn(&str) -> bool) -> Vec<String> {
    let expected = build_commands();
    let mut problems = Vec::new();
    let mut found = Vec::new();
    for (instruction, arguments) in instructions(text) {
        match instruction.as_str() {
            "RUN" => {
                if arguments.starts_with('[') {
                    problems.push(format!("RUN {arguments}: use the shell form"));
                    continue;
                }
                for command in arguments.split("&&").map(normalise) {
                    if expected.contains(&command) {
                        found.push(command);
                    } else if !is_setup(&command) {
                        problems.push(format!(
                            "RUN {command}: not a build command CI runs (see xtask/src/docker.rs)"
                        ));
                    }
                }
            }
            "COPY" | "ADD" if !arguments.contains("--from=") => {
                let paths: Vec<&str> = arguments
                    .split_whitespace()
                    .filter(|word| !word.starts_with("--"))
                    .collect();
                if let [sources @ .., _destination] = paths.as_slice() {
                    for source in sources.iter().filter(|s| **s != ".") {
                        if !exists(source) {
                            problems.push(format!(
                                "{instruction} {source}: no such path in the repository"
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    for command in &expected {
        if !found.contains(command) {
            problems.push(format!("the Dockerfile never runs `{command}`"));
        }
    }
    problems
}

/// Collapses runs of white space (line continuations included) into single spaces.
fn normalise(command: &str) -> String {
    command.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The Dockerfile's instructions, upper-cased, with their arguments: comment lines dropped and
/// continuation lines (ending in `\`) joined, as Docker reads them.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let line = std::mem::take(&mut current);
                let (instruction, arguments) = line
                    .split_once(char::is_whitespace)
                    .unwrap_or((line.as_str(), ""));
                out.push((instruction.to_uppercase(), arguments.trim().to_owned()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository's Dockerfile, as CI reads it.
    const DOCKERFILE: &str = include_str!("../../Dockerfile");

    fn problems(text: &str) -> Vec<String> {
        recipe_problems(text, &|path| !path.contains("missing"))
    }

    #[test]
    fn the_dockerfile_runs_exactly_the_build_commands() {
        assert_eq!(problems(DOCKERFILE), Vec::<String>::new());
    }

    #[test]
    fn a_changed_build_command_is_reported() {
        let changed = DOCKERFILE.replace(
            "--bin flotilla --release",
            "--bin flotilla --release --features x",
        );
        let problems = problems(&changed);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("--features x: not a build command")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("never runs `cargo build")),
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_commands_and_missing_paths_are_reported() {
        let text = "FROM x AS a\nRUN apt-get update \\\n # a comment\n && make all\nCOPY missing/ /a/\nCOPY --from=a /b /c\n";
        let problems = problems(text);
        assert!(problems.iter().any(|p| p == "RUN make all: not a build command CI runs (see xtask/src/docker.rs)"), "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p == "COPY missing/: no such path in the repository"),
            "{problems:?}"
        );
        assert!(
            !problems
                .iter()
                .any(|p| p.contains("apt-get") || p.contains("/b")),
            "{problems:?}"
        );
    }

    #[test]
    fn the_wasm_target_must_be_the_one_the_frontend_uses() {
        assert!(is_setup("rustup target add wasm32-unknown-unknown"));
        assert!(!is_setup("rustup target add wasm32-wasip1"));
        assert!(!is_setup("apt-get install -y --no-install-recommends"));
    }
}
