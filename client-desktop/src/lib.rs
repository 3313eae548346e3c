//! vcall client library: the call engine shared by the `vcall` app and `vcall-bot`.
pub mod bot;
pub mod devices;
pub mod engine;
pub mod media;
pub mod settings;
pub mod ui;
