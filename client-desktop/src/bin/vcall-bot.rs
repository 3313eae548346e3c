//! `vcall-bot`: the headless client and load tool.
fn main() {}
