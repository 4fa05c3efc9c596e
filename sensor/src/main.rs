fn main() -> std::process::ExitCode {
    edge_sensor::cli::main()
}
