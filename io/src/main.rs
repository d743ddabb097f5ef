fn main() {
    eprintln!("mqtt-broker: not yet wired");
}
