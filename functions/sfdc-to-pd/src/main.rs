//! Lambda entry point: wires configuration, clients and stores, then hands events to `shared`.

fn main() {
    println!("not wired yet");
}
