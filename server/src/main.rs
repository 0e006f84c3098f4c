//! The `flotilla` binary: see [`flotilla_server::cli`].

fn main() -> anyhow::Result<()> {
    flotilla_server::cli::main()
}
