//! `flotilla-agent`: the device job agent (see [`flotilla_agent::cli`]).

fn main() -> anyhow::Result<()> {
    flotilla_agent::cli::main()
}
