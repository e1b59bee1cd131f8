fn main() -> std::process::ExitCode {
    neopro_runtime::cli::main()
}
