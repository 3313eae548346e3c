//! `vcall`: the desktop app.
fn main() {}
