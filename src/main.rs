fn main() -> std::process::ExitCode {
    bootlab::cli::main()
}
