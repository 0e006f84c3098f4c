//! The `flotilla` server, built as part of this crate so the end-to-end tests can start it as a
//! separate process (`CARGO_BIN_EXE_flotilla-test-server`) and SIGKILL it mid-rollout.

fn main() -> anyhow::Result<()> {
    flotilla_server::cli::main()
}
