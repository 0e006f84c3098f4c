//! The device agent, built as part of this crate so the end-to-end tests can start it as a
//! separate process (`CARGO_BIN_EXE_flotilla-agent`) and SIGKILL it like a crash or a reboot.

fn main() -> anyhow::Result<()> {
    flotilla_agent::cli::main()
}
