//! The `codara` executable: parse nothing here, hand the arguments to `cli::run`.

fn main() {
    std::process::exit(codara::run(std::env::args_os().skip(1).collect()));
}
