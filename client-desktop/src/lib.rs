//! vcall client library: the call engine shared by the `vcall` app and `vcall-bot`.
pub mod media;
