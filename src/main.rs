fn main() -> std::process::ExitCode {
    // VM supervisors are this very executable, whatever its name (/proc/self/exe).
    bootlab::vm::lifecycle::supervise_with_this_exe();
    bootlab::cli::main()
}
