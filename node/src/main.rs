//! The `dynamo` binary: parses flags, sets up logging, and hands over to [`dynamo_node::cli`].

fn main() -> std::process::ExitCode {
    dynamo_node::cli::main()
}
