//! fanout-load: the load generator. Arrives with the load-testing issue; it only explains that for now.
fn main() {
    eprintln!("fanout-load is not implemented yet (see the load-generator issue)");
    std::process::exit(2);
}
