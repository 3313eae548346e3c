//! `vcall-relay` binary: runs the relay from the command line.
fn main() {}
