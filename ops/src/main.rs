fn main() -> std::process::ExitCode {
    neopro_ops::cli::main()
}
