//! `rcni-agent` entry point.

fn main() {
    eprintln!("rcni-agent: not wired up yet");
    std::process::exit(2);
}
