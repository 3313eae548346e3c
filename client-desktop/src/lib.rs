//! vcall desktop client: the `vcall` app's devices (camera, microphone, speakers), its egui
//! UI and its saved settings. The call itself runs in `vcall-engine`.
pub mod devices;
pub mod settings;
pub mod ui;
